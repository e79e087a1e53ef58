"""Schema rewards on hand-made completions: valid, invalid, partially right, fenced, prose, truncated."""

import json
import sys

import pytest

from core.errors import ConfigError
from core.train.rewards import RewardWeights, group_advantages, load_custom_reward, score_batch, score_completion

SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string"},
        "event": {"type": "string", "enum": ["collision", "near_miss", "none"]},
        "rules": {"type": "array", "items": {"type": "string", "enum": ["speeding", "yield", "signs"]},
                  "uniqueItems": True},
    },
    "required": ["caption", "event", "rules"],
    "additionalProperties": False,
}
LABEL = {"caption": "a car turns left in fog", "event": "near_miss", "rules": ["speeding", "yield"]}
PERFECT = json.dumps(LABEL, separators=(",", ":"))


def test_perfect_answer_gets_every_component():
    r = score_completion(SCHEMA, PERFECT, LABEL)
    assert (r["json"], r["schema"], r["fields"]) == (1.0, 1.0, 1.0)
    assert r["total"] == pytest.approx(RewardWeights().json + RewardWeights().schema + RewardWeights().fields)


def test_partially_correct_answer_scores_fields_by_kind():
    answer = {"caption": "a car turns right", "event": "near_miss", "rules": ["speeding"]}
    r = score_completion(SCHEMA, json.dumps(answer), LABEL)
    # caption token F1: 3 common of 4 predicted / 6 reference = 0.6; event exact 1; rules F1 2/3
    assert r["schema"] == 1.0
    assert r["fields"] == pytest.approx((0.6 + 1.0 + 2 / 3) / 3)


def test_schema_invalid_json_still_earns_field_credit():
    answer = {"caption": "a car turns left in fog", "event": "crash", "rules": ["speeding", "yield"], "x": 1}
    r = score_completion(SCHEMA, json.dumps(answer), LABEL)
    assert (r["json"], r["schema"]) == (1.0, 0.0)
    assert r["fields"] == pytest.approx(2 / 3)


def test_fenced_and_prose_wrapped_json_parse_at_half_credit():
    fenced = score_completion(SCHEMA, f"```json\n{PERFECT}\n```", LABEL)
    prose = score_completion(SCHEMA, f"Here is the answer: {PERFECT} Hope it helps.", LABEL)
    for r in (fenced, prose):
        assert (r["json"], r["schema"], r["fields"]) == (0.5, 1.0, 1.0)
    assert fenced["total"] < score_completion(SCHEMA, PERFECT, LABEL)["total"]


@pytest.mark.parametrize("text", [PERFECT[:25], "", "no json here", '{"caption": "x",'])
def test_truncated_or_missing_json_scores_zero(text):
    r = score_completion(SCHEMA, text, LABEL)
    assert (r["json"], r["schema"], r["fields"], r["total"]) == (0.0, 0.0, 0.0, 0.0)


def test_length_penalty_and_weights():
    w = RewardWeights(json=0.0, schema=0.0, fields=1.0, length=0.5)
    r = score_completion(SCHEMA, PERFECT, LABEL, w, n_tokens=40, max_tokens=80)
    assert r["length"] == 0.5 and r["total"] == pytest.approx(1.0 - 0.25)


def test_custom_reward_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def short(completion, label, schema):\n    return 1.0 if len(completion) < 200 else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    func = load_custom_reward("my_rewards:short")
    rows = score_batch(SCHEMA, [PERFECT, PERFECT + " " * 300], [LABEL, LABEL], RewardWeights(custom=2.0),
                       custom=func)
    assert [r["custom"] for r in rows] == [1.0, 0.0]
    assert rows[0]["total"] - rows[1]["total"] == pytest.approx(2.0)
    sys.modules.pop("my_rewards", None)
    for bad in ("my_rewards", "no_such_module_xyz:f", "my_rewards:missing"):
        with pytest.raises(ConfigError):
            load_custom_reward(bad)
    assert load_custom_reward("") is None


def test_group_advantages_are_normalised_per_group():
    adv = group_advantages([1.0, 3.0, 2.0, 2.0, 5.0, 5.0], group_size=2)
    assert adv[0] < 0 < adv[1] and adv[2] == adv[3] == 0.0 and adv[4] == adv[5] == 0.0
    with pytest.raises(ValueError):
        group_advantages([1.0, 2.0, 3.0], group_size=2)
