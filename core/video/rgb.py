"""RGB arrays in and out of PyAV: decoded frames to upright, resized uint8 RGB, and RGB frames to
H.264 mp4 pieces. Import ``core.video.frames`` instead; this module is part of its engine room.

What it does:
- ``to_rgb24``: one ``VideoReformatter`` per thread with ``threads=1`` instead of
  ``frame.to_ndarray(format="rgb24")``, which builds a new SwsContext and swscale thread pool
  for every frame (~0.6 ms a 160x96 frame with the other core busy, most of a bundled clip's
  decode; now ~0.01 ms). Same pixels, tested on several pixel formats;
- ``rgb_converter``: frame -> upright RGB of exactly the wanted size (PIL bilinear, ``RESAMPLE``),
  the ``convert`` that ``core.video.decode.decode_wanted`` applies to each wanted frame;
- ``ChunkWriter``: one H.264/yuv420p mp4 piece of ``core.video.frames.chunk_video``, written
  under a temporary name and renamed when complete.

What it does not do: open or decode a video (``core.video.container``, ``core.video.decode``),
or choose which frames to convert.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from core.video.container import AV_ERRORS

# PIL bilinear widens its kernel when shrinking, so it averages like an area filter.
RESAMPLE = Image.Resampling.BILINEAR
CHUNK_CRF = "18"
CHUNK_PRESET = "veryfast"


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
