"""Video probing, frame-index sampling, frame decoding (with an on-disk cache) and chunking.

What it does:
- ``probe``: count a file's video packets without decoding them (the exact frame count for
  one-frame-per-packet codecs, i.e. all but packed MPEG-4 part 2), its keyframes, frame rate,
  size and display rotation.
- ``uniform_indices`` / ``fps_indices``: pure index samplers that reproduce InternVL's
  ``get_index`` and qwen-vl-utils' ``smart_nframes`` + ``torch.linspace`` exactly.
- ``sample_frames``: decode only the sampled frames as RGB uint8, turn them upright (PyAV does
  not apply the display matrix), resize them to exactly the spec's size with PIL bilinear (which
  averages like an area filter when shrinking; aspect ratio is not kept), and cache them on disk
  by file content + spec (``core.video.cache``), so epochs, compare and export decode once.
- ``chunk_video``: cut a long video into N-second H.264 mp4 pieces.
- Still images (``IMAGE_EXTENSIONS``, by file name) are one-frame samples: ``sample_frames`` on a
  jpg/png returns that one frame, upright (EXIF orientation applied) and resized like a video
  frame, whatever the spec's frame count, so an image dataset trains and predicts with the same
  code (families see it as a one-frame video).

Decoding is PyAV only (opening: ``core.video.container``; the layout scan: ``core.video.scan``;
the decode strategies: ``core.video.decode``; RGB conversion: ``core.video.rgb``). decord is
faster on some files but returned wrong frames on real ones (see core.video.decode), so it is not used.
Sequential decoding is the reference; seeking to the keyframe before each wanted frame is used
when the keyframe layout makes it decode fewer frames (long clips, short GOPs), is verified by
exact pts, and falls back to sequential decoding on any surprise. The file is opened once per
sample (scan, then decode from the same container; a small clip is decoded in full during the
scan, in one demux pass), and on large frames unwanted non-reference frames are discarded
undecoded (``core.video.decode``). Tests check that all of these return the frames of the plain
sequential reference decode (``strategy="reference"``), bit for bit.

Failures: every problem with a file raises ``VideoError`` naming it (missing, folder, FIFO,
empty, not a video, no video stream, frame larger than ``MAX_FRAME_PIXELS``, nothing
decodable); nothing can block (regular files only, read timeouts). A truncated file still
yields what decodes: a wanted index past the last decodable frame gets that last frame, whose
real index is what ``SampledFrames.indices`` reports, and a warning is logged.

What it does not do: audio, subtitles, hardware decoding, or choosing a spec for a model
family (the caller does; the spec travels with the checkpoint).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from core.errors import VideoError
from core.video import cache as frame_cache
from core.video import container as video_container
from core.video import decode as video_decode
from core.video import rgb as video_rgb
from core.video import scan as video_scan
from core.video.container import MAX_FRAME_PIXELS
from core.video.sampling import SamplingSpec, sample_indices
from core.video.scan import VideoInfo

logger = logging.getLogger(__name__)
VIDEO_EXTENSIONS = frozenset((
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m1v", ".m2v", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".asf", ".ogv", ".gif", ".3gp", ".mxf", ".nut", ".y4m", ".ivf",
))
IMAGE_EXTENSIONS = frozenset((".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"))


@dataclass
class SampledFrames:
    frames: np.ndarray  # uint8 [N, H, W, 3] RGB, upright, resized to the spec's size
    indices: list[int]  # source frame index of each frame (presentation order, from 0)
    timestamps: list[float]  # seconds since the first frame
    info: VideoInfo


def is_video_path(path) -> bool:
    """True if the file name has a video extension (does not look inside the file)."""
    return Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path) -> bool:
    """True if the file name has a still-image extension (jpg, png, ...); a GIF counts as a video."""
    return Path(str(path)).suffix.lower() in IMAGE_EXTENSIONS


def is_media_path(path) -> bool:
    """A dataset item: a video or a still image (by file name)."""
    return is_video_path(path) or is_image_path(path)


# ----------------------------------------------------------------------------- files


def probe(path) -> VideoInfo:
    """Frame count, rate, size, keyframes, codec and rotation of a video file (or of a still
    image: one frame, fps 0, codec ``image/<format>``), or VideoError."""
    if is_image_path(path):
        video_container.check_regular_file(str(path))
        return _open_image(str(path))[1]
    return video_scan.scan(path).info


def check_readable(path) -> None:
    """The cheap check training does for every clip before step 1: a regular file that a decoder
    opens, with a video stream within the frame-size limit (or an image whose header parses).
    Nothing is decoded (~1 ms a clip), so a bad file is still reported before training while the
    frames are decoded later, by the data loader. Raises VideoError naming the file."""
    path = str(path)
    if is_image_path(path):
        video_container.check_regular_file(path)
        _open_image(path, decode=False)
        return
    with video_container.open_video(path) as container:
        video_container.video_stream(container, path)


def inspect_video(path, spec: SamplingSpec) -> dict:
    """What `cli.py inspect-video` reports: the probe and the frame indices `spec` picks."""
    info = probe(path)
    return {
        "path": info.path, "frame_count": info.frame_count, "frame_count_exact": info.frame_count_exact,
        "fps": round(info.fps, 3), "duration": round(info.duration, 3), "width": info.width,
        "height": info.height, "keyframe_count": info.keyframe_count, "codec": info.codec,
        "rotation": info.rotation, "sampling": spec.sampling, "indices": sample_indices(info, spec),
    }


def _open_image(path: str, decode: bool = True):
    """(upright RGB PIL image, VideoInfo) of a still image, or VideoError naming the file.
    `decode=False` reads the header only (size limit, format) and returns None."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_FRAME_PIXELS:
                raise VideoError(path, f"image size {img.width}x{img.height} exceeds the limit of "
                                       f"{MAX_FRAME_PIXELS} pixels")
            if not decode:
                return None
            fmt = (img.format or "unknown").lower()
            upright = ImageOps.exif_transpose(img).convert("RGB")
    except UnidentifiedImageError:
        raise VideoError(path, "not a readable image (unrecognised or corrupt data)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise VideoError(path, f"cannot decode the image ({exc})") from None
    info = VideoInfo(path=path, frame_count=1, fps=0.0, duration=0.0, width=upright.width, height=upright.height,
                     keyframe_count=1, codec=f"image/{fmt}", rotation=0, frame_count_exact=True)
    return upright, info


def _sample_image(path: str, spec: SamplingSpec) -> SampledFrames:
    image, info = _open_image(path)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), video_rgb.RESAMPLE)  # as video frames are resized
    return SampledFrames(np.array(image, dtype=np.uint8)[None], [0], [0.0], info)


