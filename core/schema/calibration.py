"""Calibrated per-field confidence and the thresholds that decide which answers need a person.

A raw field score (core.serve.confidence) is the probability the model's own distribution gives
the value it wrote; a fine-tuned model's raw scores sit near 1 whether it is right or not. Fitted
on held-out labels, a `Calibration` maps each field's raw score to the chance that the field is
right, and picks per field the lowest calibrated score at which the answers kept are right at least
`target_precision` of the time on those labels (by a 95% lower bound, so that the precision holds
on clips the thresholds were not chosen on). `fit(schema, raw, correct, ...)` fits one;
`Calibration.apply(raw)` calibrates an answer's scores; `Calibration.review(scores)` lists the
fields a person should check. Saved as `calibration.json` beside a run's spec (core.spec's
CALIBRATION_FILE), it travels with the run wherever the spec goes.

The map, per field, is Platt scaling on the score's log-odds: p = sigmoid(a * logit(s) + b). It
is the temperature baseline (a = 1/T, on the one number the field's tokens give) plus a shift for
a field whose base rate the model gets wrong. Fitted by Newton's method on the log-loss with a weak
prior towards the identity (a = 1, b = 0) so that a perfectly separated or tiny sample gives a finite
map. A field with fewer than MIN_FIELD_ROWS scored rows uses the `shared` map, fitted on the rows of
every choice field together, and says so. Free-text fields are calibrated against token F1 (soft
labels) but never decide review: a caption has no "right".

No model and no torch here: the fitting data comes from core.serve.calibrate.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.fileio import atomic_write_text
from core.schema.base import BOOLEAN, ENUM, ENUM_LIST, fields
from core.schema.scoring import calibration as reliability
from core.schema.scoring import threshold_for

DEFAULT_TARGET_PRECISION = 0.98
MIN_FIELD_ROWS = 30  # fewer held-out rows than this: the shared map (two parameters need some data)
PRIOR = 0.01  # strength of the pull towards the identity map (a = 1, b = 0)
# a threshold must keep its precision by the one-sided 95% Wilson lower bound, not just on the rows it
# was chosen on: with the observed rate, 28 right of 28 val rows gave 0.90 on test (BENCHMARKS section 9)
THRESHOLD_Z = 1.645
CHOICE_KINDS = (ENUM, ENUM_LIST, BOOLEAN)
_EPS = 1e-6


def logit(p: float) -> float:
    p = min(1 - _EPS, max(_EPS, float(p)))
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def fit_platt(scores: list[float], targets: list[float], prior: float = PRIOR) -> tuple[float, float]:
    """(a, b) minimising sum log-loss(sigmoid(a * logit(s) + b), y) + prior/2 * ((a - 1)^2 + b^2).

    `targets` in [0, 1] (soft labels allowed). Newton's method with step halving: the objective
    is convex, so this is its unique minimum."""
    xs = [logit(s) for s in scores]

    def loss(a: float, b: float) -> float:
        total = prior / 2 * ((a - 1) ** 2 + b ** 2)
        for x, y in zip(xs, targets):
            z = a * x + b  # log(1 + e^z) - y z, written to stay finite for large |z|
            total += max(z, 0) + math.log1p(math.exp(-abs(z))) - y * z
        return total

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        ga, gb = prior * (a - 1), prior * b
        haa, hab, hbb = prior, 0.0, prior
        for x, y in zip(xs, targets):
            p = sigmoid(a * x + b)
            w = p * (1 - p)
            ga, gb = ga + (p - y) * x, gb + (p - y)
            haa, hab, hbb = haa + w * x * x, hab + w * x, hbb + w
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = 1.0
        while step > 1e-8:
            na, nb = a - step * da, b - step * db
            new = loss(na, nb)
            if new <= current:
                break
            step /= 2
        else:
            break
        converged = abs(current - new) < 1e-12 * max(1.0, abs(current))
        a, b, current = na, nb, new
        if converged or abs(da) + abs(db) < 1e-10:
            break
    return a, b


@dataclass
class FieldMap:
    """One field's calibration: the map, what it was fitted on, and its review threshold."""

    a: float
    b: float
    rows: int  # held-out rows with a score for this field
    shared: bool = False  # too few rows of its own: the map fitted on every choice field
    ece_raw: float | None = None
    ece: float | None = None  # of the calibrated scores on the same rows (in-sample)
    threshold: float | None = None  # calibrated score at/above which the field is accepted; None: never
    precision: float | None = None  # on the held-out rows the threshold keeps
    coverage: float = 0.0  # share of held-out rows it keeps
    decides_review: bool = True  # False for free text

    def __call__(self, raw: float) -> float:
        return round(sigmoid(self.a * logit(raw) + self.b), 6)


