"""TrainConfig's fields, in groups; the string under each field is its doc (help, form hint, YAML docs).

Each group is a dataclass and TrainConfig inherits them all (as LLaMA-Factory composes its hparams), so
YAML keys, flags and `cfg.field` stay flat while the form and the docs are laid out by group. `opt`
puts the rest of a field's description in `dataclasses.field` metadata: its form label, its choices,
the methods that use it (a non-default value under another method is refused, core.config.checks)
and `why` a method ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.schema.prompt import DEFAULT_TEMPLATE
from core.video.sampling import FPS, FPS_MAX_FRAMES, FPS_MIN_FRAMES

METHODS = ("lora", "qlora", "full", "grpo")
SFT = ("lora", "qlora", "full")
LORA = ("lora", "qlora", "grpo")  # GRPO trains a LoRA adapter too
ONE_PROCESS = "grpo runs in one process on one machine"
GRPO_LOOP = "GRPO's own loop steps AdamW once per batch of groups and logs to metrics.jsonl only"


def opt(default, label: str = "", choices: tuple = (), methods: tuple = METHODS, why: str = "",
        form: bool = True, lines: int = 1):
    """A field's default plus what the flags, the form and the checks need to know about it."""
    return field(default=default, metadata={"label": label, "choices": tuple(choices), "methods": tuple(methods),
                                            "why": why, "form": form, "lines": lines})


@dataclass
class ModelArgs:
    model: str = opt("tiny:default", "Base model")
    """Base model: tiny:NAME, a hub id, a local folder, or a run directory (its final model)."""
    method: str = opt("lora", "Method", METHODS)
    """lora | qlora | full | grpo. LoRA goes on the language model's linear layers (see
    core/models/families.py); qlora is LoRA on a 4-bit (NF4, bitsandbytes) base and needs bitsandbytes
    and a CUDA GPU; full trains every weight; grpo is reinforcement learning with schema rewards
    (core.train.grpo) on a LoRA adapter, from the base or from an SFT run's adapter (init_adapter).
    The form greys out the settings a method does not use."""
    precision: str = opt("auto", "Precision", ("auto", "bf16", "fp16", "fp32"))
    """auto | bf16 | fp16 | fp32. auto: bf16 on a GPU that supports it, else fp16 on GPU; fp32 on
    CPU. An explicit choice the device cannot do is refused before training starts."""
    device: str = opt("auto", "Device")
    """auto | cpu | cuda | cuda:N (also mps, xpu, xpu:N). auto: the CUDA GPU when one is visible, else the CPU."""
    seed: int = opt(0, "Seed")
    """Seed of the new weights' initialisation (LoRA), the order clips are drawn in and GRPO's
    sampling: the same seed and config repeat a run."""
    trust_remote_code: bool = opt(False, "Trust the model's remote code")
    """Let a hub model run the Python code shipped in its repository when it loads; only for code
    you trust."""


@dataclass
class FrameArgs:
    sampling: str = opt("uniform", "Frame sampling", ("uniform", "fps"))
    """How frames are picked: uniform (num_frames at segment mid-points) | fps (fps frames per second
    of video, clamped to min_frames..max_frames)."""
    num_frames: int | None = opt(None, "Frames per clip (blank: model default)")
    """Frames per clip for uniform sampling (>= 1). Unset: the family default."""
    fps: float = opt(FPS, "Frames per second (fps sampling)")
    """fps sampling: frames taken per second of video (> 0)."""
    min_frames: int = opt(FPS_MIN_FRAMES, "Fewest frames (fps sampling)")
    """fps sampling: fewest frames per clip, rounded up to an even number (>= 1)."""
    max_frames: int = opt(FPS_MAX_FRAMES, "Most frames (fps sampling)")
    """fps sampling: most frames per clip, rounded down to an even number and never more than the
    clip has (>= min_frames)."""
    frame_width: int | None = opt(None, "Frame width (blank: default)")
    """Width in pixels each frame is resized to before the processor (28 to 4096). Unset: the family
    default."""
    frame_height: int | None = opt(None, "Frame height (blank: default)")
    """Height in pixels each frame is resized to before the processor (28 to 4096). Unset: the family
    default."""
    prompt_template: str = opt(DEFAULT_TEMPLATE, "Prompt template", lines=4)
    """Instruction template; {fields} is replaced by a field list built from the schema."""


