"""add-clips throughput: source files per second with 1 vs 2 worker processes (core.data.ingest.ingest,
what `cli.py add-clips` and Annotate → "Add from a folder on this machine" run).

    python bench/add_clips.py [--count 200] [--cut-count 40] [--workers 1,2] [--chunk-seconds 1] [--repeats 1]
                              [--media-dir DIR]

The folder holds --count real-size clips: --distinct bundled clips re-encoded to 1280x720 at 30 fps,
5 s each (H.264, veryfast, crf 23, with grain so P-frames carry real residuals), copied to --count
files (generated once into --media-dir and reused; not timed). Two modes: "copy" (probe + copy each
clip whole) on the whole folder, and "cut" (probe + cut into --chunk-seconds pieces: decode and H.264
encode, CPU-bound, about 5 s a clip on one core) on its first --cut-count files. A time includes
starting the worker processes (spawned: about 1 s of imports each), as a user pays it.
Every timed call fills a fresh dataset folder on the --media-dir disk
(so no file is skipped as already added); the sources are read once first so every call finds them
in the page cache. Modes and worker counts are run round-robin within each repeat, the order
rotated per repeat (as bench.common.interleaved). Writes bench/results/add_clips.json and prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO_ROOT, best, machine, machine_line, median, save_result, setup_path, table  # noqa: E402

setup_path()

import numpy as np  # noqa: E402

SIZE, FPS, SECONDS = (1280, 720), 30, 5


def make_clip(src: Path, out: Path, seed: int) -> Path:
    """`src` (a bundled 160x96 clip) upscaled to 1280x720, looped to 5 s at 30 fps, with grain."""
    import av
    import cv2

    if out.exists():
        return out
    with av.open(str(src)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frames = [cv2.resize(f, SIZE, interpolation=cv2.INTER_LINEAR) for f in frames]
    grain = np.random.default_rng(seed).integers(0, 10, size=(6, SIZE[1], SIZE[0], 1), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for i in range(FPS * SECONDS):
            rgb = frames[(i * 10 // FPS) % len(frames)] + grain[i % len(grain)]  # the source is 10 fps
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(out)
    return out


def make_folder(media: Path, count: int, distinct: int) -> Path:
    """--count files (copies of --distinct re-encoded clips) in media/add_clips_<count>/."""
    bundled = sorted((REPO_ROOT / "sample_videos" / "videos").glob("*.mp4"))[:distinct]
    bases = [make_clip(src, media / "add_clips_base" / f"{src.stem}_720p.mp4", i) for i, src in enumerate(bundled)]
    folder = media / f"add_clips_{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = folder / f"cam_{i:05d}.mp4"
        if not target.exists():
            shutil.copy(bases[i % len(bases)], target)
    return folder


def warm(folder: Path) -> int:
    """Read every source once (page cache), so the first timed call is not the only one reading the disk."""
    total = 0
    for p in sorted(folder.glob("*.mp4")):
        total += len(p.read_bytes())
    return total


def run_once(files: list[Path], scratch: Path, workers: int, chunk_seconds: float | None) -> tuple[float, int, int]:
    from core.data.ingest import ingest

    dataset = Path(tempfile.mkdtemp(prefix="ds-", dir=scratch))
    try:
        t0 = time.perf_counter()
        report = ingest(dataset, files, chunk_seconds=chunk_seconds, workers=workers)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(dataset, ignore_errors=True)
    return seconds, report.added_sources, len(report.added)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=200, help="source clips in the folder (default 200)")
    p.add_argument("--cut-count", type=int, default=40, help="source clips the cut mode takes (default 40)")
    p.add_argument("--distinct", type=int, default=8, help="distinct re-encoded clips among them (default 8)")
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    p.add_argument("--chunk-seconds", type=float, default=1.0, help="piece length for the cut mode (default 1)")
    p.add_argument("--modes", default="copy,cut", help="copy, cut or both (default copy,cut)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--media-dir", default="/tmp/vvw-bench-media")
    args = p.parse_args(argv)

    info = machine()
    print(f"machine: {machine_line(info)}")
    media = Path(args.media_dir)
    t0 = time.time()
    folder = make_folder(media, args.count, args.distinct)
    size = warm(folder)
    print(f"{args.count} clips ({size / args.count / 2**20:.1f} MiB each, {SIZE[0]}x{SIZE[1]} {FPS} fps {SECONDS} s) "
          f"in {folder}, ready in {time.time() - t0:.1f}s (not timed)")
    modes = {"copy": None, "cut": args.chunk_seconds}
    sources = sorted(folder.glob("*.mp4"))
    files = {"copy": sources, "cut": sources[: args.cut_count]}
    cases = [(m, w) for m in args.modes.split(",") for w in (int(x) for x in args.workers.split(","))]
    times = {c: [] for c in cases}
    clips = {}
    scratch = Path(tempfile.mkdtemp(prefix="vvw-bench-add-clips-", dir=media))
    try:
        for r in range(args.repeats):
            for mode, workers in cases[r % len(cases):] + cases[:r % len(cases)]:
                seconds, added, written = run_once(files[mode], scratch, workers, modes[mode])
                assert added == len(files[mode]), f"{mode}/{workers}: {added} of {len(files[mode])} added"
                times[(mode, workers)].append(seconds)
                clips[(mode, workers)] = written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows, out = [], []
    for mode, workers in cases:
        t = times[(mode, workers)]
        base = best(times[(mode, int(args.workers.split(",")[0]))])
        label = "copy whole" if mode == "copy" else f"cut into {args.chunk_seconds:g} s"
        n = len(files[mode])
        rows.append([label, n, workers, f"{n / best(t):.2f}", f"{n / median(t):.2f}",
                     f"{size * n / args.count / best(t) / 2**20:.1f}", clips[(mode, workers)], f"{base / best(t):.2f}x"])
        out.append({"mode": mode, "files": n, "workers": workers, "seconds": t, "files_per_s_best": n / best(t),
                    "clips_written": clips[(mode, workers)]})
    print(table(rows, ["mode", "files", "workers", "files/s (best)", "files/s (median)", "MiB/s read",
                       "clips written", "speed-up"]))
    result = {"machine": info, "args": vars(args), "bytes": size, "cases": out, "seconds": round(time.time() - t0, 1)}
    save_result("add_clips", result)
    return result


if __name__ == "__main__":
    main()
