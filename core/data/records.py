"""What the annotation store hands out and how it reads one line: rows, clips, statuses, revisions.

Pure functions of a line's text, so their results can be cached by the line's content key
(core.data.index_cache). No file access here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePath

from core.data.dataset import RESERVED_KEYS
from core.schema.base import canonical_answer

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
        return label_of(self.data)


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


def _load(raw: str) -> tuple[dict | None, str | None]:
    """(the line's object, why it is not a usable row)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON at column {exc.colno}: {exc.msg}"
    if not isinstance(data, dict):
        return None, "line is not a JSON object"
    if not isinstance(data.get("video", data.get("file_name")), str):
        return data, "no \"video\" path"
    return data, None


def parse_row(line: int, raw: str) -> Row:
    return Row(line, raw, *_load(raw))


def row_text(rel: str, label: dict, split: str | None, old: dict | None, schema: dict | None) -> str:
    """The metadata line a save writes: the clip, its split, the old row's other reserved keys (id),
    then the label fields in schema order (readable diffs)."""
    head = {k: v for k, v in (old or {}).items() if k in RESERVED_KEYS and k not in ("video", "split", "file_name")}
    row = {"video": rel, **({"split": split} if split else {}), **head}
    row.update(json.loads(canonical_answer(schema, label)) if schema else label)
    return json.dumps(row, ensure_ascii=False)


def parse_lines(text: str) -> list[Row]:
    return [parse_row(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]


def summarize_row(raw: str) -> tuple:
    """(video, split, has a label, why the row is unusable) of a metadata line."""
    return summarize_parsed(raw)[0]


def summarize_parsed(raw: str) -> tuple[tuple, tuple[dict, object] | None]:
    """summarize_row's summary and the row's (label, split) (None when it is not a usable row)."""
    data, error = _load(raw)  # no Row object: this runs for every line of a first read
    if error:
        return (None, None, False, error), None
    split, label = data.get("split"), label_of(data)
    return (data.get("video", data.get("file_name")), split if isinstance(split, str) else None, bool(label), None), \
        (label, split)


_RESERVED = frozenset(RESERVED_KEYS)  # a set: this runs for every key of 100,000 rows


def label_of(data: dict | None) -> dict:
    """The label fields of a row's object (what Row.label is)."""
    return {k: v for k, v in (data or {}).items() if k not in _RESERVED}


# pathlib's `root / rel` parses both sides again on every call: 0.15 s of a 100,000-clip listing.
# On CPython 3.11 a path can be built from root's parsed parts, as pathlib does itself when it walks
# a folder (Path._make_child_relpath); other versions, and any part pathlib would normalise, use `/`.
_FAST_CHILD = "_parts" in getattr(PurePath, "__slots__", ()) and hasattr(PurePath, "_from_parsed_parts")


def child_path(root: Path, rel: str) -> Path:
    """`root / rel`, quicker for a plain relative path (tests/data/test_journal.py compares them)."""
    parts = rel.split("/")
    if _FAST_CHILD and rel[:1] != "/" and "" not in parts and "." not in parts and "\0" not in rel:
        return root._from_parsed_parts(root._drv, root._root, root._parts + parts)
    return root / rel


def lexically_safe(rel: str) -> bool:
    """A relative path without `..`: what can be told without touching the disk (symlinks that
    leave the folder are caught when the clip is opened or probed, by safe_video_path)."""
    # the substring test first: it runs twice per clip of a 100,000-clip listing, split() only when needed
    return bool(rel.strip()) and not rel.startswith("/") and (".." not in rel or ".." not in rel.split("/"))
