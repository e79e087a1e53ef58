"""`cli.py train` as a person runs it: what it says at start-up about clips it leaves out, progress
as whole lines when its output is not a terminal, and Ctrl-C (issue #28)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from core.runs.files import RunFiles
from tests.support import REPO


@pytest.fixture(scope="module")
def mixed_run(small_dataset, tmp_path_factory):
    """A 3-step run on a copy of small_dataset where two labelled clips lost their split (as clips added
    in Annotate have none) and two train rows are unlabelled (only `video` and `split`)."""
    root = tmp_path_factory.mktemp("mixed") / "d"
    shutil.copytree(small_dataset, root)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    for r in train[:2]:
        r.pop("split")
    for r in train[2:4]:
        for key in set(r) - {"video", "split"}:
            del r[key]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = root.parent / "run"
    # bytes, not text: text mode would turn a progress bar's "\r" into a newline
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--dataset", str(root), "--output", str(run),
                          "--max-steps", "3", "--logging-steps", "1", "--save-steps", "1000", "--eval-steps", "0"],
                         capture_output=True, timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr.decode(), RunFiles(run)


def test_start_up_says_labelled_clips_without_a_split_are_left_out(mixed_run):
    stderr, run = mixed_run
    said = "2 labelled clips have no split and are left out (assign splits in Annotate → Splits or `cli.py split"
    assert said in stderr
    assert said in (run.dir / "train.log").read_text()


def test_unlabelled_rows_are_called_unlabelled_not_invalid(mixed_run):
    _, run = mixed_run
    log = (run.dir / "train.log").read_text()
    assert "2 unlabelled clips left out" in log
    assert "breaks the schema" not in log


def test_progress_is_whole_lines_when_stderr_is_not_a_terminal(mixed_run):
    stderr, _ = mixed_run
    assert "\r" not in stderr
    steps = [line for line in stderr.splitlines() if line.startswith("step ")]
    assert [s.split(" loss ")[0] for s in steps] == ["step 1/3", "step 2/3", "step 3/3"]


def test_ctrl_c_says_what_was_kept_and_how_to_continue(small_dataset, tmp_path):
    run = RunFiles(tmp_path / "run")
    cmd = [sys.executable, str(REPO / "cli.py"), "train", "--dataset", str(small_dataset), "--output", str(run.dir),
           "--max-steps", "400", "--save-steps", "2", "--logging-steps", "1", "--eval-steps", "0"]
    # its own session, so the signal goes to its whole group as a terminal's Ctrl-C does
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # guards a hang only
        while not run.checkpoints() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert run.checkpoints(), "no checkpoint was written"
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    kept = run.last_checkpoint()
    assert kept is not None and f"{kept.name}/ is kept in {run.dir}" in last
    assert f"cli.py train --resume {run.dir}" in last
    assert run.read_status()["state"] == "stopped"