@dataclass
class StepArgs:
    # 500: on the tiny default, at the random-init lr of 2e-3 (core.spec.resolve_defaults), a cosine
    # schedule over 500 steps reaches schema-valid 1.0 and 0.955-0.985 mean field accuracy on the test
    # split and on clips of two unseen generator seeds, for training seeds 0 and 1: what 800 steps at
    # 3e-3 scored, in 5/8 of the time (262-278 s on 2 idle AMD EPYC cores). At 3e-3, 500 steps scored
    # 0.905-0.935, and at 6e-3 0.755-0.793 (BENCHMARKS.md, section 7).
    max_steps: int = opt(500, "Max steps")
    """Optimiser steps to train; 0: as many as `epochs` passes over the train split take."""
    epochs: float = opt(1.0, "Epochs (when max steps is 0)")
    """Passes over the train split (fractions allowed); used only when max_steps is 0."""
    step_cap: int = opt(0, form=False)
    """Stop after at most this many optimiser steps whatever max_steps/epochs say (0: no cap). The app
    sets it in Space mode (core.runs.policy), so the cap is recorded with the run."""
    batch_size: int = opt(8, "Batch size (per device)")
    """Clips per device per forward pass."""
    grad_accum: int = opt(1, "Gradient accumulation", methods=SFT, why="a GRPO step is one batch of groups")
    """Forward passes per optimiser step: the global batch is batch_size x grad_accum x processes."""
    learning_rate: float | None = opt(None, "Learning rate (blank: default)")
    """Peak learning rate (reached after warm-up). Unset: for lora/qlora/full 2e-3 on a randomly
    initialised base, 1e-4 on a pretrained one; for grpo 1e-4 and 1e-5."""
    lr_scheduler: str = opt("cosine", "LR schedule", ("cosine", "linear", "constant"))
    """cosine | linear | constant (decay to 0 after warm-up, or hold)."""
    warmup_steps: int = opt(20, "Warm-up steps")
    """Linear warm-up from 0 over this many optimiser steps (all schedules)."""
    weight_decay: float = opt(0.0, "Weight decay")
    """Decoupled weight decay the optimiser applies to the trained weights each step (>= 0; 0: none)."""
    max_grad_norm: float = opt(1.0, "Gradient clipping norm")
    """Clip the norm of all gradients together to this before each optimiser step; 0: no clipping."""
    optimizer: str = opt("adamw", "Optimizer", ("adamw", "adafactor"), methods=SFT, why=GRPO_LOOP)
    """adamw (two fp32 states per trainable weight) | adafactor (factored second moment: less memory)."""
    gradient_checkpointing: bool = opt(False, "Gradient checkpointing", methods=SFT,
                                       why="GRPO's loop does not recompute activations")
    """Recompute each decoder layer's activations in the backward pass: less memory, about 20-30
    percent slower."""


