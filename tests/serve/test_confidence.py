"""Per-field confidence (core/serve/confidence.py, core/serve/stepscores.py): the rules on hand-made
token scores, then the real tiny model, checked against a hand computation from its raw logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xgrammar as xgr

from core.schema.base import load_schema
from core.serve.confidence import answer_confidence, field_confidence, field_margins, json_spans, min_confidence
from core.serve.constrained import schema_logits_processor
from core.serve.predictor import Predictor
from core.serve.stepscores import StepRecorder, token_ranges
from core.video.frames import sample_frames
from tests.support import SAMPLES

SCHEMA = load_schema(SAMPLES / "schema.json")
CLIPS = [SAMPLES / "videos" / f"clip_{i:04d}.mp4" for i in range(3)]
MAX_NEW_TOKENS = 96


def split(pieces: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text and character ranges of hand-made tokens."""
    ranges, at = [], 0
    for p in pieces:
        ranges.append((at, at + len(p)))
        at += len(p)
    return "".join(pieces), ranges


# ------------------------------------------------------------------------------ the rules


def test_spans_locate_each_value_in_compact_and_spaced_json():
    text = 'Sure: {"a": "x", "b":[1, "q"],"c":{"d":true}} trailing'
    root = json_spans(text)
    assert text[root.start:root.end] == '{"a": "x", "b":[1, "q"],"c":{"d":true}}'
    a, b, c = (root.children[k] for k in "abc")
    assert text[a.start:a.end] == '"x"' and text[b.start:b.end] == '[1, "q"]'
    assert [text[i.start:i.end] for i in b.children] == ["1", '"q"']
    assert text[c.children["d"].start:c.children["d"].end] == "true"
    assert json_spans("no object {here") is None


def test_enum_counts_tokens_until_the_value_is_settled():
    """event_type 'no_incident': 'no' settles it (only one choice starts with "no), so '_', 'incident'
    and the closing '","' are not counted; the forced opening quote is not either."""
    schema = {"type": "object", "properties": {"event_type": SCHEMA["properties"]["event_type"],
                                               "visibility": SCHEMA["properties"]["visibility"]}}
    text, ranges = split(['{"', "event_type", '":"', "n", "o", "_", "incident", '","', "visibility", '":"',
                          "good", '"}'])
    lp = [math.log(x) for x in (0.5, 0.5, 0.3, 0.8, 0.6, 0.2, 0.1, 0.05, 0.5, 0.4, 0.7, 0.9)]
    scores, _ = field_confidence(schema, text, ranges, lp)
    assert scores["event_type"] == pytest.approx(0.8 * 0.6)  # "n" (near_miss or no_incident), then "o"
    assert scores["visibility"] == pytest.approx(0.7)  # "good" settles it; '"}' only closes
    assert min_confidence(scores) == pytest.approx(0.48)
    # the whole answer's score: the geometric mean of every token's step probability
    assert answer_confidence(lp) == pytest.approx(math.prod((0.5, 0.5, 0.3, 0.8, 0.6, 0.2, 0.1, 0.05, 0.5, 0.4, 0.7,
                                                             0.9)) ** (1 / 12))
    assert answer_confidence([]) is None and answer_confidence([0.0]) == 1.0


def test_enum_list_scores_each_item_with_its_opening_token_and_the_stop():
    schema = {"type": "object", "properties": {"rule_violations": SCHEMA["properties"]["rule_violations"]}}
    text, ranges = split(['{"', "rule_violations", '":["', "speeding", '","', "ign", "oring_traffic_signs", '"]', "}"])
    lp = [math.log(x) for x in (1, 1, 0.6, 0.9, 0.5, 0.7, 0.2, 0.4, 1)]
    scores, parts = field_confidence(schema, text, ranges, lp)
    items = parts["rule_violations"]["items"]
    assert items == pytest.approx([0.6 * 0.9, 0.5 * 0.7])  # open + settling token; 'oring...' is forced
    assert parts["rule_violations"]["stop"] == pytest.approx(0.4)
    assert scores["rule_violations"] == pytest.approx(min(0.54, 0.35, 0.4))
    empty, parts = field_confidence(schema, *split(['{"', "rule_violations", '":[', "]}"]), [0, 0, -0.1, -1.2])
    assert parts["rule_violations"] == {"items": [], "stop": pytest.approx(math.exp(-1.2))}


