"""Opening a local video file for PyAV, safely, and setting up its decoder: the layer every read of
a video goes through (``core.video.scan``, ``core.video.decode``, ``core.video.frames.chunk_video``).
Import ``core.video.frames`` instead; this module is part of its engine room.

What it does:
- refuse what must not reach FFmpeg (missing, non-regular, empty files) and open the rest with
  only the ``file`` protocol and known video demuxers (no network, playlists or image formats),
  with open/read timeouts and a frame-size bound enforced before and during decoding;
- ``video_stream``: pick the first real video stream and choose its threading: one decoding
  thread for frames under ``SINGLE_THREAD_MAX_PIXELS`` (a thread pool per open cost ~0.3 ms of a
  160x96 clip, more than slicing saved); otherwise PyAV's default slice threading, as
  transformers and LLaMA-Factory use; FFmpeg frame threads ("AUTO") only for frames of at least
  ``FRAME_THREADS_MIN_PIXELS`` on machines with at least ``FRAME_THREADS_MIN_CPUS`` CPUs. Frame
  threads cost a start-up per open and a pipeline that every seek drains; on 2 CPUs even a 40 s
  720p x264 clip decoded faster without them (fps 2, 2 runs each: seek + skip 1.2-1.27 s vs
  1.58-1.66 s, plain full decode 2.28-2.37 s vs 2.84-3.02 s). With more CPUs they may pay on long
  sequential decodes; that is not measured here, so such machines keep the former "AUTO". The
  threading choice does not change pixels (tested);
- ``iter_frames``: decoded frames in presentation order, each packet's decoder error costing only
  its own frames, optionally decoding unwanted packets with ``skip_frame = "NONREF"`` (when that
  is safe is ``core.video.decode``'s decision).

What it does not do: learn a file's layout (``core.video.scan``), choose which frames to decode
or how (``core.video.decode``), convert pixels (``core.video.rgb``), or use any backend other
than PyAV.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import av

from core.errors import VideoError

MAX_FRAME_PIXELS = 8192 * 8192
OPEN_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 15.0
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,asf,ogg,gif,ivf,"
    "m4v,h264,hevc,mxf,nut,yuv4mpegpipe,mpegvideo"
)
# Frames this large get frame threading (thread_type "AUTO") on machines with this many CPUs;
# otherwise PyAV's default slice threading (see the module docstring for the measurements).
FRAME_THREADS_MIN_PIXELS = 300_000
FRAME_THREADS_MIN_CPUS = 4
# Frames smaller than this are decoded by one thread: on 160x96 clips, starting the slice-thread
# pool per open cost more than it saved (~0.3 ms of ~4.7 ms a bundled clip, 2 CPUs).
SINGLE_THREAD_MAX_PIXELS = 50_000

AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)


def file_problem(path, missing: str = "file not found") -> str | None:
    """Why `path` is not a regular, non-empty file a decoder may open (None when it is), named for
    what it is: missing, a folder, a FIFO, a device, a socket (a link says where it points)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken link (its target does not exist)" if os.path.islink(path) else missing
    except PermissionError:
        return "permission denied"
    except (OSError, ValueError) as exc:
        return f"cannot access the file ({exc})"
    if stat.S_ISREG(st.st_mode):
        return "file is empty (0 bytes)" if st.st_size == 0 else None
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a video file"
    kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
    link = f"a link to {os.path.realpath(path)}, " if os.path.islink(path) else ""
    return f"not a regular file ({link}{kind}): it cannot be read as a video"


def check_regular_file(path) -> None:
    """VideoError naming the file unless it is a regular, non-empty file (file_problem)."""
    reason = file_problem(path)
    if reason:
        raise VideoError(path, reason)


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
