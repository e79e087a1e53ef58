"""`drafts.jsonl` as a log: model pre-labels waiting for a person, never labels themselves.

A draft is appended (one fsynced write, so pre-labelling N clips costs N small appends, not N
rewrites of the file); a later line for the same clip wins; a line `{"video": ..., "dropped": true}`
ends a clip's draft when the clip gets a label. When most lines are dead the log is rewritten
atomically with the live drafts only. The store holds the lock around every call that writes.
"""

from __future__ import annotations

import json

from core.data.lines import LineIndex
from core.data.records import summarize_draft
from core.fileio import atomic_write_text

DRAFTS = "drafts.jsonl"
DRAFT_LOG_SLACK = 1000  # dead lines tolerated beyond the live ones before the log is compacted


class DraftLog:
    def __init__(self, root, cache=None):
        self.lines = LineIndex(root / DRAFTS, summarize_draft, cache, "drafts")
        self._live: tuple[dict, int] = ({}, -1)

    def sync(self) -> None:
        self.lines.sync()

    def live(self) -> dict[str, int]:
        """clip -> the log entry of its current draft."""
        log = self.lines
        if self._live[1] != log.version:
            live: dict[str, int] = {}
            for i, (video, _flagged, dropped, _) in enumerate(log.summaries):
                if video is None:
                    continue
                if dropped:
                    live.pop(video, None)
                else:
                    live[video] = i
            self._live = (live, log.version)
        return self._live[0]

    def get(self, rel: str) -> dict | None:
        i = self.live().get(rel)
        return None if i is None else json.loads(self.lines.raws[i])

    def all(self) -> dict[str, dict]:
        return {rel: json.loads(self.lines.raws[i]) for rel, i in self.live().items()}

    def add(self, draft: dict) -> None:
        self.lines.append([json.dumps(draft, ensure_ascii=False)])
        self._compact()

    def drop(self, rel: str) -> None:
        if rel in self.live():
            self.lines.append([json.dumps({"video": rel, "dropped": True}, ensure_ascii=False)])
            self._compact()

    def _compact(self) -> None:
        live = self.live()
        if len(self.lines) > 2 * len(live) + DRAFT_LOG_SLACK:
            raws = self.lines.raws
            atomic_write_text(self.lines.path, "".join(raws[i] + "\n" for i in sorted(live.values())))
            self.lines.sync()
