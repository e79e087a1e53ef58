"""Scoring model answers against labels, field by field, as the schema defines the fields.

Enums score exact match; enum lists score set match (plus precision/recall/F1); free text scores
token F1; numbers and booleans exact match. An answer that does not parse or breaks the schema
still gets per-field credit for the fields it got right — the schema-valid rate reports validity
separately. Given each answer's per-field confidence (core.serve.confidence), `evaluate` adds
`calibration`: per field, how well confidence predicts being right (`calibration`). This module
does not run models.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from core.schema.base import BOOLEAN, ENUM, ENUM_LIST, NUMBER, TEXT, extract_json, fields, is_valid

_WORD = re.compile(r"[\w']+")

CALIBRATION_BINS = 10  # equal-width confidence bins [0, 0.1), ..., [0.9, 1.0]
# Auto-accept thresholds the coverage table reports: keep rows whose field confidence is >= t.
THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
PRECISIONS = (0.95, 0.98, 0.99)  # the columns of every coverage-at-precision table
MIN_KEPT_ROWS = 10  # a threshold must keep at least this many rows to claim a precision


def token_f1(pred: str, ref: str) -> float:
    p, r = _WORD.findall(str(pred).lower()), _WORD.findall(str(ref).lower())
    if not p and not r:
        return 1.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def set_prf(pred, ref) -> tuple[float, float, float]:
    p = set(pred) if isinstance(pred, list) else set()
    r = set(ref) if isinstance(ref, list) else set()
    if not p and not r:
        return 1.0, 1.0, 1.0
    tp = len(p & r)
    precision = tp / len(p) if p else 0.0
    recall = tp / len(r) if r else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


@dataclass
class RowScore:
    json_valid: bool
    schema_valid: bool
    parsed: dict | None
    error: str | None
    fields: dict = field(default_factory=dict)  # field -> score in [0, 1]


def score_row(schema: dict, text: str | None, label: dict) -> RowScore:
    zero = {f.name: 0.0 for f in fields(schema) if f.name in label}
    if text is None:
        return RowScore(False, False, None, "no output", zero)
    obj, err = extract_json(text)
    if obj is None:
        return RowScore(False, False, None, err, zero)
    scores = {f.name: field_score(f, obj.get(f.name), label[f.name]) for f in fields(schema) if f.name in label}
    return RowScore(True, is_valid(schema, obj), obj, None, scores)


def field_score(f, pred, ref, partial_lists: bool = False) -> float:
    """One field's agreement with its label, in [0, 1]: text by token F1, anything else exactly; a list
    of choices exactly as a set, or with `partial_lists` by set F1. Evaluation and calibration count
    a list right only when it is all right (that is what a person would have to fix); GRPO's field
    reward uses the F1 (core.train.rewards), so an answer with one of two violations earns half."""
    if f.kind == ENUM_LIST:
        if not isinstance(pred, list):
            return 0.0
        if partial_lists:
            return set_prf(pred, ref)[2]
        return float(set(map(_hashable, pred)) == set(map(_hashable, ref)))
    if f.kind == TEXT:
        return token_f1(pred, ref) if isinstance(pred, str) else 0.0
    return float(pred == ref)


def calibration(pairs: list[tuple[float, float]], bins: int = CALIBRATION_BINS) -> dict:
    """How well confidence predicts correctness, from (confidence, score in [0, 1]) pairs.

    `bins`: per equal-width confidence bin, its range, `count`, `mean_confidence` and `accuracy`
    (mean score; None when empty). `ece`: expected calibration error, the count-weighted mean of
    |accuracy - mean confidence| over bins. `coverage`: per threshold t of THRESHOLDS, the share of
    rows with confidence >= t (`kept`) and their accuracy (None when none is kept): what
    auto-accepting above t would keep and how often it would be right."""
    n = len(pairs)
    groups: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for c, score in pairs:
        groups[min(bins - 1, max(0, int(c * bins)))].append((c, score))  # 1.0 falls in the last bin
    table, gap = [], 0.0
    for b, inside in enumerate(groups):
        conf = sum(c for c, _ in inside) / len(inside) if inside else None
        acc = sum(s for _, s in inside) / len(inside) if inside else None
        if inside:
            gap += len(inside) * abs(acc - conf)
        table.append({"lo": round(b / bins, 4), "hi": round((b + 1) / bins, 4), "count": len(inside),
                      "mean_confidence": None if conf is None else round(conf, 4),
                      "accuracy": None if acc is None else round(acc, 4)})
    ece = gap / n if n else None
    coverage = []
    for t in THRESHOLDS:
        kept = [s for c, s in pairs if c >= t]
        coverage.append({"threshold": t, "kept": round(len(kept) / n, 4) if n else 0.0,
                         "accuracy": round(sum(kept) / len(kept), 4) if kept else None})
    return {"rows": n, "ece": round(ece, 4) if ece is not None else None, "bins": table, "coverage": coverage}


def _pairs(name: str, rows: list[RowScore], confidences: list) -> tuple[list[tuple[float, float]], int]:
    pairs, unscored = [], 0
    for r, conf in zip(rows, confidences):
        if name not in r.fields:
            continue
        c = (conf or {}).get(name)
        if c is None:
            unscored += 1
        else:
            pairs.append((float(c), r.fields[name]))
    return pairs, unscored


def precision_lower_bound(right: float, kept: int, z: float) -> float:
    """Wilson score lower bound of a precision of right/kept; z = 0 gives right/kept itself."""
    if kept == 0:
        return 0.0
    p, n = right / kept, kept
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def threshold_for(pairs: list[tuple[float, float]], target: float,
                  z: float = 0.0) -> tuple[float | None, float | None, float]:
    """(threshold, precision, coverage): the lowest score t such that the rows scoring >= t number at
    least MIN_KEPT_ROWS and are right at least `target` of the time, by the Wilson lower bound at `z`
    (0: the observed rate; 1.645: what 95% of samples this size would still show); (None, None, 0.0)
    if no t is. `precision` is the observed rate of the rows kept."""
    ranked = sorted(pairs, key=lambda p: -p[0])
    best: tuple[float | None, float | None, float] = (None, None, 0.0)
    right = 0.0
    for k, (c, y) in enumerate(ranked, start=1):
        right += y
        if k < len(ranked) and ranked[k][0] == c:
            continue  # a threshold keeps every row with the same score
        if k >= MIN_KEPT_ROWS and precision_lower_bound(right, k, z) >= target:
            best = (c, round(right / k, 4), round(k / len(ranked), 4))
    return best


def coverage_at_precision(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Per precision in PRECISIONS, the largest share of rows a threshold keeps at that precision
    on these rows themselves (0.0 when no threshold reaches it)."""
    return {f"{p:g}": threshold_for(pairs, p)[2] for p in PRECISIONS}


