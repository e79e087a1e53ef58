"""Schema-constrained decoding (core/serve/grammar.py, core/serve/constrained.py): the mask itself,
checked token by token against an exhaustive oracle, and the untrained tiny model decoding the
sample clips with it."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch

from core.schema.base import canonical_answer, load_schema
from core.serve.constrained import SchemaLogitsProcessor
from core.serve.grammar import compile_schema, grammar_schema, model_vocab_size
from tests.support import SAMPLES

# Longest canonical answer over all sample clips is 85 tokens with the tiny tokenizer (checked
# below): the budget fits it plus the stop token, as a caller would size it for a trained model.
# The untrained base's captions run on, so the budget closer is exercised too.
MAX_NEW_TOKENS = 96
N_CLIPS = 20

SMALL_SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"enum": ["x", "yy"]},
        "b": {"type": "boolean"},
        "c": {"type": "array", "items": {"enum": ["p", "q"]}, "uniqueItems": True},
    },
    "required": ["a", "b", "c"],
    "additionalProperties": False,
}


def small_answers() -> set[str]:
    """Every valid compact answer of SMALL_SCHEMA in canonical form: the oracle for the mask."""
    lists = [[], ["p"], ["q"], ["p", "q"]]
    return {canonical_answer(SMALL_SCHEMA, {"a": a, "b": b, "c": c})
            for a, b, c in itertools.product(["x", "yy"], [True, False], lists)}


def outside_strings(text: str) -> str:
    """The characters of a JSON text that are not inside string literals."""
    out, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        else:
            out.append(ch)
    return "".join(out)


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny[1].tokenizer


def step(proc, ids: list[list[int]], vocab: int, prefer: int | None = None) -> torch.Tensor:
    """One processor call on zero logits (or logits favouring `prefer`); returns the allowed mask."""
    scores = torch.zeros(len(ids), vocab)
    if prefer is not None:
        scores[:, prefer] = 10.0
    return torch.isfinite(proc(torch.tensor(ids), scores))


# ------------------------------------------------------------------------------------ the mask


def test_mask_allows_exactly_the_tokens_that_keep_the_json_viable(tok):
    """Two rows, left padded, each following a different answer: at every step the allowed set is
    exactly the tokens whose text keeps the output a prefix of some valid answer (specials never),
    and the stop token only once the answer is complete; a finished row stops being constrained."""
    vocab, eos, pad = len(tok), tok.eos_token_id, tok.pad_token_id
    compiled = compile_schema(tok, SMALL_SCHEMA, vocab_size=vocab, stop_token_ids=eos)
    proc = SchemaLogitsProcessor(compiled)
    answers = small_answers()
    texts = [tok.decode([t]) for t in range(vocab)]
    specials = {i for i, added in tok.added_tokens_decoder.items() if added.special}
    targets = ['{"a":"yy","b":false,"c":["p","q"]}', '{"a":"x","b":true,"c":[]}']
    plans = [tok.encode(t, add_special_tokens=False) + [eos] for t in targets]
    ids = [[11, 12, 13], [pad, pad, 13]]  # left padding, as Predictor batches prompts
    outputs = ["", ""]
    for n in range(max(len(p) for p in plans)):
        allowed = step(proc, ids, vocab)
        for row, plan in enumerate(plans):
            if n >= len(plan):
                # generate() pads finished rows itself; masking them to the grammar would only risk NaNs
                assert set(torch.nonzero(~allowed[row]).flatten().tolist()) == specials - {eos}
                ids[row].append(pad)
                continue
            prefix = outputs[row]
            expected = {t for t in range(vocab) if t not in specials and texts[t]
                        and any(a.startswith(prefix + texts[t]) for a in answers)}
            if prefix in answers:
                expected.add(eos)
            assert set(torch.nonzero(allowed[row]).flatten().tolist()) == expected, (row, prefix)
            ids[row].append(plan[n])
            outputs[row] += texts[plan[n]] if plan[n] != eos else ""
    assert outputs == targets


def test_unique_enum_lists_decode_as_ordered_subsets(tok):
    """xgrammar drops uniqueItems; the grammar schema turns the list into its ordered subsets,
    which is also the only form canonical_answer trains on."""
    import xgrammar as xgr

    assert grammar_schema(SMALL_SCHEMA)["properties"]["c"] == {"enum": [[], ["p"], ["q"], ["p", "q"]]}
    compiled = compile_schema(tok, SMALL_SCHEMA, vocab_size=len(tok), stop_token_ids=tok.eos_token_id)
    for tail, ok in (('["p","q"]}', True), ('["q","p"]}', False), ('["p","p"]}', False), ('[ ]}', False)):
        matcher = xgr.GrammarMatcher(compiled.grammar)
        assert matcher.accept_string('{"a":"x","b":true,"c":' + tail) is ok, tail


def test_grammar_is_compiled_once_per_tokenizer_and_schema(tok):
    a = compile_schema(tok, SMALL_SCHEMA, vocab_size=len(tok), stop_token_ids=tok.eos_token_id)
    b = compile_schema(tok, json.loads(json.dumps(SMALL_SCHEMA)), vocab_size=len(tok), stop_token_ids=[tok.eos_token_id])
    assert a.grammar is b.grammar


def test_padded_model_vocabulary_is_masked_and_a_width_mismatch_raises(tok, tiny):
    assert model_vocab_size(tiny[0]) == len(tok)  # the tiny model's lm_head is not padded
    padded = len(tok) + 20  # as Qwen-style lm_heads rounded up past the tokenizer
    compiled = compile_schema(tok, SMALL_SCHEMA, vocab_size=padded, stop_token_ids=tok.eos_token_id)
    allowed = step(SchemaLogitsProcessor(compiled), [[11]], padded)
    assert allowed[0, : len(tok)].any() and not allowed[0, len(tok):].any()
    with pytest.raises(ValueError, match="logits"):
        step(SchemaLogitsProcessor(compiled), [[11]], len(tok))


def greedy(proc, tok, prefer: int, steps: int) -> list[int]:
    """Decode like generate() would, from logits that always favour `prefer`."""
    ids, out = [[11]], []
    for _ in range(steps):
        scores = torch.zeros(1, len(tok))
        scores[0, prefer] = 10.0
        token = int(proc(torch.tensor(ids), scores)[0].argmax())
        if token == tok.eos_token_id:
            break
        out.append(token)
        ids[0].append(token)
    return out


def test_budget_closes_free_text_in_time(tok):
    """A model that only ever wants to write 'car' fills the string; the processor closes it
    and finishes the JSON within max_new_tokens, down to the shortest answer's length. Without
    a budget the string never ends."""
    import xgrammar as xgr

    schema = {"type": "object", "properties": {"note": {"type": "string"}, "ok": {"type": "boolean"}},
              "required": ["note", "ok"]}
    compiled = compile_schema(tok, schema, vocab_size=len(tok), stop_token_ids=tok.eos_token_id)
    car = tok.convert_tokens_to_ids("car")
    shortest = len(SchemaLogitsProcessor(compiled).closing_path(xgr.GrammarMatcher(compiled.grammar), (False, False)))
    for budget in (shortest, shortest + 3, shortest + 12):
        out = greedy(SchemaLogitsProcessor(compiled, max_new_tokens=budget), tok, car, budget)
        answer = json.loads(tok.decode(out))
        assert set(answer) == {"note", "ok"} and len(out) <= budget
    assert answer["note"].startswith("carcar")
    unbounded = tok.decode(greedy(SchemaLogitsProcessor(compiled), tok, car, shortest + 30))
    assert unbounded.endswith("carcarcar")


class _Fresh(SchemaLogitsProcessor):
    """The closer without its memo: every closing path searched from scratch."""

    searches = 0

    def closing_path(self, matcher, lexer, state=None, then=None):
        return super().closing_path(matcher, lexer, None, then)

    def _next_closing_token(self, matcher, lexer):
        type(self).searches += 1
        return super()._next_closing_token(matcher, lexer)


class _Checked(_Fresh):
    """The closer with its memo, each memoised path checked against a fresh search."""

    searches = 0

    def closing_path(self, matcher, lexer, state=None, then=None):
        got = SchemaLogitsProcessor.closing_path(self, matcher, lexer, state, then)
        if state is not None:
            before = type(self).searches
            assert got == SchemaLogitsProcessor.closing_path(self, matcher, lexer, None, then)
            type(self).searches = before  # the check's own search is not the memo's cost
        return got


def test_memoised_closer_decodes_exactly_as_fresh_searches(tok):
    """The closer remembers the states its paths pass through (keyed by the output's bytes, which
    fix the grammar matcher's state). Under random logits that wander into long strings, enum
    values and arrays, every remembered path equals a fresh search, and whole decodes of a
    3-row batch are token for token the same, with far fewer searched steps."""
    schemas = [load_schema(SAMPLES / "schema.json"),
               {"type": "object", "properties": {"items": {"type": "array", "items": {
                   "type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                   "required": ["name", "n"]}}, "title": {"type": "string"}}, "required": ["items", "title"]}]
    vocab, eos, pad = len(tok), tok.eos_token_id, tok.pad_token_id
    words = torch.tensor([t for t in range(vocab) if tok.decode([t]).isalpha()])
    _Fresh.searches = _Checked.searches = 0
    for schema in schemas:
        compiled = compile_schema(tok, schema, vocab_size=vocab, stop_token_ids=eos)
        for budget, seed in itertools.product((20, 45, 70, 96), (0, 1)):
            outputs = []
            for cls in (_Fresh, _Checked):
                gen = torch.Generator().manual_seed(seed * 100 + budget)
                proc, ids, done = cls(compiled, max_new_tokens=budget), [[11] for _ in range(3)], [False] * 3
                for _ in range(budget):
                    scores = torch.randn(3, vocab, generator=gen) * 3
                    scores[:, words] += 2.0 + seed
                    nxt = proc(torch.tensor(ids), scores).argmax(-1).tolist()
                    for row in range(3):
                        ids[row].append(pad if done[row] else nxt[row])
                        done[row] = done[row] or nxt[row] == eos
                    if all(done):
                        break
                outputs.append(ids)
            assert outputs[0] == outputs[1], (budget, seed)
            for row in outputs[0]:
                if eos in row:
                    json.loads(tok.decode(row[1:row.index(eos)]))
    assert _Checked.searches < _Fresh.searches / 2


# ------------------------------------------------------------------------ the untrained model


@pytest.fixture(scope="module")
def clips(tiny):
    from core.models.loading import resolve_model
    from core.serve.predictor import Predictor
    from core.spec import default_spec
    from core.video.frames import sample_frames

    model, processor, family = tiny
    schema = load_schema(SAMPLES / "schema.json")
    spec = default_spec(resolve_model("tiny:default"), family, schema)
    predictor = Predictor(model, processor, family, spec, "cpu", name="tiny:default")
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"][:N_CLIPS]
    videos = [SAMPLES / r["video"] for r in test]
    labels = [{k: v for k, v in r.items() if k not in ("video", "split")} for r in test]
    frames = [sample_frames(v, spec.sampling_spec) for v in videos]
    return predictor, schema, rows, videos, labels, frames


@pytest.fixture(scope="module")
def constrained_texts(clips):
    predictor, _, _, videos, _, _ = clips
    preds = predictor.predict(videos, batch_size=4, max_new_tokens=MAX_NEW_TOKENS, constrained=True)
    return [p.text for p in preds]


def test_budget_fits_the_longest_canonical_answer(clips, tok):
    _, schema, rows, _, _, _ = clips
    longest = max(len(tok.encode(canonical_answer(schema, {k: v for k, v in r.items() if k not in ("video", "split")}),
                                 add_special_tokens=False)) for r in rows)
    assert longest + 1 <= MAX_NEW_TOKENS < longest + 16


def test_constrained_untrained_base_is_always_schema_valid(clips, constrained_texts):
    from core.schema.scoring import evaluate

    _, schema, _, _, labels, _ = clips
    assert evaluate(schema, constrained_texts, labels)["schema_valid_rate"] == 1.0
    for text in constrained_texts:
        json.loads(text)  # the whole output is the JSON, nothing before or after it


def test_unconstrained_untrained_base_is_not(clips):
    from core.schema.scoring import evaluate

    predictor, schema, _, videos, labels, _ = clips
    preds = predictor.predict(videos, batch_size=4, max_new_tokens=MAX_NEW_TOKENS)
    assert evaluate(schema, [p.text for p in preds], labels)["schema_valid_rate"] < 1.0


def test_constrained_output_uses_compact_separators(constrained_texts):
    for text in constrained_texts:
        assert not any(ch.isspace() for ch in outside_strings(text)), text


def test_left_padded_batches_give_the_same_answers_as_single_clips(clips):
    """Every other clip keeps 6 of its 8 frames, so prompts differ in length and the batch is
    really left padded; each row must still decode exactly as it does alone."""
    predictor, _, _, _, _, frames = clips
    mixed = [f if i % 2 == 0 else dataclasses.replace(f, frames=f.frames[:6], indices=f.indices[:6],
                                                      timestamps=f.timestamps[:6])
             for i, f in enumerate(frames)]
    lengths = {predictor.encode(f)["input_ids"].shape[1] for f in mixed[:2]}
    assert len(lengths) == 2
    batched = [text for i in range(0, len(mixed), 4)
               for text, _ in predictor.generate(mixed[i:i + 4], MAX_NEW_TOKENS, constrained=True)]
    single = [predictor.generate([f], MAX_NEW_TOKENS, constrained=True)[0][0] for f in mixed]
    assert batched == single
