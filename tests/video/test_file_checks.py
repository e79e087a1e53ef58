"""A FIFO, a link to a device, a broken link named `.mp4`: each called what it is, never "no such
file" (issue #28), by the file check every read goes through and by the entry points that look at
a path before reading it (import, predict)."""

from __future__ import annotations

import json
import os

import pytest

from core.errors import VideoError
from core.video.container import check_regular_file, file_problem
from tests.support import make_dataset, run_cli


@pytest.fixture
def odd_files(tmp_path):
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.mp4"
    zero.symlink_to("/dev/zero")
    broken = tmp_path / "broken.mp4"
    broken.symlink_to(tmp_path / "gone.mp4")
    return {"fifo": fifo, "zero": zero, "broken": broken, "missing": tmp_path / "missing.mp4"}


def test_each_odd_file_is_named_for_what_it_is(odd_files):
    reasons = {k: file_problem(p) for k, p in odd_files.items()}
    assert reasons["fifo"].startswith("not a regular file (a FIFO)")
    assert reasons["zero"].startswith("not a regular file (a link to /dev/zero, a device)")
    assert reasons["broken"].startswith("broken link")
    assert reasons["missing"] == "file not found"
    with pytest.raises(VideoError, match="a FIFO"):
        check_regular_file(odd_files["fifo"])


def test_predict_names_a_fifo_or_a_device_link_not_no_such_file(odd_files, tmp_path):
    for kind, words in (("fifo", "a FIFO"), ("zero", "a device")):
        out = run_cli("predict", "--model", "tiny:default", "--input", odd_files[kind], "--output",
                      tmp_path / f"{kind}.jsonl", timeout=300)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert words in out.stderr and "no such file" not in out.stderr


def test_import_names_a_fifo_row_for_what_it_is(tmp_path):
    root = make_dataset(tmp_path / "src", n=1)
    os.mkfifo(root / "videos" / "pipe.mp4")
    with open(root / "metadata.jsonl", "a") as fh:
        fh.write(json.dumps({"video": "videos/pipe.mp4"}) + "\n")
    out = run_cli("import", root, "--output", tmp_path / "dest", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "skipped: metadata.jsonl:2: videos/pipe.mp4: not a regular file (a FIFO)" in out.stderr
    assert "not found" not in out.stderr