def test_a_margin_is_the_smallest_gap_to_the_runner_up_over_the_deciding_tokens():
    schema = {"type": "object", "properties": {"event_type": SCHEMA["properties"]["event_type"],
                                               "rule_violations": SCHEMA["properties"]["rule_violations"],
                                               "caption": SCHEMA["properties"]["caption"]}}
    text, ranges = split(['{"', "event_type", '":"', "n", "o", "_incident", '","', "rule_violations", '":["',
                          "speeding", '"]', ',"', "caption", '":"', "A drive.", '"}'])
    taken = [1, 1, 1, 0.8, 0.6, 0.9, 1, 1, 0.7, 0.9, 0.6, 1, 1, 1, 0.3, 1]
    second = [0, 0, 0, 0.15, 0.3, 0.05, 0, 0, 0.2, 0.05, 0.35, 0, 0, 0, 0.2, 0]
    lp = [math.log(x) for x in taken]
    ru = [math.log(x) if x else float("-inf") for x in second]
    margins = field_margins(schema, text, ranges, lp, ru)
    assert margins["event_type"] == pytest.approx(min(0.8 - 0.15, 0.6 - 0.3))  # "n", "o": then settled
    assert margins["rule_violations"] == pytest.approx(min(0.7 - 0.2, 0.9 - 0.05, 0.6 - 0.35))  # open, item, stop
    assert "caption" not in margins  # free text has no runner-up value
    assert field_margins(schema, "not json", [(0, 8)], [0.0], [0.0]) == {}


def test_text_numbers_booleans_and_objects():
    schema = {"type": "object", "properties": {
        "caption": {"type": "string"}, "n": {"type": "integer"}, "ok": {"type": "boolean"},
        "o": {"type": "object", "properties": {"k": {"enum": ["u", "v"]}, "t": {"type": "string"}}}}}
    text, ranges = split(['{"caption":"', "A", " car", '.",', '"n":', "1", "2", ',"ok":', "true", ',"o":{"k":"',
                          "v", '","t":"', "hi", '"}}'])
    lp = [0, -1.0, -2.0, -3.0, 0, -0.5, -0.25, -0.7, -0.2, 0, -0.9, 0, -0.4, -0.1]
    scores, _ = field_confidence(schema, text, ranges, lp)
    assert scores["caption"] == pytest.approx(math.exp(-2.0))  # geometric mean of A, car, ." (closing quote)
    assert scores["n"] == pytest.approx(math.exp((-0.5 - 0.25 - 0.7) / 3))  # digits and the token that ends it
    assert scores["ok"] == pytest.approx(math.exp(-0.2))
    assert scores["o"] == pytest.approx(min(math.exp(-0.9), math.exp((-0.4 - 0.1) / 2)))  # k: "v"; t: hi, "
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert field_confidence(schema, "not json", [(0, 8)], [0.0]) == ({}, {})


def test_token_ranges_follow_the_decoded_answer(tiny):
    tok = tiny[1].tokenizer
    answer = '{"caption":"Crème brûlée ☕","visibility":"good"}'
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    text, ranges = token_ranges(tok, ids)
    assert text == answer and ranges[-1][1] == len(answer)
    assert all(a <= b for a, b in ranges) and all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))


# ------------------------------------------------------------------------------ the recorder


