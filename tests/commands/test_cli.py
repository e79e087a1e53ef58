"""The CLI as a user runs it: subprocesses, exit codes, one-line errors."""

import json

import pytest

from core.video.sampling import fps_indices, uniform_indices
from tests.support import SAMPLES, make_bad_files, run_cli

CLIP = SAMPLES / "videos" / "clip_0000.mp4"




def test_inspect_video_json_reports_probe_and_uniform_indices():
    out = run_cli("inspect-video", CLIP, "--frames", "8", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["frame_count"] == 30 and report["width"] == 160 and report["height"] == 96
    assert report["keyframe_count"] >= 1 and report["fps"] == 10.0
    assert report["indices"] == uniform_indices(30, 8)


def test_inspect_video_fps_sampling():
    out = run_cli("inspect-video", CLIP, "--sampling", "fps", "--fps", "4", "--json")
    assert json.loads(out.stdout)["indices"] == fps_indices(30, 10.0, fps=4.0)


def test_inspect_video_text_output():
    out = run_cli("inspect-video", CLIP)
    assert out.returncode == 0 and "keyframe_count" in out.stdout and "indices" in out.stdout


@pytest.mark.parametrize("kind", ["empty", "text", "png", "moov_missing", "garbage", "folder", "fifo"])
def test_inspect_bad_video_is_one_line_error(tmp_path, kind):
    bad = make_bad_files(tmp_path)
    if kind not in bad:
        raise AssertionError(f"fixture lacks {kind}: {sorted(bad)}")
    out = run_cli("inspect-video", bad[kind], timeout=10)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {bad[kind]}")
    assert "Traceback" not in out.stderr


def test_models_lists_the_default_family():
    out = run_cli("models", "--json")
    rows = json.loads(out.stdout)
    assert any(r["tiny"] == "tiny:qwen2_5_vl" for r in rows)


def test_train_refuses_non_empty_run_dir(tmp_path):
    (tmp_path / "something").write_text("x")
    out = run_cli("train", "--dataset", SAMPLES, "--output", tmp_path, "--max-steps", "1")
    assert out.returncode == 1 and "not empty" in out.stderr
