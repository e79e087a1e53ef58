"""Drafting a JSON Schema (draft 2020-12) from labels that already exist, e.g. right after an import.

The draft is a starting point for a person to edit in the Schema tab, built only from what the rows
show: property order is first-seen order, `required` lists the keys present in every row, a string
field becomes an enum when it has at most `max_enum` distinct values and each appears twice on
average (so a handful of one-off captions stays free text), lists of such strings become arrays of
that enum (`uniqueItems` when no row repeats an item), nested objects recurse, a field that is
sometimes null allows null, and a field of mixed types lists them all. Every input row validates
against the result.

It does not write files, invent descriptions, merge with an existing schema, or judge labels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from core.data.dataset import METADATA, RESERVED_KEYS, settle
from core.errors import DatasetError
from core.schema.base import check_schema

log = logging.getLogger(__name__)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ENUM_MIN_MEAN_REPEATS = 2  # below this many rows per distinct value, strings read as free text


def infer_schema(rows: list[dict], max_enum: int = 20) -> dict:
    labels = [{k: v for k, v in row.items() if k not in RESERVED_KEYS} for row in rows if isinstance(row, dict)]
    schema = {"$schema": DRAFT, "title": f"Inferred from {len(labels)} labels", **_object_schema(labels, max_enum)}
    check_schema(schema, "inferred schema")
    return schema


def infer_schema_from_file(metadata_jsonl, max_enum: int = 20) -> dict:
    """Like `infer_schema` on a metadata.jsonl; malformed and non-object lines are skipped."""
    path = Path(metadata_jsonl)
    if path.name == METADATA:
        settle(path.parent)  # the store's pending edits (core.data.journal) are labels too
    rows = []
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    if line.strip():
                        log.warning("%s:%d: malformed JSON; ignored for schema inference", path, line_no)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from exc
    return infer_schema(rows, max_enum)


def _object_schema(objects: list[dict], max_enum: int) -> dict:
    values: dict[str, list] = {}
    for obj in objects:
        for key, value in obj.items():
            values.setdefault(key, []).append(value)
    return {
        "type": "object",
        "properties": {key: _value_schema(vals, max_enum) for key, vals in values.items()},
        # A key appears at most once per object, so a full count means "in every row".
        "required": [key for key, vals in values.items() if len(vals) == len(objects)],
        "additionalProperties": False,
    }


def _value_schema(values: list, max_enum: int) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"type": "null"}
    schema = _typed_schema(present, max_enum)
    return _allow_null(schema) if len(present) < len(values) else schema


def _json_type(value) -> str:
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _typed_schema(values: list, max_enum: int) -> dict:
    kinds = list(dict.fromkeys(_json_type(v) for v in values))
    if "integer" in kinds and "number" in kinds:  # 1 and 1.5 in one field: a number
        kinds.remove("integer")
    if len(kinds) > 1:
        return {"type": kinds}
    kind = kinds[0]
    if kind == "string":
        return _string_schema(values, max_enum)
    if kind == "array":
        return _array_schema(values, max_enum)
    if kind == "object":
        return _object_schema(values, max_enum)
    return {"type": kind}


def _string_schema(values: list[str], max_enum: int) -> dict:
    distinct = list(dict.fromkeys(values))
    if len(distinct) <= max_enum and len(values) >= ENUM_MIN_MEAN_REPEATS * len(distinct):
        return {"type": "string", "enum": distinct}
    return {"type": "string"}


def _array_schema(lists: list[list], max_enum: int) -> dict:
    items = [item for lst in lists for item in lst]
    if not items:
        return {"type": "array"}
    item_schema = _value_schema(items, max_enum)
    schema = {"type": "array", "items": item_schema}
    if "enum" in item_schema and all(len(set(lst)) == len(lst) for lst in lists):
        schema["uniqueItems"] = True
    return schema


def _allow_null(schema: dict) -> dict:
    schema = dict(schema)
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    kind = schema["type"]
    schema["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    return schema
