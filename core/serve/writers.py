"""Prediction rows and the files they go to: JSONL, CSV, Parquet and SQLite.

Each row carries the answer's per-field confidence (core.serve.confidence): in JSONL a `confidence`
object (top-level field -> score) and `min_confidence`; in SQLite, CSV and Parquet one column
`<field>__confidence` per top-level field plus `min_confidence` (rows written before confidence
existed, and error rows, leave them empty; an older SQLite table gains the columns).

A row is keyed by (video, model), or with windows over long videos (core.video.windows) by (video,
start, model), a window's `start` and `end` seconds sitting beside `video`: re-running an export skips clips already done for that model
(resume) or, with `overwrite`, replaces them (upsert) — never a duplicate. SQLite rows go straight
into a table with one typed column per top-level schema field, in one transaction per batch. The
other formats cannot be appended to safely (Parquet) or cheaply de-duplicated in place, so rows
are first journalled to `OUT.partial.jsonl` (flushed per row: an interrupted export resumes from
it) and the final file is written atomically when the run ends.

This module does not run models (core.serve.batch does) and does not score rows (core.schema.scoring does).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import ConfigError
from core.fileio import atomic_write_text
from core.schema.base import BOOLEAN, ENUM, NUMBER, TEXT, extract_json, fields, label_errors
from core.schema.calibration import needs_review
from core.serve.confidence import min_confidence

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".sqlite": "sqlite", ".db": "sqlite",
           ".sqlite3": "sqlite"}
META_COLUMNS = ("video", "model", "spec_hash", "created", "schema_valid", "error", "raw", "seconds")
TABLE = "predictions"
MIN_CONFIDENCE = "min_confidence"
CONFIDENCE = "confidence"  # the JSONL object
# whether the scores are calibrated, and which fields a person should check (core.schema.calibration)
REVIEW_COLUMNS = ("calibrated", "needs_review", "review_fields")


@dataclass
class PredictionRow:
    video: str
    model: str
    spec_hash: str
    created: str
    schema_valid: bool
    error: str | None  # decode failure, parse failure or schema violations; None when valid
    raw: str | None
    seconds: float
    fields: dict  # parsed top-level fields (empty when the output did not parse)
    confidence: dict | None = None  # top-level field -> score in [0, 1], for the fields kept
    start: float | None = None  # a window's bounds in seconds (predict --window-seconds); None: the whole clip
    end: float | None = None
    calibrated: bool = False
    needs_review: bool = True
    review_fields: list | None = None

    def flat(self) -> dict:
        """One column per key: meta columns, fields, `<field>__confidence`, `min_confidence` and the
        review columns."""
        d = asdict(self)
        d.pop("fields")
        d.pop("confidence")
        review = {k: d.pop(k) for k in REVIEW_COLUMNS}
        if self.start is None:
            d.pop("start")
            d.pop("end")
        for name, value in self.fields.items():
            d[column_name(name)] = value
        for name, value in (self.confidence or {}).items():
            d[confidence_column(name)] = value
        d[MIN_CONFIDENCE] = min_confidence(self.confidence)
        return {**d, **review}


WINDOW_COLUMNS = ("start", "end")


def column_name(field: str) -> str:
    # a schema field called "video" or "model" must not overwrite the row's key columns
    taken = field in META_COLUMNS or field in WINDOW_COLUMNS or field == MIN_CONFIDENCE or field in REVIEW_COLUMNS
    return f"field_{field}" if taken else field


def row_key(row: dict) -> tuple:
    """What makes a row unique: (video, model), plus the window's start for window rows."""
    return row["video"], row.get("start"), row["model"]


def confidence_column(field: str) -> str:
    return f"{field}__confidence"


def confidence_columns(schema: dict) -> list[str]:
    return [confidence_column(f.name) for f in fields(schema)] + [MIN_CONFIDENCE]


def flatten_confidence(row: dict) -> dict:
    """A JSONL row (its `confidence` object) in the column form the other formats use."""
    if not isinstance(row.get(CONFIDENCE), dict):
        return row
    out = {k: v for k, v in row.items() if k != CONFIDENCE}
    for name, value in row[CONFIDENCE].items():
        out[confidence_column(name)] = value
    return out


def nest_confidence(row: dict, schema: dict) -> dict:
    """A column-form row as JSONL writes it: the `<field>__confidence` columns become one object."""
    names = [f.name for f in fields(schema)]
    scores = {n: row[confidence_column(n)] for n in names if row.get(confidence_column(n)) is not None}
    out = {}
    for key, value in row.items():
        if key == MIN_CONFIDENCE:
            out[CONFIDENCE] = scores
        if key not in {confidence_column(n) for n in names}:
            out[key] = value
    out.setdefault(CONFIDENCE, scores)
    return out


