"""Whether `predict` may write into an output path that already exists, decided before any model loads.

Predict resumes and extends the files it wrote, so it must tell those from files it did not write
(a dataset's metadata.jsonl, somebody's spreadsheet) by their content, and refuse the latter before
an hour of predictions is spent on a file that cannot take them. A file is *ours* when:
- JSONL: every non-blank line is a JSON object with the row keys `video`, `model`, `spec_hash`
  and `schema_valid` (what core.serve.writers writes);
- CSV / Parquet: its header has those four columns;
- SQLite: it is a SQLite database whose `predictions` table (if there is one) has `video` and
  `model` columns; other tables are left alone, predict only adds its own.
An empty file counts as ours (there is nothing in it to lose). Anything else is refused with the
reason, and never rewritten.

The kind of rows must match the run too: window rows (`predict --window-seconds`: a `start`
key or column) and whole-clip rows are never mixed in one file, in either direction (a whole-clip
run over window rows would find every clip "already done"). The journal of an interrupted run
(`OUT.partial.jsonl`) counts as part of the file.

This module reads files only; core.serve.writers writes them.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

from core.errors import ConfigError
from core.serve.writers import TABLE, output_format

ROW_KEYS = ("video", "model", "spec_hash", "schema_valid")
WINDOW, CLIP = "window", "whole-clip"


def check_output(path, windows: bool = False) -> None:
    """Refuse `path` (ConfigError) when it exists and this tool did not write it, or when it holds
    the other kind of rows than this run writes (`windows`: window rows)."""
    path = Path(path)
    fmt = output_format(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"--output {path} is not a file: give the path of a new file, or of one predict wrote")
    kinds = set()
    if path.is_file() and path.stat().st_size > 0:
        kinds |= _kinds(path, fmt)
    journal = path.with_name(path.name + ".partial.jsonl")
    if journal.is_file():
        kinds |= _jsonl_kinds(journal, journal=True)
    want = WINDOW if windows else CLIP
    if kinds - {want}:
        other = (kinds - {want}).pop()
        raise ConfigError(f"{path}: holds {other} rows; write {want} predictions to another file "
                          "(one kind of row per file)")


def _foreign(path: Path, why: str) -> ConfigError:
    return ConfigError(f"--output {path} exists and is not a prediction file written by predict ({why}); it is "
                       "left as it is: give --output a new file, or one an earlier predict wrote")


def _kinds(path: Path, fmt: str) -> set[str]:
    if fmt == "jsonl":
        return _jsonl_kinds(path)
    if fmt == "sqlite":
        return _sqlite_kinds(path)
    columns = _csv_header(path) if fmt == "csv" else _parquet_columns(path)
    missing = [k for k in ROW_KEYS if k not in columns]
    if missing:
        raise _foreign(path, f"no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}")
    return {WINDOW if "start" in columns else CLIP}


def _jsonl_kinds(path: Path, journal: bool = False) -> set[str]:
    kinds = set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if journal:
                    continue  # a line cut by a crash mid-write: the writer skips it too
                raise _foreign(path, f"line {number} is not JSON") from None
            missing = [k for k in ROW_KEYS if k not in row] if isinstance(row, dict) else ["an object"]
            if missing:
                raise _foreign(path, f"line {number} has no {', '.join(missing)}")
            kinds.add(WINDOW if row.get("start") is not None else CLIP)
    return kinds


def _sqlite_kinds(path: Path) -> set[str]:
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")} if TABLE in tables else set()
    except sqlite3.DatabaseError as exc:
        raise _foreign(path, f"not a SQLite database: {exc}") from None
    finally:
        db.close()
    if TABLE not in tables:
        return set()  # a database of other tables: predict adds its own table beside them
    if not {"video", "model"} <= columns:
        raise _foreign(path, f"its '{TABLE}' table has no video and model columns")
    return {WINDOW if "start" in columns else CLIP}


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _foreign(path, f"not a UTF-8 CSV: {exc}") from None


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow
    import pyarrow.parquet

    try:
        return list(pyarrow.parquet.read_schema(path).names)
    except (pyarrow.ArrowException, OSError) as exc:
        raise _foreign(path, f"not a Parquet file: {exc}") from None
