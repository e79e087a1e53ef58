"""The contract train/serve parity rests on: what a model saw, and where a run keeps it.

`PreprocessSpec` is what training actually fed the model — sampler, frame count and size, the exact
instruction, the schema — frozen into `preprocessing.json` beside every checkpoint and read back by
eval, compare, prediction and export, so serving never guesses. This module is its only builder:
`build_spec` (a training config + the family + the base) and `default_spec` (a base model asked
with the defaults training would use) resolve the config's blanks with `resolve_defaults`, so
serving never imports training code. `PreprocessSpec.digest` is the hash prediction rows carry.

The run folder's file names are core.layout's; here are the helpers that read it (`checkpoint_name`,
`is_run_dir`, `copy_calibration`). No ML library is imported here: the run manager and the UI read
specs too.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.config import TrainConfig
from core.errors import ConfigError
from core.fileio import atomic_write_text
from core.layout import CALIBRATION_FILE, CHECKPOINT_PREFIX, FINAL_DIR, SPEC_FILE, TINY_SPEC_FILE
from core.schema.base import schema_hash
from core.schema.prompt import build_instruction
from core.video.sampling import SamplingSpec

# Frames for a randomly initialised base: small enough to learn on a CPU in minutes.
TINY_FRAME_SIZE = (96, 64)


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(name: str) -> int | None:
    """N of a `checkpoint-N` folder name, None for any other name."""
    m = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)", name)
    return int(m.group(1)) if m else None


def copy_calibration(run_dir, dest) -> bool:
    """Copy a run's calibration beside a copy of its spec (merge, export, publish): it travels with
    the weights it was measured on. False when the run has none."""
    import shutil

    src = Path(run_dir) / CALIBRATION_FILE
    if not src.is_file():
        return False
    shutil.copy2(src, Path(dest) / CALIBRATION_FILE)
    return True


def is_run_dir(path) -> bool:
    return (Path(path) / SPEC_FILE).is_file()


def has_final_model(run_dir) -> bool:
    """A run that finished training: its spec is written and its final model folder exists."""
    return is_run_dir(run_dir) and (Path(run_dir) / FINAL_DIR).is_dir()


# --- the spec ------------------------------------------------------------------------------------


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
    final_dir: str = FINAL_DIR
    extra: dict = field(default_factory=dict)

    @property
    def sampling_spec(self) -> SamplingSpec:
        return SamplingSpec.from_dict(self.sampling)

    @property
    def digest(self) -> str:
        """Hash of everything that shapes an answer besides the weights: sampler, frames, prompt, schema."""
        keys = ("sampling", "instruction", "schema_hash", "frames_as")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def save(self, directory) -> Path:
        path = Path(directory) / SPEC_FILE
        atomic_write_text(path, json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, directory) -> PreprocessSpec:
        path = Path(directory) / SPEC_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read preprocessing spec ({exc})") from exc
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


def is_random_init(base_path) -> bool:
    """The embedded tiny models are random; they need from-scratch training defaults."""
    return (Path(base_path) / TINY_SPEC_FILE).is_file()


def resolve_defaults(cfg: TrainConfig, family, random_init: bool) -> TrainConfig:
    """Fill the config's None fields from the family (core.models.Family) and whether the base is
    pretrained."""
    d = asdict(cfg)
    size = TINY_FRAME_SIZE if random_init else family.default_size
    d["num_frames"] = cfg.num_frames or family.default_frames
    d["frame_width"] = cfg.frame_width or size[0]
    d["frame_height"] = cfg.frame_height or size[1]
    if cfg.method == "grpo":  # 5e-4 on the tiny default lowered val accuracy in 30 steps (0.67 -> 0.59); 1e-4 held it
        d["learning_rate"] = cfg.learning_rate or (1e-4 if random_init else 1e-5)
    else:
        d["learning_rate"] = cfg.learning_rate or (2e-3 if random_init else 1e-4)  # 2e-3: see StepArgs.max_steps
    # short runs still draw a curve: about 20 points, at most one every 10 steps
    d["logging_steps"] = cfg.logging_steps or (max(1, min(10, cfg.max_steps // 20)) if cfg.max_steps else 10)
    d["train_embeddings"] = random_init if cfg.train_embeddings is None else cfg.train_embeddings
    for key in ("freeze_vision", "freeze_projector"):
        d[key] = (not random_init) if getattr(cfg, key) is None else getattr(cfg, key)
    resolved = TrainConfig(**d)
    resolved.validate("config (with the model's defaults)")
    return resolved


def sampling_spec(cfg: TrainConfig) -> SamplingSpec:
    """The frame sampler of a resolved config."""
    return SamplingSpec(
        sampling=cfg.sampling, num_frames=cfg.num_frames, fps=cfg.fps, min_frames=cfg.min_frames,
        max_frames=cfg.max_frames, width=cfg.frame_width, height=cfg.frame_height,
    )


def build_spec(cfg: TrainConfig, family, base_path, schema: dict, base_model: str | None = None) -> PreprocessSpec:
    """The spec of a model trained (or asked) with the resolved config `cfg` on `schema`.

    `base_path` is the base's local folder (None: not needed, e.g. for an estimate); a random (tiny)
    base records its build spec there so the run stays loadable when the built-in sizes change. `base_model` is the name recorded (default:
    cfg.model, a relative path made absolute)."""
    if base_model is None:
        base_model = str(Path(cfg.model).resolve()) if cfg.model.startswith(".") else cfg.model
    tiny = Path(base_path) / TINY_SPEC_FILE if base_path is not None else None
    return PreprocessSpec(
        base_model=base_model, family=family.name, sampling=sampling_spec(cfg).to_dict(),
        instruction=build_instruction(schema, cfg.prompt_template), schema=schema, schema_hash=schema_hash(schema),
        frames_as=family.frames_as, extra={"tiny_spec": json.loads(tiny.read_text())} if tiny and tiny.is_file() else {},
    )


def default_sampling(source, family) -> SamplingSpec:
    """The frames a base model (a core.models.ModelSource) is trained on by default."""
    cfg = TrainConfig(model=source.display or source.base)
    return sampling_spec(resolve_defaults(cfg, family, is_random_init(source.base)))


def default_spec(source, family, schema: dict, template: str | None = None) -> PreprocessSpec:
    """How a base model (a core.models.ModelSource) with no run spec is asked: the defaults training uses."""
    name = source.display or source.base
    cfg = resolve_defaults(TrainConfig(model=name), family, is_random_init(source.base))
    if template:
        cfg.prompt_template = template
    return build_spec(cfg, family, source.base, schema, base_model=name)


def spec_for(source, family, schema: dict | None) -> PreprocessSpec:
    """How a model (a core.models.ModelSource) is asked: a run's saved spec, else the defaults training
    uses for a base model of `family` on `schema`. The one place a base model without a schema is
    refused (ConfigError): there is nothing to build its prompt from."""
    if source.run_dir is not None:
        return PreprocessSpec.load(source.run_dir)
    if schema is None:
        raise ConfigError(f"{source.display or source.base} is a base model: give a schema to build its prompt "
                          "(--schema FILE, or a dataset or input folder with schema.json)")
    return default_spec(source, family, schema)
