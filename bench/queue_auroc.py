"""The review queue's order (answer_confidence) against the order before it (the least sure calibrated
choice field): AUROC for "the clip has a wrong choice field" on a dataset's test split, through the
product's Predictor (constrained, as pre-labelling drafts); a lower score is more suspicious.

    python bench/queue_auroc.py RUN DATASET     # e.g. a calibrated run and /tmp/h24e_true (BENCHMARKS 9)

Prints one JSON object. Nothing here asserts a figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import auroc, setup_path  # noqa: E402

setup_path()


def suspicion_auroc(score: list[float], wrong: list[bool]) -> float | None:
    """AUROC of a score where lower is less sure (common.auroc ranks higher as more suspicious)."""
    return auroc([-s for s, w in zip(score, wrong) if w], [-s for s, w in zip(score, wrong) if not w])


def split_rows(ds: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (ds / "metadata.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("split") == split]


def wrong_and_answer(schema: dict, rows: list[dict], preds: list) -> tuple[list[bool], list[float]]:
    """Per clip: does the answer get a choice field wrong, and its answer_confidence (-1 when unparsed)."""
    from core.schema.calibration import choice_fields
    from core.schema.scoring import score_row

    choices = choice_fields(schema)
    wrong, answer = [], []
    for r, p in zip(rows, preds):
        label = {k: v for k, v in r.items() if k not in ("video", "split")}
        scored = score_row(schema, p.text, label).fields
        wrong.append(any(scored.get(f, 0.0) < 1.0 for f in choices))
        answer.append(p.answer_confidence if p.answer_confidence is not None else -1.0)
    return wrong, answer


def main() -> None:
    from core.schema.calibration import choice_fields
    from core.serve.predictor import Predictor

    run, ds = sys.argv[1], Path(sys.argv[2])
    test = split_rows(ds, "test")
    predictor = Predictor.load(run, device="cpu")
    schema = predictor.spec.schema
    choices = choice_fields(schema)
    preds = predictor.predict([ds / r["video"] for r in test], batch_size=8, constrained=True)
    wrong, answer = wrong_and_answer(schema, test, preds)
    least = [min((p.confidence or {}).get(f, 0.0) for f in choices) for p in preds]
    print(json.dumps({"run": run, "clips": len(test), "with_wrong_field": sum(wrong),
                      "calibrated": preds[0].calibrated, "auroc_answer_confidence": round(suspicion_auroc(answer, wrong), 3),
                      "auroc_least_sure_field": round(suspicion_auroc(least, wrong), 3)}))


if __name__ == "__main__":
    main()
