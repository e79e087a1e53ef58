"""From a JSON Schema to an annotation form, and between form values and label objects.

`form_fields` flattens the schema into widgets (nested objects become dotted names such as
`vehicle.colour`), `label_to_values` / `values_to_label` convert both ways, `example_object` makes
a valid example for the Schema tab, `schema_warnings` names the constructs the form cannot
render (they remain editable in the raw JSON view), and `label_problems` words why a label breaks
the schema by form field ("caption is required"), so the tab can say it and mark the field.
Nothing here draws widgets: the Annotate tab maps each `FormField.widget` to a Gradio component.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DROPDOWN, RADIO, CHECKBOXES, CHECKBOX, NUMBER, TEXT, TEXTAREA, JSON = (
    "dropdown", "radio", "checkboxes", "checkbox", "number", "text", "textarea", "json",
)
RADIO_MAX = 4  # up to this many choices fit on one line as radio buttons
UNSUPPORTED = ("$ref", "oneOf", "anyOf", "allOf", "not", "if", "patternProperties", "dependentSchemas")


@dataclass(frozen=True)
class FormField:
    name: str  # dotted path for nested objects
    widget: str
    label: str
    required: bool
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    info: str = ""


def form_fields(schema: dict, prefix: str = "") -> list[FormField]:
    out = []
    required = set(schema.get("required", []))
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        path = f"{prefix}{name}"
        req = name in required
        label = path + (" *" if req else "")
        info = prop.get("description", "")
        typ = prop.get("type")
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        if "enum" in prop:
            widget = RADIO if len(prop["enum"]) <= RADIO_MAX else DROPDOWN
            out.append(FormField(path, widget, label, req, tuple(prop["enum"]), info=info))
        elif typ == "array" and "enum" in items:
            out.append(FormField(path, CHECKBOXES, label, req, tuple(items["enum"]), info=info))
        elif typ == "boolean":
            out.append(FormField(path, CHECKBOX, label, req, info=info))
        elif typ in ("number", "integer"):
            out.append(FormField(path, NUMBER, label, req, minimum=prop.get("minimum"),
                                 maximum=prop.get("maximum"), integer=typ == "integer", info=info))
        elif typ == "string":
            long = prop.get("maxLength", 1000) > 80 or name in ("caption", "summary", "description")
            out.append(FormField(path, TEXTAREA if long else TEXT, label, req, info=info))
        elif typ == "object" and isinstance(prop.get("properties"), dict) and not _unsupported(prop):
            out.extend(form_fields(prop, prefix=path + "."))
        else:
            out.append(FormField(path, JSON, label, req, info=info or "edited as JSON"))
    return out


def _unsupported(prop: dict) -> list[str]:
    return [k for k in UNSUPPORTED if k in prop]


def schema_warnings(schema: dict, where: str = "") -> list[str]:
    """Constructs the generated form cannot show as widgets (they fall back to a JSON box)."""
    out = [f"{where or '(root)'}: {k} is not supported by the form" for k in _unsupported(schema)]
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        path = f"{where}.{name}" if where else name
        out += [f"{path}: {k} is not supported by the form; edit it as JSON" for k in _unsupported(prop)]
        typ = prop.get("type")
        if isinstance(typ, list):
            out.append(f"{path}: a list of types is edited as JSON")
        if typ == "array" and not (isinstance(prop.get("items"), dict) and "enum" in prop["items"]):
            out.append(f"{path}: arrays other than a list of enum values are edited as JSON")
        if typ == "object" and isinstance(prop.get("properties"), dict):
            out += schema_warnings(prop, path)
    return out


def _get(label: dict, dotted: str):
    cur = label
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def label_to_values(fields: list[FormField], label: dict | None) -> list:
    """Widget values for a label (None/empty for missing fields)."""
    import json

    label = label or {}
    out = []
    for f in fields:
        v = _get(label, f.name)
        if f.widget == CHECKBOXES:
            out.append(list(v) if isinstance(v, list) else [])
        elif f.widget == CHECKBOX:
            out.append(bool(v))
        elif f.widget == JSON:
            out.append("" if v is None else json.dumps(v, ensure_ascii=False))
        elif f.widget in (TEXT, TEXTAREA):
            out.append("" if v is None else str(v))
        else:
            out.append(v)
    return out


def values_to_label(fields: list[FormField], values: list) -> tuple[dict, list[str]]:
    """Rebuild the label from widget values. Empty optional fields are left out; returns
    (label, problems) where problems are values that could not be read (e.g. bad JSON)."""
    import json

    label: dict = {}
    problems = []
    for f, v in zip(fields, values):
        if f.widget == JSON:
            if v is None or not str(v).strip():
                continue
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                problems.append(f"{f.name}: not valid JSON ({exc.msg})")
                continue
        elif f.widget == NUMBER:
            if v is None or v == "":
                continue
            v = int(v) if f.integer and float(v).is_integer() else v
        elif f.widget == CHECKBOXES:
            order = {c: i for i, c in enumerate(f.choices)}
            v = sorted(v or [], key=lambda c: order.get(c, len(order)))
        elif f.widget in (TEXT, TEXTAREA, RADIO, DROPDOWN) and (v is None or v == ""):
            continue
        _set(label, f.name, v)
    return label, problems


def _set(label: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    cur = label
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def example_object(schema: dict) -> dict:
    """A small object that satisfies the schema's required fields and shows each optional one."""
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        out[name] = _example(prop if isinstance(prop, dict) else {})
    return out


