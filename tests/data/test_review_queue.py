"""Drafts keep the model's per-field confidence; the review queue lists drafts least sure first,
from the drafts index, in the order the Annotate tab's REVIEW filter, Save & next and the CLI use."""

from __future__ import annotations

import json
import math
import random

import pytest

from core.data.drafts import DRAFTS
from core.data.listing import REVIEW, gallery_page, matching, next_clip
from core.data.prelabel import clips_to_prelabel, review_queue, write_drafts
from core.data.store import DRAFT, LABELLED, UNLABELLED, AnnotationStore
from tests.support import LABEL, make_dataset


def _clips(n):
    return [f"videos/clip_{i:04d}.mp4" for i in range(n)]


def _random_confidence(rng) -> dict:
    return {k: rng.random() for k in LABEL}


def test_a_draft_keeps_its_per_field_confidence_its_minimum_and_its_answer_score(tmp_path):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=4, rows=0))
    conf = _random_confidence(random.Random(1))
    saved = store.save_draft("videos/clip_0001.mp4", json.dumps(LABEL), model="m", confidence=conf,
                             answer_confidence=0.93)
    stored = AnnotationStore(store.root).drafts()["videos/clip_0001.mp4"]  # a new process reads the file
    assert stored["confidence"] == conf == saved["confidence"]
    # the least sure field is of the choice fields: the free-text caption (often the lowest) leaves it
    least = min(v for k, v in conf.items() if k != "caption")
    assert stored["min_confidence"] == least and least != min(conf.values())
    # the queue ranks by the whole answer's score, not by any field's
    assert stored["answer_confidence"] == 0.93
    assert AnnotationStore(store.root).draft_scores() == {"videos/clip_0001.mp4": 0.93}
    # a draft stored without the answer's score (written before it existed) ranks by its least sure field
    store.save_draft("videos/clip_0003.mp4", json.dumps(LABEL), model="m", confidence=conf)
    assert AnnotationStore(store.root).draft_scores()["videos/clip_0003.mp4"] == least
    # an answer that did not parse has no scores: an empty confidence, no minimum and no answer score
    garbage = store.save_draft("videos/clip_0002.mp4", "not json", model="m", confidence={}, answer_confidence=0.2)
    assert garbage["errors"] and garbage["min_confidence"] is None and garbage["answer_confidence"] is None
    assert store.draft_scores()["videos/clip_0002.mp4"] is None


def test_a_draft_scored_only_on_free_text_has_no_rank(tmp_path):
    root = make_dataset(tmp_path / "d", n=2, rows=0)
    draft = AnnotationStore(root).save_draft("videos/clip_0001.mp4", json.dumps(LABEL), model="m",
                                             confidence={"caption": 0.1})
    assert draft["confidence"] == {"caption": 0.1} and draft["min_confidence"] is None


def test_drafts_written_before_confidence_existed_still_open_and_queue_last(tmp_path):
    root = make_dataset(tmp_path / "d", n=4, rows=0)
    old = {"video": "videos/clip_0000.mp4", "model": "old", "text": json.dumps(LABEL), "label": LABEL, "errors": []}
    (root / DRAFTS).write_text(json.dumps(old) + "\n")
    store = AnnotationStore(root)
    store.save_draft("videos/clip_0003.mp4", json.dumps(LABEL), model="m", confidence={"event_type": 0.9})
    assert store.clip("videos/clip_0000.mp4").status == DRAFT
    assert store.clip("videos/clip_0000.mp4").draft["label"] == LABEL
    assert matching(store, REVIEW)[0] == ["videos/clip_0003.mp4", "videos/clip_0000.mp4"]
    items = review_queue(store)
    assert [i.rel for i in items] == ["videos/clip_0003.mp4", "videos/clip_0000.mp4"]
    assert items[1].score is None and items[1].weakest == []


