"""The layout scan: what a video file holds, learned by demuxing it once. Import
``core.video.frames`` instead; this module is part of its engine room.

What it does:
- ``scan``: demux every video packet once, without decoding (except until the first frame, to
  read the display matrix), to learn the frame count, keyframes and per-frame pts (``Layout``,
  with the ``VideoInfo`` that ``probe`` returns); ``open_scanned`` does the same and keeps the
  container open, so that ``core.video.decode.decode_wanted`` can decode from it (one ``av.open``
  per sample instead of two: opening probes the stream and was ~1 ms of a 10 ms bundled clip);
- ``open_scanned_decoding``: for a small clip (the container declares at most
  ``SCAN_DECODE_MAX_FRAMES`` frames of fewer than ``SCAN_DECODE_MAX_PIXELS`` pixels) the scan
  also decodes every packet as it reads it and keeps the frames (as decoded, not converted), so
  that the sampled ones are picked from that list: one demux pass, no rewind, no frame decoded
  twice (the scan otherwise decodes up to the first frame, then the decode starts over). That is
  the plain sequential decode of the file, in the same order with the same per-packet error
  handling, so the frames are the reference's. The declared count is only trusted to choose:
  past ``SCAN_DECODE_MAX_FRAMES`` packets the kept frames are dropped and the clip is decoded
  as usual. Only for ``strategy="auto"``;
- ``frame_timestamp``: seconds from the first frame, by pts where known.

What it does not do: open files or set up the decoder (``core.video.container``), decode the
wanted frames of a clip that was not decoded during the scan (``core.video.decode``), or convert
pixels (``core.video.rgb``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av

from core.errors import VideoError
from core.video.container import AV_ERRORS, open_video, video_stream

logger = logging.getLogger(__name__)

# The scan decodes at most this many packets to find a first frame (and its rotation).
ROTATION_PROBE_PACKETS = 64
# Demuxers without a frame index seek by byte estimates and often overshoot: decode sequentially.
NO_SEEK_DEMUXERS = frozenset({"mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v", "yuv4mpegpipe", "gif"})
# A raw MPEG-1/2 elementary stream (.m1v/.m2v) has no timestamps of its own: the parser's guesses
# put B-frames a frame off, so its frames are timed by index / frame rate.
UNTIMED_DEMUXERS = frozenset({"mpegvideo"})
# ``open_scanned_decoding(path)`` decodes every frame during the scan when the
# container declares at most this many frames (stream count, else duration x rate) of fewer
# pixels than this, and keeps them while at most this many packets have been read.
SCAN_DECODE_MAX_FRAMES = 64
SCAN_DECODE_MAX_PIXELS = 300_000


@dataclass
class VideoInfo:
    path: str
    frame_count: int  # video packets present (= decodable frames for intact files)
    fps: float  # average frame rate; 0.0 when unknown
    duration: float  # seconds = frame_count / fps (container duration when fps is unknown)
    width: int  # as displayed, i.e. after rotation
    height: int
    keyframe_count: int
    codec: str
    rotation: int  # counter-clockwise degrees applied for display: 0, 90, 180 or 270
    frame_count_exact: bool  # False when the container declares another count (truncated?)


@dataclass(frozen=True)
class Layout:
    """What the scan learns beyond VideoInfo."""

    info: VideoInfo
    pts: tuple | None  # pts of every frame in presentation order; None if a packet had none
    seekable: bool  # indexed container, pts present and unique: frames can be found by pts
    keyframes: tuple  # presentation indices of keyframes
    time_base: Fraction | None
    rate: Fraction | None


def _decode_packet(packet, errors: list) -> list:
    try:
        return packet.decode()
    except AV_ERRORS as exc:
        errors.append(exc)
        return []


def scan(path) -> Layout:
    """Demux all video packets (cheap: no decoding) and describe the file, or VideoError."""
    with open_scanned(path) as (_container, _stream, layout):
        return layout


@contextmanager
def open_scanned(path):
    """``with open_scanned(path) as (container, stream, layout):`` the scan of ``scan`` with the
    container kept open (demuxed to its end) for ``decode_wanted(..., container=, stream=)``."""
    with open_scanned_decoding(path, decode_small=False) as (container, stream, layout, _decoded):
        yield container, stream, layout


@contextmanager
def open_scanned_decoding(path, decode_small: bool = True):
    """``open_scanned`` that also yields ``decoded``: for a small clip (``decode_small`` and
    ``scan_decodes``) every frame the plain sequential decode of the file gives, in its order
    (each packet decoded as the scan reads it, then the decoder flushed), for
    ``decode_wanted(..., decoded=)``; else None."""
    path = str(path)
    with open_video(path) as container:
        stream = video_stream(container, path)
        layout, decoded = _scan(container, stream, path, decode_small and scan_decodes(container, stream))
        yield container, stream, layout, decoded


def scan_decodes(container, stream) -> bool:
    """Whether the scan should decode every frame: small frames, few frames by the container's
    own count (or duration x rate). The count is only an estimate: the scan stops keeping frames
    past ``SCAN_DECODE_MAX_FRAMES`` packets whatever the container said."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height >= SCAN_DECODE_MAX_PIXELS:
        return False
    count = stream.frames
    if not count:
        rate = stream.average_rate or stream.guessed_rate
        if not (rate and container.duration and container.duration > 0):
            return False
        count = container.duration / av.time_base * float(rate)
    return 0 < count <= SCAN_DECODE_MAX_FRAMES


