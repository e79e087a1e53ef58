"""Gallery thumbnails: the middle frame of a clip as a small JPEG, cached by file content.

Returns None for a clip that cannot be decoded; the gallery then shows a placeholder, so one bad
file never breaks the page. Does not sample training frames (core.video.frames does).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from core.errors import VideoError
from core.paths import cache_dir
from core.video.cache import file_digest
from core.video.frames import sample_frames
from core.video.sampling import SamplingSpec

log = logging.getLogger(__name__)

THUMB_SIZE = (160, 96)


def thumbnail(path) -> Path | None:
    path = Path(path)
    if not path.is_file():  # a FIFO or device must never be read for hashing: it could block forever
        return None
    try:
        key = file_digest(path)
    except OSError:
        return None
    out = cache_dir() / "thumbs" / f"{key[:24]}.jpg"
    if out.is_file():
        return out
    try:
        # one uniform frame is the segment midpoint: the middle of the clip
        frames = sample_frames(path, SamplingSpec(num_frames=1, width=THUMB_SIZE[0], height=THUMB_SIZE[1]),
                               use_cache=False)
    except VideoError as exc:
        log.info("no thumbnail: %s", exc)
        return None
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    # a unique temp name: two gallery refreshes may make the same thumbnail at once
    fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp.jpg", dir=out.parent)
    with os.fdopen(fd, "wb") as fh:
        Image.fromarray(frames.frames[0]).save(fh, format="JPEG", quality=85)
    os.replace(tmp, out)
    return out
