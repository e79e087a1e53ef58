import json

import pytest

from core.schema.presets import DASHCAM_SCHEMA
from core.schema.scoring import evaluate, score_row, set_prf, token_f1

LABEL = {
    "caption": "clear drive in light traffic", "event_type": "near_miss", "rule_violations": ["speeding"],
    "intended_driving_action": "turn_left", "traffic_density": "low", "visibility": "good",
}


def test_token_f1():
    assert token_f1("a b c", "a b c") == 1.0
    assert token_f1("x y", "a b") == 0.0
    assert token_f1("a b", "a b c d") == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_set_prf_empty_sets_agree():
    assert set_prf([], []) == (1.0, 1.0, 1.0)
    assert set_prf(["a"], []) == (0.0, 0.0, 0.0)


def test_perfect_answer_scores_one():
    r = score_row(DASHCAM_SCHEMA, json.dumps(LABEL), LABEL)
    assert r.schema_valid and all(v == 1.0 for v in r.fields.values())


def test_partially_right_answer_scores_per_field():
    pred = dict(LABEL, event_type="collision", rule_violations=["speeding", "failure_to_yield"])
    r = score_row(DASHCAM_SCHEMA, json.dumps(pred), LABEL)
    assert r.fields["event_type"] == 0.0 and r.fields["rule_violations"] == 0.0
    assert r.fields["visibility"] == 1.0 and r.schema_valid


def test_array_order_does_not_matter():
    label = dict(LABEL, rule_violations=["speeding", "failure_to_yield"])
    pred = dict(LABEL, rule_violations=["failure_to_yield", "speeding"])
    assert score_row(DASHCAM_SCHEMA, json.dumps(pred), label).fields["rule_violations"] == 1.0


def test_evaluate_aggregates_and_counts_invalid():
    texts = [json.dumps(LABEL), "garbage", json.dumps(dict(LABEL, visibility="meh")), None]
    report = evaluate(DASHCAM_SCHEMA, texts, [LABEL] * 4)
    assert report["count"] == 4
    assert report["json_valid_rate"] == 0.5
    assert report["schema_valid_rate"] == 0.25
    assert report["per_field"]["visibility"] == 0.25
    assert report["per_field"]["event_type"] == 0.5
    # mean over the five enum/array fields
    expected = (0.5 + 0.5 + 0.5 + 0.5 + 0.25) / 5
    assert report["mean_field_accuracy"] == pytest.approx(expected, abs=1e-4)
    assert report["text_scores"]["caption"]["token_f1"] == 0.5
    assert report["confusion"]["event_type"]["near_miss"]["near_miss"] == 2
    assert report["confusion"]["event_type"]["near_miss"]["invalid"] == 2


# ------------------------------------------------------------------------------ calibration

def test_calibration_bins_ece_and_coverage_from_a_hand_computed_case():
    """Four rows at 0.95 (3 right), two at 0.55 (1 right), two at 0.15 (both wrong)."""
    from core.schema.scoring import calibration

    pairs = [(0.95, 1.0)] * 3 + [(0.95, 0.0), (0.55, 1.0), (0.55, 0.0), (0.15, 0.0), (0.15, 0.0)]
    cal = calibration(pairs)
    full = {b["lo"]: b for b in cal["bins"] if b["count"]}
    assert set(full) == {0.9, 0.5, 0.1} and sum(b["count"] for b in cal["bins"]) == 8
    assert full[0.9] == {"lo": 0.9, "hi": 1.0, "count": 4, "mean_confidence": 0.95, "accuracy": 0.75}
    assert full[0.1]["accuracy"] == 0.0 and full[0.5]["accuracy"] == 0.5
    # ECE = (4*|0.75-0.95| + 2*|0.5-0.55| + 2*|0-0.15|) / 8
    assert cal["ece"] == pytest.approx((4 * 0.2 + 2 * 0.05 + 2 * 0.15) / 8, abs=1e-4)
    cover = {c["threshold"]: c for c in cal["coverage"]}
    assert cover[0.0] == {"threshold": 0.0, "kept": 1.0, "accuracy": 0.5}
    assert cover[0.5] == {"threshold": 0.5, "kept": 0.75, "accuracy": pytest.approx(4 / 6, abs=1e-4)}
    assert cover[0.9] == {"threshold": 0.9, "kept": 0.5, "accuracy": 0.75}
    assert cover[0.99] == {"threshold": 0.99, "kept": 0.0, "accuracy": None}


def test_a_confidence_of_one_lands_in_the_last_bin():
    from core.schema.scoring import calibration

    cal = calibration([(1.0, 1.0), (0.0, 0.0)])
    assert cal["bins"][-1]["count"] == 1 and cal["bins"][0]["count"] == 1 and cal["ece"] == 0.0


def test_evaluate_adds_calibration_per_field_only_when_given_confidences():
    wrong = {**LABEL, "event_type": "collision"}
    texts = [json.dumps(LABEL), json.dumps(wrong), "no json here", None]
    confs = [{"event_type": 0.9, "caption": 0.4}, {"event_type": 0.8, "caption": 0.5}, {}, None]
    assert "calibration" not in evaluate(DASHCAM_SCHEMA, texts, [LABEL] * 4)
    cal = evaluate(DASHCAM_SCHEMA, texts, [LABEL] * 4, confs)["calibration"]
    assert set(cal) == {"event_type", "caption"}  # fields nobody scored are left out
    assert cal["event_type"]["rows"] == 2 and cal["event_type"]["unscored"] == 2
    assert cal["event_type"]["coverage"][0]["accuracy"] == 0.5  # one right at 0.9, one wrong at 0.8
    assert cal["caption"]["bins"][4]["accuracy"] == 1.0 and cal["caption"]["bins"][5]["accuracy"] == 1.0