@dataclass
class Calibration:
    """Per-field maps fitted on one split, and what they were fitted on."""

    split: str
    target_precision: float
    clips: int
    fields: dict[str, FieldMap]
    dataset: str = ""
    notes: list[str] = field(default_factory=list)
    constrained: bool = True  # the decoding the held-out answers were given with

    def apply(self, raw: dict | None) -> dict:
        """Calibrated scores for an answer's raw field scores (fields without a map keep none)."""
        return {k: self.fields[k](v) for k, v in (raw or {}).items() if v is not None and k in self.fields}

    def review(self, scores: dict | None, schema: dict | None = None) -> list[str]:
        """The choice fields a person should check: missing a score, below the threshold, a field
        whose precision target no threshold met on the held-out rows, or (given the `schema`) a
        choice field the held-out rows never scored."""
        out = [name for name in choice_fields(schema) if name not in self.fields] if schema else []
        for name, fm in self.fields.items():
            if not fm.decides_review:
                continue
            s = (scores or {}).get(name)
            if s is None or fm.threshold is None or s < fm.threshold:
                out.append(name)
        return out

    def save(self, path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            maps = {k: FieldMap(**v) for k, v in data.pop("fields").items()}
            return cls(fields=maps, **data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a readable calibration ({exc}); run `cli.py calibrate` again") from None


def for_run(run_dir) -> Calibration | None:
    """The calibration saved beside a run's spec, or None when the run has none (not calibrated)."""
    from core.layout import CALIBRATION_FILE

    path = Path(run_dir) / CALIBRATION_FILE if run_dir is not None else None
    return Calibration.load(path) if path is not None and path.is_file() else None


# With raw (uncalibrated) scores a field under this is marked unsure, for the eye only: it decides
# nothing (needs_review sends every uncalibrated answer to a person) but points at the weakest fields.
RAW_UNSURE_BELOW = 0.5


def fields_to_check(calibrated: bool, review_fields: list | None, confidence: dict | None) -> set[str]:
    """The fields to mark on an answer: those under their measured threshold when its scores are
    calibrated, else those whose raw score is under RAW_UNSURE_BELOW."""
    if calibrated:
        return set(review_fields or [])
    return {k for k, v in (confidence or {}).items() if v is not None and v < RAW_UNSURE_BELOW}


def choice_fields(schema: dict) -> list[str]:
    return [f.name for f in fields(schema) if f.kind in CHOICE_KINDS]


def needs_review(valid: bool, calibrated: bool, review_fields: list | None) -> bool:
    """The one rule every output follows: a person looks at an answer unless it is valid, its scores
    were calibrated (a threshold was measured) and no field is under its threshold. `review_fields`
    None: unknown (an unread clip)."""
    return not valid or not calibrated or review_fields is None or bool(review_fields)


def review_without_calibration(schema: dict) -> list[str]:
    """No held-out labels measured this model: every choice field needs a person."""
    return choice_fields(schema)


def _field_map(pairs, target: float, decides: bool, shared: tuple[float, float] | None) -> FieldMap:
    a, b = shared if shared is not None else fit_platt([c for c, _ in pairs], [y for _, y in pairs])
    fm = FieldMap(a, b, rows=len(pairs), shared=shared is not None, decides_review=decides)
    calibrated = [(fm(c), y) for c, y in pairs]
    fm.ece_raw, fm.ece = reliability(pairs)["ece"], reliability(calibrated)["ece"]
    if decides:
        fm.threshold, fm.precision, fm.coverage = threshold_for(calibrated, target, THRESHOLD_Z)
    return fm


def fit(schema: dict, raw: list[dict | None], correct: list[dict], split: str, clips: int,
        target_precision: float = DEFAULT_TARGET_PRECISION, dataset: str = "", constrained: bool = True) -> Calibration:
    """Fit per-field maps from aligned lists: each answer's raw scores and each field's correctness
    (core.schema.scoring.score_row's `fields`: 1/0 for choice fields, token F1 for text)."""
    if not 0.5 <= target_precision < 1:
        raise ConfigError(f"target precision {target_precision}: give a value in [0.5, 1)")
    choices = set(choice_fields(schema))
    pairs: dict[str, list[tuple[float, float]]] = {}
    for scores, right in zip(raw, correct):
        for name, y in right.items():
            s = (scores or {}).get(name)
            if s is not None:
                pairs.setdefault(name, []).append((float(s), float(y)))
    pooled = [p for name in choices for p in pairs.get(name, [])]
    shared = fit_platt([c for c, _ in pooled], [y for _, y in pooled]) if pooled else (1.0, 0.0)
    maps, notes = {}, []
    for f in fields(schema):
        rows = pairs.get(f.name, [])
        if not rows:
            continue
        own, choice = len(rows) >= MIN_FIELD_ROWS, f.name in choices
        if not own:  # free text is on another scale than the choice fields: it keeps its raw score
            notes.append(f"{f.name}: {len(rows)} scored {split} rows (< {MIN_FIELD_ROWS}): "
                         + ("the shared map" if choice else "left raw"))
        maps[f.name] = _field_map(rows, target_precision, choice, None if own else shared if choice else (1.0, 0.0))
    return Calibration(split, target_precision, clips, maps, dataset, notes, constrained)
