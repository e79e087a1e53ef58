"""What a training config asks of this machine: precision, qlora, ranks.

`check_runtime` refuses what the device cannot do (fp16 without CUDA, bf16 on a GPU without it,
qlora without bitsandbytes and CUDA, a reporter whose package is missing) before a run touches its
folder; `dist_info`, `gather_objects` and `finish_distributed` are the few torch.distributed calls
the loops need. Config checks that need no ML library are `TrainConfig.validate`'s.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from core.config import TrainConfig, report_targets
from core.errors import ConfigError

# --- the device: precision, qlora, distributed rank ----------------------------------------------

HF_OPTIMIZERS = {"adamw": "adamw_torch", "adafactor": "adafactor"}
HF_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (torchrun / accelerate launch)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def resolve_precision(precision: str, device: str) -> str:
    """auto → bf16 / fp16 on CUDA by capability, fp32 elsewhere; an explicit choice is checked."""
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
    if precision == "fp32" or cfg.method == "full":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def finish_distributed() -> None:
    """Wait for every rank (rank 0 may still be merging), then tear the process group down: a gloo
    group left to the interpreter's exit aborts ('terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj) -> list:
    """`obj` from every rank (in rank order); `[obj]` when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
