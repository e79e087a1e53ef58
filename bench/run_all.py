"""Every benchmark, one after another (never two at once), then one table of the headline ratios.

    python bench/run_all.py [--quick] [--skip-lf] [--only video,train,predict,ui,scale]

Each benchmark runs as its own process (so one's threads and memory do not colour the next) and
writes bench/results/<name>.json; this script then prints the headline table with each target and
whether it was met. BENCHMARKS.md records a run of it. About 6 minutes on 2 idle cores, 20 with
the cores shared with 4-5 other busy processes (the ratios are measured side by side, so they
hold better than the absolute figures; see BENCHMARKS.md for how far they moved).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, RESULTS_DIR, git_rev, machine, machine_line, table  # noqa: E402

BENCH = Path(__file__).resolve().parent
STEPS = {
    "video": ("video_decode.py", [], ["--clips", "12", "--repeats", "2", "--long-repeats", "1"]),
    "train": ("train_throughput.py", ["--clips", "64", "--steps", "20", "--repeats", "2"],
              ["--clips", "16", "--steps", "8", "--repeats", "1"]),
    "predict": ("batch_predict.py", ["--clips", "16", "--repeats", "2", "--max-new-tokens", "64"],
                ["--clips", "8", "--repeats", "1", "--max-new-tokens", "32"]),
    "ui": ("startup_ui.py", ["--repeats", "2", "--compares", "2"], ["--repeats", "1", "--compares", "1"]),
    "scale": ("scale_estimate.py", [], []),
}
RESULT_FILES = {"video": "video_decode", "train": "train_throughput", "predict": "batch_predict", "ui": "startup_ui",
                "scale": "scale_estimate"}


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{RESULT_FILES[name]}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def headline() -> list[list]:
    rows = []
    v = load("video")
    if v:
        for case in v["cases"]:
            r = case["ratios"]
            short = case["label"].startswith("bundled")
            rows.append([f"video {case['label']}: first epoch vs best alternative ({r['best_alternative'][:3]})",
                         f"{r['first_vs_best_alt_best']:.2f}x", ">= 1.0x (short)" if short else ">= 1.5x (long)",
                         verdict(r["first_vs_best_alt_best"] >= (1.0 if short else 1.5))])
            rows.append([f"video {case['label']}: cached epoch (new process) vs (a) decode-all",
                         f"{r['cached_epoch_vs_a_best']:.0f}x", ">= 20x", verdict(r["cached_epoch_vs_a_best"] >= 20)])
            rows.append([f"video {case['label']}: one cached clip, index re-read per clip, vs (a)",
                         f"{r['cached_vs_a_best']:.0f}x", "", ""])
            bad = [k for k, c in case["checks"].items() if not c["ok"]]
            rows.append([f"video {case['label']}: same frames as reference (mean abs diff <= 3)",
                         "all" if not bad else "differ: " + ", ".join(bad), "all", verdict(not bad)])
    t = load("train")
    if t:
        s = t["summary"]
        for side in ("llamafactory", "llamafactory_nogc"):
            x = s.get(side) or {}
            label = "LLaMA-Factory defaults" if side == "llamafactory" else "LLaMA-Factory, grad. ckpt off"
            if x.get("ours_over_this_samples_per_s"):
                rows.append([f"train samples/s: ours vs {label}", f"{x['ours_over_this_samples_per_s']:.2f}x",
                             ">= 1.3x", verdict(x["ours_over_this_samples_per_s"] >= 1.3)])
                rows.append([f"train peak RSS: {label} / ours", f"{x['this_over_ours_rss']:.2f}x", "", ""])
            else:
                rows.append([f"train samples/s: ours vs {label}", "LLaMA-Factory did not run", ">= 1.3x", "n/a"])
        o = s["ours"]
        rows.append(["train: ours, fraction of step time waiting for data",
                     f"{o['data_wait']:.1%}" if o["data_wait"] is not None else "?", "< 5%",
                     verdict(o["data_wait"] is not None and o["data_wait"] < 0.05)])
        rows.append(["train: ours samples/s, peak RSS", f"{o['samples_per_s']} /s, {o['peak_rss_mib']:.0f} MiB", "", ""])
    p = load("predict")
    if p:
        r = p["ratios"]
        rows.append(["predict: batch 8 vs batch 1 clips/s (free / constrained)",
                     f"{r['batch8_over_batch1_free']}x / {r['batch8_over_batch1_constrained']}x", "", ""])
        rows.append(["predict: constrained / free time per token (batch 1 / 8)",
                     f"{r['constrained_over_free_per_token_batch1']}x / {r['constrained_over_free_per_token_batch8']}x",
                     "", ""])
    u = load("ui")
    if u:
        ok = [x["seconds"] for x in u["startup"]["ours"] if "seconds" in x]
        if ok:
            rows.append(["ui: python app.py to HTTP 200", f"{min(ok):.1f} s", "", ""])
        if u.get("startup_ratio_lf_over_ours"):
            rows.append(["ui: LLaMA-Factory web UI / ours start-up", f"{u['startup_ratio_lf_over_ours']:.2f}x", "", ""])
        c = u["compare"]
        rows.append(["ui: compare, first side / both sides (as shipped)", f"{c['shipped']['first_over_full']:.0%}",
                     "< 100% (streams)", verdict(c["shipped"]["first_over_full"] < 0.95)])
        rows.append(["ui: compare, first side / both sides (control: constant status line)",
                     f"{c['lock_free_status']['first_over_full']:.0%}", "", ""])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not for BENCHMARKS.md)")
    p.add_argument("--skip-lf", action="store_true", help="do not run LLaMA-Factory (train, ui)")
    p.add_argument("--only", help="comma-separated subset of " + ",".join(STEPS))
    p.add_argument("--table-only", action="store_true", help="print the table from the last results")
    args = p.parse_args(argv)
    info = machine()
    print(f"machine: {machine_line(info)} · commit {git_rev()}")
    if not args.table_only:
        chosen = args.only.split(",") if args.only else list(STEPS)
        t_all = time.time()
        for name in chosen:
            script, full, quick = STEPS[name]
            extra = quick if args.quick else full
            if args.skip_lf and name in ("train",):
                extra = [*extra, "--skip-lf"]
            if args.skip_lf and name == "ui":
                extra = [*extra, "--lf-venv", "/nonexistent"]
            cmd = [sys.executable, str(BENCH / script), *extra]
            print(f"\n===== {name}: {' '.join(cmd[1:])}  (load avg {os.getloadavg()[0]:.2f})", flush=True)
            t0 = time.time()
            rc = subprocess.call(cmd, cwd=REPO_ROOT)
            print(f"===== {name} finished in {time.time() - t0:.0f}s (exit {rc})", flush=True)
        print(f"\nall benchmarks: {time.time() - t_all:.0f}s")
    print("\n## Headline figures (ratios measured side by side in one run)")
    print(table(headline(), ["figure", "measured", "target", "verdict"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
