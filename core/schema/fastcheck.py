"""A label validity check compiled from the schema, for the subset of JSON Schema label schemas use.

Why: jsonschema's validator costs ~40 µs a label (it walks the schema afresh for every instance),
so the first open of a 100,000-row dataset spent ~4.5 s validating labels. Label schemas are
almost always an object of string / number / integer / boolean / enum / array-of-enum properties;
`compile_check` turns such a schema into nested closures that answer `is_valid` in a few µs.

It answers exactly what `jsonschema.Draft202012Validator(schema).is_valid` answers (tested on
mutated labels against jsonschema), and returns None for any schema that uses a keyword outside
the subset (`$ref`, `anyOf`, patterns, ...): callers then use jsonschema itself. Only validity is
compiled; the worded reasons for a label that fails still come from core.schema.base.label_errors.
"""

from __future__ import annotations

from collections.abc import Callable

Check = Callable[[object], bool]

# Keywords that never change validity (with no format checker, `format` is an annotation too).
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples", "format",
                         "deprecated", "readOnly", "writeOnly", "x-order"})
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


class Unsupported(Exception):
    pass


def validity_check(schema: dict) -> Check:
    """label -> bool: the compiled check when the schema is in the subset, else jsonschema's."""
    import jsonschema

    return compile_check(schema) or jsonschema.Draft202012Validator(schema).is_valid


def compile_check(schema: dict) -> Check | None:
    """A function label -> bool equal to jsonschema's is_valid for `schema`, or None when the
    schema uses something this compiler does not handle."""
    try:
        return _compile(schema)
    except Unsupported:
        return None


def _compile(node) -> Check:
    if node is True or node == {}:
        return lambda v: True
    if not isinstance(node, dict):
        raise Unsupported(node)
    checks: list[Check] = []
    keys = set(node) - ANNOTATIONS
    if "type" in node:
        checks.append(_type_check(node["type"]))
    if "enum" in node:
        checks.append(_enum_check(node["enum"]))
    if "const" in node:
        checks.append(_enum_check([node["const"]]))
    if keys & {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}:
        checks.append(_object_check(node))
    if keys & {"items", "uniqueItems", "minItems", "maxItems"}:
        checks.append(_array_check(node))
    if keys & {"minLength", "maxLength"}:
        checks.append(_length_check(node.get("minLength"), node.get("maxLength")))
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        checks.append(_range_check(node))
    handled = {"type", "enum", "const", "properties", "required", "additionalProperties", "minProperties",
               "maxProperties", "items", "uniqueItems", "minItems", "maxItems", "minLength", "maxLength",
               "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    if keys - handled:
        raise Unsupported(sorted(keys - handled))
    return _all_of(checks)


def _all_of(checks: list[Check]) -> Check:
    # plain calls and a loop, not all() over a generator: a generator per node per label was half
    # the cost of checking 100,000 labels
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    def check(v) -> bool:
        for c in checks:
            if not c(v):
                return False
        return True

    return check


def _type_check(kind) -> Check:
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not kinds or any(k not in _TYPES for k in kinds):
        raise Unsupported(kind)
    tests = [_TYPES[k] for k in kinds]
    return tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))


def _enum_check(values) -> Check:
    # Strings only: JSON Schema equality differs from Python's for numbers and booleans
    # (1 == 1.0 == True in Python; jsonschema tells true from 1), so other enums go to jsonschema.
    if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
        raise Unsupported(values)
    allowed = frozenset(values)
    return lambda v: isinstance(v, str) and v in allowed


def _object_check(node) -> Check:
    props = node.get("properties", {})
    if not isinstance(props, dict):
        raise Unsupported(props)
    compiled = {k: _compile(sub) for k, sub in props.items()}
    required = node.get("required", [])
    extra = node.get("additionalProperties", True)
    lo, hi = node.get("minProperties"), node.get("maxProperties")
    if not isinstance(required, list) or extra not in (True, False) and extra != {}:
        raise Unsupported(node)
    closed = extra is False

    def check(v) -> bool:
        if not isinstance(v, dict):
            return True  # object keywords apply to objects only
        for k in required:
            if k not in v:
                return False
        if lo is not None and len(v) < lo or hi is not None and len(v) > hi:
            return False
        for k, value in v.items():
            c = compiled.get(k)
            if c is None:
                if closed:
                    return False
            elif not c(value):
                return False
        return True

    return check


def _array_check(node) -> Check:
    items = node.get("items", True)
    each = _compile(items) if items is not True else None
    unique = node.get("uniqueItems", False) is True
    if unique and not (isinstance(items, dict) and items.get("type") == "string"):
        raise Unsupported("uniqueItems beyond strings")  # JSON equality of other items is jsonschema's
    lo, hi = node.get("minItems"), node.get("maxItems")

    def check(v) -> bool:
        if not isinstance(v, list):
            return True
        if lo is not None and len(v) < lo or hi is not None and len(v) > hi:
            return False
        if each is not None:
            for x in v:
                if not each(x):
                    return False
        return not unique or len(set(v)) == len(v)

    return check


def _length_check(lo, hi) -> Check:
    return lambda v: not isinstance(v, str) or ((lo is None or len(v) >= lo) and (hi is None or len(v) <= hi))


def _range_check(node) -> Check:
    lo, hi = node.get("minimum"), node.get("maximum")
    xlo, xhi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")

    def check(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return True
        return ((lo is None or v >= lo) and (hi is None or v <= hi)
                and (xlo is None or v > xlo) and (xhi is None or v < xhi))

    return check
