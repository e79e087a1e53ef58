"""Schema-constrained decoding: the user's JSON Schema becomes a token mask applied inside `generate()`.

`schema_logits_processor(model, tokenizer, schema, ...)` returns a transformers `LogitsProcessor`
for one `generate()` call. The grammar is xgrammar's compilation of the schema with the separators
training uses (`core.schema.base.ANSWER_SEPARATORS`, no free whitespace), built once per (tokenizer,
model vocabulary size, stop tokens, schema) and cached by `core.serve.grammar`; only the per-row
matchers are new per call. This module owns the mask and the budget closer.

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

With `shadow=True` the processor follows the rows and fills the same mask without applying it
(no budget closer; `grammar_bitmask` is the mask): `core.serve.stepscores` renormalises an unconstrained answer's step
probabilities over the schema's allowed tokens with it; a row that leaves the grammar stops being
followed, silently.

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
- compile the grammar or build the per-tokenizer tables (`core.serve.grammar`);
- decide when to constrain: callers choose (`Predictor.generate(constrained=...)`).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch
import xgrammar as xgr
from transformers import LogitsProcessor

from core.serve.grammar import CompiledSchema, compile_schema, model_vocab_size

log = logging.getLogger(__name__)

# Budget checks start while this many spare tokens remain: a token the model picks freely can
# lengthen the completion (an escape, a partial UTF-8 character, an opened array item, keys split
# into more tokens than the closer assumed), so waiting until it fits exactly could be too late.
CLOSE_MARGIN = 6
# A completion longer than this is not searched for; such a row decodes without a budget guarantee.
CLOSE_SEARCH_LIMIT = 512


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

    def __init__(self, compiled: CompiledSchema, max_new_tokens: int | None = None, shadow: bool = False):
        self.compiled = compiled
        # shadow: follow the rows and fill the mask without applying it (confidence of unconstrained
        # answers is renormalised over the same allowed tokens; core.serve.stepscores reads `bitmask`)
        self.shadow = shadow
        self.max_new_tokens = None if shadow else max_new_tokens
        self._matchers: list[xgr.GrammarMatcher] | None = None
        self._unforced: dict[int, np.ndarray] = {}  # rows the closer forced this step -> their grammar mask
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
                # A shadow row leaving the grammar is ordinary (free decoding), not worth a warning.
                self._free[i] = True
                if self.shadow:
                    continue
                log.warning("constrained decoding: row %d produced token %d outside the grammar; "
                            "leaving that row unconstrained", i, token)
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

    @property
    def grammar_bitmask(self) -> torch.Tensor:
        """The tokens the grammar allowed each row at the last step, before the budget closer forced
        any (xgrammar's int32 bitmask, on the CPU; zero for rows that left the grammar or finished);
        valid until the next call. core.serve.stepscores renormalises over it: a token the closer
        forced keeps the model's probability among the allowed ones, not 1."""
        if not self._unforced:
            return self._bitmask
        mask = self._bitmask.clone()
        words = mask.numpy().view(np.uint32)
        for row, saved in self._unforced.items():
            words[row] = saved
        return mask

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
        self._unforced[row] = words[row] & self.compiled.keep_words
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
        self._unforced = {}
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
        if self.shadow:
            return scores
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device, non_blocking=True))
        return scores


def schema_logits_processor(model, tokenizer, schema: dict, *, eos_token_id,
                            max_new_tokens: int | None = None, shadow: bool = False) -> SchemaLogitsProcessor:
    """A fresh processor for one `generate()` call; `eos_token_id` must be what generate() stops on.
    `shadow`: follow the grammar without masking (see SchemaLogitsProcessor)."""
    compiled = compile_schema(tokenizer, schema, vocab_size=model_vocab_size(model), stop_token_ids=eos_token_id)
    return SchemaLogitsProcessor(compiled, max_new_tokens, shadow=shadow)
