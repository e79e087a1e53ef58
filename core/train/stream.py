"""Training data that streams: a clip is sampled and encoded when a batch needs it, not before step 1.

Why: encoding every clip up front held the processor's fp32 pixel values of the whole split in
memory (~11 MB a clip at Qwen2.5-VL's 448x252 x 8 frames: 2,000 clips were 22 GB before the first
step, and every rank held them all) and decoded every clip serially while the accelerator idled.
Now start-up does only the cheap per-clip checks (`check_clips`: label against the schema, a header
probe, "file: reason" for each clip left out, as before), and `ClipDataset.__getitem__` samples
(through the frame cache) and encodes one clip. The trainer's DataLoader calls it from worker
processes, each rank on its own shard, so the first epoch's decoding runs in parallel with compute
and the data path holds workers x prefetch x batch clips, not the split.

`encoded_cache_mb` keeps encoded clips in memory after their first use, up to that budget, in the
one process that encodes them (the training process, or its single loader worker): on the tiny
default the processor call costs more than a cached frame read, and later epochs then skip it.
Above the budget clips are simply re-encoded from the frame cache; memory stays bounded. With
several workers the cache is off: each epoch's shuffle sends a clip to another worker, so a
per-worker cache would hit about 1/W of the time while holding up to the whole budget in each.

Loader workers hand batches to the training process through shared memory (/dev/shm); a
container's default 64 MB is less than two batches of real-size clips, so workers are turned off,
with a line in train.log saying why, when /dev/shm cannot hold what they would queue.

A clip that turns out unreadable mid-epoch (the header was fine, the frames are not) is logged to
train.log once per process and replaced by the next readable clip, so a batch keeps its size and
every rank its step count; training never crashes on one bad file.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import DatasetError, VideoError
from core.models.inputs import encode_example
from core.schema.base import canonical_answer, label_errors
from core.schema.fastcheck import validity_check
from core.video.frames import check_readable, sample_frames

MiB = 1 << 20
LOADER_PREFETCH = 2  # batches each loader worker prepares ahead (PyTorch's default)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainClip:
    video: str
    label: dict
    rel: str


def check_clips(samples, schema, skipped: list, progress=None, limit: int | None = None) -> list[TrainClip]:
    """The clips training can use, after the cheap checks (label vs schema, header probe); appends
    "file: reason" to `skipped` for each other one. `progress(done, total)` is called now and then;
    `limit` stops after that many usable clips (the val evaluator's eval_max_clips)."""
    samples = list(samples)
    clips: list[TrainClip] = []
    last = time.monotonic()
    valid = validity_check(schema)  # compiled: a few µs a label; worded reasons only for failures
    for k, s in enumerate(samples):
        if limit is not None and len(clips) >= limit:
            break
        if not s.label:  # a row with only `video` (and `split`) is waiting for a label, not a broken one
            skipped.append(f"{s.rel}: unlabelled")
            continue
        if not valid(s.label):
            skipped.append(f"{s.rel}: label breaks the schema: {label_errors(schema, s.label)[0]}")
            continue
        try:
            check_readable(s.video)
        except VideoError as exc:
            skipped.append(str(exc))
            continue
        clips.append(TrainClip(str(s.video), s.label, s.rel))
        if progress is not None and time.monotonic() - last > 1.0:
            progress(k + 1, len(samples))
            last = time.monotonic()
    return clips


def training_pool(data) -> tuple[list, list[str]]:
    """(the labelled rows training learns from, lines for train.log about the rows it leaves out).

    The pool is the train split; a dataset with no train rows trains on its rows without a split
    (a folder that uses no splits at all), never on val or test rows. Unlabelled rows are left
    out with one count, not one "skipped" line each; labelled rows without a split are counted
    when the train split leaves them out (clips just added in Annotate have no split)."""
    train = data.split("train")
    unsplit = [s for s in data.samples if s.split is None]
    pool = train or unsplit
    if not pool:
        held = ", ".join(f"{n} {name}" for name in ("val", "test") if (n := len(data.split(name))))
        raise DatasetError(f"{data.root}: no clip is in the train split ({held or 'no rows'}): assign splits in "
                           "Annotate → Splits or with `cli.py split`")
    notes = []
    unlabelled = sum(1 for s in pool if not s.label)
    if unlabelled:
        notes.append(f"{unlabelled} unlabelled clip{_s(unlabelled)} left out (no label to learn from yet)")
    left_out = sum(1 for s in unsplit if s.label) if train else 0
    if left_out:
        notes.append(f"{left_out} labelled clip{_s(left_out)} {'have' if left_out != 1 else 'has'} no split and "
                     f"{'are' if left_out != 1 else 'is'} left out (assign splits in Annotate → Splits or "
                     "`cli.py split --keep-existing`)")
    elif not train and len(unsplit) < len(data.samples):  # val/test rows, no train rows: say what it trains on
        notes.append(f"no clip is in the train split: training on the {len(pool)} rows without a split")
    return [s for s in pool if s.label], notes


def start_clips(data, log, progress=None) -> tuple[list[TrainClip], list[str]]:
    """The training clips after the cheap checks, with what was left out and why written through
    `log` (train.log) and, for the pool notes, the warning log (the CLI's output); DatasetError
    when none is usable."""
    pool, notes = training_pool(data)
    for note in notes:
        log(note)
        logger.warning("%s", note)
    skipped: list[str] = []
    clips = check_clips(pool, data.schema, skipped, progress=progress)
    for msg in skipped:
        log(f"skipped {msg}")
    if not clips:
        raise DatasetError(f"{data.root}: no usable training clips ({len(skipped)} skipped"
                           + (f"; {'; '.join(notes)}" if notes else "") + ")")
    return clips, skipped


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def default_workers(device: str, processes: int = 1) -> int:
    """DataLoader worker processes when the config leaves them unset.

    On a GPU the accelerator should never wait for video decoding: up to 4 workers per training
    process, leaving a core for each process itself. On a CPU one worker: on 2 cores it measured the
    same loop throughput as encoding in the training process with a quarter of the data wait
    (BENCHMARKS.md, section 7); none on a single core."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(cpus // max(processes, 1), 1)
    if device.startswith("cpu"):
        return 1 if per_process >= 2 else 0
    return max(0, min(4, per_process - 1))


def loader_workers(requested: int | None, device: str, processes: int, batch_bytes: int, log) -> int:
    """The workers this run uses: `requested`, else the device default, unless /dev/shm cannot hold
    the batches they queue (then none, said in `log`; an explicit request is kept with a warning)."""
    workers = requested if requested is not None else default_workers(device, processes)
    if workers <= 0:
        return 0
    need = 2 * workers * LOADER_PREFETCH * batch_bytes  # x2: a batch in flight while the next is written
    free = shm_free_bytes()
    if free is None or free >= need:
        return workers
    why = (f"/dev/shm has {free / MiB:.0f} MiB free and {workers} loader worker(s) would queue about "
           f"{need / MiB:.0f} MiB (in a container: docker run --shm-size 2g)")
    if requested is not None:
        log(f"warning: {why}; keeping dataloader_workers {requested} as asked")
        return workers
    log(f"no loader workers: {why}; clips are encoded in the training process")
    return 0


def shm_free_bytes() -> int | None:
    try:
        import shutil

        return shutil.disk_usage("/dev/shm").free
    except OSError:  # no /dev/shm (not Linux): torch uses other channels there
        return None


class SkipLog:
    """Appends "skipped FILE: reason" to train.log from any process (workers, every rank): one
    O_APPEND write per line, so concurrent writers do not tear each other's lines."""

    def __init__(self, path: Path | None, rank: int = 0):
        self.path, self.rank = path, rank

    def __call__(self, message: str) -> None:
        if self.path is None:
            return
        where = f" (rank {self.rank})" if self.rank else ""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} skipped{where} {message}\n".encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:  # another machine's run folder (multi-node without a shared disk)
            logger.warning("skipped%s %s", where, message)
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class ClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over checked clips. `answers=True` (SFT): an encoded example with the
    canonical answer and answer-only labels; False (GRPO): (encoded prompt, label).

    `cache_bytes` is this process's budget for encoded clips kept after first use (0: none)."""

    def __init__(self, clips: list[TrainClip], processor, pspec, answers: bool = True, log=None,
                 cache_bytes: int = 0):
        if not clips:
            raise DatasetError("no usable training clips")
        self.clips, self.processor, self.pspec, self.answers = clips, processor, pspec, answers
        self.log = log or SkipLog(None)
        self.cache_bytes = cache_bytes
        self._cache: dict[int, object] = {}
        self._cached_bytes = 0
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        n = len(self.clips)
        for k in range(n):
            j = (index + k) % n
            if j in self._bad:
                continue
            hit = self._cache.get(j)
            if hit is not None:
                return hit
            try:
                item = self.encode(j)
            except VideoError as exc:
                self._bad.add(j)
                self.log(f"{exc} (while training; the next readable clip takes its place)")
                continue
            self._remember(j, item)
            return item
        raise DatasetError(f"none of the {n} training clips could be decoded (see train.log)")

    def encode(self, j: int):
        clip, pspec = self.clips[j], self.pspec
        frames = sample_frames(clip.video, pspec.sampling_spec)
        if not self.answers:
            return encode_example(self.processor, pspec.instruction, frames, pspec.frames_as), clip.label
        answer = canonical_answer(pspec.schema, clip.label)
        return encode_example(self.processor, pspec.instruction, frames, pspec.frames_as, answer)

    def set_cache_budget(self, cache_bytes: int) -> None:
        """A new budget; what is held beyond it is dropped (before loader workers fork, so they
        start from nothing and the training process keeps nothing it will not use)."""
        self.cache_bytes = cache_bytes
        if self._cached_bytes > cache_bytes:
            self._cache, self._cached_bytes = {}, 0

    def _remember(self, j: int, item) -> None:
        if self.cache_bytes <= 0:
            return
        size = example_bytes(item[0] if isinstance(item, tuple) else item)
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[j] = item
            self._cached_bytes += size