def make_row(schema: dict, video: str, model: str, spec_hash: str, text: str | None, error: str | None,
             seconds: float = 0.0, confidence: dict | None = None, window: tuple | None = None,
             calibrated: bool = False, review_fields: list | None = None) -> PredictionRow:
    """One output row. `review_fields` (the predictor's): the fields a person should check; None
    when unknown (an unread clip). A row needs review when it is not valid, its scores are not
    calibrated (no threshold was measured) or any field does."""
    parsed, parse_error = (extract_json(text) if text is not None else (None, None))
    problems = [error] if error else []
    if not problems and parse_error:
        problems = [parse_error]
    if not problems and parsed is not None:
        problems = label_errors(schema, parsed)
    props = schema.get("properties", {})
    kept = {k: v for k, v in (parsed or {}).items() if k in props}
    scores = {k: round(float(v), 6) for k, v in (confidence or {}).items() if k in kept and v is not None}
    return PredictionRow(video=video, model=model, spec_hash=spec_hash, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                         schema_valid=not problems, error="; ".join(problems) or None, raw=text,
                         seconds=round(seconds, 4), fields=kept, confidence=scores,
                         start=window[0] if window else None, end=window[1] if window else None,
                         calibrated=calibrated,
                         needs_review=needs_review(not problems, calibrated, review_fields),
                         review_fields=None if review_fields is None else list(review_fields))


