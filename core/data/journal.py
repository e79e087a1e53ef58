"""`metadata.pending.jsonl`: the store's saves, appended, until they are folded into metadata.jsonl.

Why: keeping "old file or new file, never half" with a plain metadata.jsonl means rewriting and
fsyncing the whole file per save (34 MB at 100,000 rows, ~50 ms, most of it the fsync). A save of
a big dataset instead appends one line here with one small fsync, under the dataset's lock, and
every reader sees metadata.jsonl with these lines applied. The lines are *folded* into
metadata.jsonl (one atomic replace of the whole file, then this file deleted) when enough have
gathered (`due`), before any whole-file operation (import, split, schema change, training, export:
core.data.dataset.settle), and when the app or `cli.py fold` asks. Datasets whose metadata.jsonl is
under `SMALL_FILE` are rewritten on every save as before (that costs what an append costs), so
a small folder's metadata.jsonl is always current.

An entry is one JSON object a line: `{"video": CLIP, "base": KEY, "row": LINE}`: the clip, the
content key (sha1 of the line's bytes; the store's revision is its first 12 hex digits) of the
row it replaces, or "new" when the clip had no row, and the new line. Replaying is idempotent: for
each clip the chain of its entries is matched against the row in the file: a row that already is
the result of some entry (a fold was cut off between the replace and the delete) skips the entries
up to there, a row with the first entry's base gets them all, and any other row (someone edited the
file by hand meanwhile) wins: those entries are *conflicts*, logged, shown by `validate` and kept in
`metadata.conflicts.jsonl` when folded. A line that does not parse (the last one, torn by a kill
during the append: that save never returned) is ignored with a log line.

This module works on bytes and paths only; the caller holds the dataset lock for anything that
writes (the store for its own saves, core.data.dataset.settle for everyone else).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.data.lines import line_key

log = logging.getLogger(__name__)

NEW = "new"  # the base of an entry that adds a clip's first row
FOLD_ENTRIES = 256  # entries before a fold: replaying them costs nothing, a fold ~50 ms at 100k rows
FOLD_RATIO = 32  # ... or once the journal is 1/32 of metadata.jsonl: amortised copy per save <= 32 entries
SMALL_FILE = 256 << 10  # below this metadata.jsonl is rewritten per save (~750 rows: a few ms, like an append)


def pending_path(meta: Path) -> Path:
    return Path(meta).with_name(Path(meta).stem + ".pending.jsonl")


def conflicts_path(meta: Path) -> Path:
    return Path(meta).with_name(Path(meta).stem + ".conflicts.jsonl")


@dataclass(frozen=True)
class Entry:
    video: str
    base: str  # key of the row it replaces, or NEW
    row: str  # the clip's new metadata line

    @property
    def key(self) -> str:
        return line_key(self.row.encode("utf-8"))

    def line(self) -> str:
        return json.dumps({"video": self.video, "base": self.base, "row": self.row}, ensure_ascii=False)


def _entry(text: bytes) -> Entry | None:
    try:
        obj = json.loads(text)
        return Entry(obj["video"], obj["base"], obj["row"]) if all(
            isinstance(obj.get(k), str) for k in ("video", "base", "row")) else None
    except (ValueError, TypeError, AttributeError):
        return None


def read(path: Path, offset: int = 0) -> tuple[list[Entry], int]:
    """Entries from byte `offset` on, and the offset after the last complete line read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    entries = []
    for n, text in enumerate(data[:end].split(b"\n")[:-1], 1):
        entry = _entry(text) if text.strip() else None
        if entry is not None:
            entries.append(entry)
        elif text.strip():
            log.warning("%s: ignored line %d (from byte %d): not a pending edit: %.80r", path, n, offset, text)
    if data[end:].strip():
        # a save cut short by a crash (it never returned), or one being appended right now by another
        # process (read again from here next time, once it is whole)
        log.warning("%s: ignored an incomplete last line (a save cut short, or still being written)", path)
    return entries, offset + end


