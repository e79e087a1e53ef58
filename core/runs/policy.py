"""Space mode: how much training the app lets a person start on this machine.

A Hugging Face Space on free CPU hardware cannot fine-tune a 7B model, but it can fine-tune the
embedded tiny model in minutes, and that is the demo. So where a Space has no GPU, training from
the app is *limited*: embedded tiny models (or runs built on them) only, one process, at most
`LIMITED_MAX_STEPS` optimiser steps. Annotate, Compare, Export and the CLI are not affected: the
limit guards the shared hardware of a hosted app, not a person's own machine.

`VVW_TRAINING=full|limited|off` overrides detection (`off`: e.g. a shared annotation deployment where
nobody should start jobs; `full` on a Space with hardware the detection underrates). No torch import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import ConfigError, ModelError
from core.models import TINY_PREFIX, resolve_model
from core.runs.launch import visible_gpus
from core.spec import is_random_init

MODES = ("full", "limited", "off")
LIMITED_MAX_STEPS = 1000  # the default tiny fine-tune is 500 steps, ~2.7-4.6 min on 2 CPU cores
# What one step may cost in limited mode (the step cap alone would let grad_accum 10000 through):
# at most these values; None fields are the model's defaults, which are within them.
LIMITED_MAX = {"batch_size": 16, "grad_accum": 2, "num_frames": 16, "max_frames": 32, "frame_width": 224,
               "frame_height": 224, "eval_max_clips": 32, "max_new_tokens": 256, "num_generations": 8,
               "max_completion_length": 256, "dataloader_workers": 2, "encoded_cache_mb": 1024}


@dataclass(frozen=True)
class TrainingPolicy:
    mode: str
    reason: str

    def banner(self) -> str:
        """A line for the Train tab; empty when nothing is limited."""
        if self.mode == "off":
            return f"**Training is off on this deployment** ({self.reason}). Compare and Export still work."
        if self.mode == "limited":
            return (f"**Space mode: limited training** ({self.reason}). The embedded tiny models only, one "
                    f"process, at most {LIMITED_MAX_STEPS} steps per run. Compare and Export work with any model.")
        return ""

    def apply(self, config: dict) -> dict:
        """The config a run may start with here, or ConfigError saying what is not allowed and why."""
        if self.mode == "full":
            return config
        if self.mode == "off":
            raise ConfigError(f"training is off on this deployment ({self.reason})")
        for key in ("model", "init_adapter"):
            name = str(config.get(key) or "")
            if name and not is_tiny_model(name):
                raise ConfigError(f"{key} {name!r}: only the embedded tiny models can be trained here "
                                  f"({self.reason}); run the CLI on a machine with a GPU for this model")
        if int(config.get("num_processes") or 0) > 1:
            raise ConfigError(f"num_processes {config['num_processes']}: one process only here ({self.reason})")
        if int(config.get("num_machines") or 1) > 1:
            raise ConfigError(f"num_machines {config['num_machines']}: one machine only here ({self.reason})")
        if config.get("method") == "qlora":
            raise ConfigError(f"qlora needs a CUDA GPU ({self.reason})")
        for key, most in LIMITED_MAX.items():
            value = config.get(key)
            if value is not None and float(value) > most:
                raise ConfigError(f"{key} {value}: at most {most} here ({self.reason})")
        cap = int(config.get("step_cap") or 0)
        return dict(config, step_cap=cap if 0 < cap <= LIMITED_MAX_STEPS else LIMITED_MAX_STEPS)


def training_policy(env=None, cuda_available: bool | None = None) -> TrainingPolicy:
    env = os.environ if env is None else env
    forced = env.get("VVW_TRAINING", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ConfigError(f"VVW_TRAINING={forced!r}: expected one of {', '.join(MODES)}")
        return TrainingPolicy(forced, "set by VVW_TRAINING")
    if not env.get("SPACE_ID"):
        return TrainingPolicy("full", "not a hosted Space")
    if cuda_available is None:
        cuda_available = visible_gpus() > 0
    if cuda_available:
        return TrainingPolicy("full", f"Space {env['SPACE_ID']} with a GPU")
    return TrainingPolicy("limited", f"Space {env['SPACE_ID']} runs on CPU hardware")


def is_tiny_model(name: str) -> bool:
    """`tiny:NAME`, a folder built from one, or a run whose base is one (read from its files)."""
    if name.startswith(TINY_PREFIX):
        return True
    try:
        source = resolve_model(name)
    except (ModelError, OSError, ValueError, KeyError, TypeError):  # a broken run folder is not trainable
        return False
    return is_random_init(source.base)
