"""Batch prediction engines side by side: the local engine serial (before the loader thread) and with
its loader thread, vs Ray Data with 1 and 2 model workers; on the bundled clips, then on long 720p clips.

    python bench/ray_predict.py [--limit 16] [--input DIR] [--model tiny:default] [--batch-size 4]
                                [--max-new-tokens 64] [--repeats 1] [--warm] [--long-clips 3] [--long-seconds 20]

Each setting runs `predict_to_file` (the call behind `cli.py predict`) over the same clips into a
fresh output; per repeat the settings run in a rotating order. Figures per setting: wall seconds
(including model loading, and for Ray starting a local Ray and its actors: the overhead a real run
pays), clips/s, and the share of time the model waited for sampled frames (`data_wait_share`: the
local engine's loader thread; Ray's model actors idle between batches). By default every run starts
with an empty frame cache (so every clip is decoded: what overlap is for); `--warm` shares one cache
(generation only, after a first pass fills it). The long case generates `--long-clips` distinct
1280x720 30 fps H.264 clips (GOP 60; bench/video_decode.py's generator, not timed) and runs the same
settings on them (0: skip). Do not run while other jobs load the machine: Ray's workers compete for
the same cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()

SETTINGS = {"local, serial (before)": {"engine": "local", "prefetch": 0},
            "local, prefetch 2 (after)": {"engine": "local", "prefetch": 2},
            "ray-1": {"engine": "ray", "num_workers": 1}, "ray-2": {"engine": "ray", "num_workers": 2}}


def clips_folder(source: Path, limit: int, into: Path) -> Path:
    """The first `limit` media files of `source` (links), with its schema.json when it has one."""
    from core.serve.batch import list_inputs

    into.mkdir(parents=True)
    for key, path in list_inputs(source)[:limit]:
        (into / key.replace("/", "__")).symlink_to(path.resolve())
    schema = source / "schema.json" if (source / "schema.json").is_file() else source.parent / "schema.json"
    if schema.is_file():
        shutil.copy(schema, into / "schema.json")
    return into


def fresh_cache(root: Path, models: Path, name: str) -> None:
    """Point VVW_CACHE_DIR at an empty frame cache that shares the built models."""
    from core.video import cache as frame_cache

    cache = root / name
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(models)
    os.environ["VVW_CACHE_DIR"] = str(cache)
    frame_cache.forget_memo()


def run_case(label: str, folder: Path, args, work: Path, models: Path) -> dict:
    """Every setting on `folder`, `args.repeats` times in rotating order; prints and returns the table."""
    from core.serve.batch import predict_to_file

    times = {s: [] for s in SETTINGS}
    waits = {s: [] for s in SETTINGS}
    n = 0
    for r in range(args.repeats):
        names = list(SETTINGS)
        for name in names[r % len(names):] + names[:r % len(names)]:
            tag = f"{label}-{name}-{r}".replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            if not args.warm:
                fresh_cache(work / "caches", models, tag)
            t0 = time.perf_counter()
            counts = predict_to_file(args.model, folder, work / f"{tag}.jsonl", batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, **SETTINGS[name])
            times[name].append(time.perf_counter() - t0)
            waits[name].append(counts.get("data_wait_share"))
            n = counts["total"]
            print(f"  {label} / {name}: {times[name][-1]:.1f}s, wait share {waits[name][-1]}, {counts['written']} rows")
    out, rows = {}, []
    for name in SETTINGS:
        best = min(times[name])
        wait = waits[name][times[name].index(best)]
        out[name] = {"best_s": round(best, 2), "clips_per_s": round(n / best, 3), "data_wait_share": wait,
                     "repeats_s": [round(t, 2) for t in times[name]]}
        rows.append([name, f"{best:.1f}", f"{n / best:.2f}", wait])
    print(f"\n### {label}: {n} clips, {'warm' if args.warm else 'cold'} frame cache, batch {args.batch_size}, "
          f"best of {args.repeats}")
    print(table(rows, ["engine", "wall s", "clips/s", "model wait share"]))
    return {"clips": n, "settings": out}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", default=str(REPO_ROOT / "sample_videos" / "videos"))
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--model", default="tiny:default")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warm", action="store_true", help="share one frame cache (default: every run decodes)")
    p.add_argument("--long-clips", type=int, default=3, help="long 720p clips for the second case (0: skip it)")
    p.add_argument("--long-seconds", type=int, default=20)
    p.add_argument("--media-dir", default="/tmp/vvw-bench-media", help="where the long clips are generated (kept)")
    args = p.parse_args(argv)

    from core.models.tiny.registry import ensure_tiny

    info = machine()
    print(f"machine: {machine_line(info)}")
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    cases = {}
    try:
        os.environ["VVW_CACHE_DIR"] = str(work / "shared")
        models = ensure_tiny("default").parent  # built once; every cache links to it
        folder = clips_folder(Path(args.input), args.limit, work / "clips")
        cases["bundled clips"] = run_case("bundled clips", folder, args, work, models)
        if args.long_clips:
            from video_decode import make_long_clip

            long_dir = work / "long"
            long_dir.mkdir()
            for i in range(args.long_clips):  # distinct content: the frame cache keys on it
                clip = make_long_clip(Path(args.media_dir) / f"long_{args.long_seconds}s_720p_gop60_{i}.mp4",
                                      args.long_seconds, seed=i)
                (long_dir / clip.name).symlink_to(clip)
            shutil.copy(folder / "schema.json", long_dir / "schema.json")
            cases["long 720p clips"] = run_case(f"long 720p clips ({args.long_seconds} s)", long_dir, args, work, models)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": info, "args": vars(args), "cases": cases}
    save_result("ray_predict", result)
    return result


if __name__ == "__main__":
    main()
