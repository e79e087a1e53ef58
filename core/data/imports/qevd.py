"""The QEVD reader of core.data.imports.layouts: a folder with manifest.json + ground_truth.json, shaped as
QEVD-FIT preparation scripts leave them, and a few variants.

manifest.json is {video path: exercise name (or an info object)}, {clip id: video path}, a list of
paths, or a list of objects with a path (`video_path`/`video`/`path`/`file_name`/`file`) and an
optional id (`id`/`clip_id`/`video_id`). Paths are relative to the folder (a leading component
equal to the folder's own name is dropped when that is what makes the file exist).
ground_truth.json is a list of objects naming their clip by id or path (same keys), or
{clip id or path: label}. A record's other fields are the label (`labels`, `labels_descriptive`,
`feedback`, ...); a bare list becomes `{"labels": [...]}`, anything else bare `{"label": ...}`.
The manifest's exercise name becomes `exercise` unless the record has one. Records find their
clip by id, then path, then file name; one that names an existing file but is not in the
manifest still imports. Refused outright: either file not JSON, or not a list/object at the top.
Manifest clips without ground truth are not imported; one problem line counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.data.imports.rows import (
    GROUND_TRUTH,
    ID_KEYS,
    MANIFEST,
    PATH_KEYS,
    VIDEO_SUFFIXES,
    Row,
    Source,
    first,
    norm,
    read_json,
    schema_in,
    without,
)
from core.errors import DatasetError


@dataclass
class _Clip:
    id: str | None
    path: str
    fields: dict  # exercise / split taken from the manifest


def read_qevd(src: Path, video_root: Path | None) -> Source:
    root = video_root or src
    source = Source(root, [], schema=schema_in(src))
    clips = _manifest_clips(read_json(src / MANIFEST), source.problems)
    index = _ClipIndex(clips)
    for where, keys, label in _truth_records(read_json(src / GROUND_TRUTH), source.problems):
        clip = index.find(keys) or _unlisted_clip(root, keys)
        if clip is None:
            source.problems.append(f"{where}: not in {MANIFEST} and no such video file; skipped")
            continue
        fields = {**({"id": clip.id} if clip.id else {}), **clip.fields, **label}
        source.rows.append(Row(where, _qevd_rel(root, clip.path), fields))
    unused = [c.id or c.path for c in clips if id(c) not in index.used]
    if unused:
        source.problems.append(f"{MANIFEST}: {len(unused)} clip(s) have no ground truth and were not imported "
                               f"(first: {', '.join(map(str, unused[:3]))})")
    return source


def _manifest_clips(data, problems: list[str]) -> list[_Clip]:
    if isinstance(data, dict):
        return [_manifest_pair(str(k), v) for k, v in data.items()]
    if not isinstance(data, list):
        raise DatasetError(f"{MANIFEST}: expected a JSON object or list at the top")
    clips = []
    for index, item in enumerate(data, 1):
        if isinstance(item, str):
            clips.append(_Clip(None, item, {}))
        elif isinstance(item, dict) and isinstance(first(item, PATH_KEYS), str):
            clip_id = first(item, ID_KEYS)
            clips.append(_Clip(None if clip_id is None else str(clip_id), first(item, PATH_KEYS),
                               _pick(item, ("split", "exercise"))))
        else:
            problems.append(f"{MANIFEST}:#{index}: neither a path nor an object with a video path; skipped")
    return clips


def _manifest_pair(key: str, value) -> _Clip:
    if isinstance(value, str) and PurePosixPath(value).suffix.lower() in VIDEO_SUFFIXES:
        return _Clip(key, value, {})  # {clip id: path}
    if isinstance(value, str):
        return _Clip(None, key, {"exercise": value})  # {path: exercise name}, as QEVD scripts write it
    if isinstance(value, dict) and isinstance(first(value, PATH_KEYS), str):
        return _Clip(key, first(value, PATH_KEYS), _pick(value, ("split", "exercise")))
    return _Clip(None, key, _pick(value, ("split", "exercise")) if isinstance(value, dict) else {})


def _pick(obj: dict, keys) -> dict:
    return {k: obj[k] for k in keys if k in obj}


def _truth_records(data, problems: list[str]) -> Iterator[tuple[str, list[str], dict]]:
    """(where, keys naming the clip, label) for each ground-truth record."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield f"{GROUND_TRUTH}:{key}", [str(key)], _bare_label(value)
        return
    if not isinstance(data, list):
        raise DatasetError(f"{GROUND_TRUTH}: expected a JSON object or list at the top")
    for index, record in enumerate(data, 1):
        keys = [str(v) for v in (first(record, ID_KEYS), first(record, PATH_KEYS))
                if v is not None] if isinstance(record, dict) else []
        if not keys:
            problems.append(f"{GROUND_TRUTH}:#{index}: record names no clip (id or video path); skipped")
            continue
        record_id = first(record, ID_KEYS)
        label = without(record, PATH_KEYS + ID_KEYS)
        yield f"{GROUND_TRUTH}:{keys[0]}", keys, ({"id": record_id, **label} if record_id is not None else label)


def _bare_label(value) -> dict:
    if isinstance(value, dict):
        return without(value, PATH_KEYS + ID_KEYS)
    return {"labels": value} if isinstance(value, list) else {"label": value}


class _ClipIndex:
    """Finds a manifest clip by id, then exact path, then file name (QEVD records often hold `./name.mp4`)."""

    def __init__(self, clips: list[_Clip]):
        self.by_id = {c.id: c for c in clips if c.id is not None}
        self.by_path = {norm(c.path): c for c in clips}
        self.by_name: dict[str, list[_Clip]] = {}
        for c in clips:
            self.by_name.setdefault(PurePosixPath(norm(c.path)).name, []).append(c)
        self.used: set[int] = set()

    def find(self, keys: list[str]) -> _Clip | None:
        for key in keys:
            named = self.by_name.get(PurePosixPath(norm(key)).name, [])
            clip = self.by_id.get(key) or self.by_path.get(norm(key)) or (named[0] if len(named) == 1 else None)
            if clip is not None:
                self.used.add(id(clip))
                return clip
        return None


def _unlisted_clip(root: Path, keys: list[str]) -> _Clip | None:
    for key in keys:
        if PurePosixPath(key).suffix.lower() in VIDEO_SUFFIXES and (root / _qevd_rel(root, key)).exists():
            return _Clip(None, key, {})
    return None


def _qevd_rel(root: Path, path: str) -> str:
    rel = norm(path)
    parts = PurePosixPath(rel).parts
    # Scripts often write paths from the folder's parent ("dataset/squats/a.mp4" inside dataset/).
    if len(parts) > 1 and parts[0] == root.name and not (root / rel).exists():
        return PurePosixPath(*parts[1:]).as_posix()
    return rel
