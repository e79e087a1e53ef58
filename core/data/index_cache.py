"""What the annotation store has already worked out about a dataset, kept between processes.

Three tables in one SQLite file under the cache folder (one file per dataset folder): line
summaries by content key (what a metadata or drafts line says: its video, split, whether it has a
label), label checks by (content key, schema hash), and video probe results by (path, size,
mtime). Every entry is a pure function of what it is keyed by, so an entry is never stale, only
unused; the truth stays in the dataset folder. A new process loads these instead of parsing and
validating 100,000 rows again (validation is the slow part: ~40 µs a label with jsonschema).

Losing this file costs time, never data: a file that cannot be opened or written is dropped and
the store runs on what it keeps in memory. That is also why it is written with `synchronous=OFF`
(no fsync; a crash may lose or tear the last writes, and a torn or unreadable entry is the same as
a missing one: recomputed) and why a big batch (a first read) goes in as one blob (`BULK`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path

from core.paths import cache_dir

log = logging.getLogger(__name__)

TABLES = """
CREATE TABLE IF NOT EXISTS summaries (kind TEXT, key TEXT, a, b, c, d, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS checks (key TEXT, schema TEXT, errors TEXT, PRIMARY KEY (key, schema));
CREATE TABLE IF NOT EXISTS probes (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS bulk (name TEXT, data BLOB);
"""
# A batch at least this big (a first read of a dataset, an import) is stored as one JSON value in
# `bulk` instead of a row per entry: SQLite inserts ~3 us a row into a keyed table whatever the
# batching (0.65 s for the 190,000 summaries and checks of a first 100,000-row read), one blob of
# them costs ~0.1 s to write and less to read back. Small batches (a save) stay rows.
BULK = 2000


def cache_file(root: Path) -> Path:
    name = hashlib.sha1(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "store" / f"{name}.sqlite"


class IndexCache:
    def __init__(self, root):
        self.path = cache_file(root)
        self._lock = threading.Lock()  # the gallery's video scan writes probes from its own thread
        self._con: sqlite3.Connection | None = None
        self._broken = False
        self._summaries: dict[str, dict] = {}
        self._checks: dict[str, dict] = {}
        self._probes: dict | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self._con is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=OFF")  # a lost entry is recomputed, never wrong
                con.executescript(TABLES)
                self._con = con
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
        return self._con

    def _fail(self, exc) -> None:
        log.warning("store index cache %s unusable (%s); working from memory", self.path, exc)
        self._broken, self._con = True, None

    def _write(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._lock:
            con = self._db()
            if con is None:
                return
            try:
                con.execute("BEGIN")
                con.executemany(sql, rows)
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                self._fail(exc)

    def _bulk(self, name: str) -> list:
        """The entries of every bulk batch stored under `name`."""
        out = []
        for (data,) in self._read("SELECT data FROM bulk WHERE name = ?", (name,)):
            try:
                out += json.loads(data)
            except (ValueError, TypeError) as exc:
                self._fail(exc)
                return []
        return out

    def _put_bulk(self, name: str, entries: list) -> None:
        self._write("INSERT INTO bulk VALUES (?, ?)", [(name, json.dumps(entries, ensure_ascii=False))])

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            con = self._db()
            if con is None:
                return []
            try:
                return con.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self._fail(exc)
                return []

    # ------------------------------------------------------------------ line summaries

    def summaries(self, kind: str) -> dict:
        """key -> summary tuple for lines of `kind` ever seen (loaded from disk on first use)."""
        if kind not in self._summaries:
            # a summary is up to 4 scalars, one column each: decoding JSON per row would cost more
            # than the rest of a 100,000-row load
            found = {e[0]: tuple(e[1:]) for e in self._bulk("summaries:" + kind)}
            rows = self._read("SELECT key, a, b, c, d FROM summaries WHERE kind = ?", (kind,))
            found.update((r[0], r[1:]) for r in rows)
            self._summaries[kind] = found
        return self._summaries[kind]

    def put_summaries(self, kind: str, items: dict) -> None:
        self.summaries(kind).update(items)
        if len(items) >= BULK:
            self._put_bulk("summaries:" + kind, [[k, *v] for k, v in items.items()])
            return
        self._write("INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?, ?)",
                    [(kind, k, *v, *(None,) * (4 - len(v))) for k, v in items.items()])

    # ------------------------------------------------------------------ label checks

    def checks(self, schema: str) -> dict:
        """key -> tuple of label errors under the schema with hash `schema` (empty: valid)."""
        if schema not in self._checks:
            found = {k: tuple(e) for k, e in self._bulk("checks:" + schema)}
            rows = self._read("SELECT key, errors FROM checks WHERE schema = ?", (schema,))
            found.update((k, () if e is None else tuple(json.loads(e))) for k, e in rows)
            self._checks[schema] = found
        return self._checks[schema]

    def put_checks(self, schema: str, items: dict) -> None:
        self.checks(schema).update(items)
        if len(items) >= BULK:
            self._put_bulk("checks:" + schema, [[k, list(v)] for k, v in items.items()])
            return
        self._write("INSERT OR REPLACE INTO checks VALUES (?, ?, ?)",
                    [(k, schema, json.dumps(list(v), ensure_ascii=False) if v else None) for k, v in items.items()])

    # ------------------------------------------------------------------ video probes

    def probes(self) -> dict:
        """path -> (size, mtime_ns, reason or None)."""
        if self._probes is None:
            rows = self._read("SELECT path, size, mtime, reason FROM probes")
            self._probes = {p: (s, m, r) for p, s, m, r in rows}
        return self._probes

    def put_probes(self, items: dict) -> None:
        self.probes().update(items)
        self._write("INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?)",
                    [(p, s, m, r) for p, (s, m, r) in items.items()])
