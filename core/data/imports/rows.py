"""What the importers share: the row and source records, the key names, small readers.

A `Source` is what a layout reader produced (rows with their "FILE:LINE" prefix, problems, the
schema file, the most common prompt); `ImportReport` is what an import or export returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.data.dataset import SCHEMA
from core.errors import DatasetError

MANIFEST, GROUND_TRUTH = "manifest.json", "ground_truth.json"


PATH_KEYS = ("video_path", "video", "path", "file_name", "file")
ID_KEYS = ("id", "clip_id", "video_id")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


@dataclass
class ImportReport:
    rows: int  # rows written to the destination by this call
    problems: list[str]  # "FILE:LINE_OR_ID: reason", one per skipped or altered row
    layout: str
    dest: Path
    instruction: str | None = None  # most common human prompt of a conversation file, <video> removed


@dataclass
class Row:
    where: str  # "FILE:LINE_OR_ID", the prefix of every problem about this row
    rel: object  # video path as written in the source; checked later, so any JSON value
    fields: dict  # split, id and label fields as they will be written


@dataclass
class Source:
    root: Path  # row paths are relative to this
    rows: list[Row]
    problems: list[str] = field(default_factory=list)
    schema: Path | None = None
    instruction: str | None = None


# ---------------------------------------------------------------- reading JSON


def jsonl_objects(path: Path, label: str, problems: list[str], limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each JSON-object line; bad lines become problems and are skipped."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            if limit is not None and line_no > limit:
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{label}:{line_no}: malformed JSON at column {exc.colno}: {exc.msg}")
                continue
            if not isinstance(obj, dict):
                problems.append(f"{label}:{line_no}: not a JSON object")
                continue
            yield line_no, obj


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        raise DatasetError(f"{path}: invalid JSON at {where}") from exc


def schema_in(folder: Path) -> Path | None:
    return folder / SCHEMA if (folder / SCHEMA).is_file() else None


def without(obj: dict, keys) -> dict:
    return {k: v for k, v in obj.items() if k not in keys}


def first(obj: dict, keys):
    return next((obj[k] for k in keys if obj.get(k) is not None), None)


def norm(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).as_posix().removeprefix("./")
