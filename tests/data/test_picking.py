""""Label next": the least sure clips, or the least sure clip of each group of similar clips."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.picking import ANSWER, FIELD, HYBRID, UNCERTAINTY, kmeans, pick
from core.data.prelabel import PrelabelReport


def _pool(groups=4, per=10, dim=16, seed=0):
    """`groups` tight clusters of `per` clips each, far apart; scores random."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim)) * 10
    rels, emb, group = [], {}, {}
    for g in range(groups):
        for i in range(per):
            rel = f"videos/g{g}_{i}.mp4"
            rels.append(rel)
            emb[rel] = centres[g] + rng.normal(size=dim) * 0.1
            group[rel] = g
    scores = {rel: float(rng.random()) for rel in rels}
    return rels, scores, emb, group


def test_kmeans_finds_well_separated_groups():
    rels, _, emb, group = _pool()
    found = kmeans(np.stack([emb[r] for r in rels]), 4)
    # the same partition up to the groups' names
    assert len({(group[r], g) for r, g in zip(rels, found.tolist())}) == 4


def test_uncertainty_takes_the_least_sure_and_hybrid_the_least_sure_of_each_group():
    rels, scores, emb, group = _pool()
    by_score = sorted(rels, key=scores.get)
    assert pick(rels, scores, emb, 5, UNCERTAINTY) == by_score[:5]
    chosen = pick(rels, scores, emb, 4, HYBRID)
    assert sorted(group[r] for r in chosen) == [0, 1, 2, 3]  # one per group
    for rel in chosen:  # and the least sure one there
        assert scores[rel] == min(scores[r] for r in rels if group[r] == group[rel])
    assert chosen == sorted(chosen, key=scores.get)  # shown least sure first


def test_hybrid_gives_k_clips_and_falls_back_without_embeddings():
    rels, scores, emb, _ = _pool(groups=2)
    assert len(pick(rels, scores, emb, 7, HYBRID)) == 7 == len(set(pick(rels, scores, emb, 7, HYBRID)))
    emb[rels[3]] = None  # a draft from before embeddings were kept
    assert pick(rels, scores, emb, 5, HYBRID) == sorted(rels, key=scores.get)[:5]
    scores[rels[0]] = None  # unscored: last
    assert pick(rels, scores, {}, len(rels), UNCERTAINTY)[-1] == rels[0]
    with pytest.raises(ValueError, match="unknown strategy"):
        pick(rels, scores, {r: np.zeros(2) for r in rels}, 3, "newest")


def test_label_next_ranks_by_the_answer_or_by_the_least_sure_field():
    # two drafts whose two scores disagree: "a" has the surer answer, "b" the surer weakest field
    drafts = {"videos/a.mp4": {"answer_confidence": 0.9, "min_confidence": 0.2},
              "videos/b.mp4": {"answer_confidence": 0.4, "min_confidence": 0.7}}
    report = PrelabelReport(drafts=drafts)
    assert [i.rel for i in report.label_next(2, UNCERTAINTY, by=ANSWER)] == ["videos/b.mp4", "videos/a.mp4"]
    assert [i.rel for i in report.label_next(2, UNCERTAINTY, by=FIELD)] == ["videos/a.mp4", "videos/b.mp4"]
    assert [i.score for i in report.label_next(1, UNCERTAINTY, by=FIELD)] == [0.2]
    # the default is the measured one (core.data.picking.LABEL_NEXT_BY): changing it changes this line
    assert report.label_next(2, UNCERTAINTY) == report.label_next(2, UNCERTAINTY, by=FIELD)
    with pytest.raises(ValueError, match="unknown score"):
        report.label_next(1, by="caption")
