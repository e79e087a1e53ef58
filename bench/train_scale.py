"""Training at scale: peak memory and time to the first optimiser step against the number of clips.

    python bench/train_scale.py [--sizes 30 240 2000] [--before REV] [--before-sizes 30 240 720]
                                [--repeats 1] [--mem-limit-gib 16] [--steps 2] [--work /tmp/vvw-train-scale]

Each run is `python cli.py train` in a fresh process on N distinct clips (made by
sample_videos/generate.py, cached in the work folder) with the tiny Qwen2.5-VL build at its
family's default geometry (448x252, 8 frames: what a real Qwen2.5-VL trains on), batch 8,
`--steps` optimiser steps, an empty frame cache per run (so start-up includes whatever decoding the
trainer does before step 1), logging every step.

Figures per run:
- peak PSS of the whole process tree (training process + loader workers + anything else it starts),
  read from /proc/PID/smaps_rollup every 0.1 s: PSS counts pages shared between a process and its
  forked workers once, so the sum is the tree's real memory;
- time to the first optimiser step: from starting the command to the `time` of the first metrics
  line (written when step 1 ends), and to the log line that ends start-up (the clip checks, or the
  old code's up-front encoding).

`--before REV` runs the same command on another revision of this repository (a `git worktree` in
the work folder), e.g. the last commit before streaming, at `--before-sizes`. A run whose tree
passes `--mem-limit-gib` is killed and reported as such (the old code at 2,000 clips would need
~22 GB, this whole machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, table  # noqa: E402

GEOMETRY = ["--frame-width", "448", "--frame-height", "252", "--num-frames", "8"]
GiB = 1 << 30


def make_clips(work: Path, n: int) -> Path:
    """N distinct generated clips (one generator run, reused), all in the train split."""
    pool = work / f"pool-{n}"
    if not (pool / "metadata.jsonl").is_file():
        shutil.rmtree(pool, ignore_errors=True)
        subprocess.run([sys.executable, str(REPO_ROOT / "sample_videos" / "generate.py"), "--seed", "11",
                        "--count", str(n), "--out", str(pool)], check=True)
        rows = [json.loads(line) for line in (pool / "metadata.jsonl").read_text().splitlines()]
        for r in rows:
            r["split"] = "train"
        (pool / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pool


def subset(pool: Path, work: Path, n: int) -> Path:
    """A dataset of the pool's first n clips (hard links: no copies)."""
    out = work / f"data-{n}"
    if (out / "metadata.jsonl").is_file():
        return out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copy(pool / "schema.json", out / "schema.json")
    rows = [json.loads(line) for line in (pool / "metadata.jsonl").read_text().splitlines()][:n]
    for r in rows:
        dst = out / r["video"]
        if not dst.exists():
            os.link(pool / r["video"], dst)
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def tree_pss(root: int) -> int:
    """PSS bytes of `root` and every descendant (children found through /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) * 1024 if m else 0
    return total


def run_once(code: Path, data: Path, work: Path, steps: int, limit: int) -> dict:
    out = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    env = {**os.environ, "VVW_CACHE_DIR": str(Path(tempfile.mkdtemp(dir=work, prefix="cache-")))}
    cmd = [sys.executable, str(code / "cli.py"), "train", "--dataset", str(data), "--output", str(out / "run"),
           "--model", "tiny:qwen2_5_vl", *GEOMETRY, "--max-steps", str(steps), "--logging-steps", "1",
           "--save-steps", "0", "--warmup-steps", "0"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, killed = 0, False
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc.pid))
        if peak > limit:
            killed = True
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)
            proc.kill()
            break
        time.sleep(0.1)
    err = proc.communicate()[1]
    wall = time.time() - t0
    result = {"peak_pss_mib": round(peak / 2 ** 20), "wall_s": round(wall, 1), "killed": killed,
              "rc": proc.returncode}
    metrics = out / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    first = next((r for r in rows if "loss" in r), None)
    if first is not None:
        result["first_step_s"] = round(first["time"] - t0, 1)
    log = (out / "run" / "train.log")
    text = log.read_text() if log.is_file() else ""
    m = re.search(r"(?:encoded|checked) (\d+) clips in ([\d.]+)s", text)
    if m:
        result["startup_clips_s"] = float(m.group(2))
    if proc.returncode not in (0, None) and not killed:
        result["error"] = err[-600:]
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(env["VVW_CACHE_DIR"], ignore_errors=True)
    return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median peak (a killed run counts as the highest), with the peaks' range."""
    ordered = sorted(runs, key=lambda r: (r["killed"], r["peak_pss_mib"]))
    mid = dict(ordered[len(ordered) // 2])
    peaks = [r["peak_pss_mib"] for r in runs if not r["killed"]]
    mid["range"] = f"{min(peaks)}-{max(peaks)}" if len(peaks) > 1 else "one run"
    return mid


def worktree(rev: str, work: Path) -> Path:
    path = work / f"code-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[30, 240, 2000])
    p.add_argument("--before", default="", help="a git revision to measure too (the code before streaming)")
    p.add_argument("--before-sizes", type=int, nargs="+", default=[30, 240, 720])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="runs per size (the table shows the median, and the range)")
    p.add_argument("--mem-limit-gib", type=float, default=16.0)
    p.add_argument("--work", default="/tmp/vvw-train-scale")
    args = p.parse_args(argv)

    from_root = Path(args.work)
    from_root.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO_ROOT))
    from core.models.tiny.registry import ensure_tiny

    ensure_tiny("qwen2_5_vl")
    pool = make_clips(from_root, max(args.sizes + (args.before_sizes if args.before else [])))
    sides = [("after", REPO_ROOT, args.sizes)]
    if args.before:
        sides.insert(0, (f"before ({args.before})", worktree(args.before, from_root), args.before_sizes))
    limit = int(args.mem_limit_gib * GiB)
    results: dict = {"machine": machine(), "steps": args.steps, "runs": []}
    for rep in range(args.repeats):
        for side, code, sizes in sides:
            for n in sizes:
                r = run_once(code, subset(pool, from_root, n), from_root, args.steps, limit)
                r.update(side=side, clips=n, repeat=rep)
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
    rows = []
    for side, _, sizes in sides:
        cells = [_median_run([r for r in results["runs"] if r["side"] == side and r["clips"] == n]) for n in sizes]
        first = cells[0]
        for c in cells:
            if c is not first and not (c["killed"] or first["killed"]):
                c["mib_per_extra_clip"] = round((c["peak_pss_mib"] - first["peak_pss_mib"]) / (c["clips"] - first["clips"]), 3)
            peak = f"> {args.mem_limit_gib:g} GiB, killed" if c["killed"] else f"{c['peak_pss_mib']} ({c['range']})"
            rows.append([side, c["clips"], peak, c.get("mib_per_extra_clip", "–"), c.get("startup_clips_s", "–"),
                         c.get("first_step_s", "–"), c["wall_s"]])
    print(machine_line(results["machine"]))
    print(table(rows, ["code", "clips", "peak PSS MiB, tree (range)", "MiB per clip beyond the first size",
                       "clip start-up s", "first step s", "wall s"]))
    save_result("train_scale", results)
    return results


if __name__ == "__main__":
    main()
