"""Per-field calibration maps and review thresholds (core.schema.calibration), on hand-made samples
whose answers are known in closed form or by an independent optimiser."""

from __future__ import annotations

import math
import random

import pytest
import torch

from core.errors import ConfigError
from core.schema.calibration import (
    MIN_FIELD_ROWS,
    Calibration,
    fit,
    fit_platt,
    logit,
    sigmoid,
)
from core.schema.presets import DASHCAM_SCHEMA
from core.schema.scoring import MIN_KEPT_ROWS, coverage_at_precision, precision_lower_bound, threshold_for


def test_the_fit_goes_through_the_observed_rates_when_two_scores_carry_all_rows():
    # two raw scores, right 60% and 95% of the time: with no prior the log-loss minimum maps each
    # score exactly to its rate, so a and b have a closed form
    scores = [0.9] * 100 + [0.999] * 100
    right = [1.0] * 60 + [0.0] * 40 + [1.0] * 95 + [0.0] * 5
    a, b = fit_platt(scores, right, prior=0.0)
    x1, x2 = logit(0.9), logit(0.999)
    want_a = (logit(0.95) - logit(0.6)) / (x2 - x1)
    assert a == pytest.approx(want_a, rel=1e-6)
    assert b == pytest.approx(logit(0.6) - want_a * x1, abs=1e-6)
    assert sigmoid(a * x1 + b) == pytest.approx(0.6, abs=1e-6)


def test_the_fit_equals_an_independent_optimiser_on_a_noisy_sample():
    rng = random.Random(3)
    scores = [rng.uniform(0.3, 0.9999) for _ in range(300)]
    right = [float(rng.random() < s ** 4) for s in scores]  # overconfident: right less often than said
    a, b = fit_platt(scores, right, prior=0.01)
    x = torch.tensor([logit(s) for s in scores], dtype=torch.float64)
    y = torch.tensor(right, dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = params[0] * x + params[1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        loss = loss + 0.01 / 2 * ((params[0] - 1) ** 2 + params[1] ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    assert (a, b) == pytest.approx((params[0].item(), params[1].item()), abs=1e-5)
    mean_said = sum(sigmoid(a * logit(s) + b) for s in scores) / len(scores)
    assert mean_said == pytest.approx(sum(right) / len(right), abs=0.01)  # said as often as right
    assert mean_said < sum(scores) / len(scores) - 0.1  # the raw scores said far more


def test_the_threshold_is_the_lowest_score_that_keeps_the_target_precision():
    # 20 rows at 0.99 (19 right), 10 at 0.9 (8 right), 10 at 0.5 (3 right)
    pairs = [(0.99, 1.0)] * 19 + [(0.99, 0.0)] + [(0.9, 1.0)] * 8 + [(0.9, 0.0)] * 2 + [(0.5, 1.0)] * 3 + [(0.5, 0.0)] * 7
    assert threshold_for(pairs, 0.95) == (0.99, 0.95, 0.5)
    assert threshold_for(pairs, 0.9) == (0.9, 0.9, 0.75)
    assert threshold_for(pairs, 0.99) == (None, None, 0.0)
    assert coverage_at_precision(pairs) == {"0.95": 0.5, "0.98": 0.0, "0.99": 0.0}


def test_a_served_threshold_must_hold_its_precision_by_a_lower_bound_not_just_on_its_own_rows():
    # 28 right of 28: observed 1.0, but a sample that size is consistent with ~0.91 (Wilson, one-sided 95%)
    assert precision_lower_bound(28, 28, 1.645) == pytest.approx(1 / (1 + 1.645 ** 2 / 28))
    assert precision_lower_bound(7, 10, 0.0) == pytest.approx(0.7)
    pairs = [(0.99, 1.0)] * 28 + [(0.5, 0.0)] * 20
    assert threshold_for(pairs, 0.98)[0] == 0.99  # on its own rows
    assert threshold_for(pairs, 0.98, z=1.645) == (None, None, 0.0)
    pairs = [(0.99, 1.0)] * 150 + [(0.5, 0.0)] * 20
    assert threshold_for(pairs, 0.98, z=1.645) == (0.99, 1.0, round(150 / 170, 4))  # enough rows: accepted


def test_a_threshold_needs_enough_rows_to_claim_a_precision():
    few = [(0.99, 1.0)] * (MIN_KEPT_ROWS - 1) + [(0.5, 0.0)] * 20
    assert threshold_for(few, 0.95) == (None, None, 0.0)


def _sample(n: int, rng: random.Random):
    raw, correct = [], []
    for _ in range(n):
        s = rng.uniform(0.9, 0.99999)
        right = float(rng.random() < 0.7)
        raw.append({"event_type": s, "visibility": 0.999, "caption": 0.8})
        correct.append({"event_type": right, "visibility": 1.0, "caption": 0.6})
    return raw, correct


def test_fit_maps_each_field_and_says_which_use_the_shared_map(tmp_path):
    raw, correct = _sample(MIN_FIELD_ROWS - 1, random.Random(0))
    cal = fit(DASHCAM_SCHEMA, raw, correct, "val", clips=len(raw))
    assert all(m.shared for m in cal.fields.values())
    assert any("event_type" in n and "shared" in n for n in cal.notes)
    raw, correct = _sample(200, random.Random(1))
    cal = fit(DASHCAM_SCHEMA, raw, correct, "val", clips=200)
    ev = cal.fields["event_type"]
    assert not ev.shared and ev.rows == 200
    assert ev.ece_raw > 0.2 and ev.ece < 0.05  # ~0.95 said, 0.7 right: the map brings it to 0.7
    assert not cal.fields["caption"].decides_review
    assert cal.fields["visibility"].threshold is not None  # always right: accepted
    assert ev.threshold is None  # 70% right with no signal: never reaches 0.98
    served = cal.apply({"event_type": 0.999, "visibility": 0.999, "caption": 0.8})
    assert served["event_type"] == pytest.approx(0.7, abs=0.05)
    assert cal.review(served) == ["event_type"]
    assert cal.review({}) == ["event_type", "visibility"]  # no scores: check every choice field it knows
    path = cal.save(tmp_path / "calibration.json")
    again = Calibration.load(path)
    assert again.apply({"event_type": 0.95}) == cal.apply({"event_type": 0.95})
    assert again.fields["event_type"].threshold == ev.threshold


def test_an_unreadable_calibration_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"split": "val"')
    with pytest.raises(ConfigError, match="calibration.json.*cli.py calibrate"):
        Calibration.load(path)


def test_the_target_precision_must_be_a_probability_worth_asking_for():
    with pytest.raises(ConfigError, match="target precision"):
        fit(DASHCAM_SCHEMA, [], [], "val", 0, target_precision=1.0)


def test_logit_and_sigmoid_stay_finite_at_the_ends():
    assert math.isfinite(logit(1.0)) and math.isfinite(logit(0.0))
    assert sigmoid(-1000) == 0.0 and sigmoid(1000) == 1.0
