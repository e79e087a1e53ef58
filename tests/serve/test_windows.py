"""Windows over long videos: where they fall, which frames each one gets, and `predict --window-seconds`."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.serve.windowed import window_rows
from core.video.sampling import SamplingSpec, uniform_indices
from core.video.windows import iter_windows, window_bounds
from tests.support import SAMPLES, read_index, run_cli, write_test_video

SPEC = SamplingSpec(sampling="uniform", num_frames=8, width=96, height=64)


def test_window_bounds_cover_the_video_without_a_sliver_at_the_end():
    assert window_bounds(40.0, 5) == [(k * 5, k * 5 + 5) for k in range(8)]
    assert window_bounds(40.04, 5, tolerance=0.05) == [(k * 5, k * 5 + 5) for k in range(8)]  # rounding
    assert window_bounds(42.0, 5)[-2:] == [(35, 40), (37.0, 42.0)]  # the tail gets a window ending at the end
    assert window_bounds(40.0, 10, 5) == [(k * 5, k * 5 + 10) for k in range(7)]  # overlapping
    assert window_bounds(3.0, 5) == [(0.0, 3.0)]  # shorter than one window: the whole video
    with pytest.raises(ValueError):
        window_bounds(10.0, 0)


@pytest.mark.parametrize("stride", [None, 2.5])
def test_each_window_is_sampled_inside_itself_as_its_own_clip(tmp_path, stride):
    video = write_test_video(tmp_path / "long.mp4", n_frames=400, fps=10, size=(96, 64), gop=30)
    windows = list(iter_windows(video, SPEC, 5.0, stride))
    expected = window_bounds(40.0, 5.0, stride)
    assert [(w.start, w.end) for w in windows] == expected
    assert len(windows) == (8 if stride is None else 15)
    for w in windows:
        shown = [read_index(f) for f in w.frames.frames]  # each frame encodes its source index
        assert all(w.start * 10 <= i < w.end * 10 for i in shown), (w.start, shown)
        # exactly what the spec picks from a 50-frame clip, offset to the window's first frame
        assert shown == [int(w.start * 10) + i for i in uniform_indices(50, 8)]
        assert w.frames.indices == uniform_indices(50, 8) and w.frames.info.frame_count == 50
        assert w.frames.timestamps[0] == pytest.approx(w.frames.indices[0] / 10)


def test_predict_writes_one_row_per_window_and_resumes_per_window(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_test_video(folder / "long.mp4", n_frames=400, fps=10, size=(96, 64), gop=30)
    (folder / "broken.mp4").write_bytes(b"not a video")
    for out in (tmp_path / "w.sqlite", tmp_path / "w.jsonl"):
        args = ["predict", "--model", "tiny:default", "--input", folder, "--output", out,
                "--schema", SAMPLES / "schema.json", "--window-seconds", "5"]
        res = run_cli(*args, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "9 rows written (8 schema-valid, 1 errors)" in res.stdout
        rows = window_rows(out)
        long = [r for r in rows if r["video"] == "long.mp4"]
        assert [(r["start"], r["end"]) for r in long] == [(k * 5, k * 5 + 5) for k in range(8)]
        assert all(r["schema_valid"] and r["min_confidence"] is not None for r in long)
        broken = [r for r in rows if r["video"] == "broken.mp4"]
        assert len(broken) == 1 and "broken.mp4" in broken[0]["error"]
        again = run_cli(*args, timeout=600)
        assert again.returncode == 0 and "0 rows written" in again.stdout and "9 already done" in again.stdout
        assert len(window_rows(out)) == 9  # no duplicates


def test_windows_refuse_the_engines_they_do_not_run_on_and_mixed_files(tmp_path):
    from core.serve.batch import predict_to_file
    from core.serve.writers import SqliteWriter

    video = write_test_video(tmp_path / "v.mp4", n_frames=20, fps=10)
    with pytest.raises(ConfigError, match="local engine"):
        predict_to_file("tiny:default", video, tmp_path / "o.sqlite", schema=str(SAMPLES / "schema.json"),
                        engine="ray", window_seconds=5)
    with pytest.raises(ConfigError, match="needs --window-seconds"):
        predict_to_file("tiny:default", video, tmp_path / "o.sqlite", schema=str(SAMPLES / "schema.json"),
                        stride_seconds=2)
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    SqliteWriter(tmp_path / "clips.sqlite", schema).close()
    with pytest.raises(ConfigError, match="holds whole-clip rows"):
        SqliteWriter(tmp_path / "clips.sqlite", schema, windows=True)
