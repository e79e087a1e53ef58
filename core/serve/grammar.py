"""The user's JSON Schema as an xgrammar grammar, compiled once per tokenizer and cached: the half of
schema-constrained decoding that runs before `generate()` (the mask itself is
`core.serve.constrained`).

`compile_schema(tokenizer, schema, vocab_size=..., stop_token_ids=...)` returns a `CompiledSchema`:
xgrammar's compilation of the schema with the separators training uses
(`core.schema.base.ANSWER_SEPARATORS`, no free whitespace), built once per (tokenizer, model
vocabulary size, stop tokens, schema) and cached, plus the per-tokenizer tables the processor
reads:
- `keep_words`: a bitmask row that bans the tokenizer's special tokens (pad, chat and vision
  markers) other than the stop tokens, which xgrammar would otherwise let through as the literal
  text of a JSON string;
- the grammar is built for the model's logits width (`model_vocab_size`, which may exceed the
  tokenizer's vocabulary when the lm_head is padded);
- token bytes and lengths, single-character closer tokens, and the candidate ids (the tokens of
  the schema's keys and literals) among which the budget closer looks for its next token.

`grammar_schema` hands xgrammar the user's schema except that `uniqueItems` arrays of enum values
become the enum of their ordered subsets, in schema order, which is exactly what
`canonical_answer` trains on (xgrammar itself ignores uniqueItems).

What it does not do: mask logits, track batch rows or close answers within a token budget
(`core.serve.constrained`); enforce keywords xgrammar 0.2.8 drops (see there); or decide when to
constrain.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import xgrammar as xgr

from core.errors import SchemaError
from core.schema.base import ANSWER_SEPARATORS

# Enumerating ordered subsets is exponential; past this many choices only the length is bounded.
MAX_SUBSET_CHOICES = 10

_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})


# ------------------------------------------------------------------------------------ the schema


def _ordered_subsets(choices: list, lo: int, hi: int) -> list[list]:
    return [list(c) for n in range(lo, hi + 1) for c in itertools.combinations(choices, n)]


def grammar_schema(schema):
    """The schema as handed to xgrammar: equal to the user's except that unique enum lists become
    the enum of their ordered subsets (the only form training ever shows the model)."""
    if isinstance(schema, list):
        return [grammar_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in _DATA_KEYS else grammar_schema(v)) for k, v in schema.items()}
    items = schema.get("items")
    if (schema.get("type") == "array" and schema.get("uniqueItems") is True and isinstance(items, dict)
            and isinstance(items.get("enum"), list) and "prefixItems" not in schema and "contains" not in schema):
        choices = list(dict.fromkeys(json.dumps(c, sort_keys=True) for c in items["enum"]))
        choices = [json.loads(c) for c in choices]
        lo = int(schema.get("minItems", 0))
        hi = min(int(schema.get("maxItems", len(choices))), len(choices))
        if len(choices) <= MAX_SUBSET_CHOICES:
            kept = {k: v for k, v in out.items() if k in ("description", "title")}
            return {**kept, "enum": _ordered_subsets(choices, lo, hi)}
        out["maxItems"] = hi  # duplicates stay possible, but the list cannot run on forever
    return out


# ------------------------------------------------------------------------- compiling, cached


@dataclass
class CompiledSchema:
    """A compiled grammar plus the per-tokenizer tables the processor needs."""

    grammar: xgr.CompiledGrammar
    vocab_size: int
    stop_ids: tuple
    keep_words: np.ndarray  # uint32 bitmask row: 0 bits for special tokens that are not stop tokens
    token_bytes: list  # decoded bytes per token id, for tracking whether a row is inside a string
    token_len: np.ndarray  # byte length per id; -1 for ids the closer must never pick
    closers: dict  # b'"', b']', b'}', b',' -> token id of that single character
    candidates: np.ndarray  # ids from tokenising the schema's keys and literals, longest first


@dataclass
class _TokenizerTables:
    compiler: xgr.GrammarCompiler
    info: xgr.TokenizerInfo
    keep_words: np.ndarray
    token_bytes: list
    token_len: np.ndarray
    closers: dict
    grammars: dict = field(default_factory=dict)  # schema key -> (CompiledGrammar, candidates)


# Keyed weakly by the tokenizer object: TokenizerInfo walks the whole vocabulary (seconds for a
# 150k vocabulary), and a dropped model must not keep its tables alive or hand them to a new one.
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def model_vocab_size(model) -> int:
    """Width of the model's logits, which may exceed the tokenizer's vocabulary (padded lm_head)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.get_text_config().vocab_size)


