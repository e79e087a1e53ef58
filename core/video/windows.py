"""Consecutive time windows over a long video, each sampled as if it were its own clip.

A model trained on 5-second clips should see a 40-minute recording 5 seconds at a time, with the
frames, count and size its spec says, without anyone cutting files first. `window_bounds` places
the windows (start every `stride` seconds, `window` long; a tail the last full window misses gets
one more window ending at the video's end, so nothing is left unseen; at most `MAX_WINDOWS` per
video, a ConfigError beyond). `iter_windows` decodes the
file once, sequentially, and yields each window as soon as its last wanted frame is decoded, so
memory holds only the windows still open (about window / stride of them), never the whole video.

Each window's `SampledFrames` looks exactly like the window cut out as a file: indices and
timestamps count from the window's first frame and `info` has the window's frame count and
duration, so the processor's video metadata (and Qwen's temporal positions) match training on
clips of that length. Frames are assigned to windows by their timestamp (variable frame rates
included). Not cached: windows are one-off reads of long files.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError, VideoError
from core.video import rgb as video_rgb
from core.video.container import iter_frames, open_video, video_stream
from core.video.frames import SampledFrames
from core.video.sampling import SamplingSpec, sample_indices
from core.video.scan import Layout, frame_timestamp, scan

# per video: each window is one model answer; more than this is a stride typed wrong, and its plan
# alone (a list of every window's frames) would not fit in memory for small enough strides
MAX_WINDOWS = 100_000


@dataclass
class Window:
    start: float  # seconds from the video's first frame
    end: float
    frames: SampledFrames | None = None
    error: str | None = None  # set instead of frames when the window cannot be sampled


def window_bounds(duration: float, window: float, stride: float | None = None, tolerance: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) of each window over `duration` seconds. `tolerance` (half a frame interval)
    absorbs rounding of the duration, so a 40.0 s video in 5 s windows gives 8, not 9."""
    stride = window if stride is None else stride
    if not (window > 0 and stride > 0):
        raise ValueError(f"window and stride must be > 0 seconds, got {window} and {stride}")
    if duration <= window + tolerance:
        return [(0.0, round(duration, 6))]
    count = int((duration + tolerance - window) // stride) + 2  # the full windows and the tail's
    if count > MAX_WINDOWS:
        raise ConfigError(f"{duration:.0f} s in windows every {stride:g} s would be {count} windows, more than "
                          f"{MAX_WINDOWS} per video: use a longer stride (--stride-seconds)")
    bounds, k = [], 0
    while k * stride + window <= duration + tolerance:
        bounds.append((round(k * stride, 6), round(k * stride + window, 6)))
        k += 1
    if bounds[-1][1] < duration - tolerance:  # the tail after the last full window
        bounds.append((round(duration - window, 6), round(duration, 6)))
    return bounds


def _plan(layout: Layout, times: list[float], spec: SamplingSpec, window: float, stride: float | None):
    """Per window: (start, end, first frame index, wanted global indices) or an error text. `times`:
    every frame's timestamp (frame_timestamp), computed once by the caller."""
    info = layout.info
    n = info.frame_count
    interval = (1.0 / info.fps) if info.fps else 0.0
    duration = times[-1] + interval if n else 0.0
    plan = []
    for start, end in window_bounds(duration, window, stride, tolerance=interval / 2):
        lo, hi = bisect.bisect_left(times, start - 1e-9), bisect.bisect_left(times, end - 1e-9)
        if hi <= lo:
            plan.append((start, end, lo, None, "no frame inside this window"))
            continue
        try:
            local = sample_indices(hi - lo, spec, video_fps=info.fps)
        except ValueError as exc:
            plan.append((start, end, lo, None, str(exc)))
            continue
        plan.append((start, end, lo, [lo + i for i in local], None))
    return plan


def _window_frames(layout: Layout, lo: int, wanted: list[int], got: dict, count: int) -> SampledFrames:
    info = layout.info
    base = frame_timestamp(layout, lo)
    window_info = dataclasses.replace(info, frame_count=count, keyframe_count=0, frame_count_exact=True,
                                      duration=count / info.fps if info.fps else info.duration)
    return SampledFrames(np.stack([got[i] for i in wanted]), [i - lo for i in wanted],
                         [frame_timestamp(layout, i) - base for i in wanted], window_info)


def iter_windows(path, spec: SamplingSpec, window: float, stride: float | None = None) -> Iterator[Window]:
    """Windows of `path` in order, each with its frames (or an error). Raises VideoError only when
    the file itself cannot be read; a window past the last decodable frame gets an error."""
    path = str(path)
    layout = scan(path)
    times = [frame_timestamp(layout, i) for i in range(layout.info.frame_count)]
    try:
        plan = _plan(layout, times, spec, window, stride)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    convert = video_rgb.rgb_converter(layout.info.rotation, spec.width, spec.height)
    needed = {i for *_, wanted, _ in plan if wanted for i in wanted}
    got: dict[int, np.ndarray] = {}
    next_window = 0

    def ready(index: int) -> Iterator[Window]:
        """Windows whose last wanted frame is at or before `index`; frames no later window wants are freed."""
        nonlocal next_window
        while next_window < len(plan):
            start, end, lo, wanted, error = plan[next_window]
            if wanted is None:
                yield Window(start, end, error=error)
            elif wanted[-1] <= index:
                hi = bisect.bisect_left(times, end - 1e-9)
                yield Window(start, end, frames=_window_frames(layout, lo, wanted, got, hi - lo))
                # windows start in order, so no later window wants a frame before the next one's first
                keep_from = next((w[0] for *_, w, _ in plan[next_window + 1:] if w), index + 1)
                for i in [i for i in got if i < keep_from]:
                    del got[i]
            else:
                return
            next_window += 1

    errors: list = []
    index = -1
    with open_video(path) as container:
        for index, frame in enumerate(iter_frames(container, video_stream(container, path), errors)):
            if index in needed:
                got[index] = convert(frame)
            yield from ready(index)
            if next_window == len(plan):
                return
    if index < 0:
        raise VideoError(path, "no frame could be decoded" + (f" (last decoder error: {errors[-1]})" if errors else ""))
    for start, end, *_ in plan[next_window:]:
        yield Window(start, end, error=f"the file ends at frame {index}, before this window's frames")
        next_window += 1
