"""Add clips from files, folders and globs on this machine: `cli.py add-clips` and Annotate → Add clips →
"Add from a folder on this machine" both call `ingest`.

Footage that sits on a disk or a mounted share next to the server (hundreds of GB) cannot go
through a browser upload. `ingest` probes every source file and copies it (or cuts it into
N-second pieces) in worker processes, then puts the results under `videos/` keeping each source's
path relative to the folder it was found in. It reuses the upload path's pieces
(core.data.uploads: `prepare_clip` probes and cuts, `place_unique` puts a file in place under a
free name, never overwriting and never showing a half-written clip).

Resume: `.ingest.jsonl` in the dataset folder remembers each source added (its resolved path, size
and mtime), so a re-run skips those, and an interrupted ingest of 10,000 files continues where it
stopped. Per source, a `begin` line naming the clips it is about to place is written before they
go in, and a `done` line after: a run killed between the two leaves a `begin` whose clips the next
run removes before adding that source again, so no source is ever added twice or in part. Work
files live in `.ingest-tmp/` (outside `videos/`), removed by the next run if a run was killed.
One ingest at a time per dataset (`.ingest.lock`); the store's own lock is not held, so the app
keeps saving labels meanwhile.

Every file that cannot be added is listed with its reason, and nothing stops the rest. The app
passes `allowed_roots` (`allowed_roots_for`: the dataset's parent folder plus `VVW_ALLOWED_DIRS`);
the CLI reads anything its user can. Never writes metadata.jsonl: the new clips have no split
(`IngestReport.note`, core.data.uploads.split_note).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import signal
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from core.data.uploads import PART, VIDEOS, place_unique, prepare_clip, split_note
from core.errors import DatasetError, VideoError
from core.video.frames import is_media_path

LEDGER = ".ingest.jsonl"
LOCK = ".ingest.lock"
WORK = ".ingest-tmp"
ALLOWED_ENV = "VVW_ALLOWED_DIRS"
POOL_RESTARTS = 2  # a worker that dies (a decoder crash) takes its pool down: start a new one this often


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)  # clips now under videos/ (relative to the dataset)
    sources: int = 0  # source files found
    skipped: int = 0  # of those, added by an earlier run (same path, size and mtime)
    added_sources: int = 0  # of those, added by this run
    problems: list[str] = field(default_factory=list)  # "path: reason", one per file not added
    ignored: int = 0  # files in the folders that are not videos or images (by extension)
    no_split: int = 0
    note: str = ""


class IngestStopped(KeyboardInterrupt):
    """Ctrl-C during an ingest, in words for a person: what was kept and how to go on."""


@dataclass
class _Source:
    path: Path  # absolute, as found (read from here)
    rel: Path  # where it goes under videos/: its path below the folder or glob it was found in
    key: tuple  # (resolved path, size, mtime_ns): the ledger's identity of this file


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def allowed_roots_for(dataset_dir) -> list[Path]:
    """The folders the app may read sources from: the dataset folder's parent, plus each folder in
    VVW_ALLOWED_DIRS (os.pathsep-separated)."""
    roots = [Path(dataset_dir).resolve().parent]
    roots += [Path(p).expanduser().resolve() for p in os.environ.get(ALLOWED_ENV, "").split(os.pathsep) if p.strip()]
    return roots


def ingest(dataset_dir, sources, chunk_seconds: float | None = None, recursive: bool = False,
           workers: int | None = None, progress=None, allowed_roots=None) -> IngestReport:
    """Add the video and image files among `sources` (files, folders, globs) to the dataset's videos/.

    `chunk_seconds`: cut videos into pieces of that many seconds; `recursive`: walk sub-folders (and
    let `**` in a glob match them); `workers`: processes that probe and copy/cut (1: in this process);
    `progress(done, total)` after each source; `allowed_roots`: refuse sources outside these folders
    (DatasetError), None for no restriction. `dataset_dir` may be an AnnotationStore.
    """
    store = dataset_dir if hasattr(dataset_dir, "rows") else None
    root = Path(store.root if store is not None else dataset_dir)
    if chunk_seconds is not None and chunk_seconds < 0:
        raise DatasetError(f"chunk seconds must be positive (0 keeps clips whole), got {chunk_seconds:g}")
    sources = [str(s).strip() for s in ([sources] if isinstance(sources, (str, Path)) else sources) if str(s).strip()]
    if not sources:
        raise DatasetError("no source given: name files, folders or globs to add")
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder")
    if allowed_roots is not None:
        for s in sources:
            _check_allowed(s, allowed_roots)
    root.mkdir(parents=True, exist_ok=True)
    report = IngestReport()
    with _ingest_lock(root):
        found = _find(sources, root, recursive, allowed_roots, report)
        ledger = _Ledger(root)
        todo = [s for s in found if s.key not in ledger.done]
        report.sources, report.skipped = len(found), len(found) - len(todo)
        work = root / WORK / uuid.uuid4().hex[:8]
        try:
            _process(root, todo, chunk_seconds or None, workers or default_workers(), work, ledger, report, progress)
        except KeyboardInterrupt:
            raise IngestStopped(f"stopped: {len(report.added)} clips from {report.added_sources} files were added and "
                                "are kept; run the same command again to add the rest") from None
        finally:
            ledger.close()
            shutil.rmtree(work, ignore_errors=True)
            _remove_if_empty(root / WORK)
    report.problems.sort()  # workers finish in any order: listed by path
    if report.added:
        report.no_split = len(report.added)
        report.note = split_note(report.no_split, _has_train(store, root))
    return report


def _has_train(store, root: Path) -> bool:
    """What training does with split-less clips depends on whether any row is in train (as in
    AnnotationStore.add_videos)."""
    if store is None:
        from core.data.store import AnnotationStore  # the store builds an index: only when clips were added

        store = AnnotationStore(root)
    return any(r.data and r.data.get("split") == "train" for r in store.rows())


# ------------------------------------------------------------------ finding the sources


def _check_allowed(source: str, roots) -> None:
    base = _glob_base(source) if glob.has_magic(source) else Path(source).expanduser()
    if not _under(base, roots):
        where = ", ".join(str(r) for r in roots)
        raise DatasetError(f"{source} is outside the folders this app may read ({where}); add its folder to "
                           f"{ALLOWED_ENV} (separated by '{os.pathsep}') when starting the app, or use "
                           "`cli.py add-clips`")


def _under(path: Path, roots) -> bool:
    real = os.path.realpath(path)
    return any(os.path.commonpath([real, str(r)]) == str(r) for r in (Path(x).resolve() for x in roots))


def _glob_base(pattern: str) -> Path:
    """The folder a glob's matches are relative to: its parts before the first with a wildcard."""
    parts = Path(pattern).expanduser().parts
    n = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:n]) if n else Path(".")


