"""AI pre-labelling of a dataset: the one call behind `cli.py prelabel` and the Annotate tab's Pre-label.

`prelabel_dataset` checks the dataset has a schema (drafts are checked against it), lists the clips
to draft (core.data.prelabel.clips_to_prelabel), loads the model only when there is work (through
the app's model manager when given one, see core.serve.loaded) and stores its answers as drafts
(core.data.prelabel.write_drafts). It lives in serve, not data, because it loads a model: core.data
never does. A base model is asked with the dataset's schema, a run with the one it was trained with.
"""

from __future__ import annotations

from core.data.prelabel import PrelabelReport, clips_to_prelabel, require_folder, unreadable_to_prelabel, write_drafts
from core.data.store import DRAFTS, AnnotationStore
from core.errors import DatasetError
from core.serve.loaded import loaded_predictor


def prelabel_dataset(dataset, model: str, limit: int | None = None, redo_drafts: bool = False,
                     batch_size: int = 4, *, seed: int | None = None, models=None, device: str = "auto",
                     trust_remote_code: bool = False, progress=None, keep_embeddings: bool = False,
                     **generate_kwargs) -> PrelabelReport:
    """Draft labels for the unlabelled clips of `dataset` (a folder or an AnnotationStore) with `model`.

    `limit`: at most N clips (None or 0: all), the first N in gallery order or, with `seed`, N drawn
    at random (a pool for uncertainty sampling: rank it with `report.least_sure(k)`; the cost is one
    batched greedy generation per clip of the pool); `redo_drafts`: re-draft clips that have a draft;
    `models`: the app's ModelManager (else the model is loaded for this call). The report's `asked`
    is 0 when there was nothing to pre-label (no model is loaded then). `keep_embeddings`: the report
    keeps each clip's vector, which `report.label_next(k)` groups by (else it falls back to the
    least-sure order)."""
    store = dataset if isinstance(dataset, AnnotationStore) else AnnotationStore(dataset)
    require_folder(store)
    schema = store.schema()
    if schema is None:
        raise DatasetError(f"{store.root}: no schema.json; drafts are checked against it")
    rels = clips_to_prelabel(store, include_drafts=redo_drafts, limit=limit or None, seed=seed)
    unreadable = unreadable_to_prelabel(store, include_drafts=redo_drafts)  # known already: not given to the model
    if not rels:
        return PrelabelReport(drafts_file=store.root / DRAFTS, errors=unreadable)
    with loaded_predictor(model, schema, models, device, trust_remote_code) as predictor:
        report = write_drafts(store, predictor, rels, batch_size=batch_size, progress=progress,
                              keep_embeddings=keep_embeddings, **generate_kwargs)
    report.errors[:0] = unreadable
    return report