def test_queue_is_the_sort_of_the_stored_scores_and_save_and_next_walks_it(tmp_path):
    root = make_dataset(tmp_path / "d", n=8, rows=2)
    store = AnnotationStore(root)
    rng = random.Random(7)
    for rel in _clips(8)[2:]:
        store.save_draft(rel, json.dumps(LABEL), model="m", confidence=_random_confidence(rng),
                         answer_confidence=rng.random())
    stored = {rel: d["answer_confidence"] for rel, d in AnnotationStore(root).drafts().items()}
    expected = sorted(stored, key=stored.get)
    queue, counts, _ = matching(store, REVIEW)
    assert queue == expected
    assert counts[DRAFT] == 6 and counts[LABELLED] == 2  # the queue is a filter: counts are the dataset's
    page = gallery_page(store, REVIEW)
    assert [c.rel for c in page.clips] == expected
    assert [c.draft["answer_confidence"] for c in page.clips] == sorted(stored.values())
    assert [i.rel for i in review_queue(store, limit=3)] == expected[:3]
    weakest = review_queue(store, limit=1)[0].weakest
    conf = store.drafts()[expected[0]]["confidence"]
    assert weakest == sorted(conf.items(), key=lambda kv: kv[1])[:3]
    # accepting the least sure draft labels it: it leaves the queue and Save & next opens the next one
    store.accept_draft(expected[0], store.clip_revision(expected[0]))
    assert next_clip(store, queue, expected[0]) == expected[1]
    assert matching(store, REVIEW)[0] == expected[1:]
    # a fresh process orders the queue from the cached line summaries alike
    assert matching(AnnotationStore(root), REVIEW)[0] == expected[1:]


def test_a_seeded_pool_is_random_unlabelled_and_repeatable(tmp_path):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=10, rows=3))
    unlabelled = [rel for rel, s in store.statuses() if s == UNLABELLED]
    pool = clips_to_prelabel(store, limit=4, seed=3)
    assert len(pool) == 4 and set(pool) <= set(unlabelled)
    assert pool == clips_to_prelabel(store, limit=4, seed=3)
    assert clips_to_prelabel(store, limit=4) == unlabelled[:4]
    # a pool stopped after two drafts: the same seed drafts the other two of the same pool
    for rel in pool[:2]:
        store.save_draft(rel, json.dumps(LABEL), model="m")
    assert clips_to_prelabel(store, limit=4, seed=3) == pool[2:]
    assert clips_to_prelabel(store, include_drafts=True, limit=4, seed=3) == pool


def test_write_drafts_stores_each_predictions_confidence_and_ranks_them(tmp_path, tiny_path):
    from core.serve.predictor import Predictor
    from core.video.frames import sample_frames

    store = AnnotationStore(make_dataset(tmp_path / "d", n=5, rows=1))
    rels = clips_to_prelabel(store)
    predictor = Predictor.load("tiny:default", store.schema(), device="cpu")
    # constrained: the untrained model then writes schema-shaped JSON, so every field gets a score
    report = write_drafts(store, predictor, rels, batch_size=2, constrained=True)
    assert report.drafted == len(rels) == 4
    again = predictor.predict([store.root / r for r in rels], batch_size=2, constrained=True)
    drafts = AnnotationStore(store.root).drafts()
    for rel, pred in zip(rels, again):  # greedy: the same answer and scores as when drafted
        assert drafts[rel]["text"] == pred.text
        assert drafts[rel]["confidence"] == pytest.approx(pred.confidence, rel=1e-4)  # float noise of a re-run
        assert drafts[rel]["min_confidence"] == min(v for k, v in drafts[rel]["confidence"].items() if k != "caption")
        assert drafts[rel]["answer_confidence"] == pytest.approx(pred.answer_confidence, rel=1e-4)
        assert 0.0 < drafts[rel]["answer_confidence"] <= 1.0
    # the answer's score is the geometric mean of its tokens' step probabilities, stop token included
    frames = sample_frames(store.root / rels[0], predictor.spec.sampling_spec)
    answer, = predictor.generate([frames], constrained=True, confidence=True)
    # one step score per token through the first stop token, nothing after it (padding) counted
    assert len(answer.token_logprobs) == len(answer.token_ids)
    assert predictor.processor.tokenizer.eos_token_id not in answer.token_ids[:-1]
    assert answer.answer_confidence == pytest.approx(math.exp(sum(answer.token_logprobs) / len(answer.token_logprobs)))
    assert answer.answer_confidence == pytest.approx(drafts[rels[0]]["answer_confidence"], rel=1e-4)
    by_score = sorted(rels, key=lambda r: drafts[r]["answer_confidence"])
    assert [i.rel for i in report.least_sure()] == by_score
    assert report.embeddings == {}  # vectors are kept only for label_next, when asked
    kept = write_drafts(store, predictor, rels[:2], batch_size=2, constrained=True, keep_embeddings=True)
    assert set(kept.embeddings) == set(rels[:2]) and all(v.dtype == "float16" for v in kept.embeddings.values())
    assert matching(store, REVIEW)[0] == by_score
