"""`drafts.jsonl` as a log: model pre-labels waiting for a person, never labels themselves.

A draft is appended (one fsynced write, so pre-labelling N clips costs N small appends, not N
rewrites of the file); a later line for the same clip wins; a line `{"video": ..., "dropped": true}`
ends a clip's draft when the clip gets a label. When most lines are dead the log is rewritten
atomically with the live drafts only. The store holds the lock around every call that writes.

A draft line (`make_draft`): video, model, text (the raw answer), label (parsed or null), errors
(why it is not a valid label), created, and, when the model scored its answer, `confidence`
(top-level field -> score in [0, 1], core.serve.confidence; calibrated when `calibrated`),
`min_confidence` (the least sure enum, list or boolean field; any field's when the schema has no
such field), `answer_confidence` (the whole answer's geometric-mean token probability,
core.serve.confidence.answer_confidence), null when the answer did not parse; plus `review_fields`,
the fields a person should check (core.schema.calibration). Drafts written before confidence
existed have none.

The review queue's rank (`review_rank`) is `answer_confidence`, least sure first: measured against
what the videos show (BENCHMARKS section 9), once training has made the model sure of every field
the fields' scores stop ranking errors (AUROC .52-.56 on two trainings) and the answer's still does
(.67 on both); early in training the two orders were within noise of each other. A draft from before it existed ranks by its
`min_confidence`. The queue (core.data.listing) reads the rank from each line's summary in the
index (`DraftLog.scores`), so ordering 100,000 drafts parses no JSON beyond the first read of a line.
"""

from __future__ import annotations

import json
import math
import time

from core.data.lines import LineIndex
from core.data.records import parse_row
from core.fileio import atomic_write_text
from core.schema.base import extract_json, label_errors
from core.schema.calibration import choice_fields

DRAFTS = "drafts.jsonl"
DRAFT_LOG_SLACK = 1000  # dead lines tolerated beyond the live ones before the log is compacted
# the index cache keys summaries by (kind, line content): summaries of this shape (review_rank fourth)
# get their own kind, so one cached by an older version (min_confidence fourth) is not reused
SUMMARY_KIND = "drafts.v3"


def summarize_draft(raw: str) -> tuple:
    """(video, flagged, dropped, review_rank or None) of a drafts line; video None for a line that
    is not a draft. Four scalars: the index cache stores them in its four columns."""
    row = parse_row(0, raw)
    if row.error:
        return (None, False, False, None)
    return (row.video, bool(row.data.get("errors")), bool(row.data.get("dropped")), review_rank(row.data))


def review_rank(draft: dict) -> float | None:
    """The number the review queue sorts a draft by, least sure first: its `answer_confidence`, or for
    a draft written before that existed its `min_confidence`; None: not scored (ranked last)."""
    score = draft.get("answer_confidence", draft.get("min_confidence"))
    score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
    return score if score is not None and math.isfinite(score) else None


def rank_score(scores: dict, schema: dict | None) -> float | None:
    """The least sure choice field's score (any field's when the schema has no choice field)."""
    choices = set(choice_fields(schema)) if schema else set()
    ranked = [v for k, v in scores.items() if k in choices] or ([] if choices else list(scores.values()))
    return min(ranked) if ranked else None


def make_draft(rel: str, text: str | None, model: str, schema: dict | None, error: str | None = None,
               confidence: dict | None = None, review: dict | None = None,
               answer_confidence: float | None = None) -> dict:
    """The line a draft is stored as: the answer parsed and checked against `schema`, with the model's
    per-field `confidence`, its least sure choice field (`rank_score`) and `answer_confidence` when
    given (an answer that did not parse has no scores), and `review` ({"calibrated": bool,
    "review_fields": [...]}) as the predictor decided."""
    parsed, parse_error = extract_json(text) if text is not None else (None, error)
    errors = [parse_error] if parse_error else (label_errors(schema, parsed) if schema else [])
    draft = {"video": rel, "model": model, "text": text, "label": parsed, "errors": errors,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if confidence is not None:
        scores = {k: float(v) for k, v in confidence.items() if v is not None}
        draft["confidence"] = scores
        draft["min_confidence"] = rank_score(scores, schema)
        if answer_confidence is not None:  # an answer that did not parse is not ranked (None), like its fields
            draft["answer_confidence"] = float(answer_confidence) if parsed is not None else None
    if review is not None:
        draft.update(calibrated=bool(review.get("calibrated")), review_fields=list(review.get("review_fields") or []))
    return draft


def weakest_fields(draft: dict, below: float | None = None, limit: int | None = None) -> list[tuple[str, float]]:
    """(field, score) of a draft, least sure first; only those under `below` when given."""
    scores = sorted((draft.get("confidence") or {}).items(), key=lambda kv: kv[1])
    scores = [(k, v) for k, v in scores if below is None or v < below]
    return scores[:limit] if limit else scores


class DraftLog:
    def __init__(self, root, cache=None):
        self.lines = LineIndex(root / DRAFTS, summarize_draft, cache, SUMMARY_KIND)
        self._live: tuple[dict, int] = ({}, -1)
        self._scores: tuple[dict, int] = ({}, -1)

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

    def scores(self) -> dict[str, float | None]:
        """clip -> its current draft's `review_rank` (None: not scored), from the line summaries:
        no line is parsed here, and the dict is kept while the log is unchanged."""
        if self._scores[1] != self.lines.version:
            summaries = self.lines.summaries
            self._scores = ({rel: summaries[i][3] for rel, i in self.live().items()}, self.lines.version)
        return self._scores[0]

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
