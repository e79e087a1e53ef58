"""Worker processes that die with the process that started them (`predict --num-processes N`).

A parent killed with kill -9 cannot stop its workers, and a worker left running races the re-run
for the same shard file. So the parent names itself in the workers' environment (`PARENT_ENV`)
and each worker, on start, asks the kernel for SIGKILL when its parent dies (Linux
prctl(PR_SET_PDEATHSIG)); a thread polling os.getppid() covers the other systems and the moment
between the fork and the prctl. A worker killed this way loses nothing: its shard file is
flushed per row and the re-run resumes it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PARENT_ENV = "VVW_PREDICT_PARENT"
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def parent_env() -> dict:
    """The environment entry a worker started by this process needs to die with it."""
    return {PARENT_ENV: str(os.getpid())}


def tie_to_parent() -> None:
    """In a worker: die when the parent named in PARENT_ENV dies. Does nothing outside a worker.
    The variable is removed, so processes this worker starts are not tied to its parent."""
    text = os.environ.pop(PARENT_ENV, None)
    if not text:
        return
    parent = int(text)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    # a parent that died before the prctl (or on a system without it) shows as a changed parent pid
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
