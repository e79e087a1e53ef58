"""The training configuration: a dataclass whose docs sit on each field.

`TrainConfig` is what a user sets (YAML, CLI flags, the Train tab's form); `validate` checks every
value that needs no ML library, so a bad config is refused before anything loads or launches.
`field_docs` reads the string under each field, which `cli.py train --help` and the Train tab show.
What training actually saw is the preprocessing spec (core.spec), built from a resolved config.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.schema.prompt import DEFAULT_TEMPLATE
from core.video.sampling import MAX_OUTPUT_SIDE

METHODS = ("lora", "qlora", "full", "grpo")
OPTIMIZERS = ("adamw", "adafactor")
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DISTRIBUTED = ("ddp", "deepspeed", "fsdp")
# report_to names we pass to transformers, and the module each needs importable.
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
_ALIASES = {"optimizer": {"adamw_torch": "adamw"}}
# Smallest frame side: one vision token of the Qwen families (14 px patches merged 2 x 2 = 28 px).
# Processors scale smaller frames up to it (and SigLIP/InternVL towers to their fixed tile), so
# pixels below it carry nothing, and a side of a few pixels is a typo, not a setting. The largest is
# the sampler's resize bound. The tiny default trains on 96 x 64.
MIN_FRAME_SIDE = 28
MAX_FRAME_SIDE = MAX_OUTPUT_SIDE
# Fields only method grpo reads: their errors say so.
GRPO_FIELDS = ("init_adapter", "num_generations", "temperature", "beta", "max_completion_length", "reward_json",
               "reward_schema", "reward_fields", "length_penalty", "custom_reward")
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


@dataclass
class TrainConfig:
    model: str = "tiny:default"
    """Base model: tiny:NAME, a hub id, a local folder, or a run directory (its final model)."""
    method: str = "lora"
    """lora | qlora | full | grpo. LoRA goes on the language model's linear layers (see
    core/models/families.py); qlora is LoRA on a 4-bit (NF4, bitsandbytes) base and needs bitsandbytes
    and a CUDA GPU; full trains every weight; grpo is reinforcement learning with schema rewards
    (core.train.grpo) on a LoRA adapter, from the base or from an SFT run's adapter (init_adapter)."""
    lora_r: int = 16
    """LoRA rank: the inner width of each low-rank update; trainable parameters grow with it."""
    lora_alpha: int = 32
    """LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """Dropout on the input of each LoRA update during training, in [0, 1); 0: none."""
    lora_targets: str = "language"
    """language (the language model's linears only) | all (also the vision tower's linears)."""
    train_embeddings: bool | None = None
    """Also fully train embed_tokens and lm_head. Unset: yes for a randomly initialised base (the
    tiny default learns nothing without it), no for pretrained bases."""
    freeze_vision: bool | None = None
    """Keep the vision tower fixed. Unset: frozen for pretrained bases, trained for a randomly
    initialised base."""
    freeze_projector: bool | None = None
    """Keep the vision-to-text projector fixed. Unset: frozen under LoRA for pretrained bases, trained
    for a randomly initialised base."""
    freeze_language: bool = False
    """Full fine-tuning only: keep the language model fixed (train vision/projector)."""
    sampling: str = "uniform"
    """How frames are picked: uniform (num_frames at segment mid-points) | fps (fps frames per second
    of video, clamped to min_frames..max_frames)."""
    num_frames: int | None = None
    """Frames per clip for uniform sampling (>= 1). Unset: the family default."""
    fps: float = 2.0
    """fps sampling: frames taken per second of video (> 0)."""
    min_frames: int = 4
    """fps sampling: fewest frames per clip, rounded up to an even number (>= 1)."""
    max_frames: int = 32
    """fps sampling: most frames per clip, rounded down to an even number and never more than the
    clip has (>= min_frames)."""
    frame_width: int | None = None
    """Width in pixels each frame is resized to before the processor (28 to 4096). Unset: the family
    default."""
    frame_height: int | None = None
    """Height in pixels each frame is resized to before the processor (28 to 4096). Unset: the family
    default."""
    prompt_template: str = DEFAULT_TEMPLATE
    """Instruction template; {fields} is replaced by a field list built from the schema."""
    # 800: on the tiny default a cosine schedule over 800 steps reaches schema-valid 1.0 and 0.97-0.99
    # mean field accuracy on clips of unseen generator seeds (seeds 0 and 1), in 263 s on 2 idle
    # cores; 500 steps measured 0.905-0.98 depending on the seed (BENCHMARKS.md, section 7).
    max_steps: int = 800
    """Optimiser steps to train; 0: as many as `epochs` passes over the train split take."""
    step_cap: int = 0
    """Stop after at most this many optimiser steps whatever max_steps/epochs say (0: no cap). The app
    sets it in Space mode (core.runs.policy), so the cap is recorded with the run."""
    epochs: float = 1.0
    """Passes over the train split (fractions allowed); used only when max_steps is 0."""
    batch_size: int = 8
    """Clips per device per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimiser step: the global batch is batch_size x grad_accum x processes."""
    learning_rate: float | None = None
    """Peak learning rate (reached after warm-up). Unset: 3e-3 for a randomly initialised base, 1e-4
    for pretrained bases."""
    lr_scheduler: str = "cosine"
    """cosine | linear | constant (decay to 0 after warm-up, or hold)."""
    warmup_steps: int = 20
    """Linear warm-up from 0 over this many optimiser steps (all schedules)."""
    weight_decay: float = 0.0
    """Decoupled weight decay the optimiser applies to the trained weights each step (>= 0; 0: none)."""
    max_grad_norm: float = 1.0
    """Clip the norm of all gradients together to this before each optimiser step; 0: no clipping."""
    optimizer: str = "adamw"
    """adamw (two fp32 states per trainable weight) | adafactor (factored second moment: less memory)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass: less memory, about 20-30
    percent slower."""
    precision: str = "auto"
    """auto | bf16 | fp16 | fp32. auto: bf16 on a GPU that supports it, else fp16 on GPU; fp32 on
    CPU. An explicit choice the device cannot do is refused before training starts."""
    seed: int = 0
    """Seed of the new weights' initialisation (LoRA), the order clips are drawn in and GRPO's
    sampling: the same seed and config repeat a run."""
    logging_steps: int = 10
    """Append a loss line to metrics.jsonl every N optimiser steps (>= 1)."""
    save_steps: int = 200
    """Save a resumable checkpoint-N folder every N optimiser steps; 0: only the final model."""
    save_total_limit: int = 2
    """Keep at most this many checkpoint folders, deleting the oldest; 0: keep them all."""
    eval_steps: int = 0
    """Every N optimiser steps (and at the last step), greedy-generate on the val split and append
    eval_* metrics to metrics.jsonl. 0: no evaluation during training. Needs clips with split=val."""
    eval_max_clips: int = 16
    """At most this many val clips per evaluation (the first ones, in metadata order)."""
    max_new_tokens: int = 160
    """Most tokens generated per answer in those evaluations during training (>= 1)."""
    report_to: str = "none"
    """none | tensorboard | trackio | wandb (comma-separated for several); the package must be installed."""
    merge_at_end: bool = False
    """LoRA/QLoRA: after training also write RUN/merged/, the adapter merged into the base."""
    calibrate_at_end: bool = True
    """After training, when the dataset has labelled val clips, fit the per-field confidence calibration
    and review thresholds on them (what `cli.py calibrate RUN --split val` does; RUN/calibration.json)."""
    num_processes: int = 0
    """Training processes on this machine: 0 = one per visible GPU (1 without GPUs); more than one process
    in all (here or across machines) starts `accelerate launch`."""
    distributed: str = "ddp"
    """With several processes: ddp (data parallel) | deepspeed (ZeRO-2) | fsdp (fully sharded)."""
    num_machines: int = 1
    """Machines training together (multi-node, >= 1). Each machine runs the same command with its own
    machine_rank and the same num_processes; the run directory must be on storage every machine sees."""
    machine_rank: int = 0
    """This machine's rank, 0 to num_machines - 1. Machine 0 hosts the rendezvous and alone writes the run
    directory (status, logs, metrics, checkpoints, final model)."""
    main_process_ip: str = ""
    """With num_machines > 1 (required then): the address of machine 0 that every machine can reach."""
    main_process_port: int = 0
    """Rendezvous port on machine 0, open to the other machines (1 to 65535). 0: 29500 with several
    machines, a free port with one."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N (also mps, xpu, xpu:N). auto: the CUDA GPU when one is visible, else the CPU."""
    trust_remote_code: bool = False
    """Let a hub model run the Python code shipped in its repository when it loads; only for code
    you trust."""
    dataloader_workers: int | None = None
    """Worker processes per training process that decode and encode clips for the next batches
    (SFT and GRPO); 0: the training process itself. Unset: up to 4 per process on a GPU, 1 on a CPU
    (none on a single core)."""
    encoded_cache_mb: int = 1024
    """MiB of encoded clips kept in memory after first use so that later epochs skip the processor
    (0: none). Above it clips are re-encoded from the frame cache; memory stays bounded."""
    # --- method grpo (core.train.grpo, rewards in core.train.rewards) ---
    init_adapter: str = ""
    """grpo: an SFT run directory to start from (its adapter, frames and prompt); empty: the base."""
    num_generations: int = 4
    """grpo: completions sampled per clip; advantages are normalised within each group."""
    temperature: float = 1.0
    """grpo: sampling temperature of the completions (> 0); higher gives more varied answers."""
    beta: float = 0.04
    """grpo: weight of the KL penalty to the reference (the starting policy)."""
    max_completion_length: int = 160
    """grpo: most tokens sampled per completion; length_penalty is measured against it."""
    reward_json: float = 1.0
    """grpo: weight of the JSON reward (1 for one JSON object, 0.5 for one dug out of surrounding
    text, 0 when none parses)."""
    reward_schema: float = 2.0
    """grpo: weight of the schema reward (1 when the answer is valid under the schema)."""
    reward_fields: float = 5.0
    """grpo: weight of the field reward (mean per-field agreement with the clip's label, scored as
    evaluation scores fields)."""
    length_penalty: float = 0.0
    """grpo: subtracted times completion tokens / max_completion_length."""
    custom_reward: str = ""
    """grpo: optional "module:function" called as fn(completion, label, schema) -> float (weight 1)."""

    @classmethod
    def from_yaml(cls, path) -> TrainConfig:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text file in UTF-8 (byte {exc.start}); a config is a YAML file of "
                              "TrainConfig fields, as a run's config.yaml") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config is a YAML mapping of TrainConfig fields (field: value per line), "
                              f"not a {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)  # str: a YAML key may be a number
        if unknown:
            raise ConfigError(f"{source}: unknown keys {', '.join(unknown)}")
        cfg = cls(**data)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Check every field without an ML library, raising ConfigError that names the field.
        Device-dependent checks (precision, qlora) are core.models.device.check_runtime's, which
        training and the estimate both call."""
        self._check_types(source)
        for key, aliases in _ALIASES.items():
            setattr(self, key, aliases.get(getattr(self, key), getattr(self, key)))
        choices = {"method": METHODS, "sampling": ("uniform", "fps"), "lora_targets": ("language", "all"),
                   "optimizer": OPTIMIZERS, "lr_scheduler": SCHEDULERS, "precision": PRECISIONS,
                   "distributed": DISTRIBUTED}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}, not {getattr(self, key)!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"{source}: batch_size and grad_accum must be >= 1")
        if self.max_steps < 0 or self.epochs < 0 or (self.max_steps == 0 and self.epochs == 0):
            raise ConfigError(f"{source}: set max_steps > 0 or epochs > 0 (neither may be negative)")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"{source}: need lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1")
        self._check_frames(source)
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"{source}: learning_rate must be > 0, not {self.learning_rate} "
                              "(leave it unset for the model's default)")
        at_least = {"warmup_steps": 0, "eval_steps": 0, "num_processes": 0, "save_steps": 0, "step_cap": 0,
                    "save_total_limit": 0, "encoded_cache_mb": 0, "weight_decay": 0, "max_grad_norm": 0,
                    "beta": 0, "reward_json": 0, "reward_schema": 0, "reward_fields": 0, "length_penalty": 0,
                    "logging_steps": 1, "eval_max_clips": 1, "max_new_tokens": 1, "num_generations": 1,
                    "max_completion_length": 1}
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            raise ConfigError(f"{source}: {_name('dataloader_workers')} must be >= 0 (or unset), not {self.dataloader_workers}")
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise ConfigError(f"{source}: {_name(key)} must be >= {low}, not {getattr(self, key)}")
        if not self.temperature > 0:
            raise ConfigError(f"{source}: {_name('temperature')} must be > 0, not {self.temperature}")
        if self.method == "grpo" and self.num_generations < 2:
            raise ConfigError(f"{source}: grpo needs num_generations >= 2 (advantages compare answers in a group)")
        if self.method == "grpo" and self.num_machines > 1:
            raise ConfigError(f"{source}: grpo runs in one process on one machine; set num_machines 1")
        if self.merge_at_end and self.method == "full":
            raise ConfigError(f"{source}: merge_at_end applies to lora/qlora; a full fine-tune is already a whole model")
        self._check_machines(source)
        if not _DEVICE.fullmatch(str(self.device)):
            raise ConfigError(f"{source}: device must be auto, cpu, cuda, cuda:N, mps, xpu or xpu:N, not {self.device!r}")
        if self.custom_reward and not re.fullmatch(r"[\w.]+:\w+", self.custom_reward):
            raise ConfigError(f"{source}: custom_reward must look like 'module:function', not {self.custom_reward!r}")
        self.report_to = ",".join(report_targets(self.report_to, source)) or "none"

    def _check_types(self, source: str) -> None:
        """Numbers must be numbers (YAML reads `1e-4` as text) and switches booleans; a numeric
        string is converted, an integer field takes only whole numbers."""
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            if value is None and kind.endswith("| None"):
                continue
            if kind.startswith("bool"):
                ok = isinstance(value, bool)
            elif kind.startswith(("int", "float")):
                if isinstance(value, str):
                    try:
                        value = float(value.strip())
                    except ValueError:
                        pass
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if ok and kind.startswith("int"):
                    ok = float(value).is_integer()
                    value = int(value) if ok else value
                elif ok:
                    value = float(value)
            else:
                ok = isinstance(value, str)
            if not ok:
                wanted = {"b": "true or false", "i": "a whole number", "f": "a number"}.get(kind[0], "text")
                raise ConfigError(f"{source}: {f.name} must be {wanted}, not {getattr(self, f.name)!r}")
            setattr(self, f.name, value)

    def _check_machines(self, source: str) -> None:
        """Multi-node settings: a rank outside 0..num_machines-1 or a missing address would only fail at
        the rendezvous, after a timeout on the other machines."""
        if self.num_machines < 1:
            raise ConfigError(f"{source}: num_machines must be >= 1, not {self.num_machines}")
        if not 0 <= self.machine_rank < self.num_machines:
            raise ConfigError(f"{source}: machine_rank must be 0 to num_machines - 1 ({self.num_machines - 1}), "
                              f"not {self.machine_rank}")
        if not 0 <= self.main_process_port <= 65535:
            raise ConfigError(f"{source}: main_process_port must be 1 to 65535 (0: the default), "
                              f"not {self.main_process_port}")
        self.main_process_ip = self.main_process_ip.strip()
        if self.num_machines > 1 and not self.main_process_ip:
            raise ConfigError(f"{source}: num_machines {self.num_machines} needs main_process_ip, the address of "
                              "machine 0 that the other machines reach")
        if any(ch.isspace() for ch in self.main_process_ip):
            raise ConfigError(f"{source}: main_process_ip must be one address or host name, not "
                              f"{self.main_process_ip!r}")

    def _check_frames(self, source: str) -> None:
        if self.num_frames is not None and self.num_frames < 1:
            raise ConfigError(f"{source}: num_frames must be >= 1, not {self.num_frames} "
                              "(leave it unset for the model's default)")
        for key in ("frame_width", "frame_height"):
            side = getattr(self, key)
            if side is not None and not MIN_FRAME_SIDE <= side <= MAX_FRAME_SIDE:
                why = f" (a side under {MIN_FRAME_SIDE} px is less than one vision patch)" if side < MIN_FRAME_SIDE else ""
                raise ConfigError(f"{source}: {key} must be {MIN_FRAME_SIDE} to {MAX_FRAME_SIDE} pixels, not {side}{why}")
        if not self.fps > 0:
            raise ConfigError(f"{source}: fps must be > 0, not {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(f"{source}: need 1 <= min_frames <= max_frames, not min_frames {self.min_frames} "
                              f"and max_frames {self.max_frames}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


def report_targets(value: str, source: str = "config") -> list[str]:
    """`report_to` as a list, each checked to be supported and importable here."""
    import importlib.util

    names = [n.strip() for n in str(value or "none").split(",") if n.strip() and n.strip() != "none"]
    for name in names:
        if name not in REPORTERS:
            raise ConfigError(f"{source}: report_to {name!r} is not supported; use none or {', '.join(REPORTERS)}")
        if not any(importlib.util.find_spec(mod) for mod in REPORTERS[name]):
            raise ConfigError(f"{source}: report_to {name} needs the {REPORTERS[name][0]} package, which is not "
                              f"installed here (pip install {REPORTERS[name][0]}), or set report_to: none")
    return names


def _name(key: str) -> str:
    return f"grpo setting {key}" if key in GRPO_FIELDS else key


@functools.cache
def _docs() -> dict[str, str]:
    tree = ast.parse(Path(__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == TrainConfig.__name__)
    docs = {}
    for node, after in zip(cls.body, cls.body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def field_docs() -> dict[str, str]:
    """Each TrainConfig field's doc (the string under it in this file), whitespace folded to one line.
    Read from the source with ast, so nothing is imported; every field has one (a test checks)."""
    return dict(_docs())