def _banned_ids(tokenizer, stop_ids) -> set[int]:
    # xgrammar decodes added special tokens to their literal text ("<|im_start|>"), so without this
    # a pad or vision marker would be a legal character run inside a JSON string.
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(tid))
    return ids - set(stop_ids)


def _tables(tokenizer, vocab_size: int, stop_ids: tuple) -> _TokenizerTables:
    per_tok = _TABLES.setdefault(tokenizer, {})
    key = (vocab_size, stop_ids)
    if key in per_tok:
        return per_tok[key]
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
    banned = {i for i in _banned_ids(tokenizer, stop_ids) if i < vocab_size}
    keep = np.full(xgr.get_bitmask_shape(1, vocab_size)[1], 0xFFFFFFFF, dtype=np.uint32)
    for i in banned:
        keep[i // 32] &= ~np.uint32(1 << (i % 32))
    token_bytes = list(info.decoded_vocab)
    token_len = np.array([len(b) for b in token_bytes], dtype=np.int64)
    token_len[[i for i in (*banned, *stop_ids, *info.special_token_ids) if i < vocab_size]] = -1
    closers = {}
    for i, b in enumerate(token_bytes):
        if b in (b'"', b"]", b"}", b",") and b not in closers and token_len[i] > 0:
            closers[b] = i
    tables = _TokenizerTables(xgr.GrammarCompiler(info, max_threads=1), info, keep, token_bytes, token_len, closers)
    per_tok[key] = tables
    return tables


def compile_schema(tokenizer, schema: dict, *, vocab_size: int, stop_token_ids) -> CompiledSchema:
    """The schema's grammar for this tokenizer and logits width, compiled once and cached."""
    stops = tuple(sorted({int(stop_token_ids)} if isinstance(stop_token_ids, int) else {int(s) for s in stop_token_ids}))
    if not stops:
        raise ValueError("constrained decoding needs at least one stop token id")
    with _LOCK:
        tables = _tables(tokenizer, int(vocab_size), stops)
        key = json.dumps(schema, sort_keys=True, ensure_ascii=False)
        if key not in tables.grammars:
            shaped = grammar_schema(schema)
            try:
                grammar = tables.compiler.compile_json_schema(
                    shaped, any_whitespace=False, separators=ANSWER_SEPARATORS, strict_mode=True,
                )
            except (RuntimeError, ValueError) as exc:
                raise SchemaError(f"the schema cannot be turned into a decoding grammar: {exc}") from exc
            tables.grammars[key] = (grammar, _candidates(tokenizer, shaped, tables.token_len))
        grammar, candidates = tables.grammars[key]
    return CompiledSchema(grammar, int(vocab_size), stops, tables.keep_words, tables.token_bytes,
                          tables.token_len, tables.closers, candidates)


def _skeleton_texts(schema) -> set[str]:
    """Pieces of text any answer is built from: punctuation, keys, enum and const literals."""
    texts = set('{}[],:"0123456789') | {"true", "false", "null", "[]", '"]', '"}', '",', '"]}', '"},', '"],'}

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
        if not isinstance(node, dict):
            return
        for name in node.get("properties", {}) if isinstance(node.get("properties"), dict) else ():
            key = json.dumps(name, ensure_ascii=False)
            texts.update({f"{{{key}:", f",{key}:", f'{key}:"', f',{key}:"', f",{key}:["})
        literals = list(node.get("enum", [])) + ([node["const"]] if "const" in node else [])
        for value in literals:
            lit = json.dumps(value, ensure_ascii=False, separators=ANSWER_SEPARATORS)
            texts.update({lit, f"[{lit}", f",{lit}", f"{lit}]", f"{lit},", f"{lit}}}", f":{lit}"})
        for k, v in node.items():
            if k not in _DATA_KEYS:
                walk(v)

    walk(schema)
    return texts


def _candidates(tokenizer, schema, token_len: np.ndarray) -> np.ndarray:
    # The closer looks for its next token among these few ids instead of scanning the vocabulary
    # (about 0.3 ms a step at 150k tokens): they are the tokens a model writes for this skeleton.
    ids = {t for text in _skeleton_texts(schema) for t in tokenizer.encode(text, add_special_tokens=False)}
    ids = np.array(sorted(i for i in ids if 0 <= i < len(token_len) and token_len[i] > 0), dtype=np.int64)
    return ids[np.argsort(-token_len[ids], kind="stable")]
