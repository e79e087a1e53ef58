"""Which order of the clips finds the ones with a wrong choice field: every single signal that
``bench/calibration_experiment.py`` saved per clip, and logistic combinations of them scored by
5-fold cross-validation on the same clips (each fold's clips ranked by a model fitted on the
other four), so a combination is not credited with what it memorised.

    python bench/ranking_signals.py [bench/results/calibration_experiment.json]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, auroc, table  # noqa: E402


def _auroc(score: np.ndarray, bad: np.ndarray) -> float:
    """common.auroc of one score array split by the `bad` mask (NaN when a side is empty)."""
    got = auroc(score[bad].tolist(), score[~bad].tolist())
    return float("nan") if got is None else got


def logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def features(clips: list[dict]) -> dict[str, np.ndarray]:
    fields = list(clips[0]["raw"])
    f = {}
    for name in fields:
        f[f"raw:{name}"] = logit([c["raw"][name] for c in clips])
        f[f"calibrated:{name}"] = logit([c["calibrated"][name] for c in clips])
    f["least calibrated"] = logit([min(c["calibrated"].values()) for c in clips])
    f["least raw"] = logit([min(c["raw"].values()) for c in clips])
    f["caption"] = logit([c["caption_raw"] or 0.0 for c in clips])
    f["mean logprob"] = np.array([c["mean_logprob"] for c in clips])
    f["disagree"] = np.array([float(c["disagree"]) for c in clips])
    f["expected wrong fields"] = np.array([sum(1 - v for v in c["calibrated"].values()) for c in clips])
    return f


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, rounds: int = 50) -> np.ndarray:
    """Weights (bias first) by Newton's method with an L2 penalty on the non-bias weights."""
    x1 = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x1.shape[1])
    reg = np.eye(len(w)) * l2
    reg[0, 0] = 0
    for _ in range(rounds):
        p = 1 / (1 + np.exp(-x1 @ w))
        grad = x1.T @ (p - y) + reg @ w
        hess = (x1 * (p * (1 - p))[:, None]).T @ x1 + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def cross_validated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(y))
    out = np.zeros(len(y))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        w = fit_logistic((x[train] - mu) / sd, y[train])
        out[test] = np.hstack([np.ones((len(test), 1)), (x[test] - mu) / sd]) @ w
    return out


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR / "calibration_experiment.json"
    data = json.loads(path.read_text())
    for run in data["runs"]:
        clips = run.get("per_clip")
        if not clips:
            print(f"{run['run']}: no per-clip rows (re-run calibration_experiment.py)")
            continue
        bad = np.array([any(c["wrong"].values()) for c in clips])
        f = features(clips)
        rows = []
        for name, v in f.items():  # low scores are the suspicious ones, except the counts
            suspicious = v if name in ("disagree", "expected wrong fields") else -v
            rows.append([name, round(_auroc(suspicious, bad), 3)])
        fields = list(clips[0]["raw"])
        combos = {
            "all calibrated fields": [f"calibrated:{n}" for n in fields],
            "calibrated fields + caption": [f"calibrated:{n}" for n in fields] + ["caption"],
            "calibrated fields + caption + mean logprob": [f"calibrated:{n}" for n in fields]
                                                         + ["caption", "mean logprob"],
            "everything one pass": [f"raw:{n}" for n in fields] + [f"calibrated:{n}" for n in fields]
                                   + ["caption", "mean logprob"],
            "everything + re-sampling": [f"raw:{n}" for n in fields] + [f"calibrated:{n}" for n in fields]
                                        + ["caption", "mean logprob", "disagree"],
        }
        y = bad.astype(float)
        for name, cols in combos.items():
            x = np.stack([f[c] for c in cols], 1)
            rows.append([f"logistic, 5-fold: {name}", round(_auroc(cross_validated(x, y), bad), 3)])
        print(f"\n{run['run']} on {run['split']}: {int(bad.sum())} of {len(bad)} clips have a wrong choice field")
        print(table(rows, ["signal (low score = suspicious)", "AUROC clip has a wrong field"]))
        assert not math.isnan(rows[0][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
