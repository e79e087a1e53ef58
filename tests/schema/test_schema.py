import json

import pytest

from core.errors import SchemaError
from core.schema.base import canonical_answer, extract_json, fields, label_errors, parse_schema, schema_hash
from core.schema.presets import DASHCAM_SCHEMA
from core.schema.prompt import build_instruction, build_messages

LABEL = {
    "caption": "A drive.", "event_type": "near_miss", "rule_violations": ["failure_to_yield", "speeding"],
    "intended_driving_action": "turn_left", "traffic_density": "low", "visibility": "good",
}


def test_parse_schema_reports_line_and_column():
    with pytest.raises(SchemaError, match="line 2, column"):
        parse_schema('{"type": "object",\n "properties": {,}}')


def test_parse_schema_rejects_non_object_top_level():
    with pytest.raises(SchemaError, match="top level"):
        parse_schema('{"type": "array"}')


def test_invalid_json_schema_construct_is_named():
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        parse_schema(json.dumps({"type": "object", "properties": {"a": {"type": "strng"}}}))


def test_field_kinds_of_dashcam_schema():
    kinds = {f.name: f.kind for f in fields(DASHCAM_SCHEMA)}
    assert kinds == {"caption": "text", "event_type": "enum", "rule_violations": "enum_list",
                     "intended_driving_action": "enum", "traffic_density": "enum", "visibility": "enum"}


def test_label_errors_name_the_field():
    bad = dict(LABEL, event_type="explosion")
    errors = label_errors(DASHCAM_SCHEMA, bad)
    assert len(errors) == 1 and errors[0].startswith("event_type:")
    assert label_errors(DASHCAM_SCHEMA, LABEL) == []


def test_canonical_answer_orders_fields_and_list_items():
    shuffled = dict(reversed(list(LABEL.items())))
    text = canonical_answer(DASHCAM_SCHEMA, shuffled)
    assert text.startswith('{"caption":"A drive.","event_type":"near_miss","rule_violations":["speeding","failure_to_yield"]')
    assert json.loads(text)["visibility"] == "good"
    assert " " not in text.replace("A drive.", "")


def test_schema_hash_ignores_key_order():
    reordered = dict(reversed(list(DASHCAM_SCHEMA.items())))
    assert schema_hash(reordered) == schema_hash(DASHCAM_SCHEMA)
    assert schema_hash({**DASHCAM_SCHEMA, "title": "x"}) != schema_hash(DASHCAM_SCHEMA)


@pytest.mark.parametrize("text,expected", [
    ('{"a": 1}', {"a": 1}),
    ('Here you go:\n```json\n{"a": 1}\n```\nbye', {"a": 1}),
    ('The answer is {"a": {"b": [1, 2]}} as asked.', {"a": {"b": [1, 2]}}),
    ('{not json} then {"a": 2}', {"a": 2}),
])
def test_extract_json_finds_the_object(text, expected):
    obj, err = extract_json(text)
    assert obj == expected and err is None


@pytest.mark.parametrize("text,reason", [
    ("", "no JSON object"), ("just prose", "no JSON object"), ('{"a": [1, 2', "truncated"),
])
def test_extract_json_reports_failures(text, reason):
    obj, err = extract_json(text)
    assert obj is None and reason in err


def test_instruction_lists_every_field_and_choice():
    text = build_instruction(DASHCAM_SCHEMA)
    for f in fields(DASHCAM_SCHEMA):
        assert f"- {f.name}:" in text
        for c in f.choices:
            assert f'"{c}"' in text


def test_messages_frames_as_video_or_images():
    video = build_messages("Q", 4, "video", answer="A")
    assert video[0]["content"][0] == {"type": "video"} and video[1]["role"] == "assistant"
    images = build_messages("Q", 3, "images")
    assert sum(c["type"] == "image" for c in images[0]["content"]) == 3
    assert images[0]["content"][0]["text"] == "Frame1: "


def test_dashcam_preset_is_the_bundled_schema():
    from tests.support import SAMPLES

    assert DASHCAM_SCHEMA == json.loads((SAMPLES / "schema.json").read_text())
