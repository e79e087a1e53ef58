"""Evaluation reports: models scored on one split of a dataset with the same clips.

`score_predictor` is the one report builder: it predicts a split's clips with a loaded predictor
and scores the answers with core.schema.scoring against the schema the model was trained with.
`evaluate_model` is `cli.py eval` (one model, loaded on its own); `evaluate_models` is the Export
tab's table (several models through the model manager, so a base and its runs share weights).
`comparison_rows` and `confusion_rows` shape reports for tables and plots; `write_report` saves
JSON and Markdown. This module does not draw plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from core.data.dataset import load_dataset
from core.errors import DatasetError
from core.fileio import atomic_write_text
from core.schema.base import schema_hash
from core.schema.scoring import evaluate


def _split_samples(data, dataset_dir, split: str) -> list:
    samples = data.split(split)
    if not samples:
        raise DatasetError(f"{dataset_dir}: split '{split}' has no clips")
    return samples


def score_predictor(predictor, samples, name: str, split: str, constrained: bool = False, batch_size: int = 8,
                    max_new_tokens: int = 160, show: int = 0) -> dict:
    """The report of one model on `samples`: validity rates, per-field accuracy, text scores
    (core.schema.scoring.evaluate) plus model, split, timing and, with `show`, the first raw outputs."""
    t0 = time.time()
    preds = predictor.predict([s.video for s in samples], batch_size=batch_size, max_new_tokens=max_new_tokens,
                              constrained=constrained)
    seconds = time.time() - t0
    report = evaluate(predictor.spec.schema, [p.text for p in preds], [s.label for s in samples])
    report.update(model=name, split=split, constrained=constrained, seconds=round(seconds, 2),
                  seconds_per_clip=round(seconds / len(samples), 3), spec_schema_hash=predictor.spec.schema_hash)
    if show:
        report["examples"] = [{"video": s.rel, "output": p.text, "error": p.error}
                              for s, p in zip(samples, preds)][:show]
    return report


def evaluate_model(name: str, dataset_dir, split: str, device: str = "auto", trust_remote_code: bool = False,
                   **options) -> dict:
    """Load `name` on its own and score it on `split` (options: those of `score_predictor`). The
    report's `warnings` say when the dataset's schema differs from the one the model was trained
    with (the answers are scored against the training schema)."""
    from core.serve.predictor import Predictor  # loads torch: only when a model is asked

    data = load_dataset(dataset_dir)
    samples = _split_samples(data, dataset_dir, split)
    predictor = Predictor.load(name, schema=data.schema, device=device, trust_remote_code=trust_remote_code)
    warnings = []
    if data.schema is not None and schema_hash(data.schema) != predictor.spec.schema_hash:
        warnings.append(f"{dataset_dir}/schema.json differs from the schema {name} was trained with; "
                        "scoring against the training schema")
    return {**score_predictor(predictor, samples, name, split, **options), "warnings": warnings}


def evaluate_models(models, dataset_dir, split: str, names: list[str], constrained: bool = False,
                    batch_size: int = 8, max_new_tokens: int = 160, progress=None) -> dict[str, dict]:
    """Score each of `names` on `split`, loaded through `models` (a core.serve.ModelManager)."""
    data = load_dataset(dataset_dir)
    samples = _split_samples(data, dataset_dir, split)
    reports = {}
    for i, name in enumerate(names):
        with models.lock:
            predictor = models.get(name, schema=data.schema)
            reports[name] = score_predictor(predictor, samples, name, split, constrained=constrained,
                                            batch_size=batch_size, max_new_tokens=max_new_tokens)
        if progress:
            progress(i + 1, len(names))
    return reports


def comparison_rows(reports: dict[str, dict]) -> list[dict]:
    """One row per model: validity rates, mean accuracy, each field's accuracy, latency."""
    rows = []
    for name, r in reports.items():
        row = {"model": name, "clips": r["count"], "json_valid": r["json_valid_rate"],
               "schema_valid": r["schema_valid_rate"], "mean_field_acc": r["mean_field_accuracy"]}
        row.update({f"acc:{k}": v for k, v in r["per_field"].items()})
        row.update({f"f1:{k}": v["token_f1"] for k, v in r["text_scores"].items()})
        row["s/clip"] = r.get("seconds_per_clip")
        rows.append(row)
    return rows


def confusion_rows(report: dict, field: str) -> list[dict]:
    """Long form (true, predicted, count) of one enum field's confusion matrix, for a bar plot."""
    matrix = report.get("confusion", {}).get(field, {})
    return [{"true": t, "predicted": p, "count": c} for t, row in matrix.items() for p, c in row.items() if c]


def write_report(reports: dict[str, dict], out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    js, md = out_dir / f"eval-{stamp}.json", out_dir / f"eval-{stamp}.md"
    atomic_write_text(js, json.dumps(reports, indent=2, ensure_ascii=False))
    rows = comparison_rows(reports)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    atomic_write_text(md, "\n".join(lines) + "\n")
    return js, md