def _example(prop: dict):
    if "enum" in prop:
        return prop["enum"][0]
    if "const" in prop:
        return prop["const"]
    for key in ("anyOf", "oneOf"):
        if prop.get(key):
            return _example(prop[key][0])
    typ = prop.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "array":
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        n = prop.get("minItems", 1 if "enum" in items else 0)
        return [_example(items) for _ in range(n)] if "enum" not in items else list(items["enum"][: max(n, 1)])
    if typ == "object":
        return example_object(prop)
    if typ == "boolean":
        return False
    if typ in ("number", "integer"):
        lo = prop.get("minimum", 0)
        return int(lo) if typ == "integer" else float(lo)
    if typ == "string":
        return "x" * max(prop.get("minLength", 0), 1) if prop.get("minLength") else "..."
    return None


def field_problems(fields: list[FormField], schema: dict, values: list) -> tuple[dict | None, list[tuple]]:
    """The label the form's values make and what is wrong with it, worded for a person:
    (label or None when a value cannot be read, [(field name or None, words)]). Field names are
    the form's (dotted for nested objects); None marks a problem no one field owns (an unknown key)."""
    label, unreadable = values_to_label(fields, values)
    if unreadable:
        names = [f.name for f in fields]
        return None, [(next((n for n in names if p.startswith(n + ":")), None), p) for p in unreadable]
    return label, label_problems(fields, schema, label)


def label_problems(fields: list[FormField], schema: dict, label) -> list[tuple]:
    """[(field name or None, words)] for each way `label` breaks `schema`: "caption is required",
    "event_type: 'x' is not one of collision, near_miss, no_incident" rather than jsonschema's
    "(root): 'caption' is a required property"; empty when the label is valid."""
    import jsonschema

    names = {f.name: _plain(f.label) for f in fields}
    out: list[tuple] = []
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(label), key=lambda e: [str(p) for p in e.path])
    for e in errors:
        keys = _keys(e.path)
        if e.validator == "required" and isinstance(e.instance, dict):
            for missing in (m for m in e.validator_value if m not in e.instance):
                name = ".".join([*keys, missing])
                item = (name if name in names else None, f"{names.get(name, name)} is required")
                if item not in out:  # jsonschema reports each missing key once per required list
                    out.append(item)
            continue
        name = _owner(names, keys)
        where = f"{names[name]}: " if name else (".".join(keys) + ": " if keys else "")
        out.append((name, where + _words(e)))
    return out


TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
              "array": "a list", "object": "an object", "null": "empty (null)"}


def _plain(label: str) -> str:
    return label.removesuffix(" *")


def _keys(path) -> list[str]:
    # the object keys down to the first list index: an item of a list belongs to the list's field
    keys = []
    for p in path:
        if not isinstance(p, str):
            break
        keys.append(p)
    return keys


def _owner(names: dict, keys: list[str]) -> str | None:
    """The form field a problem at `keys` belongs to: the longest field name that is a prefix."""
    for n in range(len(keys), 0, -1):
        if ".".join(keys[:n]) in names:
            return ".".join(keys[:n])
    return None


def _shown(value) -> str:
    """A value as the person typed it in JSON (null, "x", true), not Python's repr (None, 'x', True)."""
    return json.dumps(value, ensure_ascii=False)


def _words(e) -> str:
    if e.validator == "enum":
        return f"{_shown(e.instance)} is not one of " + ", ".join(str(c) for c in e.validator_value)
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = set(e.schema.get("properties") or {})
        extra = [k for k in e.instance if k not in known]
        if extra:
            return "not in the schema: " + ", ".join(extra)
    if e.validator == "type":
        wanted = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        return f"{_shown(e.instance)} should be " + " or ".join(TYPE_WORDS.get(t, t) for t in wanted)
    return e.message
