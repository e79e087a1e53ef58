"""An index of the lines of one JSONL file, reused while the file is unchanged, and writes that
re-serialise only the lines that changed.

`LineIndex` reads the file once and keeps, for every non-blank line, its line number, byte span,
text, content key (sha1 of its bytes; the store's revision is its first 12 hex digits) and a
summary made by the caller's `summarize(raw)`. Summaries are looked up by key in a cache the
caller hands in (core.data.index_cache), so a new process parses only lines it has never seen.
The index is trusted while the file's (size, mtime_ns, inode) is the one it last read or wrote;
anything else (a person's editor, another process) makes `sync` read the file again.

`rewrite` copies the unchanged byte ranges from the old file with copy_file_range (in the kernel,
no Python string of the whole file), writes the changed lines, fsyncs and renames over the old
file: what core.fileio.atomic_write_text guarantees (readers and a kill -9 see the old file or the
new one, never half) at the cost of copying bytes, not of parsing and dumping every row. `append`
adds lines at the end with one fsynced write, for logs whose readers take the last line per key.

This module knows nothing about labels, videos or locks: the store takes the lock around writes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Fingerprint = tuple[int, int, int]  # size, mtime_ns, inode
COPY_CHUNK = 1 << 30


def fingerprint(path) -> Fingerprint | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def line_key(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _copy(src: int, dst: int, start: int, end: int) -> None:
    """Bytes [start, end) of src appended to dst; in the kernel where the filesystem allows it."""
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(src, dst, min(end - pos, COPY_CHUNK), pos)
        except OSError:  # EXDEV, ENOSYS, EINVAL on some filesystems: plain reads and writes
            n = os.write(dst, os.pread(src, min(end - pos, 1 << 24), pos))
        if n == 0:
            raise OSError(f"file shrank while being copied (at byte {pos} of {end})")
        pos += n


class LineIndex:
    def __init__(self, path, summarize: Callable[[str], object], cache=None, kind: str = "lines",
                 keep_parsed: bool = False):
        self.path = Path(path)
        self.kind = kind  # the cache's namespace for this file's summaries
        self._summarize = summarize
        # keep_parsed: `summarize` returns (summary, parsed line); the parsed lines are kept by key in
        # `parsed` until the caller is done with them, so a first read parses each line once, not
        # once to summarise, once to check and once to list (0.7 s of 3 at 100,000 rows)
        self.keep_parsed = keep_parsed
        self.parsed: dict[str, object] = {}
        self._cache = cache
        self.fingerprint: Fingerprint | None = None
        self._read_once = False
        self.version = 0  # bumped on every change, so callers can cache what they derive from it
        self.raws: list[str] = []
        self.keys: list[str] = []
        self.numbers: list[int] = []  # 1-based line numbers, blank lines counted
        self.summaries: list = []
        self.starts = np.zeros(0, np.int64)
        self.ends = np.zeros(0, np.int64)  # past the line's newline (if it has one)
        self._size = 0
        self._lines = 0  # physical lines in the file
        self._newline_at_end = True

    def __len__(self) -> int:
        return len(self.raws)

    def sync(self) -> bool:
        """Read the file again when someone else changed it since this index read or wrote it."""
        if self._read_once and fingerprint(self.path) == self.fingerprint:
            return False
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())  # of the file read, even if it is replaced meanwhile
                data = fh.read()
            fp = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            data, fp = b"", None
        known = self._cache.summaries(self.kind) if self._cache else {}
        fresh, self.parsed = {}, {}
        raws, keys, numbers, summaries, starts, ends = [], [], [], [], [], []
        sha1, summary_of, size = hashlib.sha1, self._summary, len(data)  # locals: this loop runs per line
        pos = 0
        chunks = data.split(b"\n")
        for n, chunk in enumerate(chunks, 1):
            end = pos + len(chunk) + 1
            if chunk and not chunk.isspace():
                key = sha1(chunk).hexdigest()  # line_key, inlined
                raw = chunk.decode("utf-8", errors="replace")
                summary = known.get(key)
                if summary is None:
                    summary = fresh[key] = summary_of(key, raw)
                raws.append(raw)
                keys.append(key)
                numbers.append(n)
                summaries.append(summary)
                starts.append(pos)
                ends.append(end if end <= size else size)
            pos = end
        if fresh and self._cache:
            self._cache.put_summaries(self.kind, fresh)
        self.raws, self.keys, self.numbers, self.summaries = raws, keys, numbers, summaries
        self.starts, self.ends = np.array(starts, np.int64), np.array(ends, np.int64)
        self._size, self.fingerprint, self._read_once = len(data), fp, True
        self._newline_at_end = not data or data.endswith(b"\n")
        self._lines = len(chunks) - (1 if self._newline_at_end else 0)
        self.version += 1

    # ------------------------------------------------------------------ writing

    def rewrite(self, changes: dict[int, str], appends: list[str] = ()) -> list[str]:
        """Replace lines (entry index -> new text) and add lines at the end, atomically; returns the
        new lines' keys (changes in index order, then appends). The caller holds the lock and has
        just called `sync`."""
        order = sorted(changes)
        encoded = {i: changes[i].encode("utf-8") for i in order}
        added = [a.encode("utf-8") for a in appends]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            src = os.open(self.path, os.O_RDONLY) if self.fingerprint else None
            try:
                if src is not None:
                    os.fchmod(fd, os.fstat(src).st_mode & 0o777)
                pos = 0
                for i in order:
                    _copy(src, fd, pos, int(self.starts[i]))
                    os.write(fd, encoded[i] + b"\n")
                    pos = int(self.ends[i])
                if src is not None:
                    _copy(src, fd, pos, self._size)
            finally:
                if src is not None:
                    os.close(src)
            tail_newline = self._newline_at_end or (bool(order) and int(self.ends[order[-1]]) >= self._size)
            if added:
                os.write(fd, (b"" if tail_newline else b"\n") + b"".join(a + b"\n" for a in added))
            os.fsync(fd)
            st = os.fstat(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        keys = self._apply(encoded, added, st, tail_newline)
        return keys

    def append(self, lines: list[str]) -> list[str]:
        """Add lines at the end with one fsynced write (no rename); returns their keys."""
        added = [a.encode("utf-8") for a in lines]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (b"" if self._newline_at_end else b"\n") + b"".join(a + b"\n" for a in added))
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return self._apply({}, added, st, self._newline_at_end)

    def _apply(self, encoded: dict[int, bytes], added: list[bytes], st, tail_newline: bool) -> list[str]:
        """The index after a write of ours: changed lines in place, byte spans shifted, lines added."""
        keys = []
        if encoded:
            delta = np.zeros(len(self.raws), np.int64)
            for i, data in encoded.items():
                delta[i] = len(data) + 1 - int(self.ends[i] - self.starts[i])
                self._set(i, data)
                keys.append(self.keys[i])
            shift = np.cumsum(delta)
            self.starts += shift - delta
            self.ends += shift
        pos = int(st.st_size) - sum(len(a) + 1 for a in added)
        number = self._lines  # a missing final newline is written before the new lines
        new_starts = []
        for data in added:
            number += 1
            self.raws.append("")
            self.keys.append("")
            self.summaries.append(None)
            self.numbers.append(number)
            self._set(len(self.raws) - 1, data)
            keys.append(self.keys[-1])
            new_starts.append(pos)
            pos += len(data) + 1
        if added:
            self.starts = np.concatenate([self.starts, np.array(new_starts, np.int64)])
            self.ends = np.concatenate([self.ends, np.array(new_starts, np.int64) + [len(a) + 1 for a in added]])
            self._lines = number
        self._size = int(st.st_size)
        self._newline_at_end = True
        self.fingerprint = (st.st_size, st.st_mtime_ns, st.st_ino)
        self.version += 1
        return keys

    def _summary(self, key: str, raw: str):
        out = self._summarize(raw)
        if self.keep_parsed:
            out, self.parsed[key] = out
        return out

    def _set(self, i: int, data: bytes) -> None:
        key = line_key(data)
        raw = data.decode("utf-8", errors="replace")
        summary = self._cache.summaries(self.kind).get(key) if self._cache else None
        if summary is None:
            summary = self._summary(key, raw)
            if self._cache:
                self._cache.put_summaries(self.kind, {key: summary})
        self.raws[i], self.keys[i], self.summaries[i] = raw, key, summary
