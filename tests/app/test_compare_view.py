"""How one answer is shown in Compare and Inference: validity, each field's answer, confidence and verdict."""

from __future__ import annotations

from tabs.answer_view import side_markdown


def side(**extra) -> dict:
    base = {"schema_valid": True, "parse_error": None, "schema_errors": [], "new_tokens": 20, "seconds": 0.5,
            "tokens_per_s": 40.0, "parsed": {"event_type": "near_miss", "rule_violations": ["speeding"]}}
    return {**base, **extra}


def test_fields_show_answer_confidence_and_label_verdict():
    text = side_markdown(side(confidence={"event_type": 0.93, "rule_violations": 0.31}, min_confidence=0.31,
                              agreement={"event_type": 1.0, "rule_violations": 0.0}))
    assert "| event_type | near_miss | 0.93 | ✓ |" in text
    assert '| rule_violations | ["speeding"] | ⚠ 0.31 | ✗ |' in text  # below 0.5: flagged
    assert "Confidence: raw, not calibrated" in text and "every field needs review" in text


def test_a_calibrated_answer_marks_the_fields_under_their_threshold_and_says_what_to_check():
    text = side_markdown(side(confidence={"event_type": 0.42, "rule_violations": 0.97}, calibrated=True,
                              review_fields=["event_type"]))
    assert "| event_type | near_miss | ⚠ 0.42 |" in text and "| rule_violations | [\"speeding\"] | 0.97 |" in text
    assert "calibrated on held-out labels" in text and "Needs review: event_type." in text
    text = side_markdown(side(confidence={"event_type": 0.99}, calibrated=True, review_fields=[]))
    assert "above its threshold: accept" in text


def test_an_answer_that_does_not_parse_has_no_field_table():
    text = side_markdown(side(schema_valid=False, parse_error="no JSON object", parsed=None, confidence={}))
    assert text.startswith("**✖ not schema-valid: no JSON object**") and "| field |" not in text
