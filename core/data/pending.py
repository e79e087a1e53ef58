"""The index of metadata.jsonl as readers must see it: the file with its pending edits applied.

`PendingLines` is a core.data.lines.LineIndex of metadata.jsonl whose entries are overlaid with
the journal's (core.data.journal): an edited row's text, key and summary are the edit's while its
byte span still points at the old line in the file; a clip's first row added by a save sits after
the file's rows, with no span yet. `record` is the store's save: one fsynced journal line and the
overlay, no whole-file write. `fold` writes the overlay (and any further changes, a split's) into
metadata.jsonl with one byte-copying atomic replace (LineIndex.rewrite), then deletes the journal.

`sync` reads the journal before the file: if another process folds in between, this reads the old
journal and the new file, and replaying an entry that is already in the file changes nothing (the
other order could show the old file without the journal: edits missing). A journal that only grew
(another process saved) is read from where this index stopped; anything else is a full rebuild.
The caller holds the dataset lock around `record` and `fold`.
"""

from __future__ import annotations

import logging

from core.data import journal
from core.data.lines import LineIndex, fingerprint

log = logging.getLogger(__name__)


class PendingLines(LineIndex):
    def __init__(self, path, summarize, cache=None, kind: str = "metadata", keep_parsed: bool = False):
        super().__init__(path, summarize, cache, kind, keep_parsed)
        self.journal = journal.pending_path(self.path)
        self.entries = 0  # entries in the journal (applied, already in the file, or conflicting)
        self.conflicts: list[tuple[journal.Entry, str]] = []  # entries the file's version beat
        self._jfp = None
        self._joff = 0
        self._dirty: set[int] = set()  # entries of the file's rows that show an edit
        self._base = 0  # entries [0, _base) are the file's rows; later ones were added by edits
        self._positions: tuple[dict, int] = ({}, -1)

    # ------------------------------------------------------------------ reading

    def sync(self) -> bool:
        jfp = fingerprint(self.journal)
        if self._read_once and fingerprint(self.path) == self.fingerprint:
            if jfp == self._jfp:
                return False
            if jfp and self._jfp and jfp[2] == self._jfp[2] and jfp[0] > self._jfp[0]:
                entries, self._joff = journal.read(self.journal, self._joff)
                self._jfp = jfp
                self._overlay(entries)
                return True
        entries, offset = journal.read(self.journal)  # before the file: see the module docstring
        self._rebuild()
        self._dirty, self._base, self.entries, self.conflicts = set(), len(self.raws), 0, []
        self._jfp, self._joff = jfp, offset
        self._overlay(entries)
        return True

    def positions(self) -> dict[str, int]:
        """clip -> its entry (the first usable row of the clip)."""
        if self._positions[1] != self.version:
            pos: dict[str, int] = {}
            for i, s in enumerate(self.summaries):
                if s[3] is None and s[0] not in pos:
                    pos[s[0]] = i
            self._positions = (pos, self.version)
        return self._positions[0]

    def _overlay(self, entries: list[journal.Entry]) -> None:
        if not entries:
            return
        self.entries += len(entries)
        pos = self.positions()
        finals, conflicts = journal.resolve(entries, lambda v: self.keys[pos[v]] if v in pos else journal.NEW)
        for e, found in conflicts:
            log.warning("%s: %s (kept in %s at the next fold)", self.path, journal.describe(e, found),
                        journal.conflicts_path(self.path).name)
        self.conflicts += conflicts
        for video, e in finals.items():
            self._put(pos.get(video), video, e.row)

    def _put(self, i: int | None, video: str, row: str) -> int:
        current = self._positions[1] == self.version
        if i is None:
            self.raws.append("")
            self.keys.append("")
            self.summaries.append(None)
            self.numbers.append(self._lines + len(self.raws) - self._base)  # where the fold will put it
            i = len(self.raws) - 1
        elif i < self._base:
            self._dirty.add(i)
        self._set(i, row.encode("utf-8"))
        self.version += 1
        if current:
            self._positions[0].setdefault(video, i)
            self._positions = (self._positions[0], self.version)
        return i

    # ------------------------------------------------------------------ writing (under the lock, just synced)

    def record(self, video: str, i: int | None, row: str) -> str:
        """Save `row` as clip `video`'s row (entry `i`, None: a new row); returns its key."""
        if not self.entries and self._size < journal.SMALL_FILE:
            self.fold({i: row} if i is not None else {}, [] if i is not None else [row])
            return self.keys[self.positions()[video]]
        base = self.keys[i] if i is not None else journal.NEW
        st = journal.append(self.journal, [journal.Entry(video, base, row)])
        self._jfp, self._joff = (st.st_size, st.st_mtime_ns, st.st_ino), st.st_size
        self.entries += 1
        key = self.keys[self._put(i, video, row)]
        if journal.due(self.entries, self._joff, self._size):
            try:
                self.fold()
            except OSError as exc:  # the save itself is in the journal: it stands; a later save folds
                log.warning("%s: could not fold %s (%s); the edits stay pending", self.path, self.journal.name, exc)
        return key

    def fold(self, changes: dict[int, str] | None = None, appends: list[str] = ()) -> None:
        """Write the pending edits, then `changes` (entry -> text) and `appends`, into metadata.jsonl
        with one atomic replace; the journal is deleted after (see core.data.journal on a crash between)."""
        changes = dict(changes or {})
        tail = {i: self.raws[i] for i in range(self._base, len(self.raws))}
        for i in [i for i in changes if i >= self._base]:
            tail[i] = changes.pop(i)
        file_changes = {i: self.raws[i] for i in self._dirty} | changes
        moved = [tail[i] for i in sorted(tail)] + list(appends)
        if not (file_changes or moved or self.entries or self.journal.exists()):
            return
        try:
            journal.keep_conflicts(self.path, self.conflicts)
            for lst in (self.raws, self.keys, self.numbers, self.summaries):
                del lst[self._base:]  # re-added by rewrite, with their byte spans
            if file_changes or moved:
                self.rewrite(file_changes, moved)
            self.journal.unlink(missing_ok=True)
        except BaseException:
            self._read_once = False  # the overlay is half gone: the next sync reads file and journal again
            raise
        self._dirty, self._base, self.entries, self.conflicts = set(), len(self.raws), 0, []
        self._jfp, self._joff = None, 0
        self.version += 1
