"""The few process-level pieces both training loops need: the launcher's ranks (`dist_info`),
gathering per-rank objects and tearing the process group down, and the names Hugging Face gives
our optimizer and schedule choices. What the device can do (precision, qlora) is checked by
core.models.device, which the app also calls before it launches a run. `return_freed_tensors`
sets how the C allocator hands memory back on CPU (why: its docstring).
"""

from __future__ import annotations

import ctypes
import os
import sys

HF_OPTIMIZERS = {"adamw": "adamw_torch", "adafactor": "adafactor"}
HF_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 1 << 20
HEAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its moving threshold (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
# below this many parameters a step's tensors are small and many, and mapping each one costs more than
# the holes it saves: the tiny default's step took 0.81-0.83 s at 1 MiB against 0.53 s at 32 MiB
# (80 steps, alternated twice, AMD EPYC); at real widths (hundreds of millions and up) it cost nothing
SMALL_MODEL_PARAMS = 100_000_000


def return_freed_tensors(device: str, threshold: int = MMAP_THRESHOLD) -> bool:
    """On CPU under glibc: serve every allocation of 1 MiB or more (all activation-sized tensors) from
    its own mapping, which free() returns to the system at once. Why: by default glibc raises its
    mmap threshold to 32 MiB after the first large free, so the many tensors below that come from
    the heap, whose freed holes stay resident; at real sizes a training step then raised the RSS
    1.5-2.5x as much as its live tensors, and the RSS grew from step to step (bench/real_size.py, BENCHMARKS.md
    section 11), which no estimate can follow. With it the peak RSS is the live tensors plus the
    runtime. The step time did not change (SmolVLM2 with 2 layers, thresholds alternated per step in
    one process: 15.5 s at 1 MiB, 16.1 s at 32 MiB). A threshold the user set
    (MALLOC_MMAP_THRESHOLD_) is kept. True when the threshold was set here. A small model takes
    `HEAP_THRESHOLD` back once loaded (`SMALL_MODEL_PARAMS`, core.train.setup.load_for_training)."""
    if device != "cpu" or not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc; musl and others have no mallopt to call
        return libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):
        return False


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
