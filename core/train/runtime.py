"""The few process-level pieces both training loops need: the launcher's ranks (`dist_info`),
gathering per-rank objects and tearing the process group down, and the names Hugging Face gives
our optimizer and schedule choices. What the device can do (precision, qlora) is checked by
core.models.device, which the app also calls before it launches a run.
"""

from __future__ import annotations

import os

HF_OPTIMIZERS = {"adamw": "adamw_torch", "adafactor": "adafactor"}
HF_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (torchrun / accelerate launch)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


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