def replay(tok, processor_grammar, logits: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Drive a StepRecorder (+ its grammar processor) the way generate() does, on given logits."""
    recorder = StepRecorder(processor_grammar)
    chain = [recorder] + ([processor_grammar] if processor_grammar is not None else [])
    ids = torch.tensor([[tok.pad_token_id]])
    for step, token in enumerate(tokens):
        scores = logits[step:step + 1].clone()
        for proc in chain:
            scores = proc(ids, scores)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return recorder.finish(torch.tensor([tokens[-1]]))[0]


def test_shadow_grammar_gives_unconstrained_steps_the_same_numbers_and_then_the_models_own(tiny):
    model, processor, _ = tiny
    tok = processor.tokenizer
    answer = '{"caption":"A","event_type":"collision","rule_violations":[],"intended_driving_action":"turn_left",' \
             '"traffic_density":"low","visibility":"good"}'
    tokens = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    logits = torch.randn(len(tokens), model.get_output_embeddings().weight.shape[0], generator=torch.Generator().manual_seed(0))
    masked = replay(tok, schema_logits_processor(model, tok, SCHEMA, eos_token_id=tok.eos_token_id), logits, tokens)
    shadow = replay(tok, schema_logits_processor(model, tok, SCHEMA, eos_token_id=tok.eos_token_id, shadow=True),
                    logits, tokens)
    assert torch.allclose(masked, shadow, atol=1e-5)
    plain = replay(tok, None, logits, tokens)
    assert torch.allclose(plain, torch.log_softmax(logits, -1)[range(len(tokens)), tokens], atol=1e-5)
    assert (masked >= plain - 1e-6).all() and (masked > plain + 1e-3).any()  # fewer tokens to share the mass
    # a space breaks the compact grammar: from there on, the model's own distribution
    spaced = tok('{"caption": "A"', add_special_tokens=False)["input_ids"]
    off = replay(tok, schema_logits_processor(model, tok, SCHEMA, eos_token_id=tok.eos_token_id, shadow=True),
                 logits[:len(spaced)], spaced)
    departs = next(k for k in range(len(spaced)) if " " in tok.decode(spaced[:k + 1]))
    plain = replay(tok, None, logits[:len(spaced)], spaced)
    assert torch.allclose(off[departs:], plain[departs:], atol=1e-6)


# ------------------------------------------------------------------------------ the real tiny model


@pytest.fixture(scope="module")
def predictor(tiny_path):
    return Predictor.load("tiny:default", schema=SCHEMA, device="cpu")


def hand_logprobs(predictor: Predictor, frames, token_ids: list[int]) -> list[float]:
    """The step log-probabilities by hand: the raw logits generate() returns with output_logits=True,
    masked by a fresh grammar matcher walking the same tokens, log-softmaxed."""
    from core.models.inputs import collate
    from core.serve.grammar import compile_schema, model_vocab_size

    tok = predictor.processor.tokenizer
    batch = collate([predictor.encode(frames)], tok.pad_token_id, padding_side="left")
    proc = schema_logits_processor(predictor.model, tok, SCHEMA, eos_token_id=tok.eos_token_id,
                                   max_new_tokens=MAX_NEW_TOKENS)
    with torch.no_grad():
        out = predictor.model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                       suppress_tokens=predictor.suppressed, logits_processor=[proc],
                                       output_logits=True, return_dict_in_generate=True)
    assert out.sequences[0, batch["input_ids"].shape[1]:].tolist()[:len(token_ids)] == token_ids
    compiled = compile_schema(tok, SCHEMA, vocab_size=model_vocab_size(predictor.model), stop_token_ids=tok.eos_token_id)
    matcher, mask = xgr.GrammarMatcher(compiled.grammar), xgr.allocate_token_bitmask(1, compiled.vocab_size)
    result = []
    for step, token in enumerate(token_ids):
        matcher.fill_next_token_bitmask(mask, 0)
        mask.numpy().view(np.uint32)[0] &= compiled.keep_words  # special tokens never belong to an answer
        logits = out.logits[step][0].float().clone()
        logits[predictor.suppressed] = float("-inf")
        xgr.apply_token_bitmask_inplace(logits[None], mask)
        result.append(float(torch.log_softmax(logits, -1)[token]))
        assert matcher.accept_token(token)
    return result


def test_enum_confidence_is_the_renormalised_probability_of_its_value_by_hand(predictor):
    """visibility ("good" | "bad") is settled by its first letter: its confidence is the probability of
    that first token among the tokens the schema allows there, from the model's raw logits."""
    frames = sample_frames(CLIPS[2], predictor.spec.sampling_spec)
    g, = predictor.generate([frames], MAX_NEW_TOKENS, constrained=True, confidence=True)
    hand = hand_logprobs(predictor, frames, g.token_ids)
    assert g.token_logprobs == pytest.approx(hand, abs=1e-4)
    tok = predictor.processor.tokenizer
    text, ranges = token_ranges(tok, g.token_ids)
    value_at = text.index('"visibility":"') + len('"visibility":"')  # first letter of the value
    first = next(t for t, (a, b) in enumerate(ranges) if a <= value_at < b)
    assert text[value_at:].startswith(("good", "bad"))
    assert g.confidence["visibility"] == pytest.approx(math.exp(hand[first]), abs=1e-4)
    assert 0.0 < g.confidence["visibility"] < 1.0
    p = g.confidence["visibility"]  # one deciding token: its margin is p minus a runner-up that is at most 1 - p
    assert 2 * p - 1 - 1e-6 <= g.margins["visibility"] <= p + 1e-6


def test_scores_are_probabilities_for_every_field_and_unparsed_answers_have_none(predictor):
    constrained = predictor.predict(CLIPS, batch_size=3, max_new_tokens=MAX_NEW_TOKENS, constrained=True)
    for p in constrained:
        assert set(p.confidence) == set(SCHEMA["properties"])  # constrained: every field is there
        assert all(0.0 <= v <= 1.0 for v in p.confidence.values())
        assert p.min_confidence == min(p.confidence.values())
        items = p.confidence_parts["rule_violations"]
        assert p.confidence["rule_violations"] == min([*items["items"], items["stop"]])
    free = predictor.predict(CLIPS[:2], batch_size=2, max_new_tokens=24, constrained=False)
    plain = predictor.predict(CLIPS[:2], batch_size=2, max_new_tokens=24, constrained=False, confidence=False)
    assert [p.text for p in free] == [p.text for p in plain]  # recording never changes the answer
    assert [p.confidence for p in free] == [{}, {}] and plain[0].confidence is None  # untrained: no JSON


def test_batched_and_one_by_one_give_the_same_confidence(predictor):
    batched = predictor.predict(CLIPS, batch_size=3, max_new_tokens=MAX_NEW_TOKENS, constrained=True)
    alone = [predictor.predict([c], batch_size=1, max_new_tokens=MAX_NEW_TOKENS, constrained=True)[0] for c in CLIPS]
    assert [p.text for p in batched] == [p.text for p in alone]
    for b, a in zip(batched, alone):
        assert b.confidence.keys() == a.confidence.keys()
        assert all(b.confidence[k] == pytest.approx(a.confidence[k], abs=1e-4) for k in a.confidence)


def test_a_numeric_enum_counts_the_token_that_ends_the_value_while_it_still_decides():
    schema = {"type": "object", "properties": {"n": {"enum": [1, 10, 2]}, "m": {"enum": [1, 2]}}}
    text, ranges = split(['{"n":', "1", ',"m":', "2", "}"])
    scores, _ = field_confidence(schema, text, ranges, [0.0, math.log(0.5), math.log(0.8), math.log(0.9), -3.0])
    assert scores["n"] == pytest.approx(0.5 * 0.8)  # after "1", the comma decides 1 over 10
    assert scores["m"] == pytest.approx(0.9)  # "2" settles it; the closing brace is not counted


def test_a_single_answer_for_compare_and_inference_carries_its_confidence(predictor):
    from core.serve.predictor import analyse_frames

    frames = sample_frames(CLIPS[0], predictor.spec.sampling_spec)
    result = analyse_frames(predictor, frames, max_new_tokens=MAX_NEW_TOKENS, constrained=True)
    batch, = predictor.predict([CLIPS[0]], max_new_tokens=MAX_NEW_TOKENS, constrained=True)
    assert result["text"] == batch.text and set(result["confidence"]) == set(SCHEMA["properties"])
    assert result["confidence"] == pytest.approx(batch.confidence, abs=1e-6)
    assert result["min_confidence"] == min(result["confidence"].values())
    assert result["confidence_parts"]["rule_violations"]["stop"] == pytest.approx(
        batch.confidence_parts["rule_violations"]["stop"], abs=1e-6)
