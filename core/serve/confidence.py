"""Per-field confidence of an answer, from the step log-probabilities of the tokens one greedy pass took.

`field_confidence(schema, text, token_ranges, logprobs)` locates each top-level field's value in the
answer's JSON text (character offsets, `json_spans`), takes the tokens that wrote it (each token's
character range in `text`) and combines their step log-probabilities into a score in [0, 1].
`core.serve.stepscores` records those log-probabilities inside the same `generate()` call and
`core.serve.predictor` calls this; this module is pure (no torch, no model).

A *step probability* is p(token | prefix) renormalised over the tokens the schema allows at that
step (under constrained decoding the mask itself; without it, the same grammar run beside the
decoding; once an unconstrained answer leaves the grammar, the model's own distribution). Scores:

- enum, const and boolean values: the product of the step probabilities of the tokens that write
  the value, stopping once the text written so far fits only one allowed value (later tokens only
  decide how the rest is split into tokens). That is the probability that schema-constrained
  sampling, given the prefix, writes this value along the tokenisation greedy took (another
  tokenisation of the same value counts as another outcome, which can only lower the score; a model
  trained on canonical answers puts nearly all its mass on one). The opening quote of a string
  enum is forced by the schema and not counted; the token after a number or literal value is (it
  may decide between 1 and 10).
- arrays (lists of enums in particular): one score per item, by its own rule and counting the token
  that opens it (the decision to add an item rather than stop), and one for the token that writes
  `]` (the decision to stop); the field's score is the minimum of the items and the stop.
- objects: the minimum over their properties' scores (geometric mean of their tokens if the schema
  names no properties).
- free text, numbers and anything else: the geometric mean of the step probabilities of the
  value's tokens, exp(mean log-prob), closing quote included; a number also counts the token that
  ends it (that decides its length).

What it does not do: score fields that are missing or an answer that does not parse (no score:
None); look inside values the schema does not describe (unknown keys get no score).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from json.decoder import scanstring

from core.schema.base import ANSWER_SEPARATORS

_WS = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}


@dataclass
class Span:
    """Where a JSON value's text sits in the answer: characters [start, end)."""

    start: int
    end: int
    kind: str  # "object", "array", "string", "number", "literal"
    children: dict | list = field(default_factory=list)  # object: key -> Span; array: [Span]


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _value(s: str, i: int) -> tuple[Span, int]:
    if i >= len(s):
        raise ValueError("truncated")
    c = s[i]
    if c == '"':
        _, j = scanstring(s, i + 1)
        return Span(i, j, "string"), j
    if c == "{":
        return _object(s, i)
    if c == "[":
        return _array(s, i)
    for word in _LITERALS:
        if s.startswith(word, i):
            return Span(i, i + len(word), "literal"), i + len(word)
    m = _NUMBER.match(s, i)
    if m:
        return Span(i, m.end(), "number"), m.end()
    raise ValueError(f"unexpected {c!r} at {i}")


