"""The annotation store: a dataset folder on disk is the source of truth for labels and drafts.

`metadata.jsonl` (seed layout) holds labels, one row per clip; `drafts.jsonl` beside it holds model
pre-labels that nobody has accepted yet, so training never sees an unreviewed draft. Every write
takes an exclusive `flock` on `.store.lock`, checks the file is the one it indexed (re-reading it
when someone else changed it) and applies one change. A row's *revision* is a hash of its current
line: a save names the revision it was based on, so two tabs saving different clips both keep
their edits and two saving the same clip get a `ConflictError` instead of a silent overwrite.
Lines that do not parse are kept verbatim, byte for byte.

A save of a big dataset appends one fsynced line to `metadata.pending.jsonl` instead of rewriting
metadata.jsonl (core.data.journal, core.data.pending): every read here sees the file with those
edits applied, and they are folded into the file (one atomic replace) every few hundred saves,
before a split or a schema change, and on `fold()`. A small metadata.jsonl is replaced per save.

At scale nothing here re-reads, re-parses or re-validates every row per operation: rows live in
an index (core.data.lines) reused while metadata.jsonl keeps its size, mtime and inode, patched by
the store's own writes and rebuilt only when someone else changed the file; label checks
(core.data.checks) and video probes (core.data.folder) are kept between processes
(core.data.index_cache); drafts.jsonl is an append-only log (core.data.drafts).

This module does not decode video beyond probing readability, does not run models (core.serve.prelabel does),
does not choose splits (core.data.splits does), does not page the gallery (core.data.listing does) and does
not copy uploads in itself (core.data.uploads does, behind `add_videos`).
"""

from __future__ import annotations

import copy
import json
import threading
from contextlib import contextmanager
from pathlib import Path

from core.data import journal, records, uploads
from core.data.checks import LabelChecks, schema_versions, write_schema
from core.data.checks import errors as label_check
from core.data.dataset import METADATA, SCHEMA, SPLITS, dataset_lock, safe_video_path
from core.data.drafts import DRAFTS, DraftLog, make_draft
from core.data.folder import Probes, VideoFiles
from core.data.index_cache import IndexCache
from core.data.pending import PendingLines
from core.data.records import (
    DRAFT,
    INVALID,
    LABELLED,
    NEW,
    STATUSES,
    UNLABELLED,
    UNREADABLE,
    Clip,
    Row,
    lexically_safe,
    parse_lines,
    parse_row,
    revision,
)
from core.data.statuses import StatusTable, gc_paused
from core.errors import DatasetError, WorkbenchError
from core.schema.base import parse_schema

__all__ = ["DRAFT", "DRAFTS", "INVALID", "LABELLED", "NEW", "STATUSES", "UNLABELLED", "UNREADABLE", "AnnotationStore",
           "Clip", "ConflictError", "Row", "parse_lines", "revision"]


class ConflictError(WorkbenchError):
    """Someone else saved this clip after it was opened here."""


