"""Tests for core.video.frames (sampling, probing, decoding, safety, chunking) and the engine under it
(core.video.container, core.video.scan, core.video.decode, core.video.rgb), and core.video.cache."""

from __future__ import annotations

import logging
import math
import os
import time

import av
import numpy as np
import pytest

from core.errors import ConfigError, VideoError
from core.video import cache as frame_cache
from core.video import container as video_container
from core.video import decode as video_decode
from core.video import frames as video
from core.video import rgb as video_rgb
from core.video import sampling
from core.video import scan as video_scan
from core.video.frames import VideoInfo
from core.video.sampling import SamplingSpec
from tests.support import make_bad_files, read_index, write_test_video


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("VVW_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "short": write_test_video(d / "short.mp4", n_frames=30, fps=10, gop=10),
        # 300 frames, one keyframe every 30: long enough for seeking to win
        "long_gop30": write_test_video(d / "long.mp4", n_frames=300, fps=30, gop=30),
        "one_keyframe": write_test_video(d / "onekey.mp4", n_frames=120, fps=30, gop=1000),
        "mkv": write_test_video(d / "clip.mkv", n_frames=90, fps=30, gop=30),
        "webm_vp9": write_test_video(d / "clip.webm", n_frames=90, fps=30, gop=30, codec="libvpx-vp9"),
        "avi_mpeg4": write_test_video(d / "clip.avi", n_frames=90, fps=25, gop=30, codec="mpeg4"),
        "ntsc": write_test_video(d / "ntsc.mp4", n_frames=60, fps=29.97, gop=15),
        "mpegts": write_test_video(d / "clip.ts", n_frames=100, fps=25, gop=25),
        "moov_end": write_test_video(d / "moov_end.mp4", n_frames=40, moov_at_end=True),
        "unicode": write_test_video(d / "clip naïve 東京 (1).mp4", n_frames=20),
        "rotated": write_test_video(d / "rot90.mp4", n_frames=20, rotation=90),
        "single": write_test_video(d / "single.mp4", n_frames=1),
    }


# ------------------------------------------------------------------ reference samplers
# Test oracles, kept as close to upstream as possible so that a change there is easy to diff.
# InternVL (MIT), README / internvl_chat video loading:
def internvl_get_index(bound, fps, max_frame, first_idx=0, num_segments=32):
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    frame_indices = np.array([
        int(start_idx + (seg_size / 2) + np.round(seg_size * idx))
        for idx in range(num_segments)
    ])
    return frame_indices


# qwen-vl-utils (Apache-2.0), src/qwen_vl_utils/vision_process.py:
FRAME_FACTOR, FPS, FPS_MIN_FRAMES, FPS_MAX_FRAMES = 2, 2.0, 4, 768


def ceil_by_factor(number, factor):
    return math.ceil(number / factor) * factor


def floor_by_factor(number, factor):
    return math.floor(number / factor) * factor


def smart_nframes(ele, total_frames, video_fps):
    fps = ele.get("fps", FPS)
    min_frames = ceil_by_factor(ele.get("min_frames", FPS_MIN_FRAMES), FRAME_FACTOR)
    max_frames = floor_by_factor(ele.get("max_frames", min(FPS_MAX_FRAMES, total_frames)), FRAME_FACTOR)
    nframes = total_frames / video_fps * fps
    nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
    nframes = floor_by_factor(nframes, FRAME_FACTOR)
    if not (FRAME_FACTOR <= nframes and nframes <= total_frames):  # noqa: PLR1716 - upstream's words
        raise ValueError(f"nframes should in interval [{FRAME_FACTOR}, {total_frames}], but got {nframes}.")
    return nframes


def qwen_indices(ele, total_frames, video_fps):
    import torch
    nframes = smart_nframes(ele, total_frames=total_frames, video_fps=video_fps)
    return torch.linspace(0, total_frames - 1, nframes).round().long().tolist()


