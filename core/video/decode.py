"""Decoding the wanted frames of a scanned clip: the decode strategies. Import ``core.video.frames``
instead; this module is part of its engine room.

What it does:
- ``decode_wanted``: decode a set of frame indices either sequentially (the reference) or by
  seeking to keyframes, whichever ``seek_plan`` estimates decodes fewer frames. Seeking is
  checked frame by frame (exact pts); any surprise falls back to sequential decoding. A small
  clip that ``core.video.scan.open_scanned_decoding`` already decoded is picked from those frames.

Speed-ups, each verified and each falling back to the plain reference decode on any surprise:
- reusing the scanned container: it is rewound to the first frame's pts, and the first decoded
  frame must carry that pts (else the file is opened again); only for indexed containers;
- skipping non-reference frames: while rolling forward to a wanted frame, packets that are not
  wanted are decoded with ``skip_frame = "NONREF"``, so FFmpeg drops the frames nothing else is
  predicted from (most B-frames of an x264 stream) without decoding them. A wanted frame's packet
  is decoded in full, and it can only reference frames that were decoded, so its pixels are the
  reference's. Only for codecs whose NONREF discard is tested here (``SKIP_NONREF_CODECS``), for
  frames of at least ``SKIP_NONREF_MIN_PIXELS`` (on tiny frames it does not pay), and only where
  every frame can be named by its pts. Sequential decoding with skips names frames by pts rank
  instead of counting them; any decoder error, unknown or out-of-order pts or early end redoes
  the decode without skipping. ``strategy="reference"`` turns off reuse and skipping (not the
  threading choice of ``core.video.container``, which does not change pixels: tested) for tests
  and benches.

What it does not do: open files or choose decoder threads (``core.video.container``), scan the
file (``core.video.scan``), convert frames to RGB (``core.video.rgb``; the caller passes
``convert``), choose which frames to sample (``core.video.frames``), cache
(``core.video.cache``), or use any backend other than PyAV (decord returned frames from the wrong
place on an XVID AVI and an MPEG-TS file, and failed on VP9, GIF, Theora and AV1, in a check on 40
real clips).
"""

from __future__ import annotations

import bisect
import logging
import math

import numpy as np

from core.errors import VideoError
from core.video.container import AV_ERRORS, iter_frames, open_video, video_stream
from core.video.scan import DecodedFrames, Layout

logger = logging.getLogger(__name__)

# Cost of one seek (seek, decoder flush, refill) in frames of decoding; tunes seek_plan.
SEEK_PENALTY_FRAMES = 12
# Discard unwanted non-reference frames (skip_frame NONREF) for frames this large, these codecs.
SKIP_NONREF_MIN_PIXELS = 300_000
SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "vp9"})
STRATEGIES = ("auto", "seek", "sequential", "reference")


class SeekMiss(Exception):
    """Seeking did not land exactly on a wanted frame; decode sequentially instead."""


def seek_plan(wanted: list[int], keyframes) -> tuple[list[tuple[int, int | None]], int]:
    """For sorted unique ``wanted`` indices: ``[(index, keyframe to seek to, or None to keep
    decoding forward), ...]`` and the estimated number of frames decoded."""
    plan, cost, pos = [], 0, -1
    for w in wanted:
        j = bisect.bisect_right(keyframes, w) - 1
        seek_cost = w - keyframes[j] + 1 + SEEK_PENALTY_FRAMES if j >= 0 else math.inf
        if seek_cost < w - pos:
            plan.append((w, keyframes[j]))
            cost += seek_cost
        else:
            plan.append((w, None))
            cost += w - pos
        pos = w
    return plan, cost


def use_seeking(layout: Layout, wanted: list[int]) -> bool:
    """Seek when the plan decodes fewer frames than decoding up to the last wanted frame."""
    if not layout.seekable or max(wanted) >= len(layout.pts):
        return False
    return seek_plan(wanted, layout.keyframes)[1] < max(wanted) + 1


def skips_nonref(layout: Layout) -> bool:
    """Whether decoding may discard unwanted non-reference frames (see the module docstring)."""
    info = layout.info
    return (
        info.codec in SKIP_NONREF_CODECS
        and info.width * info.height >= SKIP_NONREF_MIN_PIXELS
        and layout.pts is not None
        and len(set(layout.pts)) == len(layout.pts)
    )


def decode_seeking(container, stream, layout: Layout, wanted, convert, skip: bool = False,
                   rewind: bool = False) -> dict[int, np.ndarray]:
    """Frames for sorted unique ``wanted`` indices by ``seek_plan``, or SeekMiss. ``skip``:
    discard unwanted non-reference frames; ``rewind``: the container was read before (the scan),
    so a plan that starts by decoding forward first seeks to the first frame."""
    got, frames, errors = {}, None, []
    want_pts = {layout.pts[w] for w in wanted} if skip else None
    for w, key in seek_plan(wanted, layout.keyframes)[0]:
        if key is None and frames is None and rewind:
            key = 0
        if key is not None:
            container.seek(layout.pts[key], stream=stream, backward=True, any_frame=False)
            frames = iter_frames(container, stream, errors, want_pts)
        elif frames is None:
            frames = iter_frames(container, stream, errors, want_pts)
        target = layout.pts[w]
        for frame in frames:
            if frame.pts is None or frame.pts > target:
                raise SeekMiss(f"frame {w}: wanted pts {target}, decoder gave {frame.pts}")
            if frame.pts == target:
                got[w] = convert(frame)
                break
        else:
            raise SeekMiss(f"frame {w}: stream ended before pts {target}")
    return got


