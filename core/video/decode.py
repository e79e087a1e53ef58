"""PyAV plumbing behind ``core.video.frames``: safe opening, the layout scan, the two decoding strategies
and the H.264 chunk writer. Import ``core.video.frames`` instead; this module is its engine room.

What it does:
- refuse what must not reach FFmpeg (missing, non-regular, empty files) and open the rest with
  only the ``file`` protocol and known video demuxers (no network, playlists or image formats),
  with open/read timeouts and a frame-size bound enforced before and during decoding;
- ``scan``: demux every video packet once, without decoding (except until the first frame, to
  read the display matrix), to learn the frame count, keyframes and per-frame pts;
  ``open_scanned`` does the same and keeps the container open, so that ``decode_wanted`` can
  decode from it (one ``av.open`` per sample instead of two: opening probes the stream and was
  ~1 ms of a 10 ms bundled clip);
- ``open_scanned_decoding``: for a small clip (the container declares at most
  ``SCAN_DECODE_MAX_FRAMES`` frames of fewer than ``SCAN_DECODE_MAX_PIXELS`` pixels) the scan
  also decodes every packet as it reads it and keeps the frames (as decoded, not converted), so
  that the sampled ones are picked from that list: one demux pass, no rewind, no frame decoded
  twice (the scan otherwise decodes up to the first frame, then the decode starts over). That is
  the plain sequential decode of the file, in the same order with the same per-packet error
  handling, so the frames are the reference's. The declared count is only trusted to choose:
  past ``SCAN_DECODE_MAX_FRAMES`` packets the kept frames are dropped and the clip is decoded
  as below. Only for ``strategy="auto"``;
- ``decode_wanted``: decode a set of frame indices either sequentially (the reference) or by
  seeking to keyframes, whichever ``seek_plan`` estimates decodes fewer frames. Seeking is
  checked frame by frame (exact pts); any surprise falls back to sequential decoding.

Speed-ups, each verified and each falling back to the plain reference decode on any surprise:
- reusing the scanned container: it is rewound to the first frame's pts, and the first decoded
  frame must carry that pts (else the file is opened again); only for indexed containers;
- threading: one decoding thread for frames under ``SINGLE_THREAD_MAX_PIXELS`` (a thread pool
  per open cost ~0.3 ms of a 160x96 clip, more than slicing saved); otherwise PyAV's default
  slice threading, as transformers and LLaMA-Factory use; FFmpeg
  frame threads ("AUTO") only for frames of at least ``FRAME_THREADS_MIN_PIXELS`` on machines
  with at least ``FRAME_THREADS_MIN_CPUS`` CPUs. Frame threads cost a start-up per open and a
  pipeline that every seek drains; on 2 CPUs even a 40 s 720p x264 clip decoded faster without
  them (fps 2, 2 runs each: seek + skip 1.2-1.27 s vs 1.58-1.66 s, plain full decode
  2.28-2.37 s vs 2.84-3.02 s). With more CPUs they may pay on long sequential decodes; that is
  not measured here, so such machines keep the former "AUTO";
- skipping non-reference frames: while rolling forward to a wanted frame, packets that are not
  wanted are decoded with ``skip_frame = "NONREF"``, so FFmpeg drops the frames nothing else is
  predicted from (most B-frames of an x264 stream) without decoding them. A wanted frame's packet
  is decoded in full, and it can only reference frames that were decoded, so its pixels are the
  reference's. Only for codecs whose NONREF discard is tested here (``SKIP_NONREF_CODECS``), for
  frames of at least ``SKIP_NONREF_MIN_PIXELS`` (on tiny frames it does not pay), and only where
  every frame can be named by its pts. Sequential decoding with skips names frames by pts rank
  instead of counting them; any decoder error, unknown or out-of-order pts or early end redoes
  the decode without skipping. ``strategy="reference"`` turns off reuse and skipping (not the
  threading choice, which does not change pixels: tested) for tests and benches.
- RGB conversion (``to_rgb24``): one ``VideoReformatter`` per thread with ``threads=1``
  instead of ``frame.to_ndarray(format="rgb24")``, which builds a new SwsContext and swscale
  thread pool for every frame (~0.6 ms a 160x96 frame with the other core busy, most of a
  bundled clip's decode; now ~0.01 ms). Same pixels, tested on several pixel formats.

What it does not do: choose which frames to sample (``core.video.frames``), cache (``core.video.cache``),
or use any backend other than PyAV (decord returned wrong frames on real files, FIELD-NOTES).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import stat
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
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
# Frames this large get frame threading (thread_type "AUTO") on machines with this many CPUs;
# otherwise PyAV's default slice threading (see the module docstring for the measurements).
FRAME_THREADS_MIN_PIXELS = 300_000
FRAME_THREADS_MIN_CPUS = 4
# Frames smaller than this are decoded by one thread: on 160x96 clips, starting the slice-thread
# pool per open cost more than it saved (~0.3 ms of ~4.7 ms a bundled clip, 2 CPUs).
SINGLE_THREAD_MAX_PIXELS = 50_000
# Discard unwanted non-reference frames (skip_frame NONREF) for frames this large, these codecs.
SKIP_NONREF_MIN_PIXELS = 300_000
SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "vp9"})
# ``open_scanned_decoding(path)`` decodes every frame during the scan when the
# container declares at most this many frames (stream count, else duration x rate) of fewer
# pixels than this, and keeps them while at most this many packets have been read.
SCAN_DECODE_MAX_FRAMES = 64
SCAN_DECODE_MAX_PIXELS = 300_000
STRATEGIES = ("auto", "seek", "sequential", "reference")
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
    if use_frame_threads(width, height):
        stream.thread_type = "AUTO"  # else PyAV's default: slice threads, no frame-thread start-up
    elif width * height < SINGLE_THREAD_MAX_PIXELS:
        stream.codec_context.thread_count = 1  # no thread pool to start for a tiny frame
    # The decoder itself refuses bigger frames, even where the bitstream contradicts the header.
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
    return stream


def use_frame_threads(width: int, height: int) -> bool:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return width * height >= FRAME_THREADS_MIN_PIXELS and cpus >= FRAME_THREADS_MIN_CPUS


def iter_frames(container, stream, errors: list, want_pts=None):
    """Decoded frames in presentation order. A packet that fails to decode costs only its own
    frames (its error goes to ``errors``); a read error ends the stream like an end of file.
    With ``want_pts`` (a set), packets whose pts is not in it are decoded with
    ``skip_frame="NONREF"``: their frame is dropped unless other frames are predicted from it."""
    ctx = stream.codec_context if want_pts is not None else None
    mode = None
    try:
        for packet in container.demux(stream):
            if ctx is not None:
                new = "NONREF" if packet.size and packet.pts not in want_pts else "DEFAULT"
                if new != mode:
                    ctx.skip_frame = mode = new
            try:
                decoded = packet.decode()
            except AV_ERRORS as exc:
                errors.append(exc)
                continue
            yield from decoded
    except AV_ERRORS as exc:
        errors.append(exc)
    finally:
        if ctx is not None and mode != "DEFAULT":
            ctx.skip_frame = "DEFAULT"


# ----------------------------------------------------------------------------- scanning


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


_reformatters = threading.local()


def to_rgb24(frame) -> np.ndarray:
    """``frame.to_ndarray(format="rgb24")``, bit for bit, without its per-frame costs.

    ``to_ndarray`` gives every frame a new ``VideoReformatter``, i.e. a new SwsContext, and PyAV
    asks swscale for automatic threads, so each frame also started a thread pool: ~0.05 ms per
    160x96 frame on an idle machine and ~0.6 ms (median) with the other core busy, against ~0.01 ms
    here with one reformatter per thread (its SwsContext is set up again only when the frames'
    format or size change) and ``threads=1``. A same-size pixel format conversion is computed row
    by row, so slicing it among threads does not change a pixel (tested against ``to_ndarray``)."""
    reformatter = getattr(_reformatters, "rgb24", None)
    if reformatter is None:
        reformatter = _reformatters.rgb24 = VideoReformatter()
    return reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


def rgb_converter(rotation: int, width: int, height: int):
    """frame -> upright uint8 RGB array of exactly (height, width, 3)."""

    def convert(frame) -> np.ndarray:
        rgb = to_rgb24(frame)
        if rotation:
            rgb = np.rot90(rgb, rotation // 90)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        if image.size != (width, height):
            image = image.resize((width, height), RESAMPLE)
        return np.asarray(image, dtype=np.uint8)

    return convert


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