# (total_frames, video_fps, num_frames for uniform)
SAMPLING_CASES = [
    (1, 30.0, 8), (2, 30.0, 8), (3, 25.0, 8), (5, 10.0, 8), (7, 29.97, 8), (8, 30.0, 8),
    (9, 30.0, 8), (16, 24.0, 16), (30, 10.0, 8), (31, 30.0, 32), (50, 10.0, 8), (64, 59.94, 32),
    (100, 29.97, 8), (121, 23.976, 12), (150, 30.0, 8), (300, 30.0, 16), (301, 29.97, 7),
    (1000, 25.0, 32), (1234, 29.97, 64), (2001, 60.0, 5), (9999, 30.0, 128), (36000, 30.0, 32),
    (100_000, 29.97, 256), (1_000_000, 30.0, 768), (5_000_000, 120.0, 8), (777, 0.5, 10),
    (4_194_319, 29.97, 512), (16_777_259, 59.94, 1000),
]


@pytest.mark.parametrize("total, video_fps, n", SAMPLING_CASES)
def test_uniform_indices_match_internvl(total, video_fps, n):
    expected = internvl_get_index(None, video_fps, total - 1, first_idx=0, num_segments=n).tolist()
    if total - 1 > round(100000 * video_fps):
        # InternVL's bound=None means +-100000 s, so it stops at frame round(100000 * fps)
        # (~28 h of video); we sample the whole clip. Documented in uniform_indices.
        assert sampling.uniform_indices(total, n) != expected
        assert sampling.uniform_indices(total, n)[-1] <= total - 1
    else:
        assert sampling.uniform_indices(total, n) == expected


@pytest.mark.parametrize("total, video_fps, n", [c for c in SAMPLING_CASES if c[0] >= 2])
def test_fps_indices_match_qwen_defaults(total, video_fps, n):
    assert sampling.fps_indices(total, video_fps) == qwen_indices({}, total, video_fps)


@pytest.mark.parametrize(
    "total, video_fps, fps, min_frames, max_frames",
    [
        (100, 30.0, 1.0, 4, 32), (3000, 30.0, 2.0, 4, 32), (3000, 30.0, 0.5, 8, 16), (10, 30.0, 2.0, 4, 32),
        (3, 30.0, 2.0, 4, 32), (2, 30.0, 2.0, 4, 32), (7, 1.0, 2.0, 5, 9), (1_000_000, 29.97, 2.0, 4, 768),
        (90, 29.97, 4.0, 4, 32), (451, 23.976, 3.0, 3, 33), (12345, 59.94, 0.25, 4, 64),
    ],
)
def test_fps_indices_match_qwen_custom(total, video_fps, fps, min_frames, max_frames):
    ele = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
    assert sampling.fps_indices(total, video_fps, fps, min_frames, max_frames) == qwen_indices(ele, total, video_fps)


def test_sampling_edges():
    assert sampling.uniform_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]  # fewer frames than asked: repeats
    assert sampling.uniform_indices(1, 4) == [0, 0, 0, 0]
    assert sampling.fps_indices(1, 30.0) == [0, 0]  # qwen-vl-utils raises; we repeat frame 0
    for bad in [lambda: sampling.uniform_indices(0, 8), lambda: sampling.uniform_indices(5, 0),
                lambda: sampling.fps_indices(0, 30.0), lambda: sampling.fps_indices(10, 0.0)]:
        with pytest.raises(ValueError):
            bad()
    info = VideoInfo("x.mp4", 300, 30.0, 10.0, 64, 48, 10, "h264", 0, True)
    assert sampling.sample_indices(info, SamplingSpec(num_frames=4)) == sampling.uniform_indices(300, 4)
    spec = SamplingSpec(sampling="fps", fps=1.0, max_frames=32)
    assert sampling.sample_indices(info, spec) == sampling.fps_indices(300, 30.0, 1.0, 4, 32)
    assert sampling.sample_indices(300, spec, video_fps=30.0) == sampling.sample_indices(info, spec)
    with pytest.raises(ValueError):
        sampling.sample_indices(300, spec)  # fps mode needs the frame rate


