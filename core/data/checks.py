"""The dataset's schema (its file and kept versions) and every row's label checked against it, each
row once per content and schema.

`LabelChecks.state` re-reads schema.json only when it changes (and builds one validity check for
it: core.schema.fastcheck's compiled check where the schema allows, else jsonschema's);
`for_rows` makes sure every labelled row of the index has its errors under a schema, validating
only rows whose content was never checked under that schema's hash (results kept between
processes in core.data.index_cache). jsonschema costs ~40 µs a label, the compiled check a few,
and either way 100,000 labels are validated once per schema, not once per page.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.data.lines import fingerprint
from core.data.records import parse_row
from core.errors import SchemaError
from core.fileio import atomic_write_text
from core.schema.base import label_errors, load_schema, schema_hash
from core.schema.fastcheck import validity_check

SCHEMA_HISTORY = ".schema_history"


def write_schema(root: Path, schema_path: Path, schema: dict) -> None:
    """Replace the schema file, keeping the old and the new version in .schema_history/<hash>.json
    (the store holds the lock)."""
    def keep(version: dict) -> None:
        path = root / SCHEMA_HISTORY / f"{schema_hash(version)}.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(version, indent=2, ensure_ascii=False) + "\n")

    if schema_path.is_file():
        try:
            keep(load_schema(schema_path))
        except SchemaError:
            pass  # an unreadable old schema has nothing worth keeping
    atomic_write_text(schema_path, json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    keep(schema)


def schema_versions(root: Path) -> list[Path]:
    hist = root / SCHEMA_HISTORY
    return sorted(hist.glob("*.json"), key=lambda p: p.stat().st_mtime) if hist.is_dir() else []


def errors(schema: dict, is_valid, label: dict) -> tuple[str, ...]:
    # is_valid is the fast path; the sorted, worded reasons only for the labels that fail
    return () if is_valid(label) else tuple(label_errors(schema, label))


class LabelChecks:
    def __init__(self, schema_path, cache):
        self.schema_path = schema_path
        self._cache = cache
        self._memo: tuple = (False,)

    def state(self) -> tuple:
        """(schema or None, its hash, its validity check)."""
        fp = fingerprint(self.schema_path)
        if self._memo[0] != fp:
            if fp is None:
                self._memo = (None, None, None, None)
            else:
                schema = load_schema(self.schema_path)
                self._memo = (fp, schema, schema_hash(schema), validity_check(schema))
        return self._memo[1:]

    def for_rows(self, meta, schema: dict | None = None) -> dict:
        """line key -> label errors under `schema` (default: the dataset's), every labelled row included."""
        if schema is None:
            schema, shash, validator = self.state()
            if schema is None:
                return {}
        else:
            shash, validator = schema_hash(schema), validity_check(schema)
        checks, missing, parsed = self._cache.checks(shash), {}, meta.parsed
        for key, s, raw in zip(meta.keys, meta.summaries, meta.raws):
            if s[2] and s[3] is None and key not in checks and key not in missing:
                got = parsed.get(key)  # parsed by this read of the file already, else parsed now
                missing[key] = errors(schema, validator, got[0] if got else parse_row(0, raw).label)
        if missing:
            self._cache.put_checks(shash, missing)
        return checks

    def of(self, meta, i: int) -> tuple[str, ...]:
        """Label errors of index entry `i` under the dataset's schema."""
        schema, shash, validator = self.state()
        if schema is None:
            return ()
        checks, key = self._cache.checks(shash), meta.keys[i]
        if key not in checks:
            self._cache.put_checks(shash, {key: errors(schema, validator, parse_row(0, meta.raws[i]).label)})
        return checks[key]

    def carry(self, renamed: dict[str, str]) -> None:
        """Rows rewritten with the same label under new keys (a split changed) keep their checks."""
        _, shash, _ = self.state()
        if shash:
            checks = self._cache.checks(shash)
            self._cache.put_checks(shash, {new: checks[old] for old, new in renamed.items() if old in checks})

    def passed(self, key: str) -> None:
        """A row the store just wrote after validating its label."""
        _, shash, _ = self.state()
        if shash:
            self._cache.put_checks(shash, {key: ()})
