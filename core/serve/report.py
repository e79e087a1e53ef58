"""Evaluation reports: several models scored on one split with the same clips, as one table.

`evaluate_models` runs each model (through the model manager, so a base and its runs share
weights) and scores them with core.schema.scoring; `comparison_rows` and `confusion_rows` shape the
result for tables and plots; `write_report` saves JSON and Markdown beside the predictions.
This module does not draw plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from core.data.dataset import load_dataset
from core.errors import DatasetError
from core.fileio import atomic_write_text
from core.schema.scoring import evaluate


def evaluate_models(models, dataset_dir, split: str, names: list[str], constrained: bool = False,
                    batch_size: int = 8, max_new_tokens: int = 160, progress=None) -> dict[str, dict]:
    data = load_dataset(dataset_dir)
    samples = data.split(split)
    if not samples:
        raise DatasetError(f"{dataset_dir}: split '{split}' has no clips")
    reports = {}
    for i, name in enumerate(names):
        with models.lock:
            predictor = models.get(name, schema=data.schema)
            t0 = time.time()
            preds = predictor.predict([s.video for s in samples], batch_size=batch_size,
                                      max_new_tokens=max_new_tokens, constrained=constrained)
        report = evaluate(predictor.spec.schema, [p.text for p in preds], [s.label for s in samples])
        report.update(model=name, split=split, constrained=constrained, seconds=round(time.time() - t0, 2),
                      seconds_per_clip=round((time.time() - t0) / len(samples), 3))
        reports[name] = report
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