def test_spec_round_trip_and_validation():
    spec = SamplingSpec(sampling="fps", fps=1, max_frames=16, width=96, height=80)
    assert spec.fps == 1.0 and isinstance(spec.fps, float)
    assert SamplingSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown"):
        SamplingSpec.from_dict({"sampling": "uniform", "frames": 8})
    for kwargs in [{"sampling": "random"}, {"num_frames": 0}, {"width": 0}, {"fps": 0}, {"min_frames": 9, "max_frames": 8}]:
        with pytest.raises(ConfigError):
            SamplingSpec(**kwargs)


def test_is_video_path():
    assert video.is_video_path("a/b/Clip.MP4") and video.is_video_path("x.webm")
    assert not video.is_video_path("labels.jsonl") and not video.is_video_path("mp4")


# ------------------------------------------------------------------ probing and decoding


def test_probe_counts_frames_and_keyframes(clips):
    info = video.probe(clips["long_gop30"])
    assert (info.frame_count, info.keyframe_count, info.fps) == (300, 10, 30.0)
    assert (info.width, info.height, info.codec, info.rotation) == (64, 48, "h264", 0)
    assert info.frame_count_exact and info.duration == pytest.approx(10.0)
    ntsc = video.probe(clips["ntsc"])
    assert ntsc.frame_count == 60 and ntsc.fps == pytest.approx(29.97, abs=1e-3)


@pytest.mark.parametrize("name", ["short", "moov_end", "unicode", "mkv", "webm_vp9", "avi_mpeg4", "ntsc", "mpegts"])
def test_sampled_frames_are_the_right_frames(clips, name):
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    result = video.sample_frames(clips[name], spec)
    assert result.frames.shape == (8, 48, 64, 3) and result.frames.dtype == np.uint8
    assert result.indices == sampling.uniform_indices(result.info.frame_count, 8)
    assert [read_index(f) for f in result.frames] == result.indices
    fps = result.info.fps
    assert result.timestamps == pytest.approx([i / fps for i in result.indices], abs=1e-3)


@pytest.mark.parametrize("name", ["long_gop30", "mkv", "webm_vp9", "avi_mpeg4", "ntsc"])
def test_seeking_and_sequential_give_identical_frames(clips, name, monkeypatch):
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    sequential = video._sample_uncached(str(clips[name]), spec, strategy="sequential")

    def no_fallback(*args, **kwargs):
        raise AssertionError("seeking fell back to sequential decoding")

    monkeypatch.setattr(video_decode, "decode_sequential", no_fallback)
    seeking = video._sample_uncached(str(clips[name]), spec, strategy="seek")
    assert seeking.indices == sequential.indices
    assert np.array_equal(seeking.frames, sequential.frames)
    assert [read_index(f) for f in seeking.frames] == seeking.indices


def test_seek_miss_falls_back_to_sequential(clips, monkeypatch):
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    reference = video._sample_uncached(str(clips["long_gop30"]), spec, strategy="sequential")

    def missing(*args, **kwargs):
        raise video_decode.SeekMiss("simulated overshoot")

    monkeypatch.setattr(video_decode, "decode_seeking", missing)
    result = video._sample_uncached(str(clips["long_gop30"]), spec, strategy="seek")
    assert result.indices == reference.indices and np.array_equal(result.frames, reference.frames)


def test_strategy_follows_keyframe_layout(clips):
    wanted = sampling.uniform_indices(300, 8)
    assert video_decode.use_seeking(video_scan.scan(clips["long_gop30"]), wanted)
    assert not video_decode.use_seeking(video_scan.scan(clips["one_keyframe"]), sampling.uniform_indices(120, 8))
    assert not video_decode.use_seeking(video_scan.scan(clips["short"]), sampling.uniform_indices(30, 8))
    assert not video_scan.scan(clips["mpegts"]).seekable  # no frame index: seeks overshoot


