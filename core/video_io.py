"""PyAV plumbing behind ``core.video``: safe opening, the layout scan, the two decoding strategies
and the H.264 chunk writer. Import ``core.video`` instead; this module is its engine room.

What it does:
- refuse what must not reach FFmpeg (missing, non-regular, empty files) and open the rest with
  only the ``file`` protocol and known video demuxers (no network, playlists or image formats),
  with open/read timeouts and a frame-size bound enforced before and during decoding;
- ``scan``: demux every video packet once, without decoding (except until the first frame, to
  read the display matrix), to learn the frame count, keyframes and per-frame pts;
- ``decode_wanted``: decode a set of frame indices either sequentially (the reference) or by
  seeking to keyframes, whichever ``seek_plan`` estimates decodes fewer frames. Seeking is
  checked frame by frame (exact pts); any surprise falls back to sequential decoding.

What it does not do: choose which frames to sample (``core.video``), cache (``core.frame_cache``),
or use any backend other than PyAV (decord returned wrong frames on real files, FIELD-NOTES).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from core.errors import VideoError

logger = logging.getLogger(__name__)

MAX_FRAME_PIXELS = 8192 * 8192
OPEN_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 15.0
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,gif,ivf,"
    "m4v,h264,hevc,mxf,nut,yuv4mpegpipe"
)
# Cost of one seek (seek, decoder flush, refill) in frames of decoding; tunes seek_plan.
SEEK_PENALTY_FRAMES = 12
# The scan decodes at most this many packets to find a first frame (and its rotation).
ROTATION_PROBE_PACKETS = 64
# Demuxers without a frame index seek by byte estimates and often overshoot: decode sequentially.
NO_SEEK_DEMUXERS = frozenset({"mpegts", "mpeg", "h264", "hevc", "m4v", "yuv4mpegpipe", "gif"})
# PIL bilinear widens its kernel when shrinking, so it averages like an area filter.
RESAMPLE = Image.Resampling.BILINEAR
CHUNK_CRF = "18"
CHUNK_PRESET = "veryfast"

AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)


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


class SeekMiss(Exception):
    """Seeking did not land exactly on a wanted frame; decode sequentially instead."""


# ----------------------------------------------------------------------------- opening


def check_regular_file(path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoError(path, "file not found") from None
    except PermissionError:
        raise VideoError(path, "permission denied") from None
    except (OSError, ValueError) as exc:
        raise VideoError(path, f"cannot access the file ({exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoError(path, "is a folder, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoError(path, "not a regular file (a pipe, socket or device cannot be read as a video)")
    if st.st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")


def _open_reason(exc: Exception) -> str:
    if isinstance(exc, av.error.InvalidDataError):
        return "not a readable video (unrecognised or corrupt data)"
    if isinstance(exc, av.error.ArgumentError):
        return "not a supported video container format"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, (av.error.ExitError, TimeoutError)):
        return "timed out reading the file"
    return f"cannot open as a video ({exc})"


@contextmanager
def open_video(path):
    """``with open_video(path) as container:`` an input container for a local video file, or
    VideoError naming it."""
    check_regular_file(path)  # a FIFO would block inside FFmpeg's open
    try:
        container = av.open(
            "file:" + os.path.abspath(path),  # "file:" so that no file name reads as a protocol
            options={"protocol_whitelist": "file", "format_whitelist": ALLOWED_DEMUXERS},
            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
        )
    except AV_ERRORS as exc:
        raise VideoError(path, _open_reason(exc)) from exc
    try:
        yield container
    finally:
        container.close()


def video_stream(container, path):
    """First real video stream (cover art in audio files does not count), ready to decode."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise VideoError(path, "no video stream (audio-only or data file?)")
    stream = streams[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(path, f"frame size {width}x{height} exceeds the limit of {MAX_FRAME_PIXELS} pixels")
    stream.thread_type = "AUTO"
    # The decoder itself refuses bigger frames, even where the bitstream contradicts the header.
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
    return stream


def iter_frames(container, stream, errors: list):
    """Decoded frames in presentation order. A packet that fails to decode costs only its own
    frames (its error goes to ``errors``); a read error ends the stream like an end of file."""
    try:
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except AV_ERRORS as exc:
                errors.append(exc)
                continue
            yield from decoded
    except AV_ERRORS as exc:
        errors.append(exc)


# ----------------------------------------------------------------------------- scanning


def _decode_packet(packet, errors: list) -> list:
    try:
        return packet.decode()
    except AV_ERRORS as exc:
        errors.append(exc)
        return []


def scan(path) -> Layout:
    """Demux all video packets (cheap: no decoding) and describe the file, or VideoError."""
    path = str(path)
    with open_video(path) as container:
        stream = video_stream(container, path)
        pts, keys, rotation, errors = [], [], None, []
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    pts.append(packet.pts)
                    keys.append(packet.is_keyframe)
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
        have_pts = all(p is not None for p in pts)
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
        return Layout(info, sorted_pts, seekable, keyframes, tb, rate)


def frame_timestamp(layout: Layout, index: int) -> float:
    """Seconds from the first frame to frame ``index``."""
    if layout.pts is not None and layout.time_base and index < len(layout.pts):
        return float((layout.pts[index] - layout.pts[0]) * layout.time_base)
    return index / layout.info.fps if layout.info.fps else 0.0


# ----------------------------------------------------------------------------- decoding


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


def decode_seeking(container, stream, layout: Layout, wanted, convert) -> dict[int, np.ndarray]:
    got, frames, errors = {}, None, []
    for w, key in seek_plan(wanted, layout.keyframes)[0]:
        if key is not None:
            container.seek(layout.pts[key], stream=stream, backward=True, any_frame=False)
            frames = iter_frames(container, stream, errors)
        elif frames is None:
            frames = iter_frames(container, stream, errors)
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


def decode_sequential(container, stream, wanted, convert, path) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start up to the last wanted frame: (frames by index, last index reached).
    If the file ends early, the last decoded frame is returned under its own index."""
    got, wanted_set, last, index, errors = {}, set(wanted), None, -1, []
    for frame in iter_frames(container, stream, errors):
        index += 1
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


def rgb_converter(rotation: int, width: int, height: int):
    """frame -> upright uint8 RGB array of exactly (height, width, 3)."""

    def convert(frame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        if rotation:
            rgb = np.rot90(rgb, rotation // 90)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        if image.size != (width, height):
            image = image.resize((width, height), RESAMPLE)
        return np.asarray(image, dtype=np.uint8)

    return convert


def decode_wanted(path, layout: Layout, wanted: list[int], convert, strategy: str = "auto"):
    """Frames for sorted unique ``wanted`` indices: ``(frames by index, last decodable index)``.
    ``strategy``: "auto" (by keyframe layout), "seek" or "sequential" (for tests and benches)."""
    seek = strategy == "seek" or (strategy == "auto" and use_seeking(layout, wanted))
    try:
        if seek and layout.seekable and max(wanted) < len(layout.pts):
            try:
                with open_video(path) as container:
                    got = decode_seeking(container, video_stream(container, path), layout, wanted, convert)
                return got, max(wanted)
            except SeekMiss as miss:
                logger.info("%s: seeking missed (%s); decoding sequentially", path, miss)
        with open_video(path) as container:
            return decode_sequential(container, video_stream(container, path), wanted, convert, path)
    except (*AV_ERRORS, MemoryError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from exc


# ----------------------------------------------------------------------------- writing


class ChunkWriter:
    """One H.264/yuv420p mp4 piece, written as ``<name>.part`` and renamed when complete."""

    def __init__(self, final: Path, rate: Fraction, width: int, height: int):
        self.final, self.tmp, self.count = final, final.with_name(final.name + ".part"), 0
        self.container = av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"})
        options = {"crf": CHUNK_CRF, "preset": CHUNK_PRESET}
        self.stream = self.container.add_stream("libx264", rate=rate, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.time_base = 1 / Fraction(rate)

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = self.count, self.time_base
        self.count += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> Path:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.container.close()
        except AV_ERRORS:
            pass
        self.tmp.unlink(missing_ok=True)