def _find(sources: list[str], root: Path, recursive: bool, allowed_roots, report: IngestReport) -> list[_Source]:
    """Every media file the sources name, once each, in order; what cannot be used goes to `report`."""
    own = [os.path.realpath(root / VIDEOS), os.path.realpath(root / WORK)]
    found, seen = [], set()

    def add(path: Path, rel: Path, named: bool) -> None:
        if not is_media_path(path):
            if named:
                report.problems.append(f"{path}: not a video or image file (by its extension)")
            else:
                report.ignored += 1
            return
        real = os.path.realpath(path)
        if any(os.path.commonpath([real, o]) == o for o in own):
            report.problems.append(f"{path}: already in this dataset's {VIDEOS}/ folder")
            return
        if allowed_roots is not None and not _under(path, allowed_roots):
            report.problems.append(f"{path}: links outside the folders this app may read")
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            report.problems.append(f"{path}: cannot read it ({exc.strerror or exc})")
            return
        key = (real, st.st_size, st.st_mtime_ns)
        if key not in seen:
            seen.add(key)
            found.append(_Source(Path(os.path.abspath(path)), rel, key))

    for s in sources:
        path = Path(s).expanduser()
        if glob.has_magic(s):
            base = _glob_base(s)
            matches = sorted(glob.glob(str(path), recursive=recursive))
            if not matches:
                report.problems.append(f"{s}: no file matches")
            for m in map(Path, matches):  # what a wildcard matched is treated as found in a folder
                if m.is_dir() and not recursive:
                    continue  # as `cp` without -r: a matched folder's files only with --recursive
                for f, rel in (_walk(m, recursive) if m.is_dir() else [(m, Path())]):
                    add(f, m.relative_to(base) / rel, False)
        elif path.is_dir():
            for f, rel in _walk(path, recursive):
                add(f, rel, False)
        elif os.path.lexists(path):
            add(path, Path(path.name), True)
        else:
            report.problems.append(f"{s}: does not exist")
    return found