def test_fps_sampling_and_resize(clips):
    spec = SamplingSpec(sampling="fps", fps=2.0, max_frames=32, width=32, height=40)
    result = video.sample_frames(clips["long_gop30"], spec)
    assert result.indices == sampling.fps_indices(300, 30.0, 2.0, 4, 32)
    assert result.frames.shape == (len(result.indices), 40, 32, 3)
    assert [read_index(f) for f in result.frames] == result.indices


def test_single_frame_video(clips):
    result = video.sample_frames(clips["single"], SamplingSpec(sampling="fps"))
    assert result.indices == [0, 0] and result.frames.shape[0] == 2


def test_rotation_is_applied(clips):
    info = video.probe(clips["rotated"])
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    result = video.sample_frames(clips["rotated"], SamplingSpec(num_frames=4, width=48, height=64))
    assert [read_index(np.rot90(f, -1)) for f in result.frames] == result.indices
    import cv2  # an independent decoder that applies the display matrix (pinned build does)
    cap = cv2.VideoCapture(str(clips["rotated"]))
    reference = [cap.read()[1][..., ::-1] for _ in range(20)]
    cap.release()
    assert reference[0].shape == (64, 48, 3)
    for frame, i in zip(result.frames, result.indices):
        assert np.abs(frame.astype(int) - reference[i].astype(int)).mean() < 8


def test_truncated_file_keeps_decodable_frames(tmp_path, caplog):
    full = write_test_video(tmp_path / "full.mp4", n_frames=100, gop=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.9)])
    info = video.probe(cut)
    assert info.frame_count < 100 and not info.frame_count_exact
    # fps sampling always wants the last frame, whose packet is cut: it cannot be decoded
    spec = SamplingSpec(sampling="fps", fps=10.0, max_frames=info.frame_count, width=64, height=48)
    assert sampling.sample_indices(info, spec)[-1] == info.frame_count - 1
    with caplog.at_level(logging.WARNING, logger="core.video.frames"):
        result = video.sample_frames(cut, spec)
    assert [read_index(f) for f in result.frames] == result.indices  # indices tell the truth
    last = max(result.indices)
    assert last < info.frame_count - 1 and result.indices[-1] == last  # tail repeats the last good frame
    assert "could be decoded" in caplog.text


# ------------------------------------------------------------------ refusing bad files


def _assert_refused(call, path, limit_s=5.0):
    start = time.monotonic()
    with pytest.raises(VideoError) as err:
        call(path)
    assert time.monotonic() - start < limit_s
    assert str(err.value).startswith(f"{path}: ") and err.value.path == str(path)
    return err.value


def test_bad_files_are_refused_quickly(tmp_path):
    bad = make_bad_files(tmp_path)
    assert {"missing", "folder", "empty", "text", "png", "audio_only", "moov_missing"} <= set(bad)
    for name, path in bad.items():
        for call in (video.probe, lambda p: video.sample_frames(p, SamplingSpec()),
                     lambda p: video.chunk_video(p, 2.0, tmp_path / "chunks")):
            err = _assert_refused(call, path)
            assert err.reason, name
    reasons = {name: _assert_refused(video.probe, p).reason for name, p in bad.items()}
    assert reasons["missing"] == "file not found" and "empty" in reasons["empty"]
    assert "no video stream" in reasons["audio_only"]
    if "fifo" in reasons:
        assert "not a regular file" in reasons["fifo"]


def test_huge_frames_are_refused_before_decoding(clips, monkeypatch):
    monkeypatch.setattr(video_container, "MAX_FRAME_PIXELS", 64 * 48 - 1)
    err = _assert_refused(video.probe, clips["short"])
    assert "exceeds" in err.reason
    _assert_refused(lambda p: video.sample_frames(p, SamplingSpec(), use_cache=False), clips["short"])


