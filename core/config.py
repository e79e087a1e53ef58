"""Training configuration (a dataclass whose docs sit on each field) and the preprocessing spec.

`TrainConfig` is what a user sets (YAML, CLI flags, later the Train tab form). `PreprocessSpec` is
what training actually saw — sampler, frame count and size, instruction, schema — frozen into
`preprocessing.json` beside every checkpoint and read back by eval, compare and export, so serving
never guesses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.schema.prompt import DEFAULT_TEMPLATE

METHODS = ("lora", "qlora", "full", "grpo")
OPTIMIZERS = ("adamw", "adafactor")
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DISTRIBUTED = ("ddp", "deepspeed", "fsdp")
# report_to names we pass to transformers, and the module each needs importable.
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
_ALIASES = {"optimizer": {"adamw_torch": "adamw"}}


@dataclass
class TrainConfig:
    model: str = "tiny:default"
    """Base model: tiny:NAME, a hub id, a local folder, or a run directory (its final model)."""
    method: str = "lora"
    """lora | qlora | full | grpo. grpo: reinforcement learning with schema rewards (core.train.grpo) on a
    LoRA adapter, from the base or from an SFT run's adapter (init_adapter). LoRA goes on the language model's linear layers (see core/models/families.py);
    qlora is LoRA on a 4-bit (NF4, bitsandbytes) base and needs bitsandbytes and a CUDA GPU."""
    lora_r: int = 16
    lora_alpha: int = 32
    """LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    lora_targets: str = "language"
    """language (default: LM linears only) | all (also vision-tower linears)."""
    train_embeddings: bool | None = None
    """Also fully train embed_tokens and lm_head. None: yes for a randomly initialised base (the
    tiny default learns nothing without it), no for pretrained bases."""
    freeze_vision: bool | None = None
    """None: frozen for pretrained bases, trained for a randomly initialised base."""
    freeze_projector: bool | None = None
    """None: frozen under LoRA for pretrained bases, trained for a randomly initialised base."""
    freeze_language: bool = False
    """Full fine-tuning only: keep the language model fixed (train vision/projector)."""
    sampling: str = "uniform"
    """uniform (segment mid-points) | fps."""
    num_frames: int | None = None
    """Frames per clip for uniform sampling. None: the family default."""
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 32
    frame_width: int | None = None
    """Width of each frame fed to the processor. None: the family default."""
    frame_height: int | None = None
    prompt_template: str = DEFAULT_TEMPLATE
    """Instruction template; {fields} is replaced by a field list built from the schema."""
    max_steps: int = 1000
    """Optimiser steps; 0 means use `epochs`. 1000 because the tiny default's held-out accuracy is
    still climbing at 720 steps (val 0.78 at 360, 0.98 at 720 on seed 2) and flat from ~600 to 1000
    (0.99): a run whose numerics learn slower still lands on the plateau."""
    step_cap: int = 0
    """Stop after at most this many optimiser steps whatever max_steps/epochs say (0: no cap). The app
    sets it in Space mode (core.runs.policy), so the cap is recorded with the run."""
    epochs: float = 1.0
    batch_size: int = 8
    """Clips per device per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimiser step: the global batch is batch_size x grad_accum x processes."""
    learning_rate: float | None = None
    """None: 3e-3 for a randomly initialised base, 1e-4 for pretrained bases."""
    lr_scheduler: str = "cosine"
    """cosine | linear | constant (decay to 0 after warm-up, or hold)."""
    warmup_steps: int = 20
    """Linear warm-up from 0 over this many optimiser steps (all schedules)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"
    """adamw (two fp32 states per trainable weight) | adafactor (factored second moment: less memory)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass: less memory, ~20-30% slower."""
    precision: str = "auto"
    """auto | bf16 | fp16 | fp32. auto: bf16 on a GPU that supports it, else fp16 on GPU; fp32 on
    CPU. An explicit choice the device cannot do is refused before training starts."""
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int = 0
    """Every N optimiser steps (and at the last step), greedy-generate on the val split and append
    eval_* metrics to metrics.jsonl. 0: no evaluation during training. Needs clips with split=val."""
    eval_max_clips: int = 16
    """At most this many val clips per evaluation (the first ones, in metadata order)."""
    max_new_tokens: int = 160
    report_to: str = "none"
    """none | tensorboard | trackio | wandb (comma-separated for several); the package must be installed."""
    merge_at_end: bool = False
    """LoRA/QLoRA: after training also write RUN/merged/, the adapter merged into the base."""
    num_processes: int = 0
    """Training processes: 0 = one per visible GPU (1 without GPUs); N > 1 starts `accelerate launch`."""
    distributed: str = "ddp"
    """With several processes: ddp (data parallel) | deepspeed (ZeRO-2) | fsdp (fully sharded)."""
    device: str = "auto"
    trust_remote_code: bool = False
    dataloader_workers: int = 0
    # --- method grpo (core.train.grpo, rewards in core.train.rewards) ---
    init_adapter: str = ""
    """grpo: an SFT run directory to start from (its adapter, frames and prompt); empty: the base."""
    num_generations: int = 4
    """grpo: completions sampled per clip; advantages are normalised within each group."""
    temperature: float = 1.0
    beta: float = 0.04
    """grpo: weight of the KL penalty to the reference (the starting policy)."""
    max_completion_length: int = 160
    reward_json: float = 1.0
    reward_schema: float = 2.0
    reward_fields: float = 5.0
    length_penalty: float = 0.0
    """grpo: subtracted times completion tokens / max_completion_length."""
    custom_reward: str = ""
    """grpo: optional "module:function" called as fn(completion, label, schema) -> float (weight 1)."""

    @classmethod
    def from_yaml(cls, path) -> TrainConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown keys {', '.join(unknown)}")
        cfg = cls(**data)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Checks that need no ML library. Device-dependent checks (precision, qlora) are in
        core.train.sft.check_runtime, which training and the estimate both call."""
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
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            raise ConfigError(f"{source}: set max_steps > 0 or epochs > 0")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"{source}: need lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1")
        for key in ("warmup_steps", "eval_steps", "num_processes", "logging_steps", "save_steps", "step_cap"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{source}: {key} must be >= 0")
        if self.eval_max_clips < 1:
            raise ConfigError(f"{source}: eval_max_clips must be >= 1")
        if self.method == "grpo" and (self.num_generations < 2 or self.temperature <= 0 or self.beta < 0
                                      or self.max_completion_length < 1):
            raise ConfigError(f"{source}: grpo needs num_generations >= 2, temperature > 0, beta >= 0, "
                              "max_completion_length >= 1")
        if self.merge_at_end and self.method == "full":
            raise ConfigError(f"{source}: merge_at_end applies to lora/qlora; a full fine-tune is already a whole model")
        self.report_to = ",".join(report_targets(self.report_to, source)) or "none"

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
