"""AI pre-labelling, the dataset's side: which clips to draft, and a loaded model's answers stored as
drafts, never as labels.

A person accepts or edits each draft in the Annotate tab (or `cli.py validate` shows what is
flagged). Drafts that are not valid JSON or break the schema are stored with their reasons so the
form can show them. This module does not load models: core.serve.prelabel.prelabel_dataset (the
call behind `cli.py prelabel` and the Annotate tab) loads one and hands it to `write_drafts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.data.store import DRAFT, DRAFTS, UNLABELLED, AnnotationStore


@dataclass
class PrelabelReport:
    asked: int = 0  # clips given to the model (0: nothing to pre-label)
    drafted: int = 0
    flagged: int = 0  # drafts that are not schema-valid
    errors: list[str] = field(default_factory=list)  # clips that could not be decoded
    drafts_file: Path | None = None


def clips_to_prelabel(store: AnnotationStore, include_drafts: bool = False, limit: int | None = None) -> list[str]:
    # from the index, no video probed: a clip the model cannot decode comes back as an error of its own
    wanted = (UNLABELLED, DRAFT) if include_drafts else (UNLABELLED,)
    rels = [rel for rel, status in store.statuses() if status in wanted]
    return rels[:limit] if limit else rels


def write_drafts(store: AnnotationStore, predictor, rels: list[str], batch_size: int = 4,
                 progress=None, **generate_kwargs) -> PrelabelReport:
    """Draft labels for `rels` with `predictor`; each draft is written as soon as its batch is done."""
    report = PrelabelReport(asked=len(rels), drafts_file=store.root / DRAFTS)
    for start in range(0, len(rels), batch_size):
        chunk = rels[start:start + batch_size]
        preds = predictor.predict([store.root / r for r in chunk], batch_size=batch_size, **generate_kwargs)
        for rel, pred in zip(chunk, preds):
            if pred.error:
                report.errors.append(pred.error)
                continue
            draft = store.save_draft(rel, pred.text, model=predictor.name or "model")
            report.drafted += 1
            report.flagged += bool(draft["errors"])
        if progress:
            progress(min(start + batch_size, len(rels)), len(rels))
    return report
