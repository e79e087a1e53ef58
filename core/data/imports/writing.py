"""Planning and writing an import: the rows a layout reader produced (`core.data.imports.layouts`)
become videos under `dest/videos/` and one `metadata.jsonl`.

`run_import` first checks every row's video (it must exist and stay inside the source root: no
`..`, absolute path or symlink out) and chooses its destination path, dropping duplicates and
normalising the split (`SPLIT_ALIASES`; an unknown split only loses the split); nothing is
written until then. Videos are hard-linked when possible, else copied (`place_video`), under
dest/videos/ keeping their sub-path (a leading `videos/` is not doubled). metadata.jsonl is
written last and atomically, so a failed import never leaves rows pointing at missing files; with
`merge`, the existing file is kept verbatim and only rows whose video it does not list yet are
appended. The source's schema.json is copied unless the destination has one. Every problem is
reported as "FILE:LINE_OR_ID: reason" and logged.

Not here: detecting or reading a layout (core.data.imports.layouts, core.data.imports.qevd),
validating labels, or decoding videos (they are copied as bytes, never opened).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.data.dataset import METADATA, SCHEMA, dataset_lock, safe_video_path
from core.data.imports.rows import SPLIT_ALIASES, ImportReport, Row, Source, jsonl_objects, norm
from core.data.journal import fold_file
from core.errors import DatasetError
from core.fileio import atomic_write_text
from core.video.container import file_problem

log = logging.getLogger(__name__)


@dataclass
class _Planned:
    where: str
    source: Path  # resolved video file
    rel: str  # path under the destination
    fields: dict


# ---------------------------------------------------------------- planning and writing


def _plan(source: Source, dest: Path, copy_videos: bool) -> list[_Planned]:
    """Check every row's video and choose its destination path; nothing is written yet."""
    first_seen: dict[Path, str] = {}
    planned = []
    for row in source.rows:
        try:
            video = _checked_video(source.root, row.rel)
            rel = _dest_rel(source.root, video, dest, copy_videos)
        except DatasetError as exc:
            source.problems.append(f"{row.where}: {exc}")
            continue
        if video in first_seen:
            source.problems.append(f"{row.where}: duplicate of the video of {first_seen[video]}; skipped")
            continue
        first_seen[video] = row.where
        planned.append(_Planned(row.where, video, rel, _normalised_split(row, source.problems)))
    return planned


def _checked_video(root: Path, rel) -> Path:
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetError("no video path")
    video = safe_video_path(root, rel)
    problem = file_problem(video)  # "not found" only when it is missing: a FIFO or a device says so
    if problem and problem != "file is empty (0 bytes)":  # empty files are copied as before
        raise DatasetError(f"{rel}: {problem}")
    return video


def _dest_rel(root: Path, video: Path, dest: Path, copy_videos: bool) -> str:
    if not copy_videos:
        try:
            return video.relative_to(dest.resolve()).as_posix()
        except ValueError:
            raise DatasetError(f"{video} is outside {dest}; import with copy_videos=True") from None
    parts = video.relative_to(root.resolve()).parts
    if len(parts) > 1 and parts[0] == "videos":
        parts = parts[1:]
    return PurePosixPath("videos", *parts).as_posix()


def _normalised_split(row: Row, problems: list[str]) -> dict:
    fields = dict(row.fields)
    split = fields.pop("split", None)
    if split is None:
        return fields
    norm = SPLIT_ALIASES.get(split.lower()) if isinstance(split, str) else None
    if norm is None:
        problems.append(f"{row.where}: unknown split {split!r}; imported without a split")
        return fields
    return {"split": norm, **fields}


def _existing(meta: Path, merge: bool) -> tuple[str, set[str]]:
    """Text of the destination's metadata (kept verbatim on merge) and the videos it already lists."""
    if not meta.exists():
        return "", set()
    if not merge:
        raise DatasetError(f"{meta} already exists; choose an empty folder or merge into it")
    text = meta.read_text(encoding="utf-8", errors="replace")
    present = {norm(obj.get("video", obj.get("file_name")))
               for _, obj in jsonl_objects(meta, METADATA, [])
               if isinstance(obj.get("video", obj.get("file_name")), str)}
    return (text if not text or text.endswith("\n") else text + "\n"), present


def place_video(video: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if os.path.samefile(video, target):
            return
        target.unlink()
    try:
        os.link(video, target)  # free and instant on one filesystem; videos are never edited in place
    except OSError:
        shutil.copy2(video, target)


def _write(dest: Path, planned: list[_Planned], copy_videos: bool, merge: bool, problems: list[str]) -> int:
    meta = dest / METADATA
    _, present = _existing(meta, merge)  # a first look, so that videos already listed are not copied
    lines: list[tuple[str, str]] = []
    taken: dict[str, str] = {}
    for item in planned:
        if item.rel in present:
            problems.append(f"{item.where}: {item.rel} is already in {meta}; skipped")
            continue
        if item.rel in taken:
            problems.append(f"{item.where}: {item.rel} clashes with the video of {taken[item.rel]}; skipped")
            continue
        if copy_videos:
            try:
                place_video(item.source, dest / item.rel)
            except OSError as exc:
                problems.append(f"{item.where}: cannot copy {item.source} ({exc.strerror or exc}); skipped")
                continue
        taken[item.rel] = item.where
        lines.append((item.rel, json.dumps({"video": item.rel, **item.fields}, ensure_ascii=False) + "\n"))
    # Read again and write under the store's lock: a label saved in the app while videos were being
    # copied is in the text we extend, not overwritten by an older copy of the file.
    with dataset_lock(dest):
        fold_file(meta)  # the store's pending edits first: they are part of the text we extend
        text, present = _existing(meta, merge)
        fresh = [line for rel, line in lines if rel not in present]
        problems += [f"{rel} was added to {meta} while importing; skipped" for rel, _ in lines if rel in present]
        atomic_write_text(meta, text + "".join(fresh))
    return len(fresh)


def _copy_schema(schema: Path | None, dest: Path) -> None:
    if schema is not None and not (dest / SCHEMA).exists():  # never overwrite the schema being merged into
        atomic_write_text(dest / SCHEMA, schema.read_text(encoding="utf-8"))


def run_import(source: Source, dest: Path, layout: str, copy_videos: bool, merge: bool) -> ImportReport:
    planned = _plan(source, dest, copy_videos)
    rows = _write(dest, planned, copy_videos, merge, source.problems)
    _copy_schema(source.schema, dest)
    for problem in source.problems:
        log.warning("import %s: %s", dest, problem)
    return ImportReport(rows, source.problems, layout, dest, source.instruction)
