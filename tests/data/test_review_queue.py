"""Drafts keep the model's per-field confidence; the review queue lists drafts least sure first,
from the drafts index, in the order the Annotate tab's REVIEW filter, Save & next and the CLI use."""

from __future__ import annotations

import json
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


def test_a_draft_keeps_its_per_field_confidence_and_its_minimum(tmp_path):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=3, rows=0))
    conf = _random_confidence(random.Random(1))
    saved = store.save_draft("videos/clip_0001.mp4", json.dumps(LABEL), model="m", confidence=conf)
    stored = AnnotationStore(store.root).drafts()["videos/clip_0001.mp4"]  # a new process reads the file
    assert stored["confidence"] == conf == saved["confidence"]
    # the rank is the least sure choice field: the free-text caption (often the lowest) leaves it
    rank = min(v for k, v in conf.items() if k != "caption")
    assert stored["min_confidence"] == rank and rank != min(conf.values())
    assert AnnotationStore(store.root).draft_scores() == {"videos/clip_0001.mp4": rank}
    # an answer that did not parse has no scores: an empty confidence and no minimum
    garbage = store.save_draft("videos/clip_0002.mp4", "not json", model="m", confidence={})
    assert garbage["errors"] and garbage["min_confidence"] is None
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
    assert items[1].min_confidence is None and items[1].weakest == []


def test_queue_is_the_sort_of_the_stored_scores_and_save_and_next_walks_it(tmp_path):
    root = make_dataset(tmp_path / "d", n=8, rows=2)
    store = AnnotationStore(root)
    rng = random.Random(7)
    for rel in _clips(8)[2:]:
        store.save_draft(rel, json.dumps(LABEL), model="m", confidence=_random_confidence(rng))
    stored = {rel: d["min_confidence"] for rel, d in AnnotationStore(root).drafts().items()}
    expected = sorted(stored, key=stored.get)
    queue, counts, _ = matching(store, REVIEW)
    assert queue == expected
    assert counts[DRAFT] == 6 and counts[LABELLED] == 2  # the queue is a filter: counts are the dataset's
    page = gallery_page(store, REVIEW)
    assert [c.rel for c in page.clips] == expected
    assert [c.draft["min_confidence"] for c in page.clips] == sorted(stored.values())
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
        assert 0.0 <= drafts[rel]["min_confidence"] <= 1.0
    by_score = sorted(rels, key=lambda r: drafts[r]["min_confidence"])
    assert [i.rel for i in report.least_sure()] == by_score
    assert report.embeddings == {}  # vectors are kept only for label_next, when asked
    kept = write_drafts(store, predictor, rels[:2], batch_size=2, constrained=True, keep_embeddings=True)
    assert set(kept.embeddings) == set(rels[:2]) and all(v.dtype == "float16" for v in kept.embeddings.values())
    assert matching(store, REVIEW)[0] == by_score
