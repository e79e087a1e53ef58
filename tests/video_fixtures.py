"""Small generated videos for tests: every frame shows its own index as a grid of black/white
blocks (12 bits, read back with ``read_index`` even after lossy coding and resizing), plus
files that must be refused."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

GRID_ROWS, GRID_COLS = 3, 4  # 12 bits: indices 0..4095


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame whose block (r, c) is white when bit r*GRID_COLS+c of ``index`` is set."""
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(GRID_ROWS * GRID_COLS):
        if index >> bit & 1:
            r, c = divmod(bit, GRID_COLS)
            ys = slice(r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS)
            xs = slice(c * width // GRID_COLS, (c + 1) * width // GRID_COLS)
            frame[ys, xs] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """Inverse of ``index_pattern``: average the middle of each block, threshold at mid-grey."""
    height, width = frame.shape[:2]
    gray = frame.astype(np.float32).mean(axis=2)
    index = 0
    for bit in range(GRID_ROWS * GRID_COLS):
        r, c = divmod(bit, GRID_COLS)
        y0, y1 = r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS
        x0, x1 = c * width // GRID_COLS, (c + 1) * width // GRID_COLS
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if gray[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > 127:
            index |= 1 << bit
    return index


def _codec_options(codec: str, gop: int, bframes: int) -> dict:
    if codec == "libx264":
        return {"x264-params": f"scenecut=0:keyint={gop}:min-keyint={gop}:bframes={bframes}", "crf": "10"}
    if codec == "libvpx-vp9":
        return {"g": str(gop), "keyint_min": str(gop), "crf": "10", "b": "0", "deadline": "realtime"}
    return {"g": str(gop), "bf": str(bframes), "q": "2"}


def write_test_video(
    path,
    n_frames: int = 30,
    fps=10,
    size: tuple[int, int] = (64, 48),
    gop: int = 10,
    codec: str = "libx264",
    moov_at_end: bool = False,
    rotation: int | None = None,
    bframes: int = 2,
) -> Path:
    """Encode ``n_frames`` index-pattern frames; the container follows the file extension.
    ``rotation`` stores a display matrix (counter-clockwise degrees) without turning pixels."""
    path = Path(path)
    width, height = size
    options = {}
    if path.suffix.lower() in (".mp4", ".mov") and not moov_at_end:
        options["movflags"] = "+faststart"
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate, options=_codec_options(codec, gop, bframes))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path) -> Path:
    """A valid mp4 with one AAC stream and no video."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_bad_files(directory) -> dict[str, Path]:
    """Files named like videos that probe/sample_frames must refuse with a VideoError."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bad = {"missing": d / "missing.mp4", "folder": d / "folder.mp4"}
    bad["folder"].mkdir(exist_ok=True)
    if hasattr(os, "mkfifo"):
        bad["fifo"] = d / "pipe.mp4"
        os.mkfifo(bad["fifo"])
    bad["empty"] = d / "empty.mp4"
    bad["empty"].write_bytes(b"")
    bad["text"] = d / "notes.mp4"
    bad["text"].write_text("this is not a video, just some text\n" * 20)
    bad["png"] = d / "picture.mp4"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(bad["png"], format="PNG")
    bad["garbage"] = d / "noise.mp4"
    bad["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    bad["audio_only"] = write_audio_only(d / "audio.mp4")
    full = write_test_video(d / "moov_end_full.mp4", n_frames=20, moov_at_end=True)
    bad["moov_missing"] = d / "moov_end_cut.mp4"
    bad["moov_missing"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return bad