def _object(s: str, i: int) -> tuple[Span, int]:
    node, j = Span(i, i, "object", {}), _skip(s, i + 1)
    if s[j:j + 1] == "}":
        node.end = j + 1
        return node, j + 1
    while True:
        if s[j:j + 1] != '"':
            raise ValueError(f"expected a key at {j}")
        key, j = scanstring(s, j + 1)
        j = _skip(s, j)
        if s[j:j + 1] != ":":
            raise ValueError(f"expected ':' at {j}")
        node.children[key], j = _value(s, _skip(s, j + 1))
        j = _skip(s, j)
        if s[j:j + 1] == "}":
            node.end = j + 1
            return node, j + 1
        if s[j:j + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {j}")
        j = _skip(s, j + 1)


def _array(s: str, i: int) -> tuple[Span, int]:
    node, j = Span(i, i, "array", []), _skip(s, i + 1)
    if s[j:j + 1] == "]":
        node.end = j + 1
        return node, j + 1
    while True:
        item, j = _value(s, j)
        node.children.append(item)
        j = _skip(s, j)
        if s[j:j + 1] == "]":
            node.end = j + 1
            return node, j + 1
        if s[j:j + 1] != ",":
            raise ValueError(f"expected ',' or ']' at {j}")
        j = _skip(s, j + 1)


def json_spans(text: str) -> Span | None:
    """Spans of the first JSON object in `text` that parses (the one `extract_json` reads), or None."""
    start = text.find("{")
    while start != -1:
        try:
            return _object(text, start)[0]
        except ValueError:
            start = text.find("{", start + 1)
    return None


# ------------------------------------------------------------------------------ scores


class _Tokens:
    """The answer's tokens: character range and step log-probability of each."""

    def __init__(self, text: str, ranges: list[tuple[int, int]], logprobs):
        self.text, self.ranges, self.logprobs = text, ranges, [float(x) for x in logprobs]

    def over(self, lo: int, hi: int) -> list[int]:
        """Tokens that write any character in [lo, hi). A token with no characters of its own (part
        of a multi-byte character) belongs to the character it starts."""
        return [t for t, (a, b) in enumerate(self.ranges)
                if a < hi and (b > lo or (a == b and a >= lo))]

    def at(self, pos: int) -> int | None:
        hits = self.over(pos, pos + 1)
        return hits[-1] if hits else None


def _prob(logprob: float) -> float:
    return min(1.0, max(0.0, math.exp(logprob)))


def _geometric(tokens: _Tokens, lo: int, hi: int) -> float:
    steps = tokens.over(lo, hi)
    if not steps:
        return 1.0
    return _prob(sum(tokens.logprobs[t] for t in steps) / len(steps))


def _deciding(tokens: _Tokens, span: Span, choices: list, lo: int) -> list[int]:
    """The value's tokens until its text fits one choice (the later ones only split it into tokens)."""
    texts = [json.dumps(c, ensure_ascii=False, separators=ANSWER_SEPARATORS) for c in choices]
    # a number or literal ends where the next character starts (1 or 10?): that token may still decide
    hi = span.end + (span.kind in ("number", "literal"))
    out = []
    for t in tokens.over(lo, hi):
        prefix = tokens.text[span.start:max(tokens.ranges[t][0], span.start)]
        if sum(x.startswith(prefix) for x in texts) == 1:
            break  # settled: the rest of the value is forced
        out.append(t)
    return out


def _choice(tokens: _Tokens, span: Span, choices: list, lo: int) -> float:
    """Product of step probabilities over the value's deciding tokens."""
    return _prob(sum(tokens.logprobs[t] for t in _deciding(tokens, span, choices, lo)))


def _choices_of(schema: dict) -> list | None:
    if "enum" in schema and isinstance(schema["enum"], list):
        return schema["enum"]
    if "const" in schema:
        return [schema["const"]]
    if schema.get("type") == "boolean":
        return [True, False]
    return None


def _score(tokens: _Tokens, span: Span, schema, parts: dict | None = None, is_item: bool = False) -> float:
    """A value's score by the module's rules; `is_item`: counts the token that opens it."""
    schema = schema if isinstance(schema, dict) else {}
    choices = _choices_of(schema)
    if choices is not None:
        quoted = not is_item and span.kind == "string" and all(isinstance(c, str) for c in choices)
        return _choice(tokens, span, choices, span.start + 1 if quoted else span.start)
    if span.kind == "array":
        items = [_score(tokens, item, schema.get("items"), is_item=True) for item in span.children]
        stop_token = tokens.at(span.end - 1)
        stop = _prob(tokens.logprobs[stop_token]) if stop_token is not None else 1.0
        if parts is not None:
            parts.update(items=items, stop=stop)
        return min([*items, stop])
    if span.kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        scores = [_score(tokens, child, props[key]) for key, child in span.children.items() if key in props]
        return min(scores) if scores else _geometric(tokens, span.start, span.end)
    if span.kind == "number":
        return _geometric(tokens, span.start, span.end + 1)
    if span.kind == "string" and not is_item:
        return _geometric(tokens, span.start + 1, span.end)
    return _geometric(tokens, span.start, span.end)


def field_confidence(schema: dict, text: str, token_ranges: list[tuple[int, int]],
                     logprobs) -> tuple[dict[str, float], dict[str, dict]]:
    """(top-level field -> score in [0, 1], field -> {"items": [...], "stop": x} for arrays).

    `token_ranges[t]` is the character range token t wrote in `text`; `logprobs[t]` its step
    log-probability. Fields absent from the answer, or every field when it does not parse, get no
    entry."""
    root = json_spans(text)
    if root is None:
        return {}, {}
    tokens = _Tokens(text, token_ranges, logprobs)
    props = schema.get("properties", {})
    scores, parts = {}, {}
    for key, span in root.children.items():
        if key not in props:
            continue
        detail: dict = {}
        scores[key] = _score(tokens, span, props[key], detail)
        if detail:
            parts[key] = detail
    return scores, parts


def _decisions(tokens: _Tokens, span: Span, schema) -> list[int] | None:
    """The tokens that decided a choice value, or a list of them (each item's and the stop); None
    for any other kind of value."""
    schema = schema if isinstance(schema, dict) else {}
    choices = _choices_of(schema)
    if choices is not None:
        quoted = span.kind == "string" and all(isinstance(c, str) for c in choices)
        return _deciding(tokens, span, choices, span.start + 1 if quoted else span.start)
    item_choices = _choices_of(schema.get("items")) if isinstance(schema.get("items"), dict) else None
    if span.kind == "array" and item_choices is not None:
        steps = [t for item in span.children for t in _deciding(tokens, item, item_choices, item.start)]
        stop = tokens.at(span.end - 1)
        return steps + ([stop] if stop is not None else [])
    return None


def field_margins(schema: dict, text: str, token_ranges: list[tuple[int, int]], logprobs,
                  runner_up) -> dict[str, float]:
    """Per choice field (enum, const, boolean, list of enums): the smallest gap p(taken) - p(runner-up)
    over the tokens that decided it (1.0 when the schema forced every token). A second view of how
    sure the model was, from the same pass (`runner_up`: core.serve.stepscores.StepRecorder.runner_up)."""
    root = json_spans(text)
    if root is None:
        return {}
    tokens = _Tokens(text, token_ranges, logprobs)
    second = [float(x) for x in runner_up]
    props = schema.get("properties", {})
    out = {}
    for key, span in root.children.items():
        steps = _decisions(tokens, span, props.get(key)) if key in props else None
        if steps is not None and not any(math.isnan(second[t]) for t in steps):
            out[key] = min((_prob(tokens.logprobs[t]) - _prob(second[t]) for t in steps), default=1.0)
    return out


def answer_confidence(logprobs) -> float | None:
    """exp(mean step log-probability) over an answer's tokens through its stop token: the geometric
    mean of the probabilities the model gave what it wrote, free text and punctuation included.
    The review queue ranks drafts by it (core.data.drafts): on a hard set with the labels the videos
    show it kept finding clips with a wrong field once the model was sure of every field and the
    fields' scores no longer did (BENCHMARKS section 9). None for no tokens."""
    steps = [float(x) for x in (logprobs if logprobs is not None else [])]
    return _prob(sum(steps) / len(steps)) if steps else None


def min_confidence(scores: dict | None) -> float | None:
    """The least sure field's score (None when no field has one): the row's number to sort by."""
    values = [v for v in (scores or {}).values() if v is not None]
    return min(values) if values else None