def _sample_uncached(path: str, spec: SamplingSpec, strategy: str = "auto") -> SampledFrames:
    if is_image_path(path):
        return _sample_image(path, spec)
    # one open: scan (decoding every frame of a small clip as it goes), then decode what is left
    with video_scan.open_scanned_decoding(path, strategy == "auto") as (container, stream, layout, decoded):
        try:
            indices = sample_indices(layout.info, spec)
        except ValueError as exc:
            raise VideoError(path, str(exc)) from None
        convert = video_rgb.rgb_converter(layout.info.rotation, spec.width, spec.height)
        got, last_ok = video_decode.decode_wanted(path, layout, sorted(set(indices)), convert, strategy,
                                                  container=container, stream=stream, decoded=decoded)
    used = [i if i in got else last_ok for i in indices]
    if used != indices:
        logger.warning(
            "%s: only frames 0..%d of %d could be decoded; later sampled frames repeat frame %d",
            path, last_ok, layout.info.frame_count, last_ok,
        )
    timestamps = [video_scan.frame_timestamp(layout, i) for i in used]
    return SampledFrames(np.stack([got[i] for i in used]), used, timestamps, layout.info)


@functools.lru_cache(maxsize=64)
def _spec_dict(spec: SamplingSpec) -> dict:
    """``spec.to_dict()`` once per spec (``dataclasses.asdict`` deep-copies; a cache hit is ~0.1 ms)."""
    return spec.to_dict()


def sample_frames(path, spec: SamplingSpec, use_cache: bool = True) -> SampledFrames:
    """Sampled, upright, resized RGB frames of a video (one frame for a still image); cached on
    disk by content + spec."""
    path = str(path)
    video_container.check_regular_file(path)  # before hashing: a FIFO must never be read
    if not use_cache:
        return _sample_uncached(path, spec)
    try:
        key = frame_cache.cache_key(frame_cache.file_digest(path), _spec_dict(spec))
    except OSError as exc:
        raise VideoError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    hit = frame_cache.load(key)
    if hit is not None:
        try:
            info = VideoInfo(**{**hit["meta"]["info"], "path": path})
            if hit["frames"].shape[1:3] == (spec.height, spec.width):
                return SampledFrames(hit["frames"], hit["indices"], hit["timestamps"], info)
        except (KeyError, TypeError) as exc:
            logger.warning("%s: frame cache entry has an old layout (%s); rebuilding it", path, exc)
    result = _sample_uncached(path, spec)
    meta = {"info": dict(vars(result.info))}  # flat scalars: what dataclasses.asdict gives, ~0.1 ms less
    frame_cache.store(key, result.frames, result.indices, result.timestamps, meta)
    return result


def chunk_video(path, seconds: float, out_dir) -> list[Path]:
    """Split a video into consecutive ``seconds``-long H.264 mp4 pieces named
    ``<stem>_chunk000.mp4``, ... in ``out_dir``, in order. A piece holds ``round(seconds * fps)``
    frames at the source's average rate (constant frame rate out), upright, cropped to even
    width and height (yuv420p needs them); audio is dropped. Pieces appear only when complete."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    path = str(path)
    layout = video_scan.scan(path)
    info = layout.info
    if not info.fps:
        raise VideoError(path, "unknown frame rate: cannot cut it into seconds")
    rate = layout.rate or Fraction(info.fps).limit_denominator(1001)
    per_chunk = max(1, round(seconds * info.fps))
    width, height = info.width - info.width % 2, info.height - info.height % 2
    if width < 2 or height < 2:
        raise VideoError(path, f"frame size {info.width}x{info.height} is too small to encode")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    turns = info.rotation // 90
    written, writer = [], None
    try:
        with video_container.open_video(path) as container:
            stream = video_container.video_stream(container, path)
            for i, frame in enumerate(video_container.iter_frames(container, stream, [])):
                if i % per_chunk == 0:
                    if writer is not None:
                        written.append(writer.close())
                    name = f"{Path(path).stem}_chunk{i // per_chunk:03d}.mp4"
                    writer = video_rgb.ChunkWriter(out_dir / name, rate, width, height)
                rgb = np.rot90(video_rgb.to_rgb24(frame), turns)
                writer.write(np.ascontiguousarray(rgb[:height, :width]))
            if writer is not None:
                written.append(writer.close())
                writer = None
    except video_container.AV_ERRORS as exc:
        raise VideoError(path, f"chunking failed ({exc})") from exc
    finally:
        if writer is not None:
            writer.abort()
    if not written:
        raise VideoError(path, "no frame could be decoded")
    return written
