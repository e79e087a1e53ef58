"""Which frame indices a clip is sampled at: pure functions, no decoding.

`SamplingSpec` is the sampler a model is trained and served with (mode, frame count or fps with
bounds, output size), recorded in the preprocessing spec. `uniform_indices` reproduces InternVL's
segment mid-points, `fps_indices` qwen-vl-utils' `smart_nframes` + `torch.linspace` rounding
(without torch); `sample_indices` picks by the spec. Decoding is core.video.frames'.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

# The sampler's defaults: the one home of what training, serving and the form start from
# (core.config's fields and every model family take them from here).
UNIFORM_FRAMES = 8  # uniform: frames per clip
FPS = 2.0  # fps: frames per second of video
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 32  # fps: a 16 s clip at 2 fps; longer clips are spread over 32 frames
# qwen-vl-utils vision_process.py: its frame factor, and the cap fps_indices' defaults reproduce (its
# 768 frames would be hours of visual tokens on the models trained here; SamplingSpec caps at 32)
FRAME_FACTOR = 2
QWEN_FPS_MAX_FRAMES = 768
SAMPLING_MODES = ("uniform", "fps")
MAX_OUTPUT_SIDE = 4096


@dataclass(frozen=True)
class SamplingSpec:
    """How frames are picked and sized. Recorded with every checkpoint and cache entry."""

    sampling: str = "uniform"  # "uniform" (InternVL segment midpoints) | "fps" (Qwen)
    num_frames: int = UNIFORM_FRAMES  # uniform: frames per clip
    fps: float = FPS  # fps: frames to take per second of video
    min_frames: int = FPS_MIN_FRAMES  # fps: lower clamp (rounded up to FRAME_FACTOR)
    max_frames: int = FPS_MAX_FRAMES  # fps: upper clamp (rounded down to FRAME_FACTOR)
    width: int = 64  # output frame width in pixels (plain resize after decoding)
    height: int = 64  # output frame height in pixels

    def __post_init__(self):
        for name in ("num_frames", "min_frames", "max_frames", "width", "height"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "fps", float(self.fps))  # 2 and 2.0 must give one cache key
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, not {self.sampling!r}")
        if self.num_frames < 1 or self.min_frames < 1 or self.max_frames < self.min_frames:
            raise ConfigError(f"need frames >= 1 and 1 <= min_frames <= max_frames, not frames {self.num_frames}, "
                              f"min_frames {self.min_frames}, max_frames {self.max_frames}")
        if not self.fps > 0:
            raise ConfigError(f"fps must be positive, not {self.fps}")
        if not (1 <= self.width <= MAX_OUTPUT_SIDE and 1 <= self.height <= MAX_OUTPUT_SIDE):
            raise ConfigError(f"frame width and height must be within 1..{MAX_OUTPUT_SIDE}, not {self.width}x{self.height}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> SamplingSpec:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown sampling spec keys: {sorted(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------- sampling


def _ceil_by_factor(number, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number, factor: int) -> int:
    return math.floor(number / factor) * factor


def uniform_indices(total_frames: int, num_frames: int) -> list[int]:
    """Midpoints of ``num_frames`` equal segments, exactly InternVL's ``get_index(bound=None,
    max_frame=total_frames - 1, first_idx=0, num_segments=num_frames)``. When the clip has fewer
    frames than asked for, indices repeat (``uniform_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]``).
    (InternVL also stops at frame ``round(100000 * fps)``, ~28 hours in; we do not.)"""
    if total_frames < 1 or num_frames < 1:
        raise ValueError(f"need total_frames >= 1 and num_frames >= 1, got {total_frames}, {num_frames}")
    seg_size = float(total_frames - 1) / num_frames
    return [int(seg_size / 2 + np.round(seg_size * i)) for i in range(num_frames)]


def _torch_linspace_round(end: int, steps: int) -> list[int]:
    """``torch.linspace(0, end, steps).round().long()`` reproduced with numpy.

    torch (CPU, default float32) computes ``step = float32(end) / float32(steps - 1)`` and
    returns ``step * i`` for the first half and ``end - step * (steps - 1 - i)`` for the second,
    which the compiler fuses into one FMA (a single rounding). A float32 step times an integer
    < 2**24 is exact in float64, so one float64 expression rounded once to float32 is that FMA.
    Checked bit-for-bit against torch 2.14 (x86_64) on 69k (total, n) pairs up to 2**31 frames;
    plain float64 ``np.linspace`` differs from about 13k frames up. ``np.round`` rounds half to
    even like ``torch.round`` (with an even ``steps`` exact halves cannot occur anyway).
    """
    if steps == 1:
        return [0]
    end32 = np.float32(end)
    step = np.float32(end32 / np.float32(steps - 1))
    i = np.arange(steps)
    first = (np.float64(step) * i).astype(np.float32)
    second = (np.float64(end32) - np.float64(step) * (steps - 1 - i)).astype(np.float32)
    return np.round(np.where(i < steps // 2, first, second)).astype(np.int64).tolist()


def fps_indices(
    total_frames: int,
    video_fps: float,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = QWEN_FPS_MAX_FRAMES,
    frame_factor: int = FRAME_FACTOR,
) -> list[int]:
    """qwen-vl-utils ``smart_nframes`` (fps branch), then ``linspace(0, total - 1, n).round()``.

    A clip shorter than ``frame_factor`` frames (qwen-vl-utils raises) gives frame 0 repeated
    ``frame_factor`` times, so a one-frame clip still makes a valid (still) video input.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not video_fps > 0:
        raise ValueError(f"fps sampling needs the video's frame rate, got {video_fps}")
    if total_frames < frame_factor:
        return [0] * frame_factor
    lo = _ceil_by_factor(min_frames, frame_factor)
    hi = _floor_by_factor(min(max_frames, total_frames), frame_factor)
    nframes = total_frames / video_fps * fps
    nframes = min(min(max(nframes, lo), hi), total_frames)
    nframes = _floor_by_factor(nframes, frame_factor)
    if not frame_factor <= nframes <= total_frames:
        raise ValueError(f"fps sampling gives {nframes} frames, outside [{frame_factor}, {total_frames}]")
    return _torch_linspace_round(total_frames - 1, nframes)


def sample_indices(info_or_total, spec: SamplingSpec, video_fps=None) -> list[int]:
    """Frame indices for a spec, from a VideoInfo or a frame count (+ ``video_fps`` in fps mode)."""
    if hasattr(info_or_total, "frame_count"):  # a core.video.scan.VideoInfo (not imported: this module is pure)
        total = info_or_total.frame_count
        video_fps = info_or_total.fps if video_fps is None else video_fps
    else:
        total = int(info_or_total)
    if spec.sampling == "uniform":
        return uniform_indices(total, spec.num_frames)
    return fps_indices(total, video_fps or 0.0, spec.fps, spec.min_frames, spec.max_frames)
