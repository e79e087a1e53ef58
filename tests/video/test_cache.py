"""Tests for core.video.cache: the raw entry format (never unpickled, bad entries are misses) and
the persistent file-digest index."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest

from core.video import cache as frame_cache


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("VVW_CACHE_DIR", str(tmp_path / "cache"))
    frame_cache.forget_memo()
    yield
    frame_cache.forget_memo()


def _entry(seed=0, n=3):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(n, 5, 7, 3), dtype=np.uint8)
    return frames, list(range(0, 2 * n, 2)), [0.1 * i + 1 / 3 for i in range(n)], {"info": {"fps": 29.97, "codec": "h264"}}


def test_round_trip_is_exact_and_writeable():
    frames, indices, timestamps, meta = _entry()
    path = frame_cache.store("k" * 64, frames, indices, timestamps, meta)
    assert path is not None and path.suffix == frame_cache.ENTRY_SUFFIX
    hit = frame_cache.load("k" * 64)
    assert np.array_equal(hit["frames"], frames) and hit["frames"].dtype == np.uint8
    assert hit["indices"] == indices and hit["timestamps"] == timestamps and hit["meta"] == meta
    hit["frames"][0, 0, 0, 0] ^= 1  # callers may modify what they get
    assert frame_cache.load("nope" * 16) is None
    assert not list(path.parent.glob("*.tmp"))


def _corruptions(raw: bytes):
    head_len = int.from_bytes(raw[8:12], "little")
    head = json.loads(raw[12:12 + head_len])

    def with_head(**changes):
        new = json.dumps({**head, **changes}).encode()
        return raw[:8] + len(new).to_bytes(4, "little") + new + raw[12 + head_len:]

    yield "empty", b""
    yield "magic only", raw[:8]
    yield "cut in the header", raw[: 12 + head_len // 2]
    yield "cut in the frames", raw[:-1]
    yield "trailing bytes", raw + b"\0"
    yield "wrong magic", b"X" + raw[1:]
    yield "huge header length", raw[:8] + (2**31).to_bytes(4, "little") + raw[12:]
    yield "header not json", raw[:12] + b"{" * head_len + raw[12 + head_len:]
    yield "header a list", raw[:8] + (2).to_bytes(4, "little") + b"[]" + raw[12 + head_len:]
    yield "other key", with_head(key="0" * 64)
    yield "other dtype", with_head(dtype="float64")
    yield "shape lies (more frames)", with_head(shape=[10**9, 5, 7, 3])
    yield "shape lies (same bytes)", with_head(shape=[3, 7, 5, 3], indices=[0, 2])
    yield "negative shape", with_head(shape=[-3, -5, 7, 3])
    yield "timestamps short", with_head(timestamps=[0.0])
    yield "meta not a mapping", with_head(meta=[1, 2])
    yield "indices not numbers", with_head(indices=["a", "b", "c"])
    yield "a pickle", pickle.dumps({"frames": np.zeros((3, 5, 7, 3), np.uint8)})
    yield "an npz", b"PK\x03\x04" + raw[4:]


def test_corrupt_or_partial_entries_are_misses(monkeypatch):
    key = "c" * 64
    frames, indices, timestamps, meta = _entry()
    path = frame_cache.store(key, frames, indices, timestamps, meta)
    raw = path.read_bytes()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load unpickled something")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    for name, data in _corruptions(raw):
        path.write_bytes(data)
        assert frame_cache.load(key) is None, name
    path.write_bytes(raw)
    assert frame_cache.load(key) is not None
    path.unlink()
    path.mkdir()  # unreadable as a file: a miss too
    assert frame_cache.load(key) is None


def test_entry_renamed_to_another_key_is_a_miss():
    frames, indices, timestamps, meta = _entry()
    path = frame_cache.store("a" * 64, frames, indices, timestamps, meta)
    path.rename(frame_cache.entry_path("b" * 64))
    assert frame_cache.load("b" * 64) is None


def test_cache_key_depends_on_format_version(monkeypatch):
    key = frame_cache.cache_key("d" * 64, {"w": 1})
    monkeypatch.setattr(frame_cache, "CACHE_FORMAT_VERSION", frame_cache.CACHE_FORMAT_VERSION + 1)
    assert frame_cache.cache_key("d" * 64, {"w": 1}) != key


def test_digest_index_spares_a_new_process_the_hash(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"some video bytes" * 1000)
    expected = hashlib.sha256(video.read_bytes()).hexdigest()
    assert frame_cache.file_digest(video) == expected
    index = frame_cache.cache_dir() / frame_cache.DIGEST_INDEX_NAME
    assert index.is_file()

    frame_cache.forget_memo()  # a new process: memo and loaded index are gone

    def no_hashing(path):
        raise AssertionError("re-hashed a file the index knows")

    with monkeypatch.context() as m:
        m.setattr(frame_cache, "_hash_file", no_hashing)
        assert frame_cache.file_digest(video) == expected
        assert frame_cache.file_digest(str(video)) == expected

    video.write_bytes(b"other bytes of the same length!!" * 500)  # changed content: hashed again
    frame_cache.forget_memo()
    assert frame_cache.file_digest(video) == hashlib.sha256(video.read_bytes()).hexdigest()


def _sig_record(path, digest, mtime_delta=0):
    st = path.stat()
    return [str(path.absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns + mtime_delta, st.st_ctime_ns,
            digest]


def test_corrupt_digest_index_is_ignored(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 5000)
    expected = hashlib.sha256(video.read_bytes()).hexdigest()
    index = frame_cache.cache_dir() / frame_cache.DIGEST_INDEX_NAME
    index.write_bytes(b"\x00\xffgarbage\n{not json\n[1,2]\n[[1],2,3,4,5,6,7]\n{\"a\": 1}\n"
                      + json.dumps(_sig_record(video, "not a digest")).encode())
    assert frame_cache.file_digest(video) == expected  # bad lines ignored, digest recomputed
    frame_cache.forget_memo()
    lines = index.read_bytes().splitlines()
    assert json.loads(lines[-1]) == _sig_record(video, expected)  # appended after the garbage
    index.write_bytes(index.read_bytes()[:-20])  # a torn last line: ignored, rehashed
    assert frame_cache.file_digest(video) == expected


def test_stale_index_line_for_other_content_is_not_used(tmp_path):
    """A line whose signature no longer matches the file (rewritten since) is never used."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"y" * 5000)
    index = frame_cache.cache_dir() / frame_cache.DIGEST_INDEX_NAME
    index.write_text(json.dumps(_sig_record(video, "0" * 64, mtime_delta=-1)) + "\n")
    assert frame_cache.file_digest(video) == hashlib.sha256(video.read_bytes()).hexdigest()
    frame_cache.forget_memo()  # the same line with the right signature is used as it is
    index.write_text(json.dumps(_sig_record(video, "0" * 64)) + "\n")
    assert frame_cache.file_digest(video) == "0" * 64