def _scan(container, stream, path: str, keep: bool = False) -> tuple[Layout, DecodedFrames | None]:
    pts, keys, rotation, errors = [], [], None, []
    kept = [] if keep else None
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
            if kept is not None:
                if len(pts) > SCAN_DECODE_MAX_FRAMES:
                    kept = None  # more frames than the container said: decode as usual afterwards
                else:
                    decoded = _decode_packet(packet, errors)
                    if decoded:
                        if rotation is None and len(pts) <= ROTATION_PROBE_PACKETS:
                            rotation = (round(decoded[0].rotation / 90) % 4) * 90
                        kept.extend(decoded)
                    continue
            if rotation is None and len(pts) <= ROTATION_PROBE_PACKETS:
                # decode only until the first frame, which carries the display matrix
                decoded = _decode_packet(packet, errors)
                if decoded:
                    rotation = (round(decoded[0].rotation / 90) % 4) * 90
    except AV_ERRORS as exc:
        logger.warning("%s: stopped reading after %d video packets (%s)", path, len(pts), exc)
    if not pts:
        raise VideoError(path, "no video frames found (empty or truncated stream)")
    declared, n = stream.frames, len(pts)
    if declared and declared != n:
        logger.warning("%s: container declares %d frames but %d are present", path, declared, n)
    rate, tb = stream.average_rate or stream.guessed_rate, stream.time_base
    have_pts = all(p is not None for p in pts) and not UNTIMED_DEMUXERS.intersection(container.format.name.split(","))
    sorted_pts = tuple(sorted(pts)) if have_pts else None
    if rate is None and have_pts and n > 1 and tb and sorted_pts[-1] > sorted_pts[0]:
        rate = Fraction(n - 1) / ((sorted_pts[-1] - sorted_pts[0]) * tb)
    fps = float(rate) if rate else 0.0
    indexed = not NO_SEEK_DEMUXERS.intersection(container.format.name.split(","))
    seekable = indexed and have_pts and tb is not None and len(set(pts)) == n
    if seekable:
        rank = {p: i for i, p in enumerate(sorted_pts)}
        keyframes = tuple(sorted(rank[p] for p, k in zip(pts, keys) if k))
    else:
        keyframes = tuple(i for i, k in enumerate(keys) if k)
    rotation = rotation or 0
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
        width, height = height, width
    info = VideoInfo(
        path=path, frame_count=n, fps=fps,
        duration=n / fps if fps else float(container.duration or 0) / av.time_base,
        width=width, height=height, keyframe_count=sum(keys), codec=stream.codec_context.name,
        rotation=rotation, frame_count_exact=not declared or declared == n,
    )
    layout = Layout(info, sorted_pts, seekable, keyframes, tb, rate)
    return layout, (None if kept is None else DecodedFrames(kept, errors))


@dataclass
class DecodedFrames:
    """Every frame of a clip decoded by the scan, in decoding order, and its decoder errors."""

    frames: list
    errors: list


def frame_timestamp(layout: Layout, index: int) -> float:
    """Seconds from the first frame to frame ``index``."""
    if layout.pts is not None and layout.time_base and index < len(layout.pts):
        return float((layout.pts[index] - layout.pts[0]) * layout.time_base)
    return index / layout.info.fps if layout.info.fps else 0.0
