"""The annotation store: a dataset folder on disk is the source of truth for labels and drafts.

`metadata.jsonl` (seed layout) holds labels, one row per clip; `drafts.jsonl` beside it holds model
pre-labels that nobody has accepted yet, so training never sees an unreviewed draft. Every write
takes an exclusive `flock` on `.store.lock`, re-reads the file, applies one change and replaces the
file atomically. A row's *revision* is a hash of its current line: a save names the revision it
was based on, so two tabs saving different clips both keep their edits and two saving the same clip
get a `ConflictError` instead of a silent overwrite. Lines that do not parse are kept verbatim.

This module does not decode video beyond probing readability, does not run models (core.serve.prelabel does),
does not choose splits (core.data.splits does) and does not copy uploads in itself
(core.data.uploads does, behind `add_videos`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.data import uploads
from core.data.dataset import METADATA, RESERVED_KEYS, SCHEMA, SPLITS, safe_video_path
from core.data.uploads import VIDEOS
from core.errors import DatasetError, SchemaError, VideoError, WorkbenchError
from core.fileio import atomic_write_text
from core.schema.base import canonical_answer, extract_json, label_errors, load_schema, parse_schema, schema_hash
from core.video.frames import is_media_path, probe

DRAFTS = "drafts.jsonl"
LOCK = ".store.lock"
SCHEMA_HISTORY = ".schema_history"
NEW = "new"  # revision of a clip that has no metadata row yet

UNLABELLED, DRAFT, LABELLED, INVALID, UNREADABLE = "unlabelled", "draft", "labelled", "invalid", "unreadable"
STATUSES = (UNLABELLED, DRAFT, LABELLED, INVALID, UNREADABLE)


class ConflictError(WorkbenchError):
    """Someone else saved this clip after it was opened here."""


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


def parse_lines(text: str) -> list[Row]:
    rows = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            rows.append(Row(n, raw, None, f"malformed JSON at column {exc.colno}: {exc.msg}"))
            continue
        if not isinstance(data, dict):
            rows.append(Row(n, raw, None, "line is not a JSON object"))
        elif not isinstance(data.get("video", data.get("file_name")), str):
            rows.append(Row(n, raw, data, "no \"video\" path"))
        else:
            rows.append(Row(n, raw, data))
    return rows


class AnnotationStore:
    def __init__(self, root, schema_path=None):
        self.root = Path(root)
        self.schema_path = Path(schema_path) if schema_path else self.root / SCHEMA
        self._readable: dict[tuple, str | None] = {}  # (path, size, mtime) → unreadable reason

    # ------------------------------------------------------------------ reading

    @property
    def metadata_path(self) -> Path:
        return self.root / METADATA

    def schema(self) -> dict | None:
        return load_schema(self.schema_path) if self.schema_path.is_file() else None

    def rows(self) -> list[Row]:
        try:
            return parse_lines(self.metadata_path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return []

    def problems(self) -> list[str]:
        """Lines of metadata.jsonl that are kept but cannot be used: 'metadata.jsonl:LINE: reason'."""
        return [f"{METADATA}:{r.line}: {r.error}" for r in self.rows() if r.error]

    def drafts(self) -> dict[str, dict]:
        path = self.root / DRAFTS
        if not path.is_file():
            return {}
        out = {}
        for row in parse_lines(path.read_text(encoding="utf-8", errors="replace")):
            if row.data is not None and row.error is None:
                out[row.video] = row.data
        return out

    def video_files(self) -> list[str]:
        """Video (and still image) files under videos/ (relative paths), whether or not metadata mentions them."""
        base = self.root / VIDEOS
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and is_media_path(p))

    def clips(self, check_video: bool = True) -> list[Clip]:
        """Every clip the dataset knows (metadata rows first, then files without a row), with status."""
        schema = self.schema()
        drafts = self.drafts()
        seen, out = set(), []
        for row in self.rows():
            if row.error or row.video in seen:
                continue
            seen.add(row.video)
            out.append(self._clip(row.video, row, schema, drafts.get(row.video), check_video))
        for rel in self.video_files():
            if rel not in seen:
                seen.add(rel)
                out.append(self._clip(rel, None, schema, drafts.get(rel), check_video))
        return out

    def clip(self, rel: str) -> Clip:
        row = self._row_for(self.rows(), rel)
        if row is None and rel not in self.video_files():
            raise DatasetError(f"{rel}: no such clip in {self.root}")
        return self._clip(rel, row, self.schema(), self.drafts().get(rel), True)

    def clip_revision(self, rel: str) -> str:
        """The revision a save of `rel` must name, without probing the video."""
        row = self._row_for(self.rows(), rel)
        return revision(row.raw if row else None)

    def _clip(self, rel, row, schema, draft, check_video) -> Clip:
        label = row.label if row else {}
        split = (row.data or {}).get("split") if row else None
        try:
            path = safe_video_path(self.root, rel)
        except DatasetError as exc:
            return Clip(rel, self.root / "?", UNREADABLE, revision(row.raw if row else None), label, split,
                        draft, (str(exc),))
        problems: tuple[str, ...] = ()
        reason = self.unreadable_reason(path) if check_video else None
        if reason:
            status, problems = UNREADABLE, (reason,)
        elif label:
            errors = label_errors(schema, label) if schema else []
            status, problems = (INVALID, tuple(errors)) if errors else (LABELLED, ())
        elif draft is not None:
            status, problems = DRAFT, tuple(draft.get("errors") or ())
        else:
            status = UNLABELLED
        return Clip(rel, path, status, revision(row.raw if row else None), label, split, draft, problems)

    def unreadable_reason(self, path: Path) -> str | None:
        """Why a video cannot be decoded (probe result cached by size and mtime), or None."""
        try:
            st = path.stat()
        except OSError:
            return "file not found"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._readable:
            try:
                probe(path)
                self._readable[key] = None
            except VideoError as exc:
                self._readable[key] = exc.reason
        return self._readable[key]

    @staticmethod
    def _row_for(rows: list[Row], rel: str) -> Row | None:
        return next((r for r in rows if r.error is None and r.video == rel), None)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_rows(self, rows: list[Row]) -> None:
        atomic_write_text(self.metadata_path, "".join(r.raw + "\n" for r in rows))

    def _row_text(self, rel: str, label: dict, split: str | None, old: dict | None, schema: dict | None) -> str:
        # keep id/extra reserved keys of the old row; label fields in schema order for readable diffs
        head = {k: v for k, v in (old or {}).items() if k in RESERVED_KEYS and k not in ("video", "split", "file_name")}
        row = {"video": rel, **({"split": split} if split else {}), **head}
        ordered = json.loads(canonical_answer(schema, label)) if schema else label
        row.update(ordered)
        return json.dumps(row, ensure_ascii=False)

    def save_label(self, rel: str, label: dict, expected_revision: str | None, split: str | None = ...) -> str:
        """Store `label` for clip `rel`; returns the new revision.

        `expected_revision` is what the caller saw when it opened the clip (None skips the check,
        for imports and scripts). The label must satisfy the schema: a label that breaks it is
        refused with the reasons, never written.
        """
        if not isinstance(label, dict):
            raise DatasetError(f"{rel}: a label must be a JSON object")
        safe_video_path(self.root, rel)
        schema = self.schema()
        if schema is not None:
            errors = label_errors(schema, label)
            if errors:
                raise DatasetError(f"{rel}: label breaks the schema: " + "; ".join(errors))
        with self._locked():
            rows = self.rows()
            row = self._row_for(rows, rel)
            current = revision(row.raw if row else None)
            if expected_revision is not None and expected_revision != current:
                raise ConflictError(
                    f"{rel} was saved by someone else after you opened it; reload the clip to see their "
                    "version, then save again")
            if split is ...:
                split = (row.data or {}).get("split") if row else None
            raw = self._row_text(rel, label, split, row.data if row else None, schema)
            if row is None:
                rows.append(Row(len(rows) + 1, raw, json.loads(raw)))
            else:
                row.raw = raw
            self._write_rows(rows)
            self._drop_draft(rel)
        return revision(raw)

    def set_splits(self, assignment: dict[str, str | None]) -> int:
        """Write `split` for the given clips (rows are created for clips that have none); returns count."""
        bad = {s for s in assignment.values() if s is not None and s not in SPLITS}
        if bad:
            raise DatasetError(f"unknown split {sorted(bad)[0]!r}; use one of {', '.join(SPLITS)}")
        with self._locked():
            rows = self.rows()
            by_video = {r.video: r for r in rows if r.error is None}
            changed = 0
            for rel, split in assignment.items():
                row = by_video.get(rel)
                data = dict(row.data) if row else {"video": rel}
                if data.get("split") == split:
                    continue
                data.pop("split", None)
                data = {"video": data.pop("video", rel), **({"split": split} if split else {}), **data}
                raw = json.dumps(data, ensure_ascii=False)
                if row is None:
                    rows.append(Row(len(rows) + 1, raw, data))
                else:
                    row.raw, row.data = raw, data
                changed += 1
            if changed:
                self._write_rows(rows)
        return changed

    # ------------------------------------------------------------------ drafts

    def save_draft(self, rel: str, text: str | None, model: str, error: str | None = None) -> dict:
        """Store a model's answer for `rel` as a draft, with the reasons it is not a valid label."""
        parsed, parse_error = extract_json(text) if text is not None else (None, error)
        schema = self.schema()
        errors = [parse_error] if parse_error else (label_errors(schema, parsed) if schema else [])
        draft = {"video": rel, "model": model, "text": text, "label": parsed, "errors": errors,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with self._locked():
            drafts = self.drafts()
            drafts[rel] = draft
            self._write_drafts(drafts)
        return draft

    def accept_draft(self, rel: str, expected_revision: str | None, label: dict | None = None) -> str:
        """Turn the draft (optionally edited into `label`) into the clip's label; validated like any save."""
        draft = self.drafts().get(rel)
        if draft is None and label is None:
            raise DatasetError(f"{rel}: no draft to accept")
        return self.save_label(rel, label if label is not None else (draft.get("label") or {}), expected_revision)

    def _drop_draft(self, rel: str) -> None:
        drafts = self.drafts()
        if rel in drafts:
            del drafts[rel]
            self._write_drafts(drafts)

    def _write_drafts(self, drafts: dict[str, dict]) -> None:
        atomic_write_text(self.root / DRAFTS, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in drafts.values()))

    # ------------------------------------------------------------------ schema and videos

    def save_schema(self, text: str) -> dict:
        """Validate and store a new schema; the old one is kept in .schema_history/<hash>.json."""
        schema = parse_schema(text, source="schema")
        with self._locked():
            old = self.schema_path
            if old.is_file():
                try:
                    prev = load_schema(old)
                    keep = self.root / SCHEMA_HISTORY / f"{schema_hash(prev)}.json"
                    if not keep.exists():
                        atomic_write_text(keep, json.dumps(prev, indent=2, ensure_ascii=False) + "\n")
                except SchemaError:
                    pass  # an unreadable old schema has nothing worth keeping
            atomic_write_text(self.schema_path, json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
            keep = self.root / SCHEMA_HISTORY / f"{schema_hash(schema)}.json"
            if not keep.exists():
                atomic_write_text(keep, json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        return schema

    def schema_versions(self) -> list[Path]:
        hist = self.root / SCHEMA_HISTORY
        return sorted(hist.glob("*.json"), key=lambda p: p.stat().st_mtime) if hist.is_dir() else []

    def check_labels(self, schema: dict) -> list[tuple[str, str, str]]:
        """(file, field, reason) for every stored label that `schema` rejects; nothing is changed."""
        out = []
        for row in self.rows():
            if row.error:
                out.append((f"{METADATA}:{row.line}", "(row)", row.error))
                continue
            label = row.label
            if not label:
                continue
            for err in label_errors(schema, label):
                where, _, reason = err.partition(": ")
                out.append((row.video, where, reason))
        return out

    def validate(self) -> dict:
        """The whole dataset checked (what `cli.py validate` prints): `problems`, one per broken label
        field, malformed row or unreadable video, and `counts` of clips per status."""
        schema = self.schema()
        if schema is None:
            raise DatasetError(f"{self.root}: no schema.json (give a schema file)")
        problems = [{"file": f, "field": fld, "reason": r} for f, fld, r in self.check_labels(schema)]
        clips = self.clips()
        problems += [{"file": c.rel, "field": "(video)", "reason": c.problems[0]} for c in clips if c.status == UNREADABLE]
        counts = {s: sum(1 for c in clips if c.status == s) for s in (LABELLED, INVALID, DRAFT, UNLABELLED, UNREADABLE)}
        return {"counts": counts, "problems": problems}

    def add_videos(self, files, chunk_seconds: float | None = None) -> tuple[list[str], list[str]]:
        """Copy uploaded videos (or the videos inside zips) into videos/, optionally cut into pieces.

        Returns (added relative paths, problems). A file that is not a readable video is reported and
        skipped; existing clips are never overwritten (a numeric suffix is added). See core.data.uploads.
        """
        return uploads.add_videos(self.root, files, chunk_seconds)
