"""Evaluation reports: models scored on one split of a dataset with the same clips.

`score_predictor` is the one report builder: it predicts a split's clips with a loaded predictor
and scores the answers with core.schema.scoring against the schema the model was trained with.
`evaluate_models` is the one evaluation call: the Export tab's table (several models through the
model manager, so a base and its runs share weights) and, through `evaluate_model` (one model loaded
on its own), `cli.py eval`; both reports carry the same `schema_warnings`.
Each answer's per-field confidence comes from the same greedy pass, so reports carry
`calibration` (core.schema.scoring.field_calibration). `comparison_rows`, `confusion_rows` and
`reliability_rows` shape reports for tables and plots; `write_report` saves JSON and Markdown, the
Markdown with each field's calibration tables and reliability plot (SVG files beside it, drawn by
core.serve.reliability).
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
from core.serve.loaded import check_at_least, loaded_predictor
from core.serve.reliability import calibration_markdown, reliability_svg


def _split_samples(data, dataset_dir, split: str) -> list:
    samples = data.split(split)
    if not samples:
        raise DatasetError(f"{dataset_dir}: split '{split}' has no clips")
    return samples


def score_predictor(predictor, samples, name: str, split: str, constrained: bool = False, batch_size: int = 8,
                    max_new_tokens: int = 160, show: int = 0) -> dict:
    """The report of one model on `samples`: validity rates, per-field accuracy, text scores
    (core.schema.scoring.evaluate) plus model, split, timing and, with `show`, the first raw outputs.
    Clips that cannot be read are not scored: `count` is the clips scored, `left_out` the others
    (video, reason)."""
    t0 = time.time()
    preds = predictor.predict([s.video for s in samples], batch_size=batch_size, max_new_tokens=max_new_tokens,
                              constrained=constrained)
    seconds = time.time() - t0
    # a clip that cannot be read says nothing about the model: it is left out of every score, and named
    scored = [(s, p) for s, p in zip(samples, preds) if not p.error]
    left_out = [{"video": s.rel, "reason": p.error} for s, p in zip(samples, preds) if p.error]
    if not scored:
        raise DatasetError(f"none of the {len(samples)} clips of split '{split}' could be read, nothing to score "
                           f"(first: {left_out[0]['reason']})")
    cal = getattr(predictor, "calibration", None)
    thresholds = {k: m.threshold for k, m in cal.fields.items() if m.decides_review} if cal else None
    report = evaluate(predictor.spec.schema, [p.text for _, p in scored], [s.label for s, _ in scored],
                      [p.confidence for _, p in scored], [p.confidence_raw for _, p in scored], thresholds)
    report.update(calibrated=cal is not None, calibration_source=calibration_source(cal))
    report.update(model=name, split=split, constrained=constrained, seconds=round(seconds, 2),
                  seconds_per_clip=round(seconds / len(samples), 3), spec_schema_hash=predictor.spec.schema_hash,
                  left_out=left_out)
    if show:
        report["examples"] = [{"video": s.rel, "output": p.text, "error": p.error}
                              for s, p in zip(samples, preds)][:show]
    return report


def calibration_source(cal) -> str:
    """In words: what the scores of a report or an output are (every output says whether they are
    calibrated, and on what)."""
    if cal is None:
        return "not calibrated (raw scores; run `cli.py calibrate` on a split with labels)"
    return (f"calibrated on {cal.clips} {cal.split} clips"
            + (f" of {cal.dataset}" if cal.dataset else "") + f", target precision {cal.target_precision:g}")


def left_out_words(report: dict, shown: int = 3) -> str | None:
    """"N clips left out: unreadable (FILE: reason; ...)", or None when every clip was scored."""
    left = report.get("left_out") or []
    if not left:
        return None
    named = "; ".join(x["reason"] for x in left[:shown]) + (f"; and {len(left) - shown} more" if len(left) > shown else "")
    return f"{len(left)} clip{'s' if len(left) > 1 else ''} left out of every score: unreadable ({named})"


def schema_warnings(name: str, dataset_dir, dataset_schema: dict | None, predictor) -> list[str]:
    """What a report must say about its schema: the dataset's schema.json differs from the one the
    model was trained with (a base model is asked with the dataset's own, so it never differs)."""
    if dataset_schema is not None and schema_hash(dataset_schema) != predictor.spec.schema_hash:
        return [f"{dataset_dir}/schema.json differs from the schema {name} was trained with; "
                "scoring against the training schema"]
    return []


def evaluate_models(models, dataset_dir, split: str, names: list[str], constrained: bool = False,
                    batch_size: int = 8, max_new_tokens: int = 160, show: int = 0, device: str = "auto",
                    trust_remote_code: bool = False, progress=None) -> dict[str, dict]:
    """Score each of `names` on `split`: the Export tab's table, through `models` (a core.serve.ModelManager,
    so a base and its runs share weights), or with `models=None` each loaded on its own (`cli.py eval`).
    Each report carries `warnings` (`schema_warnings`)."""
    check_at_least(1, batch_size=batch_size, max_new_tokens=max_new_tokens)
    data = load_dataset(dataset_dir)
    samples = _split_samples(data, dataset_dir, split)
    reports = {}
    for i, name in enumerate(names):
        with loaded_predictor(name, data.schema, models, device, trust_remote_code) as predictor:
            report = score_predictor(predictor, samples, name, split, constrained=constrained,
                                     batch_size=batch_size, max_new_tokens=max_new_tokens, show=show)
            warnings = schema_warnings(name, dataset_dir, data.schema, predictor)
            reports[name] = {**report, "warnings": warnings + [w for w in [left_out_words(report)] if w]}
        if progress:
            progress(i + 1, len(names))
    return reports


def evaluate_model(name: str, dataset_dir, split: str, device: str = "auto", trust_remote_code: bool = False,
                   **options) -> dict:
    """`cli.py eval`: `name` loaded on its own and scored on `split` by `evaluate_models` (options: its
    scoring options, those of `score_predictor`)."""
    return evaluate_models(None, dataset_dir, split, [name], device=device, trust_remote_code=trust_remote_code,
                           **options)[name]


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


def reliability_rows(report: dict, field: str) -> list[dict]:
    """Long form (mean confidence, accuracy, rows) of one field's non-empty reliability bins, for a plot."""
    bins = report.get("calibration", {}).get(field, {}).get("bins", [])
    return [{"confidence": b["mean_confidence"], "accuracy": b["accuracy"], "rows": b["count"]}
            for b in bins if b["count"]]


def write_report(reports: dict[str, dict], out_dir) -> tuple[Path, Path]:
    """eval-STAMP.json and eval-STAMP.md (the comparison table, then per model and field its
    calibration: ECE, reliability and threshold tables, and eval-STAMP-<model>-<field>.svg)."""
    out_dir = Path(out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    js, md = out_dir / f"eval-{stamp}.json", out_dir / f"eval-{stamp}.md"
    atomic_write_text(js, json.dumps(reports, indent=2, ensure_ascii=False))
    rows = comparison_rows(reports)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    for m, (name, report) in enumerate(reports.items()):
        calibration = report.get("calibration") or {}
        if not calibration:
            continue
        lines += ["", f"### Calibration: {name}", "", f"Confidence: {report.get('calibration_source', '?')}.", "",
                  "Accuracy is the field's score (exact match; token F1 for free text) among rows whose "
                  "confidence lies in the bin or above the threshold.", ""]
        for f, (field, cal) in enumerate(calibration.items()):
            svg = out_dir / f"eval-{stamp}-m{m}-f{f}.svg"  # indices: model and field names may not be file names
            atomic_write_text(svg, reliability_svg(cal, f"{name}: {field}"))
            lines += calibration_markdown(field, cal, svg.name)
    atomic_write_text(md, "\n".join(lines) + "\n")
    return js, md
