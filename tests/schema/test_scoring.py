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
