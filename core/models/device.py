"""Which device and dtype a model runs on, and whether this machine can do what a training config asks.

`pick_device`/`pick_dtype` choose for serving; `check_runtime` refuses, before a run touches its
folder, what the device cannot do (fp16 without CUDA, bf16 on a GPU without it, qlora without
bitsandbytes and CUDA, a reporter whose package is missing) and returns the resolved precision;
`weight_dtype` is the dtype a base is loaded in for training. torch is imported inside the
functions: the app calls `check_runtime` before launching a run without loading the training stack.
Config checks that need no ML library are `TrainConfig.validate`'s.
"""

from __future__ import annotations

import importlib.util

from core.config import TrainConfig, report_targets
from core.errors import ConfigError


def pick_device(preferred: str = "auto") -> str:
    """`preferred`, or for "auto" a GPU when one is visible, else the CPU. A device this machine does
    not have is refused here (ConfigError), before a model is loaded onto it."""
    import torch

    if preferred == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(preferred)
    except RuntimeError:
        raise ConfigError(f"--device {preferred!r} is not a device torch knows: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus:
            raise ConfigError(f"--device {preferred}: no CUDA GPU is visible on this machine "
                              "(torch.cuda.is_available() is False); use --device cpu or auto")
        if device.index is not None and device.index >= gpus:
            raise ConfigError(f"--device {preferred}: this machine has {gpus} CUDA GPU(s), cuda:0 to cuda:{gpus - 1}")
    return preferred


def pick_dtype(device: str):
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_precision(precision: str, device: str) -> str:
    """auto → bf16 / fp16 on CUDA by capability, fp32 elsewhere; an explicit choice is checked."""
    import torch

    cuda = device.startswith("cuda")
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError(f"precision fp16 needs a CUDA GPU (mixed precision with loss scaling); this run is on "
                          f"{device}: use fp32 or auto")
    if precision == "bf16" and cuda and not bf16_ok:
        name = torch.cuda.get_device_name(torch.device(device))
        cap = ".".join(map(str, torch.cuda.get_device_capability(torch.device(device))))
        raise ConfigError(f"precision bf16 is not supported by {name} (compute capability {cap}, bf16 needs 8.0+): "
                          "use fp16 or auto")
    if precision == "bf16" and not cuda and device != "cpu":
        raise ConfigError(f"precision bf16 is only supported on CUDA or CPU, not {device}: use fp32 or auto")
    return precision


def check_runtime(cfg: TrainConfig, device: str) -> str:
    """Everything the config asks of this machine; returns the resolved precision."""
    import torch

    if cfg.method == "qlora":
        missing = []
        if importlib.util.find_spec("bitsandbytes") is None:
            missing.append("bitsandbytes is not installed (pip install bitsandbytes)")
        if not torch.cuda.is_available():
            missing.append("no CUDA GPU is visible (torch.cuda.is_available() is False)")
        elif not device.startswith("cuda"):
            missing.append(f"device is {device}, not cuda")
        if missing:
            raise ConfigError("method qlora loads the base in 4 bits with bitsandbytes, which needs a CUDA GPU: "
                              + "; ".join(missing) + ". Use method lora instead.")
    report_targets(cfg.report_to)
    return resolve_precision(cfg.precision, device)


def weight_dtype(cfg: TrainConfig, precision: str):
    """dtype the base is loaded in: a frozen LoRA base may be half precision; trained weights are fp32."""
    import torch

    if precision == "fp32" or cfg.method == "full":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16
