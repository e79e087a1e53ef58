"""The compiled label check answers exactly what jsonschema answers, on thousands of labels: valid
ones, valid ones with one property replaced by each of a pool of values (wrong types, unknown enum
values, 1.0 vs 1 vs true, duplicates, bounds) or removed, extra keys, and random mixtures; and it
declines schemas outside its subset."""

import json
import random

import jsonschema
import pytest

from core.schema.fastcheck import compile_check
from core.schema.presets import PRESETS
from tests.support import SAMPLES

RICH = {
    "type": "object",
    "required": ["kind", "count"],
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": ["a", "b"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "flag": {"type": "boolean"},
        "note": {"type": "string", "minLength": 2, "maxLength": 5},
        "maybe": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["x", "y", "z"]}, "uniqueItems": True,
                 "minItems": 1, "maxItems": 2},
        "inner": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "free": {},
    },
}

POOL = ["a", "b", "x", "turn_left", "near_miss", "low", "", "zz", "abcdef", 0, 1, -1, 11, 1.0, 1.5, 0.5, True, False,
        None, [], ["x"], ["x", "x"], ["x", "y", "z"], ["y", 1], [None], {}, {"n": 1}, {"n": "1"}, {"m": 1}]


def mutations(schema: dict, rng: random.Random, n: int):
    props = list(schema.get("properties", {}))
    for _ in range(n):
        label = {p: rng.choice(POOL) for p in props if rng.random() < 0.85}
        if rng.random() < 0.2:
            label["unexpected"] = rng.choice(POOL)
        yield label


def valid_labels(schema: dict, rng: random.Random, n: int):
    """Labels built from each property's allowed values, so that many of them pass."""
    def value(sub):
        if "enum" in sub:
            return rng.choice(sub["enum"])
        if sub.get("type") == "array":
            allowed = sub.get("items", {}).get("enum", ["x"])
            return rng.sample(allowed, rng.randint(0, min(2, len(allowed))))
        kind = sub.get("type")
        if kind == "object":
            return {"n": 1}
        return {"string": "text", "integer": 3, "number": 0.5, "boolean": True}.get(kind if isinstance(kind, str) else "",
                                                                                  None)

    for _ in range(n):
        yield {p: value(sub) for p, sub in schema.get("properties", {}).items()}


@pytest.mark.parametrize("name", ["sample_videos", "rich", *PRESETS])
def test_compiled_check_equals_jsonschema(name):
    schema = {"sample_videos": json.loads((SAMPLES / "schema.json").read_text()), "rich": RICH}.get(name) or PRESETS[name]
    check = compile_check(schema)
    assert check is not None, f"{name} is inside the compiled subset"
    reference = jsonschema.Draft202012Validator(schema).is_valid
    rng = random.Random(name)
    bases = list(valid_labels(schema, rng, 20))
    one_change = [{**base, prop: x} for base in bases[:3] for prop in schema.get("properties", {}) for x in POOL]
    one_missing = [{k: v for k, v in base.items() if k != prop} for base in bases[:3] for prop in base]
    labels = [*mutations(schema, rng, 3000), *bases, *one_change, *one_missing, *({**b, "unexpected": 1} for b in bases)]
    verdicts = [reference(label) for label in labels]
    assert [check(label) for label in labels] == verdicts
    assert 0 < sum(verdicts) < len(verdicts)  # both answers occur, so the comparison means something


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}},
    {"type": "object", "properties": {"a": {"enum": [1, 2]}}},
    {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}},
])
def test_schemas_outside_the_subset_are_left_to_jsonschema(schema):
    assert compile_check(schema) is None
