"""Helpers shared by the benchmarks: machine description, repeat-and-interleave timing, tables.

Every benchmark measures the alternatives side by side in one process run, interleaving them
round-robin within each repeat so that load from other processes on the machine lands on all of
them alike, and reports ratios of the best (and the median) repeat. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"  # JSON of the last run of each benchmark (bench/.gitignore)


def setup_path() -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def machine() -> dict:
    """What the figures ran on: CPU model, cores, RAM, load average, key library versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    info = {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1), "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    for mod in ("torch", "transformers", "peft", "av", "cv2", "numpy", "xgrammar", "gradio"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing library is just not listed
            pass
    return info


def machine_line(info: dict | None = None) -> str:
    info = info or machine()
    return (f"{info['cpu']} · {info['cores']} cores · {info['ram_gib']} GiB · Python {info['python']} · "
            f"load avg {info['load_avg_at_start']}")


def interleaved(methods: dict, repeats: int) -> dict:
    """Run each zero-argument callable once per repeat, round-robin, rotating the order every
    repeat; return {name: [seconds, ...]}."""
    names = list(methods)
    times = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            methods[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def best(xs) -> float:
    return min(xs)


def median(xs) -> float:
    return statistics.median(xs)


def spread(xs) -> float:
    """(max - min) / min of the repeats: how noisy the measurement was."""
    return (max(xs) - min(xs)) / min(xs) if min(xs) > 0 else 0.0


def auroc(scores_bad, scores_good) -> float | None:
    """Chance that a bad item scores above a good one (ties half; higher = more suspicious), rounded to
    4 places; None when either side is empty. The ranking benchmarks of issue 24 all score with this."""
    bad, good = list(scores_bad), list(scores_good)
    if not bad or not good:
        return None
    pairs = sum((b > g) + 0.5 * (b == g) for b in bad for g in good)
    return round(pairs / (len(bad) * len(good)), 4)


def table(rows: list[list], headers: list[str]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(out)


def save_result(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