@dataclass
class LoraArgs:
    lora_r: int = opt(16, "LoRA rank", methods=LORA, why="a full fine-tune trains every weight, not an adapter")
    """LoRA rank: the inner width of each low-rank update; trainable parameters grow with it."""
    lora_alpha: int = opt(32, "LoRA alpha", methods=LORA, why="a full fine-tune trains every weight, not an adapter")
    """LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = opt(0.0, "LoRA dropout", methods=LORA, why="a full fine-tune has no adapter")
    """Dropout on the input of each LoRA update during training, in [0, 1); 0: none."""
    lora_targets: str = opt("language", "LoRA targets", ("language", "all"), methods=LORA,
                            why="a full fine-tune has no adapter")
    """language (the language model's linears only) | all (also the vision tower's linears)."""
    train_embeddings: bool | None = opt(None, "Train embeddings and head")
    """Also fully train embed_tokens and lm_head. Unset: yes for a randomly initialised base (the
    tiny default learns nothing without it), no for pretrained bases."""
    freeze_vision: bool | None = opt(None, "Freeze the vision tower")
    """Keep the vision tower fixed. Unset: frozen for pretrained bases, trained for a randomly
    initialised base."""
    freeze_projector: bool | None = opt(None, "Freeze the projector")
    """Keep the vision-to-text projector fixed. Unset: frozen under LoRA for pretrained bases, trained
    for a randomly initialised base."""
    freeze_language: bool = opt(False, "Freeze the language model (full only)", methods=("full",),
                                why="under LoRA only the adapter trains; the language model is fixed anyway")
    """Full fine-tuning only: keep the language model fixed (train vision/projector)."""
    merge_at_end: bool = opt(False, "Merge the adapter into the base at the end", methods=("lora", "qlora"),
                             why="a full fine-tune is already a whole model, and a GRPO run merges with "
                                 "`cli.py merge RUN` afterwards")
    """LoRA/QLoRA: after training also write RUN/merged/, the adapter merged into the base."""


@dataclass
class EvalArgs:
    logging_steps: int | None = opt(None, "Log every N steps (blank: about 20 points)")
    """Append a loss line to metrics.jsonl every N optimiser steps (>= 1). Unset: about 20 points over
    the run, at most one every 10 steps (max_steps // 20, from 1 to 10)."""
    save_steps: int = opt(200, "Save every N steps")
    """Save a resumable checkpoint-N folder every N optimiser steps; 0: only the final model."""
    save_total_limit: int = opt(2, "Checkpoints kept")
    """Keep at most this many checkpoint folders, deleting the oldest; 0: keep them all."""
    eval_steps: int = opt(0, "Evaluate on val every N steps (0: never)")
    """Every N optimiser steps (and at the last step), greedy-generate on the val split and append
    eval_* metrics to metrics.jsonl. 0: no evaluation during training. Needs clips with split=val."""
    eval_max_clips: int = opt(16, "Val clips per evaluation")
    """At most this many val clips per evaluation (the first ones, in metadata order)."""
    max_new_tokens: int = opt(160, "Max answer tokens")
    """Most tokens generated per answer in those evaluations during training and in the calibration at
    the end (>= 1)."""
    report_to: str = opt("none", "Report to (none, tensorboard, trackio, wandb)", methods=SFT, why=GRPO_LOOP)
    """none | tensorboard | trackio | wandb (comma-separated for several); the package must be installed."""
    calibrate_at_end: bool = opt(True, "Calibrate confidence on val at the end")
    """After training, when the dataset has labelled val clips, fit the per-field confidence calibration
    and review thresholds on them (what `cli.py calibrate RUN --split val` does; RUN/calibration.json)."""


@dataclass
class ProcessArgs:
    num_processes: int = opt(0, "Processes (0: one per GPU)", methods=SFT, why=ONE_PROCESS)
    """Training processes on this machine: 0 = one per visible GPU (1 without GPUs); more than one process
    in all (here or across machines) starts `accelerate launch`."""
    distributed: str = opt("ddp", "Distributed", ("ddp", "deepspeed", "fsdp"), methods=SFT, why=ONE_PROCESS)
    """With several processes: ddp (data parallel) | deepspeed (ZeRO-2) | fsdp (fully sharded)."""
    num_machines: int = opt(1, "Machines", methods=SFT, why=ONE_PROCESS)
    """Machines training together (multi-node, >= 1). Each machine runs the same command with its own
    machine_rank and the same num_processes; the run directory must be on storage every machine sees."""
    machine_rank: int = opt(0, "This machine's rank", methods=SFT, why=ONE_PROCESS)
    """This machine's rank, 0 to num_machines - 1. Machine 0 hosts the rendezvous and alone writes the run
    directory (status, logs, metrics, checkpoints, final model)."""
    main_process_ip: str = opt("", "Machine 0's address", methods=SFT, why=ONE_PROCESS)
    """With num_machines > 1 (required then): the address of machine 0 that every machine can reach."""
    main_process_port: int = opt(0, "Rendezvous port (0: default)", methods=SFT, why=ONE_PROCESS)
    """Rendezvous port on machine 0, open to the other machines (1 to 65535). 0: 29500 with several
    machines, a free port with one."""
    dataloader_workers: int | None = opt(None, "Data loader workers (blank: default)")
    """Worker processes per training process that decode and encode clips for the next batches
    (SFT and GRPO); 0: the training process itself. Unset: up to 4 per process on a GPU, 1 on a CPU
    (none on a single core)."""
    encoded_cache_mb: int = opt(1024, "Encoded clip cache (MiB)")
    """MiB of encoded clips kept in memory after first use so that later epochs skip the processor
    (0: none). Above it clips are re-encoded from the frame cache; memory stays bounded."""


GRPO = ("grpo",)
SFT_IGNORES = "lora/qlora/full train on the labels, not on rewards"


@dataclass
class GrpoArgs:
    init_adapter: str = opt("", "Start from an SFT run (blank: the base)", methods=GRPO, why=SFT_IGNORES)
    """grpo: an SFT run directory to start from (its adapter, frames and prompt); empty: the base."""
    num_generations: int = opt(4, "Completions per clip", methods=GRPO, why=SFT_IGNORES)
    """grpo: completions sampled per clip (>= 2); advantages are normalised within each group."""
    temperature: float = opt(1.0, "Sampling temperature", methods=GRPO, why=SFT_IGNORES)
    """grpo: sampling temperature of the completions (> 0); higher gives more varied answers."""
    beta: float = opt(0.04, "KL weight (beta)", methods=GRPO, why=SFT_IGNORES)
    """grpo: weight of the KL penalty to the reference (the starting policy)."""
    max_completion_length: int = opt(160, "Most tokens per completion", methods=GRPO, why=SFT_IGNORES)
    """grpo: most tokens sampled per completion; length_penalty is measured against it."""
    reward_json: float = opt(1.0, "JSON reward weight", methods=GRPO, why=SFT_IGNORES)
    """grpo: weight of the JSON reward (1 for one JSON object, 0.5 for one dug out of surrounding
    text, 0 when none parses)."""
    reward_schema: float = opt(2.0, "Schema reward weight", methods=GRPO, why=SFT_IGNORES)
    """grpo: weight of the schema reward (1 when the answer is valid under the schema)."""
    reward_fields: float = opt(5.0, "Field reward weight", methods=GRPO, why=SFT_IGNORES)
    """grpo: weight of the field reward: the mean over fields of core.schema.scoring's per-field score
    against the clip's label (list fields by F1, so a partly right list earns part of the reward)."""
    length_penalty: float = opt(0.0, "Length penalty", methods=GRPO, why=SFT_IGNORES)
    """grpo: subtracted times completion tokens / max_completion_length."""
    custom_reward: str = opt("", "Custom reward (module:function)", methods=GRPO, why=SFT_IGNORES)
    """grpo: optional "module:function" called as fn(completion, label, schema) -> float (weight 1)."""


GROUPS = (("Model", ModelArgs), ("Frames and prompt", FrameArgs), ("Steps and optimisation", StepArgs),
          ("LoRA and what trains", LoraArgs), ("Evaluation, saving and logging", EvalArgs),
          ("Processes and data loading", ProcessArgs), ("GRPO", GrpoArgs))
