"""Run a training command in this interpreter with a timer around the Trainer's data fetches.

    python bench/timed_run.py --out TIMES.json -- SCRIPT.py ARGS...      (e.g. cli.py train ...)
    python bench/timed_run.py --out TIMES.json -m MODULE ARGS...        (e.g. llamafactory.cli train cfg.yaml)
    (add --allow-lf-torch29-conv3d before --out to let LLaMA-Factory load a Qwen-VL under torch 2.9 on CPU)

Patches ``transformers.Trainer.get_batch_samples`` (where the training loop pulls its next batch
from the data loader, in every transformers version both sides run) to record when each fetch
starts and ends, then runs the command as ``__main__``. At exit it writes, as JSON: the fetch
intervals, the process's peak RSS (``ru_maxrss``) and wall time. Depends only on the standard
library and transformers, so it runs unchanged in our venv and in LLaMA-Factory's. Nothing in the
measured code is edited; the wrapper adds two clock reads per optimiser step.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys
import time

T0 = time.perf_counter()
FETCHES: list[tuple[float, float]] = []
CPU_AT_FETCH: list[float] = []  # process CPU seconds (all threads) when each fetch starts
BATCHES: list[dict] = []  # shapes of what each fetch returned: proof both sides train on the same tensors


def _install() -> None:
    import transformers

    original = transformers.Trainer.get_batch_samples

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        CPU_AT_FETCH.append(time.process_time())
        out = original(self, *args, **kwargs)
        FETCHES.append((start - T0, time.perf_counter() - T0))
        if len(BATCHES) < 1000:
            BATCHES.append([_describe(b) for b in out[0]])
        return out

    transformers.Trainer.get_batch_samples = timed


def _describe(batch) -> dict:
    out = {}
    for key, value in batch.items():
        shape = getattr(value, "shape", None)
        if shape is not None:
            out[key] = list(shape)
    if "attention_mask" in batch:
        out["tokens"] = int(batch["attention_mask"].sum())
    if "labels" in batch:
        out["label_tokens"] = int((batch["labels"] != -100).sum())
    return out


def _dump(path: str) -> None:
    data = {"fetches": FETCHES, "cpu_at_fetch": CPU_AT_FETCH, "cpu_at_exit": time.process_time(),
            "batches": BATCHES, "wall_s": time.perf_counter() - T0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), "pid": os.getpid()}
    with open(path, "w") as f:
        json.dump(data, f)


def _allow_lf_torch29_conv3d() -> None:
    """LLaMA-Factory 0.9.5 refuses every Conv3D model (all Qwen-VL) under torch 2.9.x because of a
    CUDA/cuDNN Conv3D slowdown (pytorch#166122, labelled module: cuda / amp). On CPU that kernel is
    not used, so for a CPU benchmark we answer that one version check as if torch were older. Nothing
    else in LLaMA-Factory changes; the guard is the only caller of this name in its loader."""
    import llamafactory.model.loader as loader

    original = loader.is_torch_version_greater_than
    loader.is_torch_version_greater_than = lambda v: False if v == "2.9.0" else original(v)


def main() -> None:
    argv = sys.argv[1:]
    lf_guard = "--allow-lf-torch29-conv3d" in argv
    argv = [a for a in argv if a != "--allow-lf-torch29-conv3d"]
    if len(argv) < 3 or argv[0] != "--out":
        raise SystemExit(__doc__)
    out, rest = argv[1], argv[2:]
    atexit.register(_dump, out)
    _install()
    if lf_guard:
        _allow_lf_torch29_conv3d()
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        if rest[0] == "--":
            rest = rest[1:]
        sys.argv = list(rest)
        sys.path.insert(0, os.path.dirname(os.path.abspath(rest[0])))
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
