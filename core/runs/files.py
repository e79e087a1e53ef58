"""The run directory is the protocol between a training process and whoever watches it.

Layout of `checkpoints/<run>/`:
  config.yaml        the resolved config (what actually ran)
  schema.json        the schema labels were checked against
  data.jsonl         snapshot of the metadata lines used
  status.json        {state, global_step, max_steps, pid, message, updated}; atomic rewrites
  train.log          human-readable log, appended
  metrics.jsonl      one JSON object per logging step, flushed per line
  STOP               created by a watcher to ask the run to save and stop
  checkpoint-N/      Hugging Face Trainer checkpoints (resume)
  final/             final adapter or model + preprocessing.json
  merged/            (optional) the adapter merged into the base: a plain HF model folder
  accelerate.yaml    (multi-process runs with deepspeed/fsdp) the generated accelerate config
  preprocessing.json copy of the spec at the top, so a run dir is a model name
This module imports no torch: the UI reads runs without loading ML libraries.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from core.errors import ConfigError, WorkbenchError
from core.fileio import atomic_write_text
from core.layout import (
    ACCELERATE_CONFIG,
    CHECKPOINT_PREFIX,
    CONFIG_FILE,
    DATA_FILE,
    DATASET_FILE,
    KEEP_FILE,
    LAUNCH_CONFIG,
    LAUNCH_INFO,
    LAUNCH_LOG,
    LOG_FILE,
    METRICS_FILE,
    SCHEMA_FILE,
    STATUS_FILE,
    STOP_FILE,
)
from core.spec import checkpoint_step

# what a run folder may hold before its training process starts (anything else: not a new run)
LAUNCH_FILES = (KEEP_FILE, LAUNCH_CONFIG, LAUNCH_LOG, LAUNCH_INFO, ACCELERATE_CONFIG)


class CheckpointError(WorkbenchError):
    """A checkpoint or final model could not be written (disk full, permissions...)."""


@contextmanager
def guarded_save(path: Path, previous: Path | None, owner: bool = True):
    """Write a checkpoint/model folder inside this block; if writing fails, remove the partial folder
    and raise CheckpointError naming the folder, the cause, the free space and the checkpoint that
    is still intact.

    Any exception counts, not only OSError: on a full disk safetensors raises SafetensorError ("No
    space left on device (os error 28)") and torch.save a RuntimeError ("unexpected pos ..."), neither
    an OSError. Why remove the folder: a half-written `checkpoint-N` without trainer_state.json is
    already skipped by `checkpoints()`, but its partial files keep the disk full, so resuming would
    fail again. Only the `owner` (the main process) removes it: another rank failing must not delete
    what rank 0 finished."""
    path = Path(path)
    try:
        yield path
    except Exception as exc:
        if owner:
            shutil.rmtree(path, ignore_errors=True)
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
        except OSError:
            free = "free space unknown"
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        kept = f"{previous.name}/ is intact: free some space, then Resume" if previous else \
            "no earlier checkpoint exists: free some space and start again"
        removed = f"The partial {path.name}/ was removed; " if owner else ""
        raise CheckpointError(f"could not save {path.name}/ in {path.parent} ({cause}; {free}). "
                              f"{removed}{kept}.") from exc


class RunFiles:
    """Reads and writes one run directory. `writer=False` (ranks other than 0 in a distributed run)
    makes every write a no-op, so exactly one process writes status, log and metrics."""

    def __init__(self, run_dir, writer: bool = True):
        self.dir = Path(run_dir)
        self.writer = writer

    @property
    def status_path(self) -> Path:
        return self.dir / STATUS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.dir / METRICS_FILE

    @property
    def stop_path(self) -> Path:
        return self.dir / STOP_FILE

    def prepare(self, resume: bool) -> None:
        if not self.writer:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.stop_path.unlink(missing_ok=True)
            return
        leftovers = [p for p in self.dir.iterdir() if p.name not in LAUNCH_FILES]
        if leftovers:
            raise ConfigError(f"{self.dir}: run directory is not empty; choose a new --output or use --resume")

    def entries(self) -> set[str] | None:
        """Names in the run directory now (None: it does not exist): taken before `prepare`, so that
        `discard_refused` removes only what this attempt added."""
        if not self.dir.is_dir():
            return None
        return {p.name for p in self.dir.iterdir()}

    def began(self) -> bool:
        """True once the training loop was reached (status.json has `started`)."""
        return bool(self.read_status().get("started"))

    def discard_refused(self, before: set[str] | None) -> bool:
        """After a run was refused before its first step: remove the folder this attempt created (or
        what it wrote into a folder that was empty), so the same command works once the cause is
        fixed instead of meeting a `crashed` folder. A folder that held anything before (a resume,
        a run the app's manager prepared with its launch files) is left alone: returns False, and
        the caller records the failure in it."""
        if not self.writer or (before is not None and before) or not self.dir.is_dir():
            return False
        if before is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return True
        for p in self.dir.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return True

    def save_inputs(self, cfg, data) -> None:
        if not self.writer:
            return
        import yaml

        atomic_write_text(self.dir / CONFIG_FILE, yaml.safe_dump(asdict(cfg), sort_keys=False))
        atomic_write_text(self.dir / SCHEMA_FILE, json.dumps(data.schema, indent=2, ensure_ascii=False))
        lines = [json.dumps({"video": str(s.video), "split": s.split, **s.label}, ensure_ascii=False)
                 for s in data.samples]
        atomic_write_text(self.dir / DATA_FILE, "\n".join(lines) + "\n")
        # Lets `train --resume RUN_DIR` find the data with nothing else given.
        atomic_write_text(self.dir / DATASET_FILE, str(Path(data.root).resolve()) + "\n")

    def read_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def write_status(self, **fields) -> dict:
        status = self.read_status()
        status.update(fields)
        if not self.writer:
            return status
        status["pid"] = os.getpid()
        status["updated"] = time.time()
        atomic_write_text(self.status_path, json.dumps(status, indent=2))
        return status

    def log(self, message: str) -> None:
        if not self.writer:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        with open(self.dir / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(line)

    def change_mark(self) -> tuple:
        """Changes whenever a watcher would show something new (status, metrics, log): a few stat calls,
        so a page polling a finished run can skip redrawing it."""
        mark = []
        for path in (self.status_path, self.metrics_path, self.dir / LOG_FILE):
            try:
                st = path.stat()
                mark.append((st.st_mtime_ns, st.st_size))
            except OSError:
                mark.append(None)
        return tuple(mark)

    def log_tail(self, lines: int) -> str:
        """The last `lines` lines of the run's log ("" before it has one). Reads only the file's end: the
        log grows with the steps and with every clip skipped, and the Train tab asks every 2 s."""
        try:
            with open(self.dir / LOG_FILE, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 400 * lines))  # log lines are well under 400 bytes
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        found = text.splitlines()
        if size > 400 * lines:  # read from the middle of a line: its start is not there
            found = found[1:]
        return "\n".join(found[-lines:])

    def checkpoints(self) -> list[Path]:
        found = []
        for p in self.dir.glob(CHECKPOINT_PREFIX + "*"):
            step = checkpoint_step(p.name)
            if step is not None and p.is_dir() and (p / "trainer_state.json").is_file():
                found.append((step, p))
        return [p for _, p in sorted(found)]

    def last_checkpoint(self) -> Path | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    def read_metrics(self) -> list[dict]:
        rows = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written right now
        return rows

    def last_logged(self, key: str, tail_bytes: int = 65536):
        """The last value of `key` in metrics.jsonl (None when never logged), read from the file's end:
        the runs table asks for every run every 2 s and a long run's file holds thousands of lines."""
        if not self.metrics_path.is_file():
            return None
        with open(self.metrics_path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - tail_bytes))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
        if size > tail_bytes and not any(f'"{key}"' in line for line in lines):
            lines = self.metrics_path.read_text(errors="replace").splitlines()  # logged long ago: read it all
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written, or the first one cut by the seek
            if isinstance(row, dict) and row.get(key) is not None:
                return row[key]
        return None

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def interrupted_text(run_dir) -> str:
    """What a person reads after Ctrl-C in `cli.py train`: what was kept and how to go on."""
    run = RunFiles(run_dir)
    if not run.dir.is_dir() or not (run.dir / CONFIG_FILE).is_file():
        return (f"interrupted before training started; nothing was kept in {run.dir}: run the same command "
                "again to start")
    step = run.read_status().get("global_step")
    at = f" at step {step}" if step is not None else ""
    last = run.last_checkpoint()
    if last is not None:
        return (f"interrupted{at}: {last.name}/ is kept in {run.dir}; continue from it with "
                f"`python cli.py train --resume {run.dir}`")
    return (f"interrupted{at}, before the first checkpoint (save_steps): nothing to continue from in {run.dir}; "
            f"`python cli.py train --resume {run.dir}` starts it again from step 0")


class MetricsWriter:
    """Append-only JSONL, one flushed line per call, so a watcher always sees whole lines."""

    def __init__(self, path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    def write(self, row: dict) -> None:
        if not self.writer:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def duration_text(seconds: float) -> str:
    """'42s', '7m 05s', '1h 32m': what a person reads at a glance (not '5499s')."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
