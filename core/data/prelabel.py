"""AI pre-labelling, the dataset's side: which clips to draft, a loaded model's answers stored as
drafts (never as labels), and the review queue: drafts ordered least sure first.

A person accepts or edits each draft in the Annotate tab (or `cli.py validate` shows what is
flagged). Drafts that are not valid JSON or break the schema are stored with their reasons so the
form can show them, and with the model's per-field confidence when it scored its answer. This
module does not load models: core.serve.prelabel.prelabel_dataset (the call behind `cli.py
prelabel` and the Annotate tab) loads one and hands it to `write_drafts`.

Uncertainty sampling ("which clips should a person label next?") is pre-labelling a pool of
unlabelled clips with a run and reading the queue least sure first: `clips_to_prelabel(...,
seed=S)` draws the pool at random (the first N in file order would bias it to one recording),
`PrelabelReport.least_sure(k)` ranks what this call drafted, `review_queue` every live draft.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from core.data.drafts import review_rank, weakest_fields
from core.data.listing import least_sure_first
from core.data.picking import ANSWER, LABEL_NEXT, LABEL_NEXT_BY, SCORES, pick
from core.data.store import DRAFT, DRAFTS, UNLABELLED, UNREADABLE, AnnotationStore
from core.errors import DatasetError


@dataclass
class ReviewItem:
    rel: str
    score: float | None  # what the list is ordered by, least sure first (None: not scored: older draft, no parse)
    weakest: list[tuple[str, float]]  # (field, score), least sure first
    model: str | None = None
    flagged: bool = False  # not a schema-valid label
    calibrated: bool = False  # the scores went through the run's calibration (core.schema.calibration)
    review_fields: list | None = None  # fields under their threshold; None: a draft from before calibration

    def as_dict(self) -> dict:
        return {"video": self.rel, "score": self.score, "model": self.model,
                "flagged": self.flagged, "weakest": [{"field": k, "confidence": v} for k, v in self.weakest],
                "calibrated": self.calibrated, "review_fields": self.review_fields}


@dataclass
class PrelabelReport:
    asked: int = 0  # clips given to the model (0: nothing to pre-label)
    drafted: int = 0
    flagged: int = 0  # drafts that are not schema-valid
    errors: list[str] = field(default_factory=list)  # "FILE: reason" of each clip that could not be decoded
    drafts_file: Path | None = None
    drafts: dict[str, dict] = field(default_factory=dict)  # clip -> the draft written by this call
    # clip -> its vector from the drafting pass, for label_next; kept only when asked (write_drafts), as
    # float16: a 2048-wide model's vectors are 4 KiB a clip, which a whole-folder pre-label need not hold
    embeddings: dict = field(default_factory=dict)

    def least_sure(self, k: int | None = None, fields: int = 3) -> list[ReviewItem]:
        """The clips drafted by this call, least sure first (unscored last)."""
        order = sorted(self.drafts, key=lambda rel: _sort_key(review_rank(self.drafts[rel])))
        return [_item(rel, self.drafts[rel], fields, review_rank(self.drafts[rel])) for rel in order[:k or None]]

    def label_next(self, k: int, strategy: str = LABEL_NEXT, fields: int = 3,
                   by: str = LABEL_NEXT_BY) -> list[ReviewItem]:
        """k clips drafted by this call for a person to label, least sure first: by default the least
        sure clip of each of k groups of similar clips (core.data.picking). `by` says what "least sure"
        is: ANSWER, the review queue's score (`review_rank`), or FIELD, the least sure choice field
        (`min_confidence`); core.data.picking.LABEL_NEXT_BY says which one measured better."""
        if by not in SCORES:
            raise ValueError(f"unknown score {by!r}; one of {', '.join(SCORES)}")
        scores = {rel: review_rank(d) if by == ANSWER else d.get("min_confidence") for rel, d in self.drafts.items()}
        chosen = pick(list(self.drafts), scores, self.embeddings, k, strategy)
        return [_item(rel, self.drafts[rel], fields, scores[rel]) for rel in chosen]


def _sort_key(score) -> tuple:
    return (score is None, score or 0.0)


def _item(rel: str, draft: dict, fields: int, score: float | None) -> ReviewItem:
    return ReviewItem(rel, score, weakest_fields(draft, limit=fields), draft.get("model"),
                      bool(draft.get("errors")), bool(draft.get("calibrated")), draft.get("review_fields"))


def clips_to_prelabel(store: AnnotationStore, include_drafts: bool = False, limit: int | None = None,
                      seed: int | None = None) -> list[str]:
    """Clips to draft, in gallery order; `seed`: a random pool of `limit` clips instead of the first N,
    for uncertainty sampling (the first N files would often be one recording)."""
    # from the index, no video probed: a clip the model cannot decode comes back as an error of its own
    wanted = (UNLABELLED, DRAFT) if include_drafts else (UNLABELLED,)
    if seed is not None and limit:
        # the pool is drawn from every clip without a label (drafted or not) by a hash of (seed, clip),
        # so it does not depend on what is drafted: a stopped pool re-run with its seed drafts the
        # rest of the same pool, and labelling one clip swaps only that clip for the next in line
        status = dict(store.statuses())
        pool = sorted((rel for rel, s in status.items() if s in (UNLABELLED, DRAFT)),
                      key=lambda rel: hashlib.sha1(f"{seed}:{rel}".encode()).digest())[:limit]
        chosen = {rel for rel in pool if status[rel] in wanted}
        return [rel for rel, s in store.statuses() if rel in chosen]
    rels = [rel for rel, status in store.statuses() if status in wanted]
    return rels[:limit] if limit else rels


def unreadable_to_prelabel(store: AnnotationStore, include_drafts: bool = False) -> list[str]:
    """"FILE: reason" for each clip that would be drafted but is already known to be unreadable: the
    index lists such a clip as unreadable rather than unlabelled, so `clips_to_prelabel` passes it
    over; the report counts and lists it instead of saying "0 unreadable"."""
    out = []
    for rel, status in store.statuses():
        if status != UNREADABLE:
            continue
        clip = store.clip(rel)
        if not clip.label and (include_drafts or clip.draft is None):
            out.append(f"{store.root / rel}: {clip.problems[0] if clip.problems else 'unreadable'}")
    return out


def write_drafts(store: AnnotationStore, predictor, rels: list[str], batch_size: int = 4,
                 progress=None, keep_embeddings: bool = False, **generate_kwargs) -> PrelabelReport:
    """Draft labels for `rels` with `predictor`; each draft is written (with the prediction's per-field
    confidence) as soon as its batch is done, so an interrupted call keeps what it drafted.
    `keep_embeddings`: keep each clip's vector in the report, for `label_next`'s groups."""
    report = PrelabelReport(asked=len(rels), drafts_file=store.root / DRAFTS)
    for start in range(0, len(rels), batch_size):
        chunk = rels[start:start + batch_size]
        preds = predictor.predict([store.root / r for r in chunk], batch_size=batch_size, embeddings=keep_embeddings,
                                  **generate_kwargs)
        for rel, pred in zip(chunk, preds):
            if pred.error:
                report.errors.append(pred.error)
                continue
            draft = store.save_draft(rel, pred.text, model=predictor.name or "model",
                                     confidence=getattr(pred, "confidence", None),
                                     review={"calibrated": pred.calibrated, "review_fields": pred.review_fields},
                                     answer_confidence=getattr(pred, "answer_confidence", None))
            report.drafts[rel] = draft
            vector = getattr(pred, "embedding", None)
            if vector is not None:
                report.embeddings[rel] = vector.astype("float16")
            report.drafted += 1
            report.flagged += bool(draft["errors"])
        if progress:
            progress(min(start + batch_size, len(rels)), len(rels))
    return report


def require_folder(store: AnnotationStore) -> None:
    """A dataset folder that is not there is said so, not reported as "no drafts" or "no schema.json"."""
    if not store.root.is_dir():
        what = "is not a folder" if store.root.exists() else "does not exist"
        raise DatasetError(f"{store.root}: the dataset folder {what}; give the folder that holds metadata.jsonl "
                           "and videos/")


def review_queue(store: AnnotationStore, limit: int | None = None, fields: int = 3) -> list[ReviewItem]:
    """Every clip with a draft, least sure first (the Annotate tab's REVIEW filter, same order), with
    its `fields` weakest fields. Ordering reads the drafts index; only the `limit` drafts returned
    are parsed."""
    require_folder(store)  # else an empty queue would read as "no drafts yet"
    shown = least_sure_first(store, [rel for rel, status in store.statuses() if status == DRAFT])[:limit or None]
    # a short list opens its clips one by one (one line parsed each); a long one reads the log once
    drafts = store.drafts() if len(shown) > 200 else {rel: store.clip(rel).draft for rel in shown}
    return [_item(rel, drafts.get(rel) or {}, fields, review_rank(drafts.get(rel) or {})) for rel in shown]