class AnnotationStore:
    def __init__(self, root, schema_path=None):
        self.root = Path(root)
        self.schema_path = Path(schema_path) if schema_path else self.root / SCHEMA
        self._cache = IndexCache(self.root)
        self._meta = PendingLines(self.root / METADATA, records.summarize_parsed, self._cache, "metadata", keep_parsed=True)
        self._drafts = DraftLog(self.root, self._cache)
        self._files = VideoFiles(self.root)
        self._probes = Probes(self.root, self._cache)
        # one store serves the app's request threads and its video scan: the in-memory index is
        # read and patched under this lock (the flock only orders processes)
        self._mutex = threading.RLock()
        self._checks = LabelChecks(self.schema_path, self._cache)
        self._table = StatusTable()
        self.scan = None  # the background video scan (core.data.listing.VideoScan), once started

    # ------------------------------------------------------------------ reading

    @property
    def metadata_path(self) -> Path:
        return self.root / METADATA

    def _schema_state(self) -> tuple:
        return self._checks.state()

    def schema(self) -> dict | None:
        with self._mutex:
            return copy.deepcopy(self._schema_state()[0])  # callers edit what they get

    def rows(self) -> list[Row]:
        with self._mutex:
            self._meta.sync()
            return [parse_row(n, raw) for n, raw in zip(self._meta.numbers, self._meta.raws)]

    def problems(self) -> list[str]:
        """Lines of metadata.jsonl that are kept but cannot be used: 'metadata.jsonl:LINE: reason'."""
        with self._mutex:
            self._meta.sync()
            return [f"{METADATA}:{n}: {s[3]}" for n, s in zip(self._meta.numbers, self._meta.summaries) if s[3]]

    def drafts(self) -> dict[str, dict]:
        with self._mutex:
            self._drafts.sync()
            return self._drafts.all()

    def _by_video(self) -> dict[str, int]:
        return self._meta.positions()

    def video_files(self) -> list[str]:
        """Video (and still image) files under videos/ (relative paths), whether or not metadata mentions them."""
        with self._mutex:
            return list(self._files.current())

    def _listing_key(self) -> tuple:
        """What the status table depends on, each file synced first."""
        self._meta.sync()
        self._drafts.sync()
        files = self._files.current()
        return (self._meta.version, self._drafts.lines.version, self._schema_state()[1], self._probes.version,
                id(files))

    def _statuses(self) -> list[tuple[str, int | None, str]]:
        """(clip, its metadata entry or None, status) for every clip, rows first then files without
        a row, from the index alone: no video is probed, one already probed as unreadable says so."""
        key = self._listing_key()
        if self._table.key != key:
            self._table.build(key, self._meta.summaries, self._files.current(),
                              self._status_rule(self._checks.for_rows(self._meta)))
        return self._table.rows

    def _status_rule(self, checks: dict):
        """status(clip, metadata entry) with what it reads fetched once: called per clip of 100,000."""
        summaries, keys, drafts, known = self._meta.summaries, self._meta.keys, self._drafts.live(), self._probes.known

        def status(rel: str, i: int | None) -> str:
            if not lexically_safe(rel) or known(rel):
                return UNREADABLE
            if i is not None and summaries[i][2]:
                return INVALID if checks.get(keys[i]) else LABELLED
            return DRAFT if rel in drafts else UNLABELLED
        return status

    def _patched(self, before: tuple, rels: list[str]) -> None:
        """The status table after a write of ours that touched `rels` (see StatusTable.patch)."""
        by_video = self._by_video()
        status = self._status_rule({self._meta.keys[i]: self._checks.of(self._meta, i)
                                    for i in map(by_video.get, rels) if i is not None})
        items = [(rel, by_video.get(rel), status(rel, by_video.get(rel))) for rel in rels]
        self._table.patch(before, self._listing_key(), items)

    def clips(self, check_video: bool = True) -> list[Clip]:
        """Every clip the dataset knows (metadata rows first, then files without a row), with status.
        `check_video=False` probes no video (one already known to be unreadable still says so)."""
        with self._mutex, gc_paused():
            statuses = self._statuses()
            checks = self._checks.for_rows(self._meta)  # one schema check for all rows, not one per clip
            try:
                return [self._clip(rel, i, check_video, checks) for rel, i, _ in statuses]
            finally:
                self._meta.parsed.clear()  # every row that will be needed is listed: let them go

    def clip(self, rel: str) -> Clip:
        with self._mutex:
            self._meta.sync()
            self._drafts.sync()
            i = self._by_video().get(rel)
            self._files.current()
            if i is None and rel not in self._files.known:
                raise DatasetError(f"{rel}: no such clip in {self.root}")
            return self._clip(rel, i, True)

    def clip_revision(self, rel: str) -> str:
        """The revision a save of `rel` must name, without probing the video."""
        with self._mutex:
            self._meta.sync()
            i = self._by_video().get(rel)
            return NEW if i is None else self._meta.keys[i][:12]

    def statuses(self) -> list[tuple[str, str]]:
        """(clip, status) for every clip in gallery order, from the index (see `clips` for probing).
        The same list object while nothing changed: do not modify it."""
        with self._mutex, gc_paused():
            self._statuses()
            self._meta.parsed.clear()  # the labels are checked: the parsed rows are not needed again
            return self._table.public

    def search_text(self) -> dict[str, str]:
        """clip -> its metadata line, for search; clips without a row are absent."""
        with self._mutex:
            return {rel: self._meta.raws[i] for rel, i, _ in self._statuses() if i is not None}

    def _clip(self, rel: str, i: int | None, check_video: bool, checks: dict | None = None) -> Clip:
        meta = self._meta
        label, split = {}, None
        if i is not None:  # parsed by the read that found the line (handed over: popped), else now
            got = meta.parsed.pop(meta.keys[i], None)
            if got is None:
                data = parse_row(meta.numbers[i], meta.raws[i]).data
                got = records.label_of(data), data.get("split")
            label, split = got
        rev = meta.keys[i][:12] if i is not None else NEW
        draft = self._drafts.get(rel)
        try:
            path = safe_video_path(self.root, rel) if check_video or not lexically_safe(rel) else records.child_path(self.root, rel)
        except DatasetError as exc:
            return Clip(rel, self.root / "?", UNREADABLE, rev, label, split, draft, (str(exc),))
        reason = self._probes.reason(rel, path) if check_video else self._probes.known(rel)
        if reason:
            return Clip(rel, path, UNREADABLE, rev, label, split, draft, (reason,))
        if label:
            key = meta.keys[i]
            errors = checks[key] if checks is not None and key in checks else self._checks.of(meta, i)
            return Clip(rel, path, INVALID if errors else LABELLED, rev, label, split, draft, tuple(errors))
        if draft is not None:
            return Clip(rel, path, DRAFT, rev, label, split, draft, tuple(draft.get("errors") or ()))
        return Clip(rel, path, UNLABELLED, rev, label, split, draft)

    def video_problem(self, rel: str) -> str | None:
        """Why the clip's video cannot be used (unsafe path, missing, not decodable), or None; probed
        once per file size and mtime, the answer kept between processes."""
        return self._probes.reason(rel)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _locked(self):
        with dataset_lock(self.root):
            yield

    def save_label(self, rel: str, label: dict, expected_revision: str | None, split: str | None = ...) -> str:
        """Store `label` for clip `rel`; returns the new revision.

        `expected_revision` is what the caller saw when it opened the clip (None skips the check,
        for imports and scripts). The label must satisfy the schema: a label that breaks it is
        refused with the reasons, never written.
        """
        if not isinstance(label, dict):
            raise DatasetError(f"{rel}: a label must be a JSON object")
        safe_video_path(self.root, rel)
        with self._mutex:
            schema, _, validator = self._schema_state()
            if schema is not None:
                errors = label_check(schema, validator, label)
                if errors:
                    raise DatasetError(f"{rel}: label breaks the schema: " + "; ".join(errors))
            with self._locked():
                before = self._listing_key()
                i = self._by_video().get(rel)
                current = NEW if i is None else self._meta.keys[i][:12]
                if expected_revision is not None and expected_revision != current:
                    raise ConflictError(
                        f"{rel} was saved by someone else after you opened it; reload the clip to see their "
                        "version, then save again")
                old = parse_row(0, self._meta.raws[i]).data if i is not None else None
                if split is ...:
                    split = (old or {}).get("split")
                raw = records.row_text(rel, label, split, old, schema)
                key = self._meta.record(rel, i, raw)
                self._checks.passed(key)
                self._drop_draft(rel)
                self._patched(before, [rel])
        return key[:12]

    def set_splits(self, assignment: dict[str, str | None]) -> int:
        """Write `split` for the given clips (rows are created for clips that have none); returns count."""
        bad = {s for s in assignment.values() if s is not None and s not in SPLITS}
        if bad:
            raise DatasetError(f"unknown split {sorted(bad)[0]!r}; use one of {', '.join(SPLITS)}")
        with self._mutex, self._locked():
            meta = self._meta
            before = self._listing_key()
            by_video = self._by_video()
            changes, appends, new_rels = {}, [], []
            for rel, split in assignment.items():
                i = by_video.get(rel)
                data = json.loads(meta.raws[i]) if i is not None else {"video": rel}
                if data.get("split") == split:
                    continue
                data.pop("split", None)
                data = {"video": data.pop("video", rel), **({"split": split} if split else {}), **data}
                if i is None:
                    appends.append(json.dumps(data, ensure_ascii=False))
                    new_rels.append(rel)
                else:
                    changes[i] = json.dumps(data, ensure_ascii=False)
            if changes or appends:  # a whole-file change: pending edits folded in with it
                old_keys = {i: meta.keys[i] for i in changes}
                meta.fold(changes, appends)
                self._checks.carry({old: meta.keys[i] for i, old in old_keys.items()})
                self._patched(before, new_rels)
        return len(changes) + len(appends)

    def fold(self) -> None:
        """Write the pending edits (metadata.pending.jsonl) into metadata.jsonl now, so that a script
        reading the file sees them; cheap when nothing is pending. For the app when idle or closing."""
        with self._mutex, self._locked():
            before = self._listing_key()
            self._meta.fold()
            self._patched(before, [])

    def conflicts(self) -> list[str]:
        """Saves that lost to a hand edit of metadata.jsonl: pending ones (dropped at the next fold)
        and those kept in metadata.conflicts.jsonl (delete that file once reviewed)."""
        with self._mutex:
            self._meta.sync()
            return journal.reports(self.metadata_path, self._meta.conflicts)

    # ------------------------------------------------------------------ drafts

    def save_draft(self, rel: str, text: str | None, model: str, error: str | None = None,
                   confidence: dict | None = None, review: dict | None = None,
                   answer_confidence: float | None = None) -> dict:
        """Store a model's answer for `rel` as a draft with its per-field `confidence` and the whole
        answer's score, the review queue's rank (drafts.make_draft)."""
        draft = make_draft(rel, text, model, self.schema(), error, confidence, review, answer_confidence)
        with self._mutex, self._locked():
            before = self._listing_key()
            self._drafts.add(draft)
            self._patched(before, [rel])
        return draft

    def draft_scores(self) -> dict[str, float | None]:
        """clip -> its draft's review rank (drafts.review_rank; None: not scored), from the drafts index
        (no line parsed)."""
        with self._mutex:
            self._drafts.sync()
            return self._drafts.scores()

    def accept_draft(self, rel: str, expected_revision: str | None, label: dict | None = None) -> str:
        """Turn the draft (optionally edited into `label`) into the clip's label; validated like any save."""
        draft = self.drafts().get(rel)
        if draft is None and label is None:
            raise DatasetError(f"{rel}: no draft to accept")
        return self.save_label(rel, label if label is not None else (draft.get("label") or {}), expected_revision)

    def _drop_draft(self, rel: str) -> None:
        self._drafts.sync()
        self._drafts.drop(rel)

    # ------------------------------------------------------------------ schema and videos

    def save_schema(self, text: str) -> dict:
        """Validate and store a new schema; the old one is kept in .schema_history/<hash>.json."""
        schema = parse_schema(text, source="schema")
        with self._mutex, self._locked():
            self._meta.sync()
            self._meta.fold()  # a whole-file operation: the labels it is checked against are in the file
            write_schema(self.root, self.schema_path, schema)
        return schema

    def schema_versions(self) -> list[Path]:
        return schema_versions(self.root)

    def labelled_count(self) -> int:
        """Rows that carry a label, from the index (no row is parsed)."""
        with self._mutex:
            self._meta.sync()
            return sum(1 for s in self._meta.summaries if s[2] and s[3] is None)

    def check_labels(self, schema: dict) -> list[tuple[str, str, str]]:
        """(file, field, reason) for every stored label that `schema` rejects; nothing is changed."""
        with self._mutex:
            meta = self._meta
            meta.sync()
            checks = self._checks.for_rows(meta, schema)
            out = []
            for n, key, (video, _split, labelled, error) in zip(meta.numbers, meta.keys, meta.summaries):
                if error:
                    out.append((f"{METADATA}:{n}", "(row)", error))
                    continue
                for err in checks.get(key, ()) if labelled else ():
                    where, _, reason = err.partition(": ")
                    out.append((video, where, reason))
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
        problems += [{"file": journal.conflicts_path(METADATA).name, "field": "(conflict)", "reason": r}
                     for r in self.conflicts()]
        counts = {s: sum(1 for c in clips if c.status == s) for s in (LABELLED, INVALID, DRAFT, UNLABELLED, UNREADABLE)}
        return {"counts": counts, "problems": problems}

    def add_videos(self, files, chunk_seconds: float | None = None) -> uploads.AddedClips:
        """Copy uploaded videos (or the videos inside zips) into videos/, optionally cut into pieces.

        Returns an AddedClips (`added, problems = ...` unpacks it): a file that is not a readable
        video is reported and skipped; existing clips are never overwritten (a numeric suffix is
        added). The clips come without a split: `no_split` counts them and `note` says what training
        does with them (left out while the dataset has a train split). See core.data.uploads.
        """
        result = uploads.add_videos(self.root, files, chunk_seconds)
        if result.no_split:
            with self._mutex:
                self._meta.sync()
                # what training does (core.train.stream): the train split, else the rows without a split
                has_train = any(summary[1] == "train" for summary in self._meta.summaries)
            result.note = uploads.split_note(result.no_split, has_train)
        return result
