"""Training configuration (a dataclass whose docs sit on each field) and the preprocessing spec.

`TrainConfig` is what a user sets (YAML, CLI flags, later the Train tab form). `PreprocessSpec` is
what training actually saw — sampler, frame count and size, instruction, schema — frozen into
`preprocessing.json` beside every checkpoint and read back by eval, compare and export, so serving
never guesses.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.prompt import DEFAULT_TEMPLATE
from core.video import SamplingSpec


@dataclass
class TrainConfig:
    model: str = "tiny:default"
    """Base model: tiny:NAME, a hub id, a local folder, or a run directory (its final model)."""
    method: str = "lora"
    """lora | full. LoRA goes on the language model's linear layers (see core/models.py)."""
    lora_r: int = 16
    lora_alpha: int = 32
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
    max_steps: int = 720
    """Optimiser steps; 0 means use `epochs`."""
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float | None = None
    """None: 3e-3 for a randomly initialised base, 1e-4 for pretrained bases."""
    lr_scheduler: str = "cosine"
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw_torch"
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int = 0
    """Run validation generation every N steps (0: only at the end)."""
    max_new_tokens: int = 160
    device: str = "auto"
    trust_remote_code: bool = False
    dataloader_workers: int = 0

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
        if self.method not in ("lora", "full"):
            raise ConfigError(f"{source}: method must be lora or full, not {self.method!r}")
        if self.sampling not in ("uniform", "fps"):
            raise ConfigError(f"{source}: sampling must be uniform or fps, not {self.sampling!r}")
        if self.lora_targets not in ("language", "all"):
            raise ConfigError(f"{source}: lora_targets must be language or all")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"{source}: batch_size and grad_accum must be >= 1")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            raise ConfigError(f"{source}: set max_steps > 0 or epochs > 0")

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


@dataclass
class PreprocessSpec:
    """What the model saw in training; saved as preprocessing.json and reused by every consumer."""

    base_model: str
    family: str
    sampling: dict
    instruction: str
    schema: dict
    schema_hash: str
    frames_as: str = "video"
    answer_format: str = "json-compact"
    final_dir: str = "final"
    extra: dict = field(default_factory=dict)

    @property
    def sampling_spec(self) -> SamplingSpec:
        return SamplingSpec.from_dict(self.sampling)

    def save(self, directory) -> Path:
        path = Path(directory) / "preprocessing.json"
        atomic_write_text(path, json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, directory) -> PreprocessSpec:
        path = Path(directory) / "preprocessing.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read preprocessing spec ({exc})") from exc
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


def atomic_write_text(path, text: str) -> None:
    """Write via a temp file in the same folder then os.replace: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
