"""Schema-constrained decoding: the user's JSON Schema becomes a token mask applied inside `generate()`.

`schema_logits_processor(model, tokenizer, schema, ...)` returns a transformers `LogitsProcessor`
for one `generate()` call. The grammar is xgrammar's compilation of the schema with the separators
training uses (`core.schema.base.ANSWER_SEPARATORS`, no free whitespace), built once per (tokenizer,
model vocabulary size, stop tokens, schema) and cached; only the per-row matchers are new per call.

What the mask guarantees, per batch row (left padding is fine: only the last column is read):
- every token keeps the text a prefix of a schema-shaped JSON answer; the stop token is allowed
  only once the JSON is complete, and then nothing else is;
- the tokenizer's special tokens (pad, chat and vision markers) never appear inside the answer;
- logits past the tokenizer's vocabulary (an lm_head padded to a round size) are masked: the
  grammar is built for the model's logits width (`model_vocab_size`), and a processor handed
  logits of another width raises instead of masking the wrong ids;
- with `max_new_tokens` given, the answer is closed in time: once a short way to finish the JSON
  (close the open string, then the fewest tokens to the end) comes within `CLOSE_MARGIN` of the
  tokens left, each step keeps the model's best allowed token only if that completion still fits
  after it, else takes the completion's next token. An answer that would run past the budget is
  cut short (a truncated caption) instead of left as broken JSON; in those last steps decoding is
  greedy even under sampling.
- `uniqueItems` arrays of enum values can only be ordered subsets of the choices, in schema
  order, which is exactly what `canonical_answer` trains on (xgrammar itself ignores uniqueItems).

What it does not do:
- beam search or any decoding that reorders batch rows between steps (the matchers are per row);
  one processor serves one `generate()` call and is then spent;
- enforce keywords xgrammar 0.2.8 drops (uniqueItems beyond enum lists, `not`, `if`/`then`,
  dependent schemas); the output is still checked by `core.schema.base.label_errors` downstream;
- keep compact separators inside free-form values (a property with no type, or an object/array
  with no properties/items): xgrammar's generic JSON rule writes ", " there;
- guarantee the budget when a single token can grow the shortest completion by more than
  `CLOSE_MARGIN` tokens (deeply nested required objects inside arrays), or for strings with a
  `pattern` the closer cannot finish within `CLOSE_SEARCH_LIMIT` tokens;
- decide when to constrain: callers choose (`Predictor.generate(constrained=...)`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from core.errors import SchemaError
from core.schema.base import ANSWER_SEPARATORS

log = logging.getLogger(__name__)

# Budget checks start while this many spare tokens remain: a token the model picks freely can
# lengthen the completion (an escape, a partial UTF-8 character, an opened array item, keys split
# into more tokens than the closer assumed), so waiting until it fits exactly could be too late.
CLOSE_MARGIN = 6
# A completion longer than this is not searched for; such a row decodes without a budget guarantee.
CLOSE_SEARCH_LIMIT = 512
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


# ------------------------------------------------------------------------------ the processor


def _scan(state: tuple[bool, bool], data: bytes) -> tuple[bool, bool]:
    """(inside a JSON string, just after a backslash) after reading `data`."""
    in_string, escaped = state
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
    return in_string, escaped


def _stays_in_string(lexer: tuple[bool, bool], data: bytes) -> bool:
    """Whether `data` is plain content of the string the row is in. What a string holds does not
    change what follows it, so a closing path that starts by closing that string stays valid; this
    spares a search per free-text token (checked again before use: the quote must be allowed)."""
    return lexer == (True, False) and b'"' not in data and _scan(lexer, data) == (True, False)


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks each row's logits to its grammar; one instance per `generate()` call."""

    def __init__(self, compiled: CompiledSchema, max_new_tokens: int | None = None):
        self.compiled = compiled
        self.max_new_tokens = max_new_tokens
        self._matchers: list[xgr.GrammarMatcher] | None = None
        self._prompt_len = 0
        self._scratch = xgr.allocate_token_bitmask(1, compiled.vocab_size)
        self._scratch_words = self._scratch.numpy().view(np.uint32)[0]
        # where each closer candidate's bit sits: its word, that word's keep mask, its shift
        cand = compiled.candidates
        self._cand_words = cand >> 5
        self._cand_keep = compiled.keep_words[self._cand_words]
        self._cand_shifts = (cand & 31).astype(np.uint32)

    def _start(self, batch: int, prompt_len: int) -> None:
        self._matchers = [xgr.GrammarMatcher(self.compiled.grammar) for _ in range(batch)]
        self._prompt_len = prompt_len
        self._bitmask = xgr.allocate_token_bitmask(batch, self.compiled.vocab_size)
        self._lexer = [(False, False)] * batch
        self._free = [False] * batch  # rows whose matcher rejected a token: left unconstrained
        self._next_check = [0] * batch  # generated-token count at which a row's budget is looked at again
        # (token forced this step, closing path after it): the closer is deterministic, so when the
        # row takes that token the path need not be searched again.
        self._expect: list[tuple[int, list[int]] | None] = [None] * batch
        self._path: list[list[int] | None] = [None] * batch
        # Each row's output so far as an incremental digest of its bytes: the grammar matcher works
        # on bytes, so that text fixes the matcher's state and with it the closer's next token.
        self._digest = [hashlib.blake2b(digest_size=16) for _ in range(batch)]
        # state digest -> (a closing path found, index of that state on it), shared by the rows: a
        # search from a nearby state soon runs into a state some earlier path went through.
        self._memo: dict[bytes, tuple[list[int], int]] = {}

    def _advance(self, last_tokens: list[int]) -> None:
        for i, (matcher, token) in enumerate(zip(self._matchers, last_tokens)):
            if self._free[i] or matcher.is_terminated():
                continue  # finished rows get pad tokens appended by generate(); nothing to match
            if not matcher.accept_token(token):
                # Only another processor or a caller-forced token can get here; say so instead of
                # asserting, and stop constraining that row so the rest of the batch still decodes.
                log.warning("constrained decoding: row %d produced token %d outside the grammar; "
                            "leaving that row unconstrained", i, token)
                self._free[i] = True
                continue
            data, lexer = self.compiled.token_bytes[token], self._lexer[i]
            self._lexer[i] = _scan(lexer, data)
            self._digest[i].update(data)
            expect, self._expect[i] = self._expect[i], None
            path = self._path[i]
            if expect is not None and expect[0] == token:
                self._path[i] = expect[1]
            elif not (path and path[0] == self.compiled.closers.get(b'"') and _stays_in_string(lexer, data)):
                self._path[i] = None

    def _allowed(self, words: np.ndarray) -> np.ndarray:
        words = words & self.compiled.keep_words
        return np.unpackbits(words.view(np.uint8), bitorder="little")[: self.compiled.vocab_size].astype(bool)

    def _next_closing_token(self, matcher: xgr.GrammarMatcher, lexer: tuple[bool, bool]) -> int | None:
        matcher.fill_next_token_bitmask(self._scratch, 0)
        raw, keep, closers = self._scratch_words, self.compiled.keep_words, self.compiled.closers
        for char in (b'"',) if lexer[0] else (b"]", b"}", b","):
            token = closers.get(char)
            if token is not None and (int(raw[token >> 5]) & int(keep[token >> 5])) >> (token & 31) & 1:
                return token
        hits = ((raw[self._cand_words] & self._cand_keep) >> self._cand_shifts) & 1
        first = int(hits.argmax()) if len(hits) else 0
        if len(hits) and hits[first]:
            return int(self.compiled.candidates[first])
        lengths = np.where(self._allowed(raw), self.compiled.token_len, -1)
        best = int(lengths.argmax())
        return best if lengths[best] > 0 else None

    def closing_path(self, matcher: xgr.GrammarMatcher, lexer: tuple[bool, bool], state=None,
                     then: int | None = None) -> list[int] | None:
        """A short token sequence that completes the JSON from `matcher`'s state (left untouched);
        None if none is found within CLOSE_SEARCH_LIMIT. Closing characters first (a quote inside a
        string; else a bracket, brace or comma), else the longest allowed token of the schema's
        keys and literals, so forced keys cost few tokens. Deterministic, so the path from the
        state after its first token is its tail.

        `then`: a token taken first (not part of the path). `state`: a digest of the output so far
        (matching `matcher`); with it, every state a found path passes through is remembered in the
        rows' shared memo, and a search that reaches one of them takes the rest of that path."""
        memo = self._memo if state is not None else None
        fork, path, keys = matcher.fork(), [], []
        if then is not None:
            fork.accept_token(then)
            lexer = _scan(lexer, self.compiled.token_bytes[then])
        if memo is not None:
            state = state.copy()
            if then is not None:
                state.update(self.compiled.token_bytes[then])
        while True:
            if memo is not None:
                key = state.digest()
                hit = memo.get(key)
                if hit is not None:
                    path += hit[0][hit[1]:]
                    break
                keys.append(key)
            if fork.is_completed():
                break
            token = self._next_closing_token(fork, lexer) if len(path) < CLOSE_SEARCH_LIMIT else None
            if token is None:
                return None
            data = self.compiled.token_bytes[token]
            fork.accept_token(token)
            lexer = _scan(lexer, data)
            if memo is not None:
                state.update(data)
            path.append(token)
        if len(path) > CLOSE_SEARCH_LIMIT:
            return None
        for i, key in enumerate(keys):
            memo[key] = (path, i)
        return path

    def _row_allows(self, row: int, token: int) -> bool:
        word = int(self._bitmask.numpy().view(np.uint32)[row, token >> 5]) & int(self.compiled.keep_words[token >> 5])
        return bool(word >> (token & 31) & 1)

    def _tail_after(self, row: int, token: int, path: list[int]) -> list[int] | None:
        """The closing path once `token` is taken, where `path` is the one before it."""
        matcher, lexer = self._matchers[row], self._lexer[row]
        data = self.compiled.token_bytes[token]
        quote = self.compiled.closers.get(b'"')
        if path[0] == quote and _stays_in_string(lexer, data):
            after = matcher.fork()
            after.accept_token(token)
            if after.accept_token(quote):
                return path
        return self.closing_path(matcher, lexer, self._digest[row], then=token)

    def _budget_choice(self, row: int, scores_row: torch.Tensor, generated: int) -> int | None:
        """The one token row may take when its budget is tight, or None while it is not.

        Invariant: the completion found fits in the tokens left. The model's own best allowed
        token is kept when the completion after it still fits; otherwise the completion's next
        token is taken, which shortens it by one."""
        if generated < self._next_check[row]:
            return None
        remaining = self.max_new_tokens - generated
        matcher, lexer = self._matchers[row], self._lexer[row]
        path = self._path[row]
        if not path or not self._row_allows(row, path[0]):
            path = self._path[row] = self.closing_path(matcher, lexer, self._digest[row])
        if not path:
            self._next_check[row] = generated + CLOSE_MARGIN  # the closer found no way out; retry later
            return None
        if len(path) + CLOSE_MARGIN < remaining:
            # A free token lengthens the completion by at most CLOSE_MARGIN (the assumption the
            # guarantee already rests on), so the path cannot outgrow the budget before then.
            self._next_check[row] = generated + max(1, (remaining - len(path) - CLOSE_MARGIN) // (CLOSE_MARGIN + 1))
            return None
        allowed = torch.from_numpy(self._allowed(self._bitmask.numpy().view(np.uint32)[row]))
        best = int(scores_row.detach().float().cpu().masked_fill(~allowed, float("-inf")).argmax())
        if best != path[0] and allowed[best]:
            tail = self._tail_after(row, best, path)
            if tail is not None and 1 + len(tail) <= remaining:
                self._expect[row] = (best, tail)
                return best
        self._expect[row] = (path[0], path[1:])
        return path[0]

    def _force(self, row: int, token: int) -> None:
        words = self._bitmask.numpy().view(np.uint32)
        words[row] = 0
        words[row, token // 32] = np.uint32(1 << (token % 32))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[-1] != self.compiled.vocab_size:
            raise ValueError(
                f"constrained decoding: the model gives {scores.shape[-1]} logits per token but the grammar was "
                f"built for {self.compiled.vocab_size}; compile with vocab_size=model_vocab_size(model)"
            )
        if self._matchers is None:
            self._start(input_ids.shape[0], input_ids.shape[1])
        else:
            self._advance(input_ids[:, -1].tolist())
        generated = input_ids.shape[1] - self._prompt_len
        xgr.reset_token_bitmask(self._bitmask)
        for i, matcher in enumerate(self._matchers):
            if self._free[i] or matcher.is_terminated():
                continue
            matcher.fill_next_token_bitmask(self._bitmask, i)
            if self.max_new_tokens is not None and not matcher.is_completed():
                token = self._budget_choice(i, scores[i], generated)
                if token is not None:
                    self._force(i, token)
        words = self._bitmask.numpy().view(np.uint32)
        words &= self.compiled.keep_words
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device, non_blocking=True))
        return scores


def schema_logits_processor(model, tokenizer, schema: dict, *, eos_token_id,
                            max_new_tokens: int | None = None) -> SchemaLogitsProcessor:
    """A fresh processor for one `generate()` call; `eos_token_id` must be what generate() stops on."""
    compiled = compile_schema(tokenizer, schema, vocab_size=model_vocab_size(model), stop_token_ids=eos_token_id)
    return SchemaLogitsProcessor(compiled, max_new_tokens)
