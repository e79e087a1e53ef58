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
    """(rank, local_rank, world_size) from the launcher's environment (torchrun / accelerate launch).
    `rank` is global: across machines exactly one process has rank 0, on machine 0 (torchrun numbers
    machine r's processes from r x its process count), so `rank == 0` is the run directory's writer;
    every machine has a `local_rank` 0."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def machine_rank() -> int:
    """This process's machine in a multi-node run: torchrun's GROUP_RANK (its --node_rank under the
    static rendezvous accelerate uses); 0 when not launched or on one machine."""
    return int(os.environ.get("GROUP_RANK", 0))


def unseen_by(run) -> list[int]:
    """Machines that do not see the run directory rank 0 writes (empty on one shared filesystem).
    Called by every rank once the process group exists: after a barrier, each reads status.json and
    all compare with rank 0's reading (rank 0 writes nothing between the barrier and the gather).
    Why it matters: the other ranks save their part of each checkpoint (RNG state, ZeRO shards) into
    the run directory and read it back on resume, and `--resume RUN` reads RUN/config.yaml."""
    gather_objects(None)
    seen = gather_objects((machine_rank(), run.read_status().get("updated")))
    return sorted({m for m, stamp in seen if stamp is None or stamp != seen[0][1]})


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
