"""The upload copy a push builds, and what happens to it when the push is stopped.

A push builds its repository folder on disk (`RUN/hub-*` for a run: a merged model is as big as the
model; `$TMPDIR/hub-dataset-*` for a dataset) and uploads it. `staging_dir` removes it when the push
ends, fails or is interrupted (Ctrl-C, and SIGTERM, which `interruptible` turns into the same
KeyboardInterrupt so that `finally` blocks run). Only a `kill -9` leaves one behind: each copy is
flock-ed by the process that builds it, so the next push removes every copy whose lock is free
(its builder is gone) and never one that a push running beside it still uses.

This module does not build or upload anything (core.hub.publish, core.hub.transfer do).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import HubError

log = logging.getLogger(__name__)

RUN_PREFIX = "hub-"  # RUN/hub-*: a run's upload copy, next to its weights (a merge can be big)
DATASET_PREFIX = "hub-dataset-"  # in the temp folder: a dataset's copy is mostly hard links
_BUILDING = ".hub-building-"  # the name before the lock is held, which no cleaner looks at


class PublishInterrupted(HubError):
    """Ctrl-C or SIGTERM stopped a push; the message says what was kept and how to continue."""


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the upload copies under `parent` that no live push holds (left by a kill -9)."""
    removed = []
    ours = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}")  # tempfile's names; a user's own hub-* folder is not
    for path in sorted(Path(parent).glob(prefix + "*")):
        try:
            if (not ours.fullmatch(path.name) or not path.is_dir() or path.is_symlink()
                    or path.stat().st_uid != os.getuid() or {p.name for p in path.iterdir()} - {"repo"}):
                continue
            fd = _lock(path)
        except OSError:  # held by a push running now, or not ours to open
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        if not path.exists():
            log.info("removed %s, left by an interrupted push", path)
            removed.append(path)
    return removed


@contextmanager
def staging_dir(parent, prefix: str) -> Iterator[Path]:
    """An empty folder under `parent` named `prefix*`, locked while the block runs, removed after it.
    Stale copies of earlier, killed pushes are removed first."""
    parent = Path(parent)
    remove_stale(parent, prefix)
    building = Path(tempfile.mkdtemp(prefix=_BUILDING, dir=parent))
    fd = _lock(building)
    # renamed only once locked, so a cleaner never sees an unlocked copy that is in use
    path = parent / (prefix + building.name[len(_BUILDING):])
    try:
        building.rename(path)
        yield path
    finally:
        shutil.rmtree(path if path.exists() else building, ignore_errors=True)
        os.close(fd)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block, as Ctrl-C does (main thread only: the app's
    workers get no signals, and Python allows handlers there alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(repo_id: str, source: Path, committing: bool, dry_run=None) -> PublishInterrupted:
    """What a person needs after stopping a push: what the Hub and the disk hold, and what to do."""
    if dry_run is not None:
        return PublishInterrupted(f"interrupted: nothing was uploaded (a dry run); {dry_run} may be incomplete: "
                                  "remove it, then re-run the same command")
    hub = (f"the commit to {repo_id} had been sent, so the Hub has either all of this upload or none of it, "
           "never part" if committing else
           f"nothing was committed to {repo_id} on the Hub (a push is one commit, made last, so nothing is "
           "half-uploaded there)")
    return PublishInterrupted(f"interrupted: {hub}; the upload copy was removed and {source} is unchanged. "
                              "To publish, re-run the same command.")