def decode_sequential(container, stream, wanted, convert, path, first_pts=None) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start up to the last wanted frame: (frames by index, last index reached).
    If the file ends early, the last decoded frame is returned under its own index.
    ``first_pts``: the container was rewound; the first frame must carry this pts, else SeekMiss."""
    errors = []
    return take_sequential(iter_frames(container, stream, errors), errors, wanted, convert, path, first_pts)


def take_sequential(frames, errors: list, wanted, convert, path, first_pts=None) -> tuple[dict[int, np.ndarray], int]:
    """``decode_sequential`` over an iterable of decoded ``frames`` (``errors``: their decoder
    errors, for the message when none decoded)."""
    got, wanted_set, last, index = {}, set(wanted), None, -1
    for frame in frames:
        index += 1
        if index == 0 and first_pts is not None and frame.pts != first_pts:
            raise SeekMiss(f"rewind: first frame has pts {frame.pts}, not {first_pts}")
        last = frame
        if index in wanted_set:
            got[index] = convert(frame)
        if index >= wanted[-1]:
            return got, index
    if last is None:
        hint = f" (last decoder error: {errors[-1]})" if errors else ""
        raise VideoError(path, f"no frame could be decoded{hint}")
    if index not in got:
        got[index] = convert(last)
    return got, index


def decode_sequential_skipping(container, stream, layout: Layout, wanted, convert) -> dict[int, np.ndarray]:
    """``decode_sequential`` from the container's current position (its start), discarding
    unwanted non-reference frames; frames are named by pts rank, since skipped frames cannot be
    counted. Anything the plain decode would treat differently raises SeekMiss: a decoder error,
    a pts that is unknown or not increasing, or the stream ending before the last wanted frame."""
    rank = {p: i for i, p in enumerate(layout.pts)}
    want_pts = {layout.pts[w] for w in wanted}
    got, errors, prev = {}, [], -1
    for frame in iter_frames(container, stream, errors, want_pts):
        index = rank.get(frame.pts)
        if errors or index is None or index <= prev:
            raise SeekMiss(f"skipping: frame pts {frame.pts} after index {prev} ({len(errors)} decoder errors)")
        prev = index
        if frame.pts in want_pts:
            got[index] = convert(frame)
        if index >= wanted[-1]:
            break
    if errors or len(got) != len(want_pts):
        raise SeekMiss(f"skipping: got {len(got)} of {len(want_pts)} frames ({len(errors)} decoder errors)")
    return got


def _rewind(container, stream, layout: Layout, path) -> bool:
    """Seek a scanned container back to its first frame; False (and the caller opens the file
    again) if the demuxer refuses. Where it lands is checked by the decode that follows."""
    try:
        container.seek(layout.pts[0], stream=stream, backward=True, any_frame=False)
        return True
    except AV_ERRORS as exc:
        logger.info("%s: cannot seek back to the start (%s); opening the file again", path, exc)
        return False


def decode_wanted(path, layout: Layout, wanted: list[int], convert, strategy: str = "auto",
                  container=None, stream=None, decoded: DecodedFrames | None = None):
    """Frames for sorted unique ``wanted`` indices: ``(frames by index, last decodable index)``.
    ``strategy``: "auto" (by keyframe layout), "seek" or "sequential" (for tests and benches), or
    "reference": a fresh open, decoded sequentially with no skipping (what the others must equal).
    ``container``/``stream``: from ``open_scanned``, reused instead of opening the file again.
    ``decoded``: from ``open_scanned_decoding``: the clip's frames, already decoded in the order
    of the sequential decode, so nothing is decoded again (ignored by "reference")."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if decoded is not None and strategy != "reference":
        return take_sequential(decoded.frames, decoded.errors, wanted, convert, path)
    reference = strategy == "reference"
    seek = strategy == "seek" or (strategy == "auto" and use_seeking(layout, wanted))
    skip = not reference and skips_nonref(layout)
    reuse = container is not None and not reference
    try:
        if seek and layout.seekable and max(wanted) < len(layout.pts):
            try:
                if reuse:
                    return decode_seeking(container, stream, layout, wanted, convert, skip, rewind=True), max(wanted)
                with open_video(path) as fresh:
                    got = decode_seeking(fresh, video_stream(fresh, path), layout, wanted, convert, skip)
                return got, max(wanted)
            except SeekMiss as miss:
                logger.info("%s: seeking missed (%s); decoding sequentially", path, miss)
        rewound = (reuse and layout.seekable) and _rewind(container, stream, layout, path)
        if skip and max(wanted) < len(layout.pts):
            try:
                if rewound:
                    return decode_sequential_skipping(container, stream, layout, wanted, convert), max(wanted)
                with open_video(path) as fresh:
                    got = decode_sequential_skipping(fresh, video_stream(fresh, path), layout, wanted, convert)
                return got, max(wanted)
            except SeekMiss as miss:
                logger.info("%s: decoding with skipped frames missed (%s); decoding all frames", path, miss)
        elif rewound:
            try:
                return decode_sequential(container, stream, wanted, convert, path, first_pts=layout.pts[0])
            except SeekMiss as miss:
                logger.info("%s: %s; opening the file again", path, miss)
        with open_video(path) as fresh:
            return decode_sequential(fresh, video_stream(fresh, path), wanted, convert, path)
    except (*AV_ERRORS, MemoryError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from exc
