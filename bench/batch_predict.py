"""Batch size 8 vs 1 for prediction with the embedded default, measured side by side in one run.

    python bench/batch_predict.py [--clips 32] [--model tiny:default] [--constrained] [--repeats 2]

Frames are sampled (and cached) before timing, so the figures are generation only. Prints
clips/s for each batch size and the ratio; BENCHMARKS.md records the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--model", default="tiny:default")
    p.add_argument("--constrained", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=96)
    args = p.parse_args()

    import torch

    from core.inference import Predictor
    from core.paths import REPO_ROOT
    from core.schema import load_schema
    from core.video import sample_frames

    samples = REPO_ROOT / "sample_videos"
    predictor = Predictor.load(args.model, schema=load_schema(samples / "schema.json"))
    clips = sorted((samples / "videos").glob("*.mp4"))[: args.clips]
    frames = [sample_frames(c, predictor.spec.sampling_spec) for c in clips]
    print(f"model {args.model} · {len(clips)} clips · constrained={args.constrained} · "
          f"max_new_tokens={args.max_new_tokens} · torch threads {torch.get_num_threads()} · device {predictor.device}")
    predictor.generate(frames[:2], args.max_new_tokens, constrained=args.constrained)  # warm-up
    best = {}
    for bs in (1, 8):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(0, len(frames), bs):
                predictor.generate(frames[i:i + bs], args.max_new_tokens, constrained=args.constrained)
            times.append(time.perf_counter() - t0)
        best[bs] = min(times)
        print(f"batch {bs}: {best[bs]:.2f} s  ({len(frames) / best[bs]:.1f} clips/s, best of {args.repeats})")
    print(f"batch 8 / batch 1 throughput: {best[1] / best[8]:.2f}x")


if __name__ == "__main__":
    main()
