"""Fit a run's per-field calibration on a labelled split and save it beside the run's spec.

`calibrate_run(run, dataset, split="val")` is the one call behind `cli.py calibrate`, the Export
tab's Calibrate button and the end of training (when the dataset has a val split): the run answers
the split's clips exactly as it will be served (its spec, schema-constrained unless asked
otherwise), each answer's raw field scores are paired with whether the field is right, and
core.schema.calibration fits the maps and thresholds. The file is written atomically, so a stopped
calibration leaves the previous one (or none) in place. From then on every predictor loaded from
the run serves calibrated scores and review decisions.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.data.dataset import load_dataset
from core.errors import DatasetError, ModelError
from core.layout import CALIBRATION_FILE, DATA_FILE
from core.schema.calibration import DEFAULT_TARGET_PRECISION, Calibration, fit
from core.schema.scoring import score_row
from core.spec import is_run_dir


def calibrate_predictor(predictor, run_dir, dataset_dir, split: str = "val",
                        target_precision: float = DEFAULT_TARGET_PRECISION, constrained: bool = True,
                        batch_size: int = 8, max_new_tokens: int = 160, progress=None) -> Calibration:
    """Fit and save with an already loaded predictor of the run. Refuses clips the run trained on."""
    data = load_dataset(dataset_dir)
    samples = data.split(split)
    if not samples:
        raise DatasetError(f"{dataset_dir}: split '{split}' has no labelled clips to calibrate on "
                           "(assign some clips to it in Annotate, or pass --split)")
    seen = _trained_on(run_dir) & {str(Path(s.video).resolve()) for s in samples}
    if seen:
        raise DatasetError(f"{len(seen)} of the {len(samples)} '{split}' clips of {dataset_dir} were in this run's "
                           f"training data (e.g. {sorted(seen)[0]}): calibrate on clips it did not train on")
    preds = predictor.predict([s.video for s in samples], batch_size=batch_size, max_new_tokens=max_new_tokens,
                              constrained=constrained, progress=progress)
    scored = [(s, p) for s, p in zip(samples, preds) if not p.error]
    if not scored:
        raise DatasetError(f"none of the {len(samples)} clips of split '{split}' could be read")
    schema = predictor.spec.schema
    correct = [score_row(schema, p.text, s.label).fields for s, p in scored]
    cal = fit(schema, [p.confidence_raw for _, p in scored], correct, split, len(scored),
              target_precision, dataset=str(Path(dataset_dir)), constrained=constrained)
    cal.save(Path(run_dir) / CALIBRATION_FILE)
    predictor.calibration = cal
    return cal


def _trained_on(run_dir) -> set[str]:
    """The clips the run trained on, from its data snapshot (data.jsonl: the train rows, else all)."""
    path = Path(run_dir) / DATA_FILE
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return set()
    pool = [r for r in rows if r.get("split") == "train"] or [r for r in rows if not r.get("split")]
    return {str(Path(r["video"]).resolve()) for r in pool if isinstance(r, dict) and r.get("video")}


def calibrate_run(run, dataset_dir, split: str = "val", target_precision: float = DEFAULT_TARGET_PRECISION,
                  constrained: bool = True, device: str = "auto", batch_size: int = 8,
                  trust_remote_code: bool = False, max_new_tokens: int = 160, progress=None,
                  models=None) -> Calibration:
    """Fit the run's calibration on `split` of `dataset_dir` and save it. `models`: the app's model
    manager (its resident weights and lock); without it the run is loaded here."""
    from core.serve.loaded import loaded_predictor

    run_dir = Path(run)
    if not is_run_dir(run_dir):
        raise ModelError(f"{run}: not a run directory; calibration belongs to a fine-tuned run")
    with loaded_predictor(str(run_dir), None, models, device, trust_remote_code) as predictor:
        return calibrate_predictor(predictor, run_dir, dataset_dir, split, target_precision, constrained,
                                   batch_size, max_new_tokens, progress=progress)


def calibration_rows(cal: Calibration) -> list[dict]:
    """One row per field for tables (CLI, Export tab, model card)."""
    return [{"field": name, "rows": m.rows, "map": "shared" if m.shared else "own",
             "ece_raw": m.ece_raw, "ece": m.ece,
             "threshold": m.threshold if m.decides_review else None,
             "precision": m.precision, "coverage": m.coverage if m.decides_review else None}
            for name, m in cal.fields.items()]
