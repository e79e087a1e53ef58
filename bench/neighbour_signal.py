"""Does agreement with a clip's labelled neighbours find wrong answers better than the model's own
score? For each test clip: its vector (core.serve.embedding, the same pass that answers it), its k
nearest labelled clips by cosine, and per choice field the share of those neighbours whose label
equals the answer. A clip's agreement is the least of its fields'; a lower one is more suspicious.
AUROC for "the clip has a wrong choice field", against the answer's confidence (the review queue's
order) and against the two combined by rank.

    python bench/neighbour_signal.py RUN POOL DATASET [--k 5,10,20]

POOL's train split is the labelled pool; DATASET's test split is ranked (e.g. a run trained on
/tmp/h24, POOL /tmp/h24, DATASET /tmp/h24e_true: BENCHMARKS 9). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import setup_path  # noqa: E402
from queue_auroc import split_rows, suspicion_auroc, wrong_and_answer  # noqa: E402

setup_path()


def ranks(values) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    for r, i in enumerate(order):
        out[i] = r / max(1, len(values) - 1)
    return out


def answers(predictor, run: str, ds: Path, rows: list[dict]) -> list:
    """The Predictor's answers (text, answer_confidence, embedding), kept in /tmp between tries."""
    import hashlib
    import pickle
    from types import SimpleNamespace

    videos = "|".join(r["video"] for r in rows)
    key = hashlib.sha1(f"{Path(run).resolve()}|{ds.resolve()}|{videos}".encode()).hexdigest()[:12]
    cache = Path("/tmp") / f"neighbour_signal_{key}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    preds = predictor.predict([ds / r["video"] for r in rows], batch_size=8, constrained=True, embeddings=True)
    keep = [SimpleNamespace(text=p.text, answer_confidence=p.answer_confidence, embedding=p.embedding) for p in preds]
    cache.write_bytes(pickle.dumps(keep))
    return keep


def main() -> None:
    import numpy as np

    from core.schema.calibration import choice_fields
    from core.serve.predictor import Predictor

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("pool", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--k", default="5,10,20")
    ap.add_argument("--pool-split", default="train")
    args = ap.parse_args()

    predictor = Predictor.load(args.run, device="cpu")
    schema = predictor.spec.schema
    choices = choice_fields(schema)
    pool, test = split_rows(args.pool, args.pool_split), split_rows(args.dataset, "test")
    pool_preds = answers(predictor, args.run, args.pool, pool)
    preds = answers(predictor, args.run, args.dataset, test)

    def unit(vs):
        m = np.stack(vs).astype("float64")
        m -= m.mean(axis=0)  # the instruction's share of every vector is the same: compare what differs
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    pool_v, test_v = unit([p.embedding for p in pool_preds]), unit([p.embedding for p in preds])
    sims = test_v @ pool_v.T

    wrong, answer = wrong_and_answer(schema, test, preds)
    parsed = []
    for p in preds:
        try:
            parsed.append(json.loads(p.text))
        except ValueError:
            parsed.append({})
    out = {"run": args.run, "clips": len(test), "pool": len(pool), "with_wrong_field": sum(wrong),
           "auroc_answer_confidence": round(suspicion_auroc(answer, wrong), 3)}
    for k in (int(x) for x in args.k.split(",")):
        nearest = np.argsort(-sims, axis=1)[:, :k]
        agree, per_field = [], {f: [] for f in choices}
        for i, ans in enumerate(parsed):
            shares = {}
            for f in choices:
                shares[f] = float(np.mean([pool[j].get(f) == ans.get(f) for j in nearest[i]]))
                per_field[f].append(shares[f])
            agree.append(min(shares.values()))
        mean_agree = [float(np.mean([per_field[f][i] for f in choices])) for i in range(len(parsed))]
        both = [a + b for a, b in zip(ranks(agree), ranks(answer))]
        out[f"k{k}"] = {"auroc_least_agreement": round(suspicion_auroc(agree, wrong), 3),
                        "auroc_mean_agreement": round(suspicion_auroc(mean_agree, wrong), 3),
                        "auroc_agreement_plus_answer": round(suspicion_auroc(both, wrong), 3),
                        "neighbour_vote_accuracy": {f: round(float(np.mean(
                            [max(set(v := [json.dumps(pool[j].get(f)) for j in nearest[i]]), key=v.count)
                             == json.dumps(test[i].get(f))
                             for i in range(len(test))])), 3) for f in choices}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