# ------------------------------------------------------------------ cache


def test_cache_hit_miss_and_corruption(tmp_path, monkeypatch):
    clip = write_test_video(tmp_path / "c.mp4", n_frames=30)
    spec = SamplingSpec(num_frames=4, width=32, height=32)
    first = video.sample_frames(clip, spec)
    entries = list(frame_cache.frames_dir().glob("*" + frame_cache.ENTRY_SUFFIX))
    assert len(entries) == 1 and str(frame_cache.frames_dir()).startswith(str(tmp_path))

    real_uncached = video._sample_uncached

    def decoder_must_not_run(*args, **kwargs):
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(video, "_sample_uncached", decoder_must_not_run)
    hit = video.sample_frames(clip, spec)
    assert np.array_equal(hit.frames, first.frames) and hit.indices == first.indices
    assert hit.timestamps == first.timestamps and hit.info == first.info

    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return real_uncached(*args, **kwargs)

    monkeypatch.setattr(video, "_sample_uncached", counting)
    video.sample_frames(clip, SamplingSpec(num_frames=4, width=48, height=32))  # other spec: miss
    assert len(calls) == 1 and len(list(frame_cache.frames_dir().glob("*" + frame_cache.ENTRY_SUFFIX))) == 2

    entries[0].write_bytes(b"not an entry")  # corrupt entry: miss, then rewritten
    again = video.sample_frames(clip, spec)
    assert len(calls) == 2 and np.array_equal(again.frames, first.frames)
    assert frame_cache.load(entries[0].stem) is not None

    write_test_video(clip, n_frames=50)  # new content at the same path: miss
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = video.sample_frames(clip, spec)
    assert len(calls) == 3 and changed.info.frame_count == 50
    assert not list(frame_cache.frames_dir().glob("*.tmp"))


# ------------------------------------------------------------------ chunking


def test_chunk_video(tmp_path):
    clip = write_test_video(tmp_path / "five s.mp4", n_frames=50, fps=10, gop=10)
    pieces = video.chunk_video(clip, 2.0, tmp_path / "out")
    assert [p.name for p in pieces] == [f"five s_chunk{i:03d}.mp4" for i in range(3)]
    seen = []
    for piece in pieces:
        with av.open(str(piece)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            seen.append([read_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)])
    assert [len(s) for s in seen] == [20, 20, 10]
    assert [i for piece in seen for i in piece] == list(range(50))
    assert not list((tmp_path / "out").glob("*.part"))
    with pytest.raises(ValueError):
        video.chunk_video(clip, 0, tmp_path / "out")


# ------------------------------------------------------------------ skipping non-reference frames


