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

from pathlib import Path

from core.data.dataset import load_dataset
from core.errors import DatasetError, ModelError
from core.schema.calibration import DEFAULT_TARGET_PRECISION, Calibration, fit
from core.schema.scoring import score_row
from core.spec import CALIBRATION_FILE, is_run_dir


def calibrate_predictor(predictor, run_dir, dataset_dir, split: str = "val",
                        target_precision: float = DEFAULT_TARGET_PRECISION, constrained: bool = True,
                        batch_size: int = 8, max_new_tokens: int = 160, progress=None) -> Calibration:
    """Fit and save with an already loaded predictor of the run (training's end uses its own)."""
    data = load_dataset(dataset_dir)
    samples = data.split(split)
    if not samples:
        raise DatasetError(f"{dataset_dir}: split '{split}' has no labelled clips to calibrate on "
                           "(assign some clips to it in Annotate, or pass --split)")
    preds = predictor.predict([s.video for s in samples], batch_size=batch_size, max_new_tokens=max_new_tokens,
                              constrained=constrained, progress=progress)
    scored = [(s, p) for s, p in zip(samples, preds) if not p.error]
    if not scored:
        raise DatasetError(f"none of the {len(samples)} clips of split '{split}' could be read")
    schema = predictor.spec.schema
    correct = [score_row(schema, p.text, s.label).fields for s, p in scored]
    cal = fit(schema, [p.confidence_raw for _, p in scored], correct, split, len(scored),
              target_precision, dataset=str(Path(dataset_dir)))
    cal.save(Path(run_dir) / CALIBRATION_FILE)
    predictor.calibration = cal
    return cal


def calibrate_run(run, dataset_dir, split: str = "val", target_precision: float = DEFAULT_TARGET_PRECISION,
                  constrained: bool = True, device: str = "auto", batch_size: int = 8,
                  trust_remote_code: bool = False, progress=None) -> Calibration:
    """Load the run on its own, fit its calibration on `split` of `dataset_dir` and save it."""
    from core.serve.predictor import Predictor

    run_dir = Path(run)
    if not is_run_dir(run_dir):
        raise ModelError(f"{run}: not a run directory; calibration belongs to a fine-tuned run")
    predictor = Predictor.load(str(run_dir), device=device, trust_remote_code=trust_remote_code)
    return calibrate_predictor(predictor, run_dir, dataset_dir, split, target_precision, constrained,
                               batch_size, progress=progress)


def calibration_rows(cal: Calibration) -> list[dict]:
    """One row per field for tables (CLI, Export tab, model card)."""
    return [{"field": name, "rows": m.rows, "map": "shared" if m.shared else "own",
             "ece_raw": m.ece_raw, "ece": m.ece,
             "threshold": m.threshold if m.decides_review else None,
             "precision": m.precision, "coverage": m.coverage if m.decides_review else None}
            for name, m in cal.fields.items()]
