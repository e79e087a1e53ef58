"""`TrainConfig`: the groups of core/config/groups.py as one flat dataclass, read from YAML or a mapping."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from core.config.checks import validate
from core.config.groups import EvalArgs, FrameArgs, GrpoArgs, LoraArgs, ModelArgs, ProcessArgs, StepArgs
from core.errors import ConfigError


@dataclass
class TrainConfig(GrpoArgs, ProcessArgs, EvalArgs, LoraArgs, StepArgs, FrameArgs, ModelArgs):
    """Every setting of a training run; fields come from the groups, ModelArgs first."""

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
        """core.config.checks.validate: ConfigError naming the field; normalises values in place."""
        validate(self, source)

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)
