"""predict stopped from outside: Ctrl-C keeps the rows and says how to go on; a parent killed with
kill -9 takes its worker processes and its local Ray with it. Processes are followed through /proc
(pid and start time, so a reused pid is never mistaken for one of ours)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.serve.writers import read_rows
from tests.support import REPO, SAMPLES, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="follows processes through /proc")


def clips(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", root / f"clip_{i:04d}.mp4")
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    return root


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None once it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process is gone
        return None
    return None if fields[0] == "Z" else (int(fields[1]), fields[19])


def descendants(root: int) -> dict[int, str]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[0], []).append(int(name))
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            if (st := _stat(pid)) is not None:
                found[pid] = st[1]
                todo.append(pid)
    return found


def alive(procs: dict[int, str]) -> dict[int, str]:
    return {pid: started for pid, started in procs.items() if (st := _stat(pid)) is not None and st[1] == started}


def wait_gone(procs: dict[int, str], seconds: float) -> dict[int, str]:
    """The processes of `procs` still alive after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while (left := alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_left(procs: dict[int, str]) -> None:
    for pid in alive(procs):
        os.kill(pid, signal.SIGKILL)


def wait_for(check, proc: subprocess.Popen, seconds: float = 600.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"predict ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.1)


def journal_rows(path: Path) -> int:
    journal = path.with_name(path.name + ".partial.jsonl")
    return len(journal.read_text().splitlines()) if journal.is_file() else 0


def test_ctrl_c_keeps_the_rows_says_so_and_the_same_command_continues(tmp_path):
    folder = clips(tmp_path / "in", 8)
    out = tmp_path / "p.jsonl"
    args = ["predict", "--model", "tiny:default", "--input", str(folder), "--output", str(out), "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: journal_rows(out) >= 1, proc, what="first row")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    kept = len(read_rows(out))
    assert 1 <= kept < 8, "the run finished before the Ctrl-C; give it more clips"
    assert f"stopped: {kept} rows kept in {out}; run the same command again to continue" in stderr
    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{kept} already done" in again.stdout
    rows = read_rows(out)
    assert sorted(r["video"] for r in rows) == sorted(p.name for p in folder.glob("*.mp4"))  # each clip once


def test_workers_die_with_a_parent_killed_by_kill_9(tmp_path):
    folder = clips(tmp_path / "in", 60)  # enough work that a worker left alone runs on for a long while
    out = tmp_path / "p.jsonl"
    parent = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "predict", "--model", "tiny:default",
                               "--input", str(folder), "--output", str(out), "--batch-size", "1",
                               "--num-processes", "2"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: dict[int, str] = {}
    try:
        shards = [out.with_name(f"{out.name}.shard{r}-of-2.jsonl") for r in range(2)]
        wait_for(lambda: all(journal_rows(s) >= 1 for s in shards), parent, what="rows from both workers")
        workers = descendants(parent.pid)
        assert len(workers) == 2, workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_gone(workers, 20.0) == {}, "workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        kill_left(workers)


DRIVER = """
import time
from core.serve.ray_session import ray_session

with ray_session(None, 1):
    print("up", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_driver_killed_by_kill_9_takes_its_local_ray_with_it():
    # a short private temp dir: Ray's socket paths must stay under 107 characters and apart from other Rays
    temp = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(temp), "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ray_procs: dict[int, str] = {}
    try:
        assert driver.stdout.readline().strip() == "up", "the local Ray did not start"
        time.sleep(2)  # the raylet's agents start just after ray.init returns
        ray_procs = descendants(driver.pid)
        names = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in alive(ray_procs))
        assert "raylet" in names and "gcs_server" in names, names
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        left = wait_gone(ray_procs, 30.0)
        assert left == {}, [Path(f"/proc/{pid}/cmdline").read_text()[:80] for pid in left]
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_left(ray_procs)
        shutil.rmtree(temp, ignore_errors=True)
