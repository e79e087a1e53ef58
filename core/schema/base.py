"""The user's JSON Schema: loading, checking, describing it to a model, and reading answers back.

One schema drives the prompt (`describe_fields`), the label checks (`label_errors`), the canonical
answer text the model is trained on (`canonical_answer`), and the field kinds that the metrics use
(`field_kinds`). This module does not decode constrained output or compute metrics; it only knows
the schema and JSON text.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from core.errors import SchemaError

# Training and decoding must agree on separators: a model trained on compact JSON should never be
# forced (e.g. by a grammar) to emit spaces it never saw.
ANSWER_SEPARATORS = (",", ":")

ENUM, ENUM_LIST, TEXT, NUMBER, BOOLEAN, OBJECT, OTHER = (
    "enum", "enum_list", "text", "number", "boolean", "object", "other",
)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool
    choices: tuple = ()
    description: str = ""


def load_schema(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read schema ({exc.strerror})") from exc
    return parse_schema(text, source=str(path))


def parse_schema(text: str, source: str = "schema") -> dict:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    check_schema(schema, source)
    return schema


def check_schema(schema, source: str = "schema") -> None:
    if not isinstance(schema, dict):
        raise SchemaError(f"{source}: the schema must be a JSON object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise SchemaError(f"{source}: not a valid JSON Schema at {where}: {exc.message}") from exc
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise SchemaError(f"{source}: the top level must be {{\"type\": \"object\", \"properties\": {{...}}}}")


def schema_hash(schema: dict) -> str:
    """Stable across key order and whitespace, so an edited-but-equal schema keeps its hash."""
    blob = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _kind(prop: dict) -> tuple[str, tuple]:
    if "enum" in prop:
        return ENUM, tuple(prop["enum"])
    typ = prop.get("type")
    if typ == "array" and isinstance(prop.get("items"), dict) and "enum" in prop["items"]:
        return ENUM_LIST, tuple(prop["items"]["enum"])
    if typ == "string":
        return TEXT, ()
    if typ in ("number", "integer"):
        return NUMBER, ()
    if typ == "boolean":
        return BOOLEAN, ()
    if typ == "object":
        return OBJECT, ()
    return OTHER, ()


def fields(schema: dict) -> list[Field]:
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        kind, choices = _kind(prop if isinstance(prop, dict) else {})
        out.append(Field(name, kind, name in required, choices, (prop or {}).get("description", "")))
    return out


def label_errors(schema: dict, obj) -> list[str]:
    """Human-readable reasons why `obj` breaks the schema; empty when valid."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]


def is_valid(schema: dict, obj) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(obj)


def canonical_answer(schema: dict, label: dict) -> str:
    """The exact text a model is trained to produce: schema property order, compact separators.

    Enum-list values are sorted in the order the schema lists them so that equal sets always give
    the same text.
    """
    ordered = {}
    props = schema.get("properties", {})
    for f in fields(schema):
        if f.name not in label:
            continue
        value = label[f.name]
        if f.kind == ENUM_LIST and isinstance(value, list):
            rank = {c: i for i, c in enumerate(f.choices)}
            value = sorted(value, key=lambda v: rank.get(v, len(rank)))
        ordered[f.name] = value
    for key, value in label.items():  # keep unknown keys so validation, not us, decides
        if key not in props:
            ordered[key] = value
    return json.dumps(ordered, ensure_ascii=False, separators=ANSWER_SEPARATORS)


def describe_fields(schema: dict) -> str:
    """A compact, readable field list for the prompt (shorter than the raw schema, same facts)."""
    lines = []
    for f in fields(schema):
        if f.kind == ENUM:
            what = "one of " + ", ".join(json.dumps(c) for c in f.choices)
        elif f.kind == ENUM_LIST:
            what = "list of zero or more of " + ", ".join(json.dumps(c) for c in f.choices)
        elif f.kind == TEXT:
            what = "string"
        else:
            what = f.kind
        desc = f" ({f.description})" if f.description else ""
        lines.append(f"- {f.name}: {what}{desc}")
    return "\n".join(lines)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)


def extract_json(text: str):
    """Parse the first JSON object in a model answer. Returns (obj, None) or (None, reason).

    Accepts code fences and prose around the object; never raises.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        start = cand.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(cand, start)
            except json.JSONDecodeError:
                start = cand.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj, None
            start = cand.find("{", start + 1)
    if "{" not in text:
        return None, "no JSON object in the output"
    return None, "JSON object is malformed or truncated"
