"""What the annotation store hands out and how it reads one line: rows, clips, statuses, revisions.

Pure functions of a line's text, so their results can be cached by the line's content key
(core.data.index_cache). No file access here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.data.dataset import RESERVED_KEYS

NEW = "new"  # revision of a clip that has no metadata row yet

UNLABELLED, DRAFT, LABELLED, INVALID, UNREADABLE = "unlabelled", "draft", "labelled", "invalid", "unreadable"
STATUSES = (UNLABELLED, DRAFT, LABELLED, INVALID, UNREADABLE)
TO_DO = (UNLABELLED, DRAFT, INVALID)  # what Save & next looks for


@dataclass
class Row:
    line: int  # 1-based line number in metadata.jsonl
    raw: str  # the line as stored, without its newline
    data: dict | None  # None when the line does not parse
    error: str | None = None

    @property
    def video(self) -> str | None:
        if self.data is None:
            return None
        return self.data.get("video", self.data.get("file_name"))

    @property
    def label(self) -> dict:
        return {k: v for k, v in (self.data or {}).items() if k not in RESERVED_KEYS}


@dataclass
class Clip:
    rel: str  # path relative to the dataset root, as stored in metadata
    path: Path
    status: str
    revision: str
    label: dict
    split: str | None
    draft: dict | None = None
    problems: tuple[str, ...] = ()  # why it is invalid / unreadable / why the draft is flagged


def revision(raw: str | None) -> str:
    return NEW if raw is None else hashlib.sha1(raw.encode("utf-8")).hexdigest()[:12]


def parse_row(line: int, raw: str) -> Row:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Row(line, raw, None, f"malformed JSON at column {exc.colno}: {exc.msg}")
    if not isinstance(data, dict):
        return Row(line, raw, None, "line is not a JSON object")
    if not isinstance(data.get("video", data.get("file_name")), str):
        return Row(line, raw, data, "no \"video\" path")
    return Row(line, raw, data)


def parse_lines(text: str) -> list[Row]:
    return [parse_row(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]


def summarize_row(raw: str) -> tuple:
    """(video, split, has a label, why the row is unusable) of a metadata line."""
    row = parse_row(0, raw)
    if row.error:
        return (None, None, False, row.error)
    split = row.data.get("split")
    return (row.video, split if isinstance(split, str) else None, any(k not in RESERVED_KEYS for k in row.data), None)


def summarize_draft(raw: str) -> tuple:
    """(video, flagged, dropped, None) of a drafts line; video None for a line that is not a draft
    (four fields like a metadata summary: the index cache stores both alike)."""
    row = parse_row(0, raw)
    if row.error:
        return (None, False, False, None)
    return (row.video, bool(row.data.get("errors")), bool(row.data.get("dropped")), None)


def lexically_safe(rel: str) -> bool:
    """A relative path without `..`: what can be told without touching the disk (symlinks that
    leave the folder are caught when the clip is opened or probed, by safe_video_path)."""
    return bool(rel.strip()) and not rel.startswith("/") and ".." not in rel.split("/")