def _write_coded_clip(path, codec, options, n_frames=150, fps=30, size=(64, 48)):
    """Index-pattern frames with codec options write_test_video does not expose (open GOPs,
    deeper B-pyramids, HEVC)."""
    from fractions import Fraction

    from tests.support import index_pattern

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(i, *size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def bframe_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("bframes")
    x264 = "scenecut=0:keyint={k}:min-keyint={k}:bframes={b}:b-pyramid={p}:open-gop={o}:crf=10"
    return {
        "h264_bpyramid": _write_coded_clip(d / "pyr.mp4", "libx264", {"x264-params": x264.format(
            k=30, b=3, p="normal", o=0)}),
        "h264_open_gop": _write_coded_clip(d / "open.mp4", "libx264", {"x264-params": x264.format(
            k=24, b=3, p="normal", o=1)}),
        "h264_plain_b_mkv": _write_coded_clip(d / "plainb.mkv", "libx264", {"x264-params": x264.format(
            k=30, b=2, p="none", o=0)}),
        "hevc_bpyramid": _write_coded_clip(d / "hevc.mp4", "libx265", {"x265-params": (
            "keyint=30:min-keyint=30:scenecut=0:bframes=4:b-pyramid=1:crf=10:log-level=error")}),
        "hevc_open_gop": _write_coded_clip(d / "hevc_open.mkv", "libx265", {"x265-params": (
            "keyint=24:min-keyint=24:scenecut=0:bframes=3:open-gop=1:crf=10:log-level=error")}),
        "mpeg4_b": _write_coded_clip(d / "b.avi", "mpeg4", {"g": "30", "bf": "2", "q": "2"}),
        "vp9_altref": _write_coded_clip(d / "alt.webm", "libvpx-vp9", {"g": "30", "crf": "10", "b": "0",
                                                                        "auto-alt-ref": "1", "lag-in-frames": "16"}),
    }


def _frames_decoded(path, want_pts):
    errors = []
    with video_container.open_video(str(path)) as container:
        stream = video_container.video_stream(container, str(path))
        return sum(1 for _ in video_container.iter_frames(container, stream, errors, want_pts)), errors


@pytest.mark.parametrize("name", ["h264_bpyramid", "h264_open_gop", "hevc_bpyramid", "mpeg4_b"])
def test_skipping_discards_nonref_frames(bframe_clips, name):
    total, errors = _frames_decoded(bframe_clips[name], None)
    skipped, skip_errors = _frames_decoded(bframe_clips[name], set())
    assert total == 150 and not errors and not skip_errors
    assert skipped < total * 0.8  # the B-frames nothing references were not decoded


@pytest.mark.parametrize("frame_threads", [False, True])
@pytest.mark.parametrize("name", ["h264_bpyramid", "h264_open_gop", "h264_plain_b_mkv", "hevc_bpyramid",
                                  "hevc_open_gop", "mpeg4_b", "vp9_altref"])
def test_skipping_nonref_frames_gives_the_reference_frames(bframe_clips, name, frame_threads, monkeypatch):
    """Decoding with and without skip_frame=NONREF, by every strategy, in both threading modes,
    returns bit-identical frames for the same indices as the plain sequential reference."""
    path = str(bframe_clips[name])
    monkeypatch.setattr(video_container, "FRAME_THREADS_MIN_PIXELS", 0 if frame_threads else 10**12)
    monkeypatch.setattr(video_container, "FRAME_THREADS_MIN_CPUS", 1)
    assert video_container.use_frame_threads(64, 48) == frame_threads
    monkeypatch.setattr(video_decode, "SKIP_NONREF_MIN_PIXELS", 0)
    layout = video_scan.scan(path)
    codec_skips = layout.info.codec in video_decode.SKIP_NONREF_CODECS
    assert video_decode.skips_nonref(layout) == codec_skips
    specs = [SamplingSpec(num_frames=8, width=64, height=48),
             SamplingSpec(sampling="fps", fps=6.0, max_frames=32, width=64, height=48),
             SamplingSpec(num_frames=150, width=64, height=48)]
    for spec in specs:
        reference = video._sample_uncached(path, spec, strategy="reference")
        assert [read_index(f) for f in reference.frames] == reference.indices
        for strategy in ("auto", "seek", "sequential"):
            got = video._sample_uncached(path, spec, strategy=strategy)
            assert got.indices == reference.indices, (spec, strategy)
            assert np.array_equal(got.frames, reference.frames), (spec, strategy)


def test_skipping_does_not_fall_back_on_h264(bframe_clips, monkeypatch):
    """Skipping is not a no-op that silently falls back: both fast paths succeed on their own."""
    path = str(bframe_clips["h264_bpyramid"])
    monkeypatch.setattr(video_decode, "SKIP_NONREF_MIN_PIXELS", 0)
    spec = SamplingSpec(sampling="fps", fps=6.0, max_frames=32, width=64, height=48)
    reference = video._sample_uncached(path, spec, strategy="reference")

    def must_not_run(*args, **kwargs):
        raise AssertionError("fell back to the plain sequential decode")

    monkeypatch.setattr(video_decode, "decode_sequential", must_not_run)
    for strategy in ("seek", "sequential"):
        got = video._sample_uncached(path, spec, strategy=strategy)
        assert np.array_equal(got.frames, reference.frames) and got.indices == reference.indices


def test_skipping_and_rewind_misses_fall_back_to_the_reference(clips, bframe_clips, monkeypatch, caplog):
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    path = str(bframe_clips["h264_bpyramid"])
    reference = video._sample_uncached(path, spec, strategy="reference")
    monkeypatch.setattr(video_decode, "SKIP_NONREF_MIN_PIXELS", 0)

    def miss(*args, **kwargs):
        raise video_decode.SeekMiss("simulated")

    with monkeypatch.context() as m:
        m.setattr(video_decode, "decode_sequential_skipping", miss)
        got = video._sample_uncached(path, spec, strategy="sequential")
    assert np.array_equal(got.frames, reference.frames) and got.indices == reference.indices

    # a rewound container whose first frame is not the first frame: open the file again
    real = video_decode.decode_sequential
    monkeypatch.setattr(video_decode, "SKIP_NONREF_MIN_PIXELS", 10**12)

    def wrong_first(container, stream, wanted, convert, path, first_pts=None):
        return real(container, stream, wanted, convert, path, None if first_pts is None else first_pts + 1)

    monkeypatch.setattr(video_decode, "decode_sequential", wrong_first)
    with caplog.at_level(logging.INFO, logger="core.video.decode"):
        got = video._sample_uncached(path, spec, strategy="sequential")
    assert np.array_equal(got.frames, reference.frames) and "opening the file again" in caplog.text


def test_one_open_per_sample(clips, monkeypatch):
    opened = []
    real = video_container.av.open

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(video_container.av, "open", counting)
    for name in ("short", "long_gop30", "mkv"):
        opened.clear()
        video.sample_frames(clips[name], SamplingSpec(num_frames=8, width=32, height=32), use_cache=False)
        assert len(opened) == 1, name


@pytest.mark.parametrize("name", ["h264_bpyramid", "hevc_open_gop", "vp9_altref"])
def test_threading_mode_does_not_change_frames(bframe_clips, name, monkeypatch):
    spec = SamplingSpec(num_frames=150, width=64, height=48)
    by_mode = []
    monkeypatch.setattr(video_container, "FRAME_THREADS_MIN_CPUS", 1)
    for threshold, single in ((0, 0), (10**12, 0), (10**12, 10**12)):  # frame, slice, one thread
        monkeypatch.setattr(video_container, "FRAME_THREADS_MIN_PIXELS", threshold)
        monkeypatch.setattr(video_container, "SINGLE_THREAD_MAX_PIXELS", single)
        by_mode.append(video._sample_uncached(str(bframe_clips[name]), spec, strategy="reference").frames)
    assert np.array_equal(by_mode[0], by_mode[1]) and np.array_equal(by_mode[1], by_mode[2])


def test_refused_rewind_opens_the_file_again(clips):
    class NoSeek:  # a scanned container whose demuxer refuses to seek
        def __init__(self, container):
            self._container = container

        def seek(self, *args, **kwargs):
            raise OSError("seek refused")

        def __getattr__(self, name):
            return getattr(self._container, name)

    path = str(clips["long_gop30"])
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    reference = video._sample_uncached(path, spec, strategy="reference")
    convert = video_rgb.rgb_converter(0, 64, 48)
    with video_scan.open_scanned(path) as (container, stream, layout):
        wanted = sorted(set(sampling.sample_indices(layout.info, spec)))
        got, last = video_decode.decode_wanted(path, layout, wanted, convert, "sequential",
                                               container=NoSeek(container), stream=stream)
    assert last == wanted[-1] and np.array_equal(np.stack([got[i] for i in reference.indices]), reference.frames)


@pytest.mark.parametrize("codec,pix_fmt,size,suffix", [
    ("libx264", "yuv420p", (160, 96), "mp4"), ("libx264", "yuv444p", (161, 97), "mp4"),
    ("libx264", "yuv420p10le", (128, 72), "mkv"), ("mjpeg", "yuvj420p", (160, 120), "mov"),
    ("ffv1", "gray", (80, 60), "mkv"), ("png", "rgb24", (81, 61), "mov"), ("gif", "rgb8", (65, 47), "gif"),
    ("libx264", "yuv420p", (1280, 720), "mp4"),
])
def test_to_rgb24_is_to_ndarray_bit_for_bit(tmp_path, codec, pix_fmt, size, suffix):
    """The shared single-thread reformatter gives the pixels of ``to_ndarray(format="rgb24")``."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    path = tmp_path / f"clip.{suffix}"
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        for _ in range(4):
            img = (rng.integers(0, 128, (h, w, 3)) + np.linspace(0, 127, w)[None, :, None]).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4
    for frame in frames:
        assert np.array_equal(video_rgb.to_rgb24(frame), frame.to_ndarray(format="rgb24"))


@pytest.mark.parametrize("name", ["short", "rotated", "single", "unicode", "moov_end", "webm_vp9"])
def test_small_clip_is_decoded_during_the_scan(clips, name, monkeypatch):
    """A small clip is decoded once, while it is scanned: same frames as the reference, and no
    decoding afterwards."""
    path = str(clips[name])
    with video_scan.open_scanned_decoding(path) as (_container, _stream, layout, decoded):
        expect_decoded = name != "webm_vp9"  # 90 frames: above SCAN_DECODE_MAX_FRAMES
        assert (decoded is not None) == expect_decoded
        if expect_decoded:
            assert len(decoded.frames) == layout.info.frame_count
    for spec in (SamplingSpec(num_frames=8, width=64, height=48),
                 SamplingSpec(sampling="fps", fps=10.0, max_frames=64, width=40, height=30)):
        reference = video._sample_uncached(path, spec, strategy="reference")
        with monkeypatch.context() as m:
            if expect_decoded:
                for fn in ("decode_sequential", "decode_seeking", "decode_sequential_skipping"):
                    m.setattr(video_decode, fn, lambda *a, **k: pytest.fail("decoded again after the scan"))
            got = video.sample_frames(path, spec, use_cache=False)
        assert got.indices == reference.indices and got.timestamps == reference.timestamps
        assert got.info == reference.info and np.array_equal(got.frames, reference.frames)


def test_scan_decoding_stops_past_its_frame_cap(clips, monkeypatch):
    """A container that declares fewer frames than it holds: the scan drops what it decoded and
    the usual decode (rewind or reopen) gives the reference frames."""
    path = str(clips["short"])
    spec = SamplingSpec(num_frames=8, width=64, height=48)
    reference = video._sample_uncached(path, spec, strategy="reference")
    monkeypatch.setattr(video_scan, "scan_decodes", lambda container, stream: True)
    monkeypatch.setattr(video_scan, "SCAN_DECODE_MAX_FRAMES", 10)
    with video_scan.open_scanned_decoding(path) as (_container, _stream, layout, decoded):
        assert decoded is None and layout.info.frame_count == 30
    got = video.sample_frames(path, spec, use_cache=False)
    assert got.indices == reference.indices and np.array_equal(got.frames, reference.frames)


def test_truncated_small_clip_decoded_during_the_scan(tmp_path):
    full = write_test_video(tmp_path / "full.mp4", n_frames=40, gop=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.85)])
    with video_scan.open_scanned_decoding(str(cut)) as (_container, _stream, layout, decoded):
        assert decoded is not None and not layout.info.frame_count_exact
    spec = SamplingSpec(sampling="fps", fps=10.0, max_frames=layout.info.frame_count, width=64, height=48)
    reference = video._sample_uncached(str(cut), spec, strategy="reference")
    got = video.sample_frames(cut, spec, use_cache=False)
    assert got.indices == reference.indices and np.array_equal(got.frames, reference.frames)
