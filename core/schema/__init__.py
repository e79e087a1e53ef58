"""The user's JSON Schema: what a label is, how an answer is written, how it is scored.

Owns checking schemas and labels (`base`: field kinds, `label_errors`, the canonical compact answer
text a model trains on, `extract_json`, the schema hash), the instruction built from a schema and the
chat messages around it (`prompt`), presets (`presets`), the form layout the Annotate tab renders
(`form`, pure data) and per-field scoring (`scoring`: exact for enums, set match for lists, token F1
for text). Pure Python on jsonschema: never imports torch, a model or gradio, and reads no files but
the schema it is given. Constrained decoding, which turns a schema into a token mask, needs a
tokenizer and torch and lives with generation in core.serve.
"""

from core.schema.base import (
    ANSWER_SEPARATORS,
    BOOLEAN,
    ENUM,
    ENUM_LIST,
    NUMBER,
    TEXT,
    canonical_answer,
    check_schema,
    extract_json,
    fields,
    is_valid,
    label_errors,
    load_schema,
    parse_schema,
    schema_hash,
)
from core.schema.presets import DASHCAM_SCHEMA, PRESETS
from core.schema.prompt import DEFAULT_TEMPLATE, build_instruction, build_messages
from core.schema.scoring import calibration, evaluate, field_calibration, score_row, set_prf, token_f1

__all__ = ["ANSWER_SEPARATORS", "BOOLEAN", "DASHCAM_SCHEMA", "DEFAULT_TEMPLATE", "ENUM", "ENUM_LIST", "NUMBER",
    "PRESETS", "TEXT", "build_instruction", "build_messages", "calibration", "canonical_answer", "check_schema", "evaluate",
    "extract_json", "field_calibration", "fields", "is_valid", "label_errors", "load_schema", "parse_schema", "schema_hash", "score_row",
    "set_prf", "token_f1"]
