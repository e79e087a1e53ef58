"""On-disk cache of sampled video frames, keyed by file content + sampler spec.

What it does: hash a video file's bytes (sha256, read in 1 MiB chunks, memoised in-process by
path, size and mtime), turn (content hash, sampler spec dict) into a cache key, and store/load
the sampled frames for that key as an uncompressed ``.npz`` under ``cache_dir()/"frames"``.

What it does not do: decode video (see ``core.video``), evict old entries (the folder is
re-creatable; delete it to reclaim space), or lock across processes. Writes are atomic (a temp
file in the same folder, then ``os.replace``), so two writers of the same key at worst both write
the same content, and a reader never sees half a file. Loading never unpickles
(``allow_pickle=False``); a corrupt or unreadable entry is a miss, and the caller rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.paths import cache_dir

logger = logging.getLogger(__name__)

# Bump when the stored layout or the decoding that produced the frames changes meaning.
CACHE_FORMAT_VERSION = 1
HASH_CHUNK_BYTES = 1 << 20
_ARRAY_KEYS = ("frames", "indices", "timestamps", "meta")


def frames_dir() -> Path:
    """The folder that holds the cached ``.npz`` files (created on demand)."""
    root = cache_dir() / "frames"
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path) -> str:
    """sha256 hex digest of the file's bytes; recomputed only when size or mtime changes.

    Raises OSError when the file cannot be read (the caller names the file).
    """
    st = os.stat(path)
    return _digest_cached(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _digest_cached(real_path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(real_path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def cache_key(content_digest: str, spec: dict) -> str:
    """Key of one cache entry: content hash + sampler spec (which includes the output size)."""
    blob = json.dumps(
        {"v": CACHE_FORMAT_VERSION, "content": content_digest, "spec": spec},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def entry_path(key: str) -> Path:
    return frames_dir() / f"{key}.npz"


def load(key: str) -> dict | None:
    """Return ``{"frames", "indices", "timestamps", "meta"}`` or None on a miss or a bad entry."""
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in _ARRAY_KEYS}
        frames = data["frames"]
        n = len(data["indices"])
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != n or frames.shape[3] != 3:
            raise ValueError(f"unexpected frames array {frames.dtype} {frames.shape}")
        if len(data["timestamps"]) != n:
            raise ValueError("indices and timestamps differ in length")
        return {
            "frames": frames,
            "indices": [int(i) for i in data["indices"]],
            "timestamps": [float(t) for t in data["timestamps"]],
            "meta": json.loads(str(data["meta"])),
        }
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a miss; caller rewrites
        logger.warning("frame cache entry %s is unreadable (%s); treating it as a miss", path, exc)
        return None


def store(key: str, frames: np.ndarray, indices, timestamps, meta: dict) -> Path | None:
    """Write one entry atomically. Returns its path, or None if the cache could not be written
    (a full or read-only disk must not fail the caller: it only loses the speed-up)."""
    final = entry_path(key)
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(dir=final.parent, prefix=f".{key[:16]}.", suffix=".tmp", delete=False) as f:
            tmp_name = f.name
            np.savez(
                f,
                frames=np.ascontiguousarray(frames, dtype=np.uint8),
                indices=np.asarray(indices, dtype=np.int64),
                timestamps=np.asarray(timestamps, dtype=np.float64),
                meta=np.array(json.dumps(meta, sort_keys=True)),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, final)
        return final
    except OSError as exc:
        logger.warning("could not write frame cache entry %s: %s", final, exc)
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        return None