def field_calibration(schema: dict, rows: list[RowScore], confidences: list, raw: list | None = None,
                      thresholds: dict | None = None) -> dict:
    """Per field: `calibration` of the scores as served over the rows that have both a score and a
    confidence for it; `unscored` (rows with a label for the field but no confidence: no answer, or
    the field missing); `ece_raw` (of the scores before calibration, `raw`; equal to `ece` when
    nothing was calibrated); `coverage_at_precision` (core.schema.calibration, on these rows) and,
    for a field with a threshold from the run's calibration (`thresholds`: field -> score or None),
    `selective`: what that threshold kept here and how often it was right."""
    out = {}
    for f in fields(schema):
        pairs, unscored = _pairs(f.name, rows, confidences)
        if not pairs:
            continue
        cal = calibration(pairs)
        cal["ece_raw"] = calibration(_pairs(f.name, rows, raw)[0])["ece"] if raw is not None else cal["ece"]
        cal.update(unscored=unscored, coverage_at_precision=coverage_at_precision(pairs))
        if thresholds is not None and f.name in thresholds:
            t = thresholds[f.name]
            kept = [y for c, y in pairs if t is not None and c >= t]
            cal["selective"] = {"threshold": t, "kept": round(len(kept) / len(pairs), 4),
                                "precision": round(sum(kept) / len(kept), 4) if kept else None}
        out[f.name] = cal
    return out


def evaluate(schema: dict, texts: list, labels: list[dict], confidences: list | None = None,
             raw: list | None = None, thresholds: dict | None = None) -> dict:
    """Aggregate metrics for aligned lists of model outputs (None = failed clip) and labels.
    `confidences` (per answer: field -> score as served, or None) adds `calibration`
    (`field_calibration`, with `raw` the scores before calibration and the run's `thresholds`)."""
    rows = [score_row(schema, t, lab) for t, lab in zip(texts, labels)]
    n = len(rows)
    per_field, text_scores, enum_list_f1, confusion = {}, {}, {}, {}
    for f in fields(schema):
        vals = [r.fields[f.name] for r in rows if f.name in r.fields]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        if f.kind == TEXT:
            text_scores[f.name] = round(mean, 4)
        elif f.kind in (ENUM, ENUM_LIST, NUMBER, BOOLEAN):
            per_field[f.name] = round(mean, 4)
        if f.kind == ENUM_LIST:
            prf = [set_prf((r.parsed or {}).get(f.name), lab.get(f.name)) for r, lab in zip(rows, labels)]
            enum_list_f1[f.name] = {k: round(sum(x[i] for x in prf) / n, 4) for i, k in enumerate(("precision", "recall", "f1"))}
        if f.kind == ENUM:
            matrix = {str(a): {str(b): 0 for b in (*f.choices, "invalid")} for a in f.choices}
            for r, lab in zip(rows, labels):
                truth, pred = lab.get(f.name), (r.parsed or {}).get(f.name)
                if str(truth) in matrix:
                    key = str(pred) if pred in f.choices else "invalid"
                    matrix[str(truth)][key] += 1
            confusion[f.name] = matrix
    enum_scores = [per_field[f.name] for f in fields(schema) if f.kind in (ENUM, ENUM_LIST) and f.name in per_field]
    report = {
        "count": n,
        "json_valid_rate": round(sum(r.json_valid for r in rows) / n, 4) if n else 0.0,
        "schema_valid_rate": round(sum(r.schema_valid for r in rows) / n, 4) if n else 0.0,
        "mean_field_accuracy": round(sum(enum_scores) / len(enum_scores), 4) if enum_scores else 0.0,
        "per_field": per_field,
        "text_scores": {k: {"token_f1": v} for k, v in text_scores.items()},
        "array_prf": enum_list_f1,
        "confusion": confusion,
        "errors": sum(1 for r in rows if r.error),
    }
    if confidences is not None:
        report["calibration"] = field_calibration(schema, rows, confidences, raw, thresholds)
    return report