def _walk(folder: Path, recursive: bool):
    """(file, path below `folder`) in name order; hidden files and folders are skipped, links to
    folders are not followed."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if not name.startswith("."):
                f = Path(top) / name
                yield f, f.relative_to(folder)


# ------------------------------------------------------------------ the ledger and the lock


class _Ledger:
    """`.ingest.jsonl`: one line per step, `{"state": "begin"|"done"|"undone", "source", "size",
    "mtime_ns", "clips"}`. Opening it finishes what a killed run left: a source whose last line is
    `begin` has its listed clips removed and gets an `undone` line."""

    def __init__(self, root: Path):
        self.root, self.path = root, root / LEDGER
        last: dict[tuple, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    last[(rec["source"], rec["size"], rec["mtime_ns"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: that step did not finish
        self.done = {k for k, rec in last.items() if rec.get("state") == "done"}
        self.fh = open(self.path, "a", encoding="utf-8")
        if self.fh.tell() and not self.path.read_bytes().endswith(b"\n"):
            self.fh.write("\n")  # end a cut line, or the next record would be glued to it and lost
        self._cleanup(root)
        for key, rec in last.items():
            if rec.get("state") == "begin":
                for rel in rec.get("clips", []):
                    target = root / rel
                    if rel.startswith(f"{VIDEOS}/") and ".." not in Path(rel).parts:
                        target.unlink(missing_ok=True)
                self.write("undone", key, rec.get("clips", []))

    @staticmethod
    def _cleanup(root: Path) -> None:
        """Work files and staged copies a killed run left (no ingest runs now: the lock is held)."""
        shutil.rmtree(root / WORK, ignore_errors=True)
        for top, _dirs, files in os.walk(root / VIDEOS):
            for name in files:
                if name.startswith(".") and name.endswith(PART):
                    Path(top, name).unlink(missing_ok=True)

    def write(self, state: str, key: tuple, clips: list[str]) -> None:
        # fsynced: a `begin` must be on disk before its clips move in, a `done` before the next source
        rec = {"state": state, "source": key[0], "size": key[1], "mtime_ns": key[2], "clips": clips}
        self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


@contextmanager
def _ingest_lock(root: Path):
    with open(root / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"another add-clips is running on {root}; wait for it to finish "
                               "(a re-run afterwards adds only what it did not)") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


# ------------------------------------------------------------------ probing, cutting, placing


def _prepare(path: str, work: str, chunk_seconds: float | None) -> tuple[list[str], str | None]:
    """In a worker: probe `path` and copy it (or cut it) into `work`; (files, None) or ([], reason).
    The copy happens here rather than when it is placed, so copies run in parallel too."""
    src, out = Path(path), Path(work)
    try:
        pieces = prepare_clip(src, out, chunk_seconds)
        if pieces == [src]:
            out.mkdir(parents=True, exist_ok=True)
            pieces = [Path(shutil.copy2(src, out / src.name))]
        return [str(p) for p in pieces], None
    except VideoError as exc:
        return [], exc.reason
    except OSError as exc:
        return [], f"cannot read it ({exc.strerror or exc})"


def _process(root, todo, chunk_seconds, workers, work, ledger, report, progress) -> None:
    total, done = len(todo), 0
    if progress:
        progress(0, total)

    def finish(src: _Source, result: tuple[list[str], str | None]) -> None:
        nonlocal done
        pieces, reason = result
        if reason is not None:
            report.problems.append(f"{src.path}: {reason}")
        else:
            try:
                report.added += _place(root, src, [Path(p) for p in pieces], ledger)
            except OSError as exc:  # the dataset's disk (full, read-only): nothing further can be added
                raise DatasetError(f"cannot write into {root / VIDEOS} ({exc.strerror or exc}); the clips added so "
                                   "far are kept, and a re-run adds the rest") from exc
            report.added_sources += 1
        done += 1
        if progress:
            progress(done, total)

    jobs = [(src, str(work / str(i))) for i, src in enumerate(todo)]
    if workers <= 1:
        for src, out in jobs:
            finish(src, _prepare(str(src.path), out, chunk_seconds))
        return
    for _attempt in range(POOL_RESTARTS + 1):
        lost = _run_pool(jobs, workers, chunk_seconds, finish)
        if not lost:
            return
        jobs = lost
    for src, _out in jobs:  # not in the ledger: a re-run tries them again
        finish(src, ([], "a worker process died while reading it (the file may crash the decoder)"))


def _run_pool(jobs, workers, chunk_seconds, finish) -> list:
    """Run `jobs` in a pool; the jobs lost when a worker died (the pool is then broken)."""
    lost = set()
    # spawn, not fork: the app has threads (a forked child may inherit a held lock), and a forked
    # worker would inherit and keep the ingest lock's file past a killed parent
    with ProcessPoolExecutor(min(workers, len(jobs)) or 1, mp_context=get_context("spawn"),
                             initializer=_ignore_sigint) as pool:
        futures = {pool.submit(_prepare, str(src.path), out, chunk_seconds): (src, out) for src, out in jobs}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                lost.add(futures[fut][1])
                continue
            finish(futures[fut][0], result)
    return [job for job in jobs if job[1] in lost]


def _ignore_sigint() -> None:
    # a terminal's Ctrl-C reaches the workers too: this process stops them (their current file is
    # finished, then dropped with the work folder), rather than each printing a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _place(root: Path, src: _Source, pieces: list[Path], ledger: _Ledger) -> list[str]:
    """Move a source's prepared files under videos/ (names chosen now, then recorded as `begin`)."""
    folder = root / VIDEOS / src.rel.parent
    whole = len(pieces) == 1 and pieces[0].name == src.path.name
    names = [src.rel.name] if whole else [p.name for p in pieces]
    planned, taken = [], set()
    for name in names:
        target = folder / name
        n = 1
        while os.path.lexists(target) or target in taken:
            target = folder / f"{Path(name).stem}_{n}{Path(name).suffix}"
            n += 1
        taken.add(target)
        planned.append(target)
    ledger.write("begin", src.key, [t.relative_to(root).as_posix() for t in planned])
    placed = [place_unique(p, t, move=True).relative_to(root).as_posix() for p, t in zip(pieces, planned)]
    ledger.write("done", src.key, placed)
    return placed

