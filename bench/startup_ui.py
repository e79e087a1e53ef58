"""Start-up and UI latency: `python app.py` to HTTP 200 (vs LLaMA-Factory's web UI), and time to
the first streamed side of a Compare (vs the whole comparison, which a non-streaming handler
would wait for).

    python bench/startup_ui.py [--repeats 3] [--compares 3] [--lf-venv /tmp/lf-venv]

Start-up: each app is started as its own process on a free port and `GET /` is polled every 50 ms
until it answers 200; the process's RSS is read then (no model is loaded at start: the RSS says
so), and the process is ended by its pid. Ours and LLaMA-Factory's (`llamafactory-cli webui`, in
its own venv; skipped if absent) alternate. Compare: a two-step training run of the embedded tiny
model is made in a temp folder, the Compare tab's own generator (`tabs.compare.run_compare`) is
driven in-process once to load the models, then timed on further clips: time to the frames, to
the first side (base) and to the end (both sides).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()

BOOT_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """RSS of a process and its children (LLaMA-Factory's CLI runs the UI in a child)."""
    total = 0.0
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        pids += [int(x) for x in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return round(total, 1)


def time_to_200(cmd: list[str], env: dict, cwd: Path) -> dict:
    port = free_port()
    env = {**env, "GRADIO_SERVER_PORT": str(port), "VVW_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.perf_counter() - t0 < BOOT_TIMEOUT_S:
            if proc.poll() is not None:
                log.seek(0)
                return {"error": f"exited {proc.returncode}: {log.read()[-2000:].decode(errors='replace')}"}
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return {"seconds": round(time.perf_counter() - t0, 2), "rss_mib": rss_mib(proc.pid)}
            except OSError:
                pass
            time.sleep(0.05)
        return {"error": f"no HTTP 200 within {BOOT_TIMEOUT_S}s"}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we started (start_new_session), nothing else
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def startup(repeats: int, lf_venv: Path, runs_dir: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    sides = {"ours": ([sys.executable, str(REPO_ROOT / "app.py"), "--runs", str(runs_dir)], REPO_ROOT)}
    if (lf_venv / "bin" / "llamafactory-cli").exists():
        sides["llamafactory"] = ([str(lf_venv / "bin" / "llamafactory-cli"), "webui"], Path(tempfile.gettempdir()))
    out = {k: [] for k in sides}
    names = list(sides)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            cmd, cwd = sides[name]
            res = time_to_200(cmd, env, cwd)
            out[name].append(res)
            print(f"  {name} start {r}: {res}")
    return out


def make_run(work: Path) -> Path:
    """A finished two-step run of tiny:default on four clips (what Compare needs)."""
    from core.data.dataset import load_dataset

    src = REPO_ROOT / "sample_videos"
    data = work / "data"
    (data / "videos").mkdir(parents=True)
    shutil.copy(src / "schema.json", data / "schema.json")
    lines = []
    for s in load_dataset(src).split("train")[:4]:
        shutil.copy(s.video, data / "videos" / s.video.name)
        lines.append(__import__("json").dumps({"video": f"videos/{s.video.name}", "split": "train", **s.label}))
    (data / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    run = work / "runs" / "bench-run"
    subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "train", "--dataset", str(data), "--output", str(run),
                    "--max-steps", "2", "--batch-size", "2", "--save-steps", "1000", "--warmup-steps", "0"],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return run


def compare_latency(run: Path, n: int) -> dict:
    """Drive the Compare tab's generator on `n` clips, as shipped and with the status line replaced
    by a constant, alternating. Before 77bbe36 the shipped status line took the model manager's lock
    (held by the compare worker until both sides were done), so nothing streamed: the first side
    arrived with the second. The constant variant is the control: the two must now agree."""
    from core.workspace import Workspace
    from tabs.compare import RUNS_BASE, SCHEMA_PROMPT, run_compare

    ws = Workspace(dataset_dir=REPO_ROOT / "sample_videos", runs_dir=run.parent)
    shipped_status = ws.models.status_line
    rels = [c.rel for c in ws.store.clips(check_video=False)][: n + 1]

    def once(rel, lock_free: bool):
        # every yield calls ModelManager.status_line(); it must not wait for the compare worker
        ws.models.status_line = (lambda: "status") if lock_free else shipped_status
        t0 = time.perf_counter()
        marks = []
        for _ in run_compare(ws, rel, None, str(run), RUNS_BASE, SCHEMA_PROMPT, "", False):
            marks.append(time.perf_counter() - t0)
        return marks  # [frames, base side, fine-tuned side] as the UI receives them

    t0 = time.perf_counter()
    once(rels[0], False)  # loads both models
    cold = time.perf_counter() - t0
    out = {"cold_first_compare_s": round(cold, 2)}
    marks = {"shipped": [], "lock_free_status": []}
    for i, rel in enumerate(rels[1:]):
        for variant in (["shipped", "lock_free_status"] if i % 2 == 0 else ["lock_free_status", "shipped"]):
            marks[variant].append(once(rel, variant == "lock_free_status"))
    for variant, rows in marks.items():
        first = [m[1] for m in rows]
        full = [m[-1] for m in rows]
        out[variant] = {"frames_s": [round(m[0], 3) for m in rows], "first_side_s": [round(x, 3) for x in first],
                        "full_s": [round(x, 3) for x in full], "frames_median_s": round(statistics.median(m[0] for m in rows), 3),
                        "first_side_median_s": round(statistics.median(first), 3),
                        "full_median_s": round(statistics.median(full), 3),
                        "first_over_full": round(statistics.median(a / b for a, b in zip(first, full)), 2)}
    ws.models.status_line = shipped_status
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compares", type=int, default=3)
    p.add_argument("--lf-venv", default="/tmp/lf-venv")
    args = p.parse_args(argv)
    info = machine()
    print(f"machine: {machine_line(info)}")
    work = Path(tempfile.mkdtemp(prefix="vvw-bench-ui-"))
    try:
        (work / "runs").mkdir()
        boot = startup(args.repeats, Path(args.lf_venv), work / "runs")
        run = make_run(work)
        cmp = compare_latency(run, args.compares)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    best = {}
    for name, runs in boot.items():
        ok = [r for r in runs if "seconds" in r]
        if not ok:
            rows.append([name, "failed: " + runs[0].get("error", "")[:100], "", ""])
            continue
        best[name] = min(r["seconds"] for r in ok)
        rows.append([{"ours": "ours: python app.py", "llamafactory": "LLaMA-Factory 0.9.5: llamafactory-cli webui"}[name],
                     f"{best[name]:.1f}", f"{statistics.median(r['seconds'] for r in ok):.1f}",
                     f"{min(r['rss_mib'] for r in ok):.0f}"])
    print(f"\n### start-up to HTTP 200 (best and median of {args.repeats})")
    print(table(rows, ["app", "best s", "median s", "RSS at 200 MiB"]))
    ratio = round(best["llamafactory"] / best["ours"], 2) if len(best) == 2 else None
    if ratio:
        print(f"LLaMA-Factory web UI / ours start-up time: {ratio}x")
    print(f"\n### Compare tab, warm models ({args.compares} clips; first compare incl. model load "
          f"{cmp['cold_first_compare_s']}s)")
    sh, lf = cmp["shipped"], cmp["lock_free_status"]
    print(table([["frames shown", f"{sh['frames_median_s']:.2f}", f"{lf['frames_median_s']:.2f}"],
                 ["first side (base) streamed", f"{sh['first_side_median_s']:.2f}", f"{lf['first_side_median_s']:.2f}"],
                 ["both sides (= non-streaming)", f"{sh['full_median_s']:.2f}", f"{lf['full_median_s']:.2f}"]],
                ["event (median s)", "as shipped", "constant status line (control)"]))
    print(f"first side arrives at {sh['first_over_full']:.0%} of the full comparison's time as shipped, "
          f"{lf['first_over_full']:.0%} with a constant status line (control)")
    result = {"machine": info, "args": vars(args), "startup": boot, "startup_ratio_lf_over_ours": ratio,
              "compare": cmp}
    save_result("startup_ui", result)
    return result


if __name__ == "__main__":
    main()