def test_failed_write_leaves_nothing_and_is_not_an_error(monkeypatch):
    frames, indices, timestamps, meta = _entry()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frame_cache.os, "replace", full_disk)
    assert frame_cache.store("e" * 64, frames, indices, timestamps, meta) is None
    assert not list(frame_cache.frames_dir().iterdir())
    assert frame_cache.load("e" * 64) is None


def test_cache_folder_deleted_while_running(tmp_path):
    import shutil

    video = tmp_path / "v.mp4"
    video.write_bytes(b"z" * 3000)
    frames, indices, timestamps, meta = _entry()
    key = frame_cache.cache_key(frame_cache.file_digest(video), {"w": 1})
    frame_cache.store(key, frames, indices, timestamps, meta)
    assert frame_cache.load(key) is not None
    shutil.rmtree(frame_cache.cache_dir())  # the user reclaims space while the app runs
    assert frame_cache.load(key) is None
    other = tmp_path / "w.mp4"
    other.write_bytes(b"w" * 3000)
    assert frame_cache.file_digest(other) == hashlib.sha256(other.read_bytes()).hexdigest()
    assert (frame_cache.cache_dir() / frame_cache.DIGEST_INDEX_NAME).is_file()
    assert frame_cache.store(key, frames, indices, timestamps, meta) is not None
    assert frame_cache.load(key) is not None


def test_entry_folder_deleted_is_made_again_on_store(tmp_path):
    import shutil

    frames, indices, timestamps, meta = _entry()
    assert frame_cache.store("c" * 64, frames, indices, timestamps, meta) is not None
    shutil.rmtree(frame_cache.frames_dir())
    assert frame_cache.store("d" * 64, frames, indices, timestamps, meta) is not None
    hit = frame_cache.load("d" * 64)
    assert hit is not None and np.array_equal(hit["frames"], frames)


def test_write_all_resumes_after_short_writes(tmp_path, monkeypatch):
    """Short writev results (signals, huge entries) continue where they stopped."""
    real = os.writev

    def short(fd, parts):
        return real(fd, [bytes(parts[0][:7])])  # at most 7 bytes a call

    monkeypatch.setattr(frame_cache.os, "writev", short)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        frame_cache._write_all(fd, [b"header-bytes", b"", memoryview(np.arange(50, dtype=np.uint8))])
    finally:
        os.close(fd)
    assert path.read_bytes() == b"header-bytes" + bytes(range(50))


def test_a_file_written_while_hashed_is_not_recorded(tmp_path, monkeypatch):
    video = tmp_path / "growing.mp4"
    video.write_bytes(b"first version" * 100)
    real = frame_cache._hash_file

    def hash_then_append(path):
        digest = real(path)
        with open(path, "ab") as fh:  # a writer still copying the file in
            fh.write(b"more")
        return digest

    frame_cache.forget_memo()
    monkeypatch.setattr(frame_cache, "_hash_file", hash_then_append)
    frame_cache.file_digest(video)
    monkeypatch.undo()
    frame_cache.forget_memo()
    index = frame_cache.cache_dir() / frame_cache.DIGEST_INDEX_NAME
    assert not index.is_file() or str(video.absolute()) not in index.read_text()
    assert frame_cache.file_digest(video) == hashlib.sha256(video.read_bytes()).hexdigest()
