"""Video in: which frames a model sees, decoded once and cached.

Owns frame sampling (pure functions: uniform segment mid-points as InternVL does, fps as Qwen does;
`sampling`), decoding with PyAV (safe opening, bounded frame size and decoder threads:
`container`; the layout scan: `scan`; the decode strategies: `decode`; RGB conversion and chunk
writing: `rgb`; one container open per sample, every failure a VideoError naming the file), the
frame cache keyed by file content + sampler (`cache`), `sample_frames`/`probe`/`check_readable` (the header probe)/`chunk_video` on
top of them (`frames`) and gallery thumbnails (`thumbs`). Never imports torch or a model
library, and knows nothing about labels or schemas: what to do with the frames is the callers'
business.
"""

from core.video.container import MAX_FRAME_PIXELS
from core.video.frames import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    SampledFrames,
    check_readable,
    chunk_video,
    inspect_video,
    is_image_path,
    is_media_path,
    is_video_path,
    probe,
    sample_frames,
)
from core.video.sampling import SAMPLING_MODES, SamplingSpec, fps_indices, sample_indices, uniform_indices
from core.video.scan import VideoInfo
from core.video.thumbs import thumbnail

__all__ = ["IMAGE_EXTENSIONS", "MAX_FRAME_PIXELS", "SAMPLING_MODES", "SampledFrames", "SamplingSpec",
    "VIDEO_EXTENSIONS", "VideoInfo", "check_readable", "chunk_video", "fps_indices", "inspect_video", "is_image_path", "is_media_path", "is_video_path",
    "probe", "sample_frames", "sample_indices", "thumbnail", "uniform_indices"]