def append(path: Path, entries: list[Entry]) -> os.stat_result:
    """Add entries with one fsynced write (the caller holds the lock); returns the file's stat after."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        # a torn last line (a killed append) must not swallow this one
        lead = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        os.write(fd, lead + b"".join(e.line().encode("utf-8") + b"\n" for e in entries))
        os.fsync(fd)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if created:  # the new file's name must survive a power cut as well as its bytes
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return st


def due(entries: int, journal_bytes: int, meta_bytes: int) -> bool:
    return entries > 0 and (entries >= FOLD_ENTRIES or meta_bytes < SMALL_FILE
                            or journal_bytes * FOLD_RATIO >= meta_bytes)


def resolve(entries: list[Entry], key_of) -> tuple[dict[str, Entry], list[tuple[Entry, str]]]:
    """(clip -> the entry whose row it should show, in first-seen order; conflicts as (entry, key
    found)). `key_of(clip)`: the key of the clip's row now, or NEW."""
    chains: dict[str, list[Entry]] = {}
    for e in entries:
        chains.setdefault(e.video, []).append(e)
    finals, conflicts = {}, []
    for video, chain in chains.items():
        cur = key_of(video)
        keys = [e.key for e in chain]
        done = max((j + 1 for j, k in enumerate(keys) if k == cur), default=0)  # already applied up to here
        last = None
        for e, k in zip(chain[done:], keys[done:]):
            if e.base != cur:  # the row is not what this edit was based on: the file's version wins
                conflicts += [(x, cur) for x in chain[chain.index(e):]]
                break
            cur, last = k, e
        if last is not None:
            finals[video] = last
    return finals, conflicts


def row_video(raw: str) -> str | None:
    """The clip of a usable metadata line (what core.data.records.summarize_row calls error-free)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    video = obj.get("video", obj.get("file_name")) if isinstance(obj, dict) else None
    return video if isinstance(video, str) else None


def apply(data: bytes, entries: list[Entry]) -> tuple[bytes, list[tuple[Entry, str]]]:
    """metadata.jsonl's bytes with `entries` applied (lines not touched kept byte for byte)."""
    body = data[:-1].split(b"\n") if data.endswith(b"\n") else (data.split(b"\n") if data else [])
    first: dict[str, int] = {}
    for n, chunk in enumerate(body):
        if chunk.strip():
            video = row_video(chunk.decode("utf-8", errors="replace"))
            if video is not None and video not in first:
                first[video] = n
    finals, conflicts = resolve(entries, lambda v: line_key(body[first[v]]) if v in first else NEW)
    appends = []
    for video, e in finals.items():
        if video in first:
            body[first[video]] = e.row.encode("utf-8")
        else:
            appends.append(e.row.encode("utf-8"))
    out = b"\n".join(body + appends)
    return out + (b"\n" if body + appends and (data.endswith(b"\n") or appends) else b""), conflicts


def keep_conflicts(meta: Path, conflicts: list[tuple[Entry, str]]) -> None:
    """Append edits that lost to a hand edit to metadata.conflicts.jsonl (once each), before the fold
    that drops them from the journal; the caller holds the lock."""
    if not conflicts:
        return
    path = conflicts_path(meta)
    seen = {(c.get("video"), c.get("base"), c.get("row")) for c in read_conflicts(meta)}
    fresh = [(e, found) for e, found in conflicts if (e.video, e.base, e.row) not in seen]
    if fresh:
        when = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(path, "a", encoding="utf-8") as fh:
            for e, found in fresh:
                fh.write(json.dumps({"video": e.video, "base": e.base, "row": e.row, "found": found,
                                     "folded": when}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_conflicts(meta: Path) -> list[dict]:
    try:
        text = conflicts_path(meta).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def describe(entry: Entry, found: str) -> str:
    was = "had no row" if entry.base == NEW else f"had revision {entry.base[:12]}"
    now = "has no row" if found == NEW else f"has revision {found[:12]}"
    return (f"a save of {entry.video} (made when its row {was}) was not applied: metadata.jsonl was edited "
            f"meanwhile and its row now {now}; the file's version was kept")


def reports(meta: Path, pending: list[tuple[Entry, str]]) -> list[str]:
    """One sentence per lost save: those still in the journal, then those kept in the conflicts file."""
    kept = [describe(Entry(c.get("video", "?"), c.get("base", "?"), c.get("row", "")), c.get("found", "?"))
            + f" (the lost row is kept in {conflicts_path(meta).name}; delete that file once reviewed)"
            for c in read_conflicts(meta)]
    return [describe(e, found) for e, found in pending] + kept


def fold_file(meta: Path) -> int:
    """Fold the journal beside `meta` into it (one atomic replace, then the journal deleted); returns
    the entries folded. For callers without a store; the caller holds the dataset lock."""
    meta = Path(meta)
    journal = pending_path(meta)
    entries, _ = read(journal)
    if not journal.exists():
        return 0
    try:
        data = meta.read_bytes()
    except FileNotFoundError:
        data = b""
    out, conflicts = apply(data, entries)
    for e, found in conflicts:
        log.warning("%s: %s", meta, describe(e, found))
    keep_conflicts(meta, conflicts)
    if out != data:
        write_bytes_atomic(meta, out)
    journal.unlink(missing_ok=True)
    return len(entries)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Like core.fileio.atomic_write_text for bytes that need not be UTF-8 (a hand-written line
    the store keeps verbatim), keeping the file's mode."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