def output_format(path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown output type; use one of {', '.join(sorted(FORMATS))}")
    return fmt


# ---------------------------------------------------------------------------- SQLite

def _sql_type(kind: str, prop: dict) -> str:
    if kind == NUMBER:
        return "INTEGER" if prop.get("type") == "integer" else "REAL"
    if kind == BOOLEAN:
        return "INTEGER"
    if kind in (ENUM, TEXT):
        return "TEXT"
    return "TEXT"  # arrays and objects are stored as JSON text


def sqlite_columns(schema: dict, windows: bool = False) -> list[tuple[str, str]]:
    meta = [("video", "TEXT NOT NULL"), ("model", "TEXT NOT NULL")]
    meta += [("start", "REAL NOT NULL"), ("end", "REAL")] if windows else []
    meta += [("spec_hash", "TEXT"), ("created", "TEXT"), ("schema_valid", "INTEGER"), ("error", "TEXT"),
             ("raw", "TEXT"), ("seconds", "REAL")]
    props = schema.get("properties", {})
    return (meta + [(column_name(f.name), _sql_type(f.kind, props.get(f.name, {}))) for f in fields(schema)]
            + [(c, "REAL") for c in confidence_columns(schema)]
            + [("calibrated", "INTEGER"), ("needs_review", "INTEGER"), ("review_fields", "TEXT")])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteWriter:
    def __init__(self, path, schema: dict, windows: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = sqlite_columns(schema, windows)
        self.key = "video, start, model" if windows else "video, model"
        self.db = sqlite3.connect(self.path)
        cols = ", ".join(f"{_quote(n)} {t}" for n, t in self.columns)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({cols}, PRIMARY KEY ({self.key}))")
        have = {r[1] for r in self.db.execute(f"PRAGMA table_info({TABLE})")}
        if ("start" in have) != windows:  # the primary key cannot change: one kind of row per file
            self.db.close()
            raise ConfigError(f"{self.path}: holds {'window' if 'start' in have else 'whole-clip'} rows; write "
                              f"{'window' if windows else 'whole-clip'} predictions to another file")
        # a schema that gained fields, or a table from before confidence, adds columns; old rows keep NULL
        for name, typ in self.columns:
            if name not in have:
                self.db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {_quote(name)} {typ}")
        self.db.commit()

    def done(self, model: str) -> set[str]:
        return {r[0] for r in self.db.execute(f"SELECT video FROM {TABLE} WHERE model = ?", (model,))}

    def done_windows(self, model: str) -> set[tuple[str, float]]:
        return {(r[0], r[1]) for r in self.db.execute(f"SELECT video, start FROM {TABLE} WHERE model = ?", (model,))}

    def write(self, rows: list[PredictionRow]) -> None:
        names = [n for n, _ in self.columns]
        keys = {k.strip() for k in self.key.split(",")}
        sql = (f"INSERT INTO {TABLE} ({', '.join(map(_quote, names))}) VALUES ({', '.join('?' * len(names))}) "
               f"ON CONFLICT({self.key}) DO UPDATE SET "
               + ", ".join(f"{_quote(n)} = excluded.{_quote(n)}" for n in names if n not in keys))
        with self.db:
            self.db.executemany(sql, [[_sql_value(row.flat().get(n)) for n in names] for row in rows])

    def close(self) -> None:
        self.db.close()


def _sql_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


# ---------------------------------------------------------------------------- journalled files

class FileWriter:
    """JSONL / CSV / Parquet: rows journalled to OUT.partial.jsonl, the final file written at close."""

    def __init__(self, path, schema: dict, overwrite: bool = False):
        self.path = Path(path)
        self.fmt = output_format(path)
        self.schema = schema
        self.overwrite = overwrite
        self.journal = self.path.with_name(self.path.name + ".partial.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.journal.open("a", encoding="utf-8")

    def existing(self) -> list[dict]:
        return read_rows(self.path) if self.path.is_file() else []

    def journalled(self) -> list[dict]:
        return _journal_rows(self.journal) if self.journal.is_file() else []

    def done(self, model: str) -> set[str]:
        rows = self.journalled() + ([] if self.overwrite else self.existing())
        return {r["video"] for r in rows if r.get("model") == model}

    def done_windows(self, model: str) -> set[tuple[str, float]]:
        rows = self.journalled() + ([] if self.overwrite else self.existing())
        return {(r["video"], float(r["start"])) for r in rows if r.get("model") == model and r.get("start") is not None}

    def write(self, rows: list[PredictionRow]) -> None:
        for row in rows:
            self._fh.write(json.dumps(row.flat(), ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
        merged: dict[tuple, dict] = {}
        for r in self.existing() + self.journalled():  # later rows replace earlier: upsert by key
            merged[row_key(r)] = flatten_confidence(r)
        _write_table(self.path, self.fmt, list(merged.values()), self.schema)
        self.journal.unlink(missing_ok=True)


def _columns(rows: list[dict], schema: dict) -> list[str]:
    cols = (list(META_COLUMNS) + [column_name(f.name) for f in fields(schema)] + confidence_columns(schema)
            + list(REVIEW_COLUMNS))
    if any(r.get("start") is not None for r in rows):
        cols[1:1] = list(WINDOW_COLUMNS)  # window rows: the bounds right after the video
    extra = [k for r in rows for k in r if k not in cols and k != CONFIDENCE]
    return cols + list(dict.fromkeys(extra))


def _write_table(path: Path, fmt: str, rows: list[dict], schema: dict) -> None:
    import pandas as pd

    cols = _columns(rows, schema)
    if fmt == "jsonl":
        atomic_write_text(path, "".join(json.dumps(nest_confidence({c: r.get(c) for c in cols}, schema),
                                                   ensure_ascii=False) + "\n" for r in rows))
        return
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        for c in frame.columns:  # lists/objects as JSON text: a CSV cell holds one string
            if frame[c].map(lambda v: isinstance(v, (list, dict))).any():
                frame[c] = frame[c].map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v)
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def read_rows(path) -> list[dict]:
    """Rows of a prediction file of any supported format (used for resume and in tests)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "jsonl":
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if fmt == "sqlite":
        db = sqlite3.connect(path)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(f"SELECT * FROM {TABLE}")]
        finally:
            db.close()
    import pandas as pd

    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    frame = frame.astype(object).where(frame.notna(), None)
    rows = frame.to_dict("records")
    for row in rows:  # Parquet gives list columns back as arrays
        for key, value in row.items():
            if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
                row[key] = value.tolist()
    return rows


def open_writer(path, schema: dict, overwrite: bool = False, windows: bool = False):
    if output_format(path) == "sqlite":
        return SqliteWriter(path, schema, windows)
    return FileWriter(path, schema, overwrite)


def kept_rows(path) -> int:
    """Rows a prediction file holds now, its journal of an interrupted run included (for the words of a stop)."""
    path = Path(path)
    if output_format(path) == "sqlite":
        if not path.is_file():
            return 0
        db = sqlite3.connect(path)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] if TABLE in tables else 0
        finally:
            db.close()
    rows = read_rows(path) if path.is_file() and path.stat().st_size else []
    journal = path.with_name(path.name + ".partial.jsonl")
    rows += _journal_rows(journal) if journal.is_file() else []
    return len({row_key(r) for r in rows if "video" in r and "model" in r})


def _journal_rows(journal: Path) -> list[dict]:
    rows = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash mid-write: that clip is simply redone
    return rows
