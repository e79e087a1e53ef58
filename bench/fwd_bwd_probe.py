"""Forward + backward of the tiny model on one fixed batch, with no trainer around it.

    python bench/fwd_bwd_probe.py MODEL_DIR CLIP.mp4 [--iters 6] [--batch 8] [--profile]

Runs unchanged in our venv and in LLaMA-Factory's (standard library, numpy, PyAV, torch,
transformers only), so the two library stacks (torch + transformers versions) can be compared on
exactly the same computation: 8 frames decoded with PyAV and resized to 96x64, encoded by the model
folder's own processor, the batch repeated, full-parameter fwd+bwd in fp32. Prints one JSON line:
median seconds per iteration, library versions and, with --profile, the slowest operators.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("clip")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()

    import av
    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    with av.open(args.clip) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    idx = [1, 5, 8, 12, 15, 19, 23, 26]
    video = np.stack([np.asarray(Image.fromarray(frames[i]).resize((96, 64), Image.Resampling.BILINEAR)) for i in idx])
    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    model.train()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the clip."}]},
                {"role": "assistant", "content": [{"type": "text", "text": '{"event_type":"no_incident"}' * 6}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    from transformers.video_utils import VideoMetadata

    meta = VideoMetadata(total_num_frames=30, fps=10.0, duration=3.0, frames_indices=idx, width=160, height=96)
    enc = processor(text=[text] * args.batch, videos=[video] * args.batch, video_metadata=[meta] * args.batch,
                    do_sample_frames=False, return_tensors="pt")
    enc = dict(enc)
    enc["labels"] = enc["input_ids"].clone()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        out = model(**enc)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    result = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
              "seq": list(enc["input_ids"].shape), "pixel_values_videos": list(enc["pixel_values_videos"].shape),
              "attn": model.config._attn_implementation, "median_s": round(statistics.median(times[1:]), 4),
              "best_s": round(min(times[1:]), 4), "times": [round(t, 3) for t in times]}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = model(**enc)
            out.loss.backward()
        avg = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        result["top_ops_ms"] = [(e.key, round(e.self_cpu_time_total / 1000, 1)) for e in avg]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