def example_bytes(example: dict) -> int:
    """Bytes of an encoded example's tensors (what holding it costs)."""
    return sum(v.numel() * v.element_size() for v in example.values() if isinstance(v, torch.Tensor))


def cache_budget(cfg_mb: int, workers: int) -> int:
    """The encoded-clip cache of the process that encodes: the whole budget with 0 or 1 workers,
    none with several (see the module docstring)."""
    return int(cfg_mb * MiB) if workers <= 1 else 0


def owned(items: list) -> list:
    """GRPO's batch (a list of (encoded prompt, label)) with its tensors copied. In a loader worker
    the batch is pickled to the training process, which moves a tensor's storage into shared memory
    for good: without the copy the worker's cached clips would end up in /dev/shm."""
    return [({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in enc.items()}, label)
            for enc, label in items]


class StepBatches(torch.utils.data.Sampler):
    """GRPO's clip order: `batch_size` indices per step from a seeded shuffle of every clip, repeated
    pass after pass, starting at `start_step` + 1. Step k draws the same clips whether the run
    started at 0 or resumed from a checkpoint at k - 1."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, max_steps: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.max_steps = start_step, max_steps

    def __iter__(self):
        rng, order = random.Random(self.seed), []
        for step in range(1, self.max_steps + 1):
            while len(order) < self.batch_size:
                order += rng.sample(range(self.n), self.n)
            picked, order = order[:self.batch_size], order[self.batch_size:]
            if step > self.start_step:
                yield picked

    def __len__(self) -> int:
        return max(self.max_steps - self.start_step, 0)
