"""Raw MPEG-1/MPEG-2 elementary streams (.m1v/.m2v, no container): PyAV decodes them, so they are
clips like any other, with the frame count counted from the stream (a raw stream declares none)
and frames timed by index / frame rate (it carries no timestamps of its own)."""

import pytest

from core.video.frames import is_video_path, probe, sample_frames
from core.video.sampling import SamplingSpec
from tests.support import read_index, write_test_video

SPEC = SamplingSpec(sampling="uniform", num_frames=8, width=64, height=48)


@pytest.mark.parametrize("ext,codec", [(".m2v", "mpeg2video"), (".m1v", "mpeg1video")])
def test_a_raw_elementary_stream_samples_the_right_frames(tmp_path, ext, codec):
    path = write_test_video(tmp_path / f"clip{ext}", n_frames=30, fps=25, codec=codec, bframes=2, gop=12)
    assert is_video_path(path)
    info = probe(path)
    assert (info.frame_count, info.fps, info.codec) == (30, 25.0, codec)
    sampled = sample_frames(path, SPEC, use_cache=False)
    assert [read_index(f) for f in sampled.frames] == sampled.indices == [1, 5, 8, 12, 15, 19, 23, 26]
    assert sampled.timestamps == pytest.approx([i / 25 for i in sampled.indices])


def test_a_cut_raw_stream_counts_the_frames_it_has(tmp_path):
    full = write_test_video(tmp_path / "full.m2v", n_frames=60, fps=25, codec="mpeg2video", bframes=2, gop=12)
    cut = tmp_path / "cut.m2v"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    info = probe(cut)
    assert 20 <= info.frame_count < 60  # counted from what is there, not declared
    sampled = sample_frames(cut, SPEC, use_cache=False)
    assert all(0 <= i < info.frame_count for i in sampled.indices)
    assert [read_index(f) for f in sampled.frames] == sampled.indices
