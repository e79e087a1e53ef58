"""On-disk cache of sampled video frames, keyed by file content + sampler spec.

What it does: hash a video file's bytes (sha256, read in 1 MiB chunks), turn (content hash,
sampler spec dict) into a cache key, and store/load the sampled frames for that key under
``cache_dir()/"frames"``.

Layout, chosen for the cost of a hit (on a 3 s 160x96 clip decoding takes ~10 ms, so a hit must
cost well under 1 ms to be worth having):
- one file per entry, ``<key>.frames``: the 8-byte magic ``VVWFRM1\\n``, a 4-byte little-endian
  header length, a UTF-8 JSON header (key, frames shape and dtype, indices, timestamps, meta),
  then the frames as raw C-order uint8 bytes. A hit is one open, an fstat and three reads, the
  last straight into a bytearray (no copy; a writeable array). The former ``.npz`` of four
  arrays cost ~1 ms per hit: a zip directory, CRCs and four ``.npy`` headers parsed with
  ``ast.literal_eval``. Nothing is ever unpickled. A short, long, foreign or otherwise
  inconsistent file is a miss and is rewritten;
- ``digests.jsonl`` in ``cache_dir()``: a persistent (absolute path, device, inode, size,
  mtime_ns, ctime_ns) -> sha256 index, so a new process (each training run, the app) does not
  re-read every video to hash it (sha256 of a 19 MB 720p clip is ~15 ms, more than the rest of a
  hit). It is append-only: each new digest is one line, a JSON list (newline first), written with
  a single ``O_APPEND`` write, so the file is never rewritten and concurrent writers do not lose
  each other's lines; a line that does not parse (a torn write, a corrupt file) is ignored, a
  digest that is not 64 hex digits is recomputed, and a later line for the same file wins. It is
  read once per process; an in-process memo sits in front of it.

What it does not do: decode video (see ``core.video.frames``), evict old entries (the folder is
re-creatable; delete it to reclaim space, including ``.npz`` entries of format version 1), compact
the digest index (one line per new file version; delete it to reset), or lock across processes.
Entry writes are atomic (a temp file in the same folder, then ``os.replace``), so two writers of
the same key at worst both write the same content, and a reader never sees half a file. An entry
is written with one ``writev`` (header and frames), and folders are created only when an open
finds them missing (each syscall was ~0.05-0.08 ms of a ~10 ms first-epoch clip). There is
no ``fsync``: the cache is re-creatable and a torn entry after a crash is already a miss, while
the fsync was a large part of the 2.7 ms a first epoch spent on the cache per bundled clip
(BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import struct
from pathlib import Path

import numpy as np

from core.paths import cache_dir

logger = logging.getLogger(__name__)

# Bump when the stored layout or the decoding that produced the frames changes meaning.
# 2: one raw ``.frames`` file with a JSON header (was a 4-array ``.npz``).
CACHE_FORMAT_VERSION = 2
HASH_CHUNK_BYTES = 1 << 20
ENTRY_SUFFIX = ".frames"
MAGIC = b"VVWFRM1\n"
_HEAD = struct.Struct("<8sI")
MAX_HEADER_BYTES = 16 << 20
DIGEST_INDEX_NAME = "digests.jsonl"
_HEX64 = re.compile(r"[0-9a-f]{64}")

_memo: dict[tuple, str] = {}  # file signature -> digest, this process
_indexes: dict[str, dict[tuple, str]] = {}  # digest index path -> its entries, loaded once
_roots: dict[str | None, Path] = {}  # VVW_CACHE_DIR value -> cache_dir(), for the read paths


def frames_dir() -> Path:
    """The folder that holds the cached entries. Not created here: a missing folder is a miss for
    a reader, and a writer creates it when its first open finds it missing."""
    return _root() / "frames"


# ----------------------------------------------------------------------------- content hashes


def file_digest(path) -> str:
    """sha256 hex digest of the file's bytes; recomputed only when the file's signature (absolute
    path, device, inode, size, mtime, ctime) is in neither the in-process memo nor the persistent
    index. Device + inode identify the file a path or symlink points to (no ``realpath`` lstat
    walk per call); ctime, which no user call can set back, catches in-place rewrites that keep
    size and mtime.

    Raises OSError when the file cannot be read (the caller names the file).
    """
    st = os.stat(path)
    sig = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _memo.get(sig)
    if digest is None:
        index_path = _root() / DIGEST_INDEX_NAME
        index = _load_index(index_path)
        digest = index.get(sig)
        if not _valid_digest(digest):
            digest = _hash_file(sig[0])
            after = os.stat(path)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != sig[3:]:
                return digest  # written to while we read it: the digest may mix versions, keep no record
            index[sig] = digest
            _append_index(index_path, sig, digest)
        if len(_memo) >= 65536:
            _memo.clear()
        _memo[sig] = digest
    return digest


def forget_memo() -> None:
    """Forget the in-process memo and loaded index (what a new process starts with)."""
    _memo.clear()
    _indexes.clear()
    _roots.clear()


def _root() -> Path:
    """``cache_dir()``, memoised per value of VVW_CACHE_DIR: its mkdir costs ~50 us per call, a
    tenth of a cache hit. Only for finding things; writers create their folders themselves."""
    env = os.environ.get("VVW_CACHE_DIR")
    root = _roots.get(env)
    if root is None:
        root = _roots[env] = cache_dir()
    return root


def _hash_file(real_path: str) -> str:
    h = hashlib.sha256()
    with open(real_path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _load_index(index_path: Path) -> dict[tuple, str]:
    """The index as {signature: digest}, read once per process. Each line is a JSON list
    ``[path, dev, ino, size, mtime_ns, ctime_ns, sha256]``; lines are only split here, and a
    digest is checked when it is looked up (``_valid_digest``), which keeps loading cheap."""
    key = str(index_path)
    index = _indexes.get(key)
    if index is None:
        index = {}
        try:
            with open(index_path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        lines = [line for line in data.splitlines() if line.strip()]
        try:  # one parse for an intact file; line by line only when some line is bad
            records = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            records = []
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # torn or foreign line: ignore it
        for rec in records:
            if type(rec) is list and len(rec) == 7:
                try:
                    index[tuple(rec[:6])] = rec[6]
                except TypeError:  # unhashable junk
                    continue
        _indexes[key] = index
    return index


def _valid_digest(digest) -> bool:
    return isinstance(digest, str) and _HEX64.fullmatch(digest) is not None


def _append_index(index_path: Path, sig: tuple, digest: str) -> None:
    # the newline goes first: a line torn by a crash is closed off by the next record
    line = ("\n" + json.dumps([*sig, digest], separators=(",", ":"))).encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        try:
            fd = os.open(index_path, flags, 0o644)
        except FileNotFoundError:  # the cache folder was deleted: make it (a mkdir per call cost ~0.05 ms)
            index_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(index_path, flags, 0o644)
        try:
            os.write(fd, line)  # one write: concurrent appenders do not interleave inside a line
        finally:
            os.close(fd)
    except OSError as exc:  # a read-only cache only loses the speed-up
        logger.warning("could not record a file digest in %s: %s", index_path, exc)


# ----------------------------------------------------------------------------- entries


def cache_key(content_digest: str, spec: dict) -> str:
    """Key of one cache entry: content hash + sampler spec (which includes the output size)."""
    blob = json.dumps(
        {"v": CACHE_FORMAT_VERSION, "content": content_digest, "spec": spec},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def entry_path(key: str) -> Path:
    return frames_dir() / f"{key}{ENTRY_SUFFIX}"


def load(key: str) -> dict | None:
    """Return ``{"frames", "indices", "timestamps", "meta"}`` or None on a miss or a bad entry."""
    path = entry_path(key)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("frame cache entry %s is unreadable (%s); treating it as a miss", path, exc)
        return None
    try:
        with f:
            magic, head_len = _HEAD.unpack(f.read(_HEAD.size))
            if magic != MAGIC or head_len > MAX_HEADER_BYTES:
                raise ValueError("not a frame cache entry")
            head = json.loads(f.read(head_len))
            if head["key"] != key or head["dtype"] != "uint8":
                raise ValueError("entry of another key or dtype")
            shape = tuple(int(d) for d in head["shape"])
            indices = [int(i) for i in head["indices"]]
            timestamps = [float(t) for t in head["timestamps"]]
            meta = head["meta"]
            n = len(indices)
            if len(shape) != 4 or shape[0] != n or shape[3] != 3 or min(shape) < 1 or len(timestamps) != n:
                raise ValueError(f"inconsistent entry: frames {shape}, {n} indices, {len(timestamps)} timestamps")
            if not isinstance(meta, dict):
                raise ValueError("meta is not a mapping")
            nbytes = shape[0] * shape[1] * shape[2] * shape[3]
            if os.fstat(f.fileno()).st_size != _HEAD.size + head_len + nbytes:
                raise ValueError("frame data is truncated or too long")
            buf = bytearray(nbytes)
            if f.readinto(buf) != nbytes:
                raise ValueError("frame data is truncated")
        frames = np.frombuffer(buf, dtype=np.uint8).reshape(shape)
        return {"frames": frames, "indices": indices, "timestamps": timestamps, "meta": meta}
    except (OSError, ValueError, TypeError, KeyError, struct.error, RecursionError) as exc:  # a miss; caller rewrites
        logger.warning("frame cache entry %s is unreadable (%s); treating it as a miss", path, exc)
        return None


def store(key: str, frames: np.ndarray, indices, timestamps, meta: dict) -> Path | None:
    """Write one entry atomically. Returns its path, or None if the cache could not be written
    (a full or read-only disk must not fail the caller: it only loses the speed-up)."""
    final = entry_path(key)
    folder = final.parent
    created = None
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    head = json.dumps({
        "v": CACHE_FORMAT_VERSION, "key": key, "dtype": "uint8", "shape": list(frames.shape),
        "indices": [int(i) for i in indices], "timestamps": [float(t) for t in timestamps], "meta": meta,
    }, sort_keys=True, separators=(",", ":")).encode("utf-8")
    try:
        tmp = folder / f".{key[:16]}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # first entry, or the folder was deleted: make it only then
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        created = tmp
        try:
            _write_all(fd, [_HEAD.pack(MAGIC, len(head)) + head, memoryview(frames).cast("B")])
        finally:
            os.close(fd)
        os.replace(tmp, final)  # no fsync: a torn entry after a crash is a miss (see above)
        return final
    except OSError as exc:
        logger.warning("could not write frame cache entry %s: %s", final, exc)
        if created is not None:
            created.unlink(missing_ok=True)
        return None


def _write_all(fd: int, parts: list) -> None:
    """Write ``parts`` in order: one ``writev`` call where there is one (each write syscall cost
    ~0.05-0.08 ms here), ``write`` otherwise, resuming after short writes."""
    parts = [memoryview(p).cast("B") for p in parts if len(p)]
    writev = getattr(os, "writev", None)
    while parts:
        n = writev(fd, parts) if writev is not None else os.write(fd, parts[0])
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts.pop(0)
        if parts and n:
            parts[0] = parts[0][n:]
