"""The Annotate gallery's questions, answered from the store's index: one page of clips under a
status filter and a search, the next clip that needs work, and a background scan of the videos.

`gallery_page` probes only the clips on the page it returns (a clip found unreadable there drops
out of a filter that no longer matches and the page is worked out again); `VideoScan` probes the
rest in a daemon thread, in gallery order, and reports its progress for the gallery's summary.
A probe's answer is kept between processes (core.data.folder.Probes), so a second scan of an
unchanged folder only stats the files. Nothing here formats for a UI (tabs.annotate does).

The review queue is the status filter REVIEW: the clips with a draft, least sure first (by the
draft's review rank, core.data.drafts.review_rank; drafts without a score, older ones or answers that did
not parse, after the scored ones, in gallery order). Save & next walks it in that order.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from core.data.records import DRAFT, STATUSES, TO_DO, Clip

log = logging.getLogger(__name__)

PAGE_SIZE = 120  # clips per gallery page: a 100,000-clip folder must not render (or probe) all at once
REVIEW = "review"  # the status filter of the review queue: drafts, least sure first


@dataclass
class Page:
    clips: list[Clip]  # the clips shown, their videos probed
    rels: list[str]  # every clip that matches, in gallery order
    counts: dict[str, int]  # clips per status over the whole dataset
    total: int  # clips in the dataset
    page: int  # 0-based
    pages: int
    problems: list[str] = field(default_factory=list)  # metadata lines kept but unusable
    scan: tuple[int, int] | None = None  # (videos checked, of) while the background scan runs

    @property
    def first(self) -> int:
        """Position in `rels` of the first clip shown."""
        return self.page * PAGE_SIZE


def matching(store, status: str | None = "all", query: str = "") -> tuple[list[str], dict[str, int], int]:
    """(clips that pass the filter and the search, in order; clips per status; all clips). The search
    is case-insensitive over the file name and the clip's metadata line (label, split, id)."""
    statuses = store.statuses()
    counts = dict.fromkeys(STATUSES, 0)
    for _, s in statuses:
        counts[s] += 1
    q = (query or "").strip().lower()
    text = store.search_text() if q else {}
    wanted = status in (None, "", "all")
    keep = DRAFT if status == REVIEW else status
    rels = [rel for rel, s in statuses if (wanted or s == keep)
            and (not q or q in rel.lower() or q in text.get(rel, "").lower())]
    if status == REVIEW:
        rels = least_sure_first(store, rels)
    return rels, counts, len(statuses)


def least_sure_first(store, rels: list[str]) -> list[str]:
    """`rels` (clips with a draft) ordered by their draft's review rank, lowest first; unscored last.

    Why this stays cheap at 100,000 clips: the scores come from the drafts log's line summaries
    (store.draft_scores: built once per change of drafts.jsonl, kept by line content in the index
    cache between processes), so a page of the queue costs one dict lookup per draft and one sort
    (~0.1 s for 100k drafts), never a JSON parse of every draft; only the page shown is parsed."""
    scores = store.draft_scores()
    # sorted() is stable: equal scores (and all unscored drafts) keep the gallery's order
    return sorted(rels, key=lambda rel: (scores.get(rel) is None, scores.get(rel) or 0.0))


def gallery_page(store, status: str | None = "all", query: str = "", page: int = 0,
                 focus: str | None = None) -> Page:
    """One page of the gallery; `focus`: a clip whose page to show instead of `page`, when it matches."""
    for _ in range(3):  # a probe on the page can change a clip's status: work the page out again
        before = store.statuses()
        rels, counts, total = matching(store, status, query)
        pages = max(1, math.ceil(len(rels) / PAGE_SIZE))
        at = _position(rels, focus)
        shown = at // PAGE_SIZE if at is not None else int(page or 0)
        shown = min(max(shown, 0), pages - 1)
        clips = [store.clip(rel) for rel in rels[shown * PAGE_SIZE:(shown + 1) * PAGE_SIZE]]
        if store.statuses() is before:
            break
    scan = store.scan.progress() if store.scan is not None else None
    return Page(clips, rels, counts, total, shown, pages, store.problems(), scan)


def _position(rels: list[str], rel: str | None) -> int | None:
    try:
        return rels.index(rel) if rel else None
    except ValueError:
        return None


def next_clip(store, rels: list[str], rel: str | None) -> str | None:
    """The next clip after `rel` in `rels` (the gallery's order) that still needs work (unlabelled,
    draft, invalid; wrapping round), else simply the next one."""
    at = _position(rels, rel)
    if at is None:
        return rels[0] if rels else None
    status = dict(store.statuses())
    for k in range(1, len(rels)):
        candidate = rels[(at + k) % len(rels)]
        if status.get(candidate) in TO_DO:
            return candidate
    return rels[(at + 1) % len(rels)]


class VideoScan:
    """Probes every clip's video in a daemon thread, so unreadable ones show up without blocking a page."""

    def __init__(self, store):
        self.store = store
        self.done = 0
        self.total = 0
        self.finished = False
        self._thread: threading.Thread | None = None

    def start(self) -> VideoScan:
        if self._thread is None:
            self.total = len(self.store.statuses())
            self._thread = threading.Thread(target=self._run, name="video-scan", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for rel, _ in self.store.statuses():
                self.store.video_problem(rel)
                self.done += 1
        except Exception:  # noqa: BLE001 - a scan is best effort; the visible page is probed anyway
            log.exception("video scan of %s stopped", self.store.root)
        finally:
            self.finished = True

    def progress(self) -> tuple[int, int] | None:
        """(checked, of) while the scan runs, None once it is done."""
        return None if self.finished else (self.done, self.total)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def start_video_scan(store) -> VideoScan:
    """Start (once per store) the background probe of every clip's video."""
    if store.scan is None:
        store.scan = VideoScan(store).start()
    return store.scan
