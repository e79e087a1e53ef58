"""Shared fixtures. Every test session gets its own cache folder (tiny model build, frame cache),
so tests never read or pollute the repository's .cache/."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from tests.support import REPO, SAMPLES

if "VVW_CACHE_DIR" not in os.environ:
    os.environ["VVW_CACHE_DIR"] = tempfile.mkdtemp(prefix="vvw-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_DATA_DIR = None
if "VVW_DATA_DIR" not in os.environ:  # the app's own copy of the bundle (core.paths.default_dataset), never the repo's
    os.environ["VVW_DATA_DIR"] = _DATA_DIR = tempfile.mkdtemp(prefix="vvw-test-data-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread per process: run.sh runs the suite in two xdist workers, so the two cores are
# taken, and a second thread per process would wait on the other worker. A tiny model's operations
# take microseconds and an OpenMP barrier waits milliseconds for a descheduled thread: one 30-clip
# prediction took 3 s on one thread and 16-55 s on two beside one busy process (AMD EPYC, 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The Ctrl-C tests send SIGINT to a child and expect its KeyboardInterrupt path. A suite started in
# the background (`cmd &`, nohup) inherits SIGINT ignored, every child would inherit that too, and
# Python installs no KeyboardInterrupt handler for an ignored signal: those tests then fail (seen:
# 6 failures, 570 s of runs that could not be interrupted). A handler set here is reset to the
# default in each child at exec, so the children can be interrupted again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_path():
    from core.models.tiny.registry import ensure_tiny

    return ensure_tiny("default")


@pytest.fixture(scope="session")
def tiny(tiny_path):
    """(model, processor, family) of the untrained embedded default."""
    from core.models.loading import load_model, resolve_model

    return load_model(resolve_model("tiny:default"))


@pytest.fixture(scope="session")
def short_run(tmp_path_factory):
    """A LoRA run of the embedded default, trained for a few steps through the CLI: a real adapter
    (not a good one) for tests about loading, switching, merging and exporting fine-tuned models.
    Built once per suite (xdist workers take turns on a lock; the first builds it, ~50 s) and copied
    into each worker's own folder, so no test sees another worker's writes."""
    import fcntl
    import shutil
    import subprocess
    import sys

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base folders share one parent
        shared = shared.parent
    built = shared / "short-run-built"
    with open(shared / "short-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (built / "final").is_dir():
            shutil.rmtree(built, ignore_errors=True)  # what a failed try left
            out = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--dataset", str(SAMPLES),
                                  "--output", str(built), "--max-steps", "30", "--save-steps", "1000"],
                                 capture_output=True, text=True, timeout=900, cwd=REPO)
            assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path_factory.mktemp("runs") / "short"
    shutil.copytree(built, run)
    return run


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """16 generated clips (seed 5), shared read-only by the runner, launch, estimate and run tests."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("small")
    subprocess.run([sys.executable, str(SAMPLES / "generate.py"), "--seed", "5", "--count", "16", "--out", str(out)],
                   check=True, timeout=120)
    return out


def _bundle_state() -> str | None:
    """`git status` of the bundled dataset (None outside a git checkout): tests never write into it."""
    import subprocess

    try:
        # not --ignored: importing generate.py may leave a __pycache__ there, which git ignores too
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", str(SAMPLES)],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


# The longest modules first, so that xdist starts them at once on different workers and the rest of
# the suite fills the other worker around them (collection order would start them last).
LONGEST_FIRST = ("tests/train/test_default_finetune.py", "tests/app/test_browser.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each module and among the rest is kept


COLD_FROM_WORKERS: list = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist's controller: collect each worker's count of CLI calls that missed the warm server."""
    COLD_FROM_WORKERS.extend(tuple(k) for k in getattr(node, "workeroutput", {}).get("cold_cli_calls", []))


def pytest_terminal_summary(terminalreporter):
    """How many `run_cli` calls paid a fresh interpreter (~5 s each) and which variables sent them there."""
    from collections import Counter

    from tests.support import COLD_CALLS

    calls = Counter(COLD_CALLS + COLD_FROM_WORKERS)
    if calls:
        why = "; ".join(f"{n} x {', '.join(keys) or '?'}" for keys, n in calls.most_common(5))
        terminalreporter.write_line(f"run_cli: {sum(calls.values())} calls ran in a fresh interpreter ({why})")


def pytest_sessionstart(session):
    session.config._vvw_bundle = _bundle_state()


def pytest_sessionfinish(session, exitstatus):
    """The suite fails when a test wrote into sample_videos/ (a lock, drafts, a rewritten
    metadata.jsonl): the bundle is the repository's, and `git status` must stay clean after a run."""
    import shutil

    from tests.support import COLD_CALLS

    if hasattr(session.config, "workeroutput"):  # an xdist worker: its count goes to the controller
        session.config.workeroutput["cold_cli_calls"] = [list(k) for k in COLD_CALLS]
    if _DATA_DIR:
        shutil.rmtree(_DATA_DIR, ignore_errors=True)  # this session's copies of the bundle (5 MB each)
    before, after = getattr(session.config, "_vvw_bundle", None), _bundle_state()
    if before is not None and after is not None and after != before:
        new = sorted(set(after.splitlines()) - set(before.splitlines()))
        print("\nerror: the test run changed sample_videos/ (tests must copy the bundle):\n" + "\n".join(new))
        session.exitstatus = 1
