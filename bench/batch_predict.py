"""Batched prediction: batch 8 vs batch 1, and schema-constrained vs free decoding, in one run.

    python bench/batch_predict.py [--clips 16] [--model tiny:default] [--repeats 3] [--max-new-tokens 96]

Frames are sampled (and cached) before timing, so the figures are generation only (what the
Export tab and `cli.py predict` spend per clip once the frame cache is warm). The four settings
(batch 1/8 x free/constrained) run round-robin in a rotating order within each repeat; each one's
figure is its best repeat. The embedded base is random, so free decoding runs to max_new_tokens
while constrained decoding closes its JSON earlier: compare constrained and free per generated
token (the mask's cost per decoding step), and batch 8 vs 1 per clip at the same setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--model", default="tiny:default")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=96)
    args = p.parse_args(argv)

    import torch

    from core.schema.base import load_schema
    from core.serve.predictor import Predictor
    from core.video.frames import sample_frames

    info = machine()
    print(f"machine: {machine_line(info)}")
    samples = REPO_ROOT / "sample_videos"
    t0 = time.perf_counter()
    predictor = Predictor.load(args.model, schema=load_schema(samples / "schema.json"))
    load_s = time.perf_counter() - t0
    clips = sorted((samples / "videos").glob("*.mp4"))[: args.clips]
    frames = [sample_frames(c, predictor.spec.sampling_spec) for c in clips]
    print(f"model {args.model} (loaded in {load_s:.1f}s) · {len(clips)} clips · max_new_tokens={args.max_new_tokens} · "
          f"torch threads {torch.get_num_threads()} · device {predictor.device}")
    t0 = time.perf_counter()
    predictor.generate(frames[:1], args.max_new_tokens, constrained=True)  # compiles and caches the grammar
    first_constrained_s = time.perf_counter() - t0
    predictor.generate(frames[:2], args.max_new_tokens)  # warm-up

    settings = [(bs, con) for con in (False, True) for bs in (1, 8)]
    times = {s: [] for s in settings}
    tokens = {s: 0 for s in settings}
    for r in range(args.repeats):
        for bs, con in settings[r % 4:] + settings[:r % 4]:
            n_tokens = 0
            t0 = time.perf_counter()
            for i in range(0, len(frames), bs):
                n_tokens += sum(n for _, n in predictor.generate(frames[i:i + bs], args.max_new_tokens, constrained=con))
            times[(bs, con)].append(time.perf_counter() - t0)
            tokens[(bs, con)] = n_tokens
    rows, out = [], {}
    for bs, con in settings:
        best = min(times[(bs, con)])
        key = f"batch{bs}_{'constrained' if con else 'free'}"
        out[key] = {"best_s": round(best, 3), "clips_per_s": round(len(frames) / best, 2),
                    "new_tokens": tokens[(bs, con)], "ms_per_token_row": round(1000 * best / tokens[(bs, con)], 3),
                    "repeats_s": [round(t, 3) for t in times[(bs, con)]],
                    "spread": round((max(times[(bs, con)]) - best) / best, 3)}
        rows.append([bs, "constrained" if con else "free", f"{best:.2f}", f"{len(frames) / best:.2f}",
                     tokens[(bs, con)], f"{1000 * best / tokens[(bs, con)]:.2f}", f"{out[key]['spread']:.0%}"])
    ratios = {
        "batch8_over_batch1_free": round(out["batch8_free"]["clips_per_s"] / out["batch1_free"]["clips_per_s"], 2),
        "batch8_over_batch1_constrained": round(out["batch8_constrained"]["clips_per_s"]
                                                / out["batch1_constrained"]["clips_per_s"], 2),
        "constrained_over_free_per_token_batch1": round(out["batch1_constrained"]["ms_per_token_row"]
                                                        / out["batch1_free"]["ms_per_token_row"], 2),
        "constrained_over_free_per_token_batch8": round(out["batch8_constrained"]["ms_per_token_row"]
                                                        / out["batch8_free"]["ms_per_token_row"], 2),
        "first_constrained_call_s": round(first_constrained_s, 3),
    }
    print(f"\n### batched prediction ({len(frames)} clips, best of {args.repeats})")
    print(table(rows, ["batch", "decoding", "best s", "clips/s", "new tokens", "ms per token per row", "spread"]))
    print(f"batch 8 / batch 1 clips/s: free {ratios['batch8_over_batch1_free']}x, constrained "
          f"{ratios['batch8_over_batch1_constrained']}x; constrained / free time per token: batch 1 "
          f"{ratios['constrained_over_free_per_token_batch1']}x, batch 8 {ratios['constrained_over_free_per_token_batch8']}x; "
          f"first constrained call (grammar compile + 1 clip) {first_constrained_s:.2f}s")
    result = {"machine": info, "args": vars(args), "settings": out, "ratios": ratios}
    save_result("batch_predict", result)
    return result


if __name__ == "__main__":
    main()
