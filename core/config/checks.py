"""Every check of a TrainConfig that needs no ML library, each raising ConfigError that names the field.

Device-dependent checks (precision, qlora) are core.models.device.check_runtime's, which training and
the estimate both call.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields

from core.errors import ConfigError
from core.video.sampling import MAX_OUTPUT_SIDE

# report_to names we pass to transformers, and the module each needs importable.
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}
_ALIASES = {"optimizer": {"adamw_torch": "adamw"}}
# Smallest frame side: one vision token of the Qwen families (14 px patches merged 2 x 2 = 28 px).
# Processors scale smaller frames up to it (and SigLIP/InternVL towers to their fixed tile), so
# pixels below it carry nothing, and a side of a few pixels is a typo, not a setting. The largest is
# the sampler's resize bound. The tiny default trains on 96 x 64.
MIN_FRAME_SIDE = 28
MAX_FRAME_SIDE = MAX_OUTPUT_SIDE
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")
# lowest value of each numeric field that has one (None: unset, allowed where the type says so)
AT_LEAST = {"warmup_steps": 0, "eval_steps": 0, "num_processes": 0, "save_steps": 0, "step_cap": 0,
            "save_total_limit": 0, "encoded_cache_mb": 0, "weight_decay": 0, "max_grad_norm": 0, "beta": 0,
            "reward_json": 0, "reward_schema": 0, "reward_fields": 0, "length_penalty": 0, "logging_steps": 1,
            "eval_max_clips": 1, "max_new_tokens": 1, "num_generations": 1, "max_completion_length": 1,
            "dataloader_workers": 0, "batch_size": 1, "grad_accum": 1}


def validate(cfg, source: str = "config") -> None:
    """Types, choices, ranges, then the rules that tie fields together; normalises in place (numeric
    text to numbers, aliases, report_to)."""
    check_types(cfg, source)
    for key, aliases in _ALIASES.items():
        setattr(cfg, key, aliases.get(getattr(cfg, key), getattr(cfg, key)))
    for f in fields(cfg):
        allowed = f.metadata.get("choices")
        if allowed and getattr(cfg, f.name) not in allowed:
            raise ConfigError(f"{source}: {f.name} must be one of {', '.join(allowed)}, not {getattr(cfg, f.name)!r}")
    for key, low in AT_LEAST.items():
        value = getattr(cfg, key)
        if value is not None and value < low:
            raise ConfigError(f"{source}: {_name(cfg, key)} must be >= {low}, not {value}")
    if cfg.max_steps < 0 or cfg.epochs < 0 or (cfg.max_steps == 0 and cfg.epochs == 0):
        raise ConfigError(f"{source}: set max_steps > 0 or epochs > 0 (neither may be negative)")
    if cfg.lora_r < 1 or cfg.lora_alpha <= 0 or not 0.0 <= cfg.lora_dropout < 1.0:
        raise ConfigError(f"{source}: need lora_r >= 1, lora_alpha > 0 and 0 <= lora_dropout < 1")
    check_frames(cfg, source)
    if cfg.learning_rate is not None and not cfg.learning_rate > 0:
        raise ConfigError(f"{source}: learning_rate must be > 0, not {cfg.learning_rate} "
                          "(leave it unset for the model's default)")
    if not cfg.temperature > 0:
        raise ConfigError(f"{source}: {_name(cfg, 'temperature')} must be > 0, not {cfg.temperature}")
    if cfg.method == "grpo" and cfg.num_generations < 2:
        raise ConfigError(f"{source}: grpo needs num_generations >= 2 (advantages compare answers in a group)")
    cfg.report_to = ",".join(report_targets(cfg.report_to, source)) or "none"
    check_method(cfg, source)
    check_machines(cfg, source)
    if not _DEVICE.fullmatch(str(cfg.device)):
        raise ConfigError(f"{source}: device must be auto, cpu, cuda, cuda:N, mps, xpu or xpu:N, not {cfg.device!r}")
    if cfg.custom_reward and not re.fullmatch(r"[\w.]+:\w+", cfg.custom_reward):
        raise ConfigError(f"{source}: custom_reward must look like 'module:function', not {cfg.custom_reward!r}")


def check_method(cfg, source: str) -> None:
    """A field the method does not use must stay at its default: a setting that silently does nothing
    is a run the person did not ask for (as litgpt's validate_args refuses)."""
    for f in fields(cfg):
        if cfg.method in f.metadata["methods"] or getattr(cfg, f.name) == default_of(f):
            continue
        why = f.metadata["why"] or f"it applies to {', '.join(f.metadata['methods'])}"
        raise ConfigError(f"{source}: method {cfg.method} does not use {f.name} (set to {getattr(cfg, f.name)!r}): "
                          f"{why}; leave it at {default_of(f)!r} or pick another method")


def default_of(f):
    return f.default_factory() if f.default is MISSING else f.default


def check_types(cfg, source: str) -> None:
    """Numbers must be numbers (YAML reads `1e-4` as text) and switches booleans; a numeric
    string is converted, an integer field takes only whole numbers."""
    for f in fields(cfg):
        value, kind = getattr(cfg, f.name), str(f.type)
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
            raise ConfigError(f"{source}: {f.name} must be {wanted}, not {getattr(cfg, f.name)!r}")
        setattr(cfg, f.name, value)


def check_machines(cfg, source: str) -> None:
    """Multi-node settings: a rank outside 0..num_machines-1 or a missing address would only fail at
    the rendezvous, after a timeout on the other machines."""
    if cfg.num_machines < 1:
        raise ConfigError(f"{source}: num_machines must be >= 1, not {cfg.num_machines}")
    if not 0 <= cfg.machine_rank < cfg.num_machines:
        raise ConfigError(f"{source}: machine_rank must be 0 to num_machines - 1 ({cfg.num_machines - 1}), "
                          f"not {cfg.machine_rank}")
    if not 0 <= cfg.main_process_port <= 65535:
        raise ConfigError(f"{source}: main_process_port must be 1 to 65535 (0: the default), "
                          f"not {cfg.main_process_port}")
    cfg.main_process_ip = cfg.main_process_ip.strip()
    if cfg.num_machines > 1 and not cfg.main_process_ip:
        raise ConfigError(f"{source}: num_machines {cfg.num_machines} needs main_process_ip, the address of "
                          "machine 0 that the other machines reach")
    if any(ch.isspace() for ch in cfg.main_process_ip):
        raise ConfigError(f"{source}: main_process_ip must be one address or host name, not "
                          f"{cfg.main_process_ip!r}")


def check_frames(cfg, source: str) -> None:
    if cfg.num_frames is not None and cfg.num_frames < 1:
        raise ConfigError(f"{source}: num_frames must be >= 1, not {cfg.num_frames} "
                          "(leave it unset for the model's default)")
    for key in ("frame_width", "frame_height"):
        side = getattr(cfg, key)
        if side is not None and not MIN_FRAME_SIDE <= side <= MAX_FRAME_SIDE:
            why = f" (a side under {MIN_FRAME_SIDE} px is less than one vision patch)" if side < MIN_FRAME_SIDE else ""
            raise ConfigError(f"{source}: {key} must be {MIN_FRAME_SIDE} to {MAX_FRAME_SIDE} pixels, not {side}{why}")
    if not cfg.fps > 0:
        raise ConfigError(f"{source}: fps must be > 0, not {cfg.fps}")
    if not 1 <= cfg.min_frames <= cfg.max_frames:
        raise ConfigError(f"{source}: need 1 <= min_frames <= max_frames, not min_frames {cfg.min_frames} "
                          f"and max_frames {cfg.max_frames}")


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


def _name(cfg, key: str) -> str:
    methods = next(f.metadata["methods"] for f in fields(cfg) if f.name == key)
    return f"{methods[0]} setting {key}" if len(methods) == 1 else key
