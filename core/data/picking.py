"""Which pool clips a person should label next: the least sure ones, or the least sure of each
region of the pool ("hybrid": diverse first, then least sure).

Uncertainty alone picks near-duplicates (ten clips of the same night-time junction the model is
unsure about teach it about as much as two), which is why it often loses to random picks at small
budgets. The hybrid splits the pool into k groups by k-means on the clips' embeddings (taken from
the pass that drafted them, core.serve.embedding) and takes the least sure clip of each group, so
the k picks cover the pool's variety and, inside each part of it, go where the model is least sure.
Which strategy "Label next" uses is measured (BENCHMARKS.md section 9c: over random picks the
hybrid gained +.058 and +.099 mean field accuracy at K = 48 and 96 over 5 seeds, the least-sure
order -.015 and +.043; re-run on another CPU kind: +.050 and +.068, and the least-sure order by the answer's score
-.010 and -.022)."""

from __future__ import annotations

import numpy as np

HYBRID, UNCERTAINTY = "hybrid", "uncertainty"
STRATEGIES = (HYBRID, UNCERTAINTY)
LABEL_NEXT = HYBRID  # what "Label next" and `prelabel --review` pick by: measured, BENCHMARKS.md section 9c
# What "least sure" means inside each group: the whole answer's score (the review queue's order) or the
# least sure choice field's. Measured both ways on 5 seeds (section 9c, 2026-12-08): by the answer +.073
# and +.032 over random at K = 48 and 96, by the field +.050 and +.068; paired, neither was ahead on
# most seeds, so the field's order, the one first measured, stays. The Annotate tab's list says "least
# sure field" because of this choice.
ANSWER, FIELD = "answer", "field"
SCORES = (ANSWER, FIELD)
LABEL_NEXT_BY = FIELD


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, rounds: int = 25) -> np.ndarray:
    """Group index per row: k-means++ seeding, then Lloyd rounds until nothing moves. Rows are
    centred and scaled to unit length first, so the direction of a clip's vector is what counts."""
    x = vectors - vectors.mean(axis=0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        weights = dist.astype(np.float64)  # float32 sums miss 1 by more than rng.choice allows
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres.append(x[pick])
        dist = np.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    c = np.stack(centres)
    groups = np.full(n, -1)
    for _ in range(rounds):
        new = ((c ** 2).sum(1)[None] - 2 * x @ c.T).argmin(1)  # |x - c|² without an n x k x d array
        if (new == groups).all():
            break
        groups = new
        for j in range(k):
            if (groups == j).any():
                c[j] = x[groups == j].mean(0)
    return groups


def pick(rels: list[str], scores: dict, embeddings: dict, k: int, strategy: str = HYBRID,
         seed: int = 0) -> list[str]:
    """k clips of `rels`, least sure first. `scores`: clip -> the score that ranks it (lower: less
    sure; None: unscored, ranked last); `embeddings`: clip -> vector. The hybrid falls back to
    uncertainty when a clip has no embedding (a draft from an older pass)."""
    def unsure(rel):
        s = scores.get(rel)
        return (s is None, s if s is not None else 0.0)

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    order = sorted(rels, key=unsure)
    if strategy == UNCERTAINTY or k >= len(rels) or any(embeddings.get(r) is None for r in rels):
        return order[:k]
    groups = kmeans(np.stack([np.asarray(embeddings[r], dtype=np.float32) for r in rels]), k, seed)
    group_of = dict(zip(rels, groups.tolist()))
    chosen, seen = [], set()
    for rel in order:  # least sure first: the first clip met in a group is its least sure one
        if group_of[rel] not in seen:
            seen.add(group_of[rel])
            chosen.append(rel)
    taken = set(chosen)
    chosen += [rel for rel in order if rel not in taken][:k - len(chosen)]  # groups k-means left empty
    return chosen[:k]
