"""The step log-probabilities per-field confidence is built from, recorded inside the greedy pass.

`StepRecorder` is a transformers `LogitsProcessor` placed in `generate()`'s chain after
`suppress_tokens` and just before the schema's `SchemaLogitsProcessor` (core.serve.constrained),
which masks the scores (constrained decoding) or, in shadow mode, only follows the rows. For each
row and step it keeps the log-probability of the token taken, renormalised over the tokens the
grammar allowed at that step (`grammar_bitmask`: before any token the budget closer forced, so a
forced token keeps the model's probability among the allowed ones instead of 1). Without
constrained decoding the shadow runs the same grammar, so the number means the same; once a row
writes a token the grammar rejects (prose, spaces, a code fence), that row's later steps use the
model's own distribution (everything but the suppressed tokens). Without a grammar at all (a schema
xgrammar cannot compile), every step uses the model's own distribution.
`token_ranges` gives each generated token's character range in the decoded answer (decoding
prefixes, which is how the tokenizer itself would render them). Combining these into per-field
scores is core.serve.confidence.

Memory, why not `generate(output_logits=True)` / `compute_transition_scores`: those keep a
batch x vocabulary tensor per step until generation ends (8 rows x 200 steps x 150k vocabulary x 4
bytes is about 1 GB) to read one number per row and step. The recorder keeps two floats per row and
step on the device (batch x steps) plus one step's scores (batch x vocabulary, 5 MB at 8 x 150k):
the token taken and the grammar's mask are known only at the next call, and a masking processor
overwrites the scores in place, so those are copied first.
"""

from __future__ import annotations

import torch
import xgrammar as xgr
from transformers import LogitsProcessor


class StepRecorder(LogitsProcessor):
    """Per-step log-probabilities of the tokens taken; one instance per `generate()` call.

    `grammar`: the SchemaLogitsProcessor that comes right after this one in the chain (masking or
    shadow), or None."""

    def __init__(self, grammar=None):
        self.grammar = grammar
        self._pending: torch.Tensor | None = None  # last step's scores, before the grammar's mask
        self._allowed_lp: list[torch.Tensor] = []
        self._model_lp: list[torch.Tensor] = []
        self._runner_up_lp: list[torch.Tensor] = []  # the best other allowed token's (for margins)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._take(input_ids[:, -1])  # the grammar processor still holds the last step's mask
        masks_in_place = self.grammar is not None and not self.grammar.shadow
        self._pending = scores.float().clone() if masks_in_place else scores.float()
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        scores, self._pending = self._pending, None
        tokens = tokens.to(scores.device).long()
        chosen = scores.gather(1, tokens[:, None])[:, 0]
        model_lp = chosen - torch.logsumexp(scores, dim=-1)
        allowed_lp, masked = model_lp, scores
        if self.grammar is not None:
            bitmask = self.grammar.grammar_bitmask.to(scores.device)
            masked = scores.clone()
            xgr.apply_token_bitmask_inplace(masked, bitmask)
            word = bitmask.gather(1, (tokens >> 5)[:, None])[:, 0].long() & 0xFFFFFFFF
            on_grammar = ((word >> (tokens & 31)) & 1).bool()
            allowed_lp = torch.where(on_grammar, chosen - torch.logsumexp(masked, dim=-1),
                                     torch.full_like(chosen, float("nan")))
        # the runner-up: the best allowed token other than the one taken (-inf when it was the only one)
        others = masked.scatter(1, tokens[:, None], float("-inf"))
        self._runner_up_lp.append(others.max(dim=-1).values - torch.logsumexp(masked, dim=-1))
        self._allowed_lp.append(allowed_lp)
        self._model_lp.append(model_lp)

    def runner_up(self) -> torch.Tensor:
        """(batch, steps) log-probability of the best other allowed token at each step (after
        `finish`), on the same scale as the step's own: a value's margin is p(taken) - p(runner-up).
        NaN from the step a row left the grammar on (unconstrained decoding writing prose)."""
        if not self._runner_up_lp:
            return torch.zeros(0, 0)
        second = torch.stack(self._runner_up_lp, dim=1).cpu()
        off = getattr(self, "_off", None)  # off the grammar the allowed set means nothing: no runner-up
        return second if off is None else torch.where(off, torch.full_like(second, float("nan")), second)

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, steps) log-probabilities on the CPU, once `generate()` returned the last column of
        tokens. A step off the grammar (NaN) takes the model's own log-probability, and so does every
        later step of that row."""
        if self._pending is not None:
            self._take(last_tokens)
        if not self._allowed_lp:
            return torch.zeros(len(last_tokens), 0)
        allowed = torch.stack(self._allowed_lp, dim=1).cpu()
        model = torch.stack(self._model_lp, dim=1).cpu()
        off = torch.isnan(allowed).int().cummax(dim=1).values.bool()  # from the first departure on
        self._off = off
        return torch.where(off, model, allowed)


def token_ranges(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded answer and the character range [a, b) each of `ids` wrote in it.

    Decodes growing prefixes, the way the tokenizer renders them: a token in the middle of a
    multi-byte character writes no character of its own (a == b) until the token that completes it."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    ranges, prev = [], 0
    for k in range(1, len(ids) + 1):
        part = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if text.startswith(part):
            n = len(part)
        else:  # a partial character renders as U+FFFD: count only what agrees with the answer
            n = 0
            while n < min(len(part), len(text)) and part[n] == text[n]:
                n += 1
        n = max(prev, n)
        ranges.append((prev, n))
        prev = n
    return text, ranges
