"""The estimate at real model sizes: `cli.py estimate` against one real training run, per model (#26).

    python bench/real_size.py [--models qwen2.5-vl-3b,internvl3-1b,smolvlm2-2.2b] [--steps 3]
                              [--time-steps 2] [--device cpu|cuda] [--precision auto|bf16|fp32]
                              [--clips 4] [--work DIR] [--shrink-layers N] [--force] [--json]

For each model it builds the real architecture from its published config with random weights, in
a process of its own (bench/real_size_build.py, bench/real_size_configs.py: nothing is downloaded;
the tokenizer is a local one of 2,048 tokens but the config keeps the checkpoint's vocab_size, so
embeddings and head are allocated at full size), copies a few train clips of the bundled
sample_videos/ into WORK (never opening the bundle itself as a dataset), then runs the product's
own commands with LoRA, batch 1, 8 frames at the family's default size (core.models.families):

  cli.py estimate --model DIR --dataset D --json --method lora --precision P --batch-size 1
                  --num-frames 8 --frame-width W --frame-height H --device DEV --time-steps 0, then K
  cli.py train    (the same settings) --output RUN --max-steps N --logging-steps 1
                  --save-steps 100000 --no-calibrate-at-end

The first estimate (no timing, no weights loaded) decides whether the run fits: on CPU a model whose
estimate plus 1 GiB of headroom exceeds MemAvailable is skipped (reported, not run) unless --force,
because a machine without swap answers an overrun with the OOM killer. The training process is
started through this script (`_child` mode: cli.py run as __main__ with an exit hook that records
its VmHWM and, on CUDA, torch's peak counters).

Precision `auto` (the default): bf16 on CUDA, and on a CPU with native bf16 (avx512_bf16 or AMX);
fp32 on other CPUs. There PyTorch runs the backward's bf16 matrix products through its reference
GEMM: 0.3 GFLOP/s against 61 in fp32 for a 128x11008 @ 11008x2048 product on one AMD EPYC (Zen 3,
AVX2) core, so one bf16 step of a 3B model takes hours. `--precision bf16` forces it anyway.

Measured memory (`measured_mib`):
  cpu   the peak over steps 2..N of the training process's RSS plus the private memory (USS) of its
        children (the data loader worker), sampled every 0.1 s (children every 1 s). The whole tree
        counts (the project measures memory for the whole process tree); a forked worker maps the
        parent's pages, so its RSS would count the weights twice: only what it holds alone is added.
        Steps 2..N because the estimate claims the steady-state peak of a step from the second on;
        the peak over the whole process (loading included) is `whole_run_peak_mib`, and the main
        process's exact high-water mark (VmHWM: no sampling gap, worker not included) is
        `main_vmhwm_mib`. Compared with memory.total + data_path.total of the estimate (what it
        checks against host RAM on CPU).
  cuda  torch.cuda.max_memory_allocated of the training process (tensors: what the estimate models),
        with max_memory_reserved beside it (`cuda_reserved_mib`, the allocator's cache included).
        Compared with memory.total; the CUDA context is in neither.

Measured step time (`measured_s_per_step`): from the run's metrics.jsonl (a line per optimiser step):
(time of step N - time of step 1) / (N - 1). Step 1 pays for allocation and warm-up and is left out,
as the estimate's timing leaves out its warm-up step. Estimated: `duration.step_s` of the timed
estimate (mean of K steps after one warm-up).

`--shrink-layers N` keeps the real widths but only N text and N vision layers: a quick end-to-end
check of the pipeline, not a measurement of the real model. Results also go to
bench/results/real_size.json. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402
from real_size_configs import MODELS  # noqa: E402

setup_path()

MiB, GiB = 2 ** 20, 2 ** 30
POLL_S, CHILD_POLL_S = 0.1, 1.0
RUNTIME_MARGIN = GiB  # headroom against the OOM killer beyond the estimate (which counts the CPU runtime itself)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=3, help="optimiser steps of the training run (>= 2; step 1 is warm-up)")
    p.add_argument("--time-steps", type=int, default=2, help="steps the estimate times (its default is 2)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument("--clips", type=int, default=4, help="train clips copied from sample_videos/")
    p.add_argument("--work", type=Path, help="models, dataset and runs (default .cache/real-size)")
    p.add_argument("--shrink-layers", type=int, default=0, help="keep only N text and N vision layers (smoke test)")
    p.add_argument("--force", action="store_true", help="train even when the estimate says the run does not fit")
    p.add_argument("--json", action="store_true", help="one JSON object per model per line")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or args.steps < 2:
        p.error(f"unknown model(s) {unknown}" if unknown else "--steps must be >= 2")
    if args.work is None:
        from core.paths import cache_dir

        args.work = cache_dir() / "real-size"
    args.work = args.work.resolve()
    return args


def pick_precision(requested: str, device: str) -> tuple[str, str]:
    """(precision, why) for `auto`: see the module docstring."""
    if requested != "auto":
        return requested, "asked for"
    if device == "cuda":
        return "bf16", "auto: CUDA"
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if native:
        return "bf16", f"auto: the CPU has {', '.join(native)}"
    return "fp32", "auto: no avx512_bf16/amx_bf16 on this CPU (bf16 backward runs PyTorch's reference GEMM)"


# ----------------------------------------------------------------------------- the dataset


def prepare_dataset(work: Path, clips: int) -> Path:
    """WORK/dataset-N: schema.json and the first N train clips of sample_videos/, copied with plain
    file reads (opening the bundle as a dataset would leave a lock file in it)."""
    from core.layout import METADATA_FILE, SCHEMA_FILE
    from core.paths import BUNDLED_DATASET

    out = work / f"dataset-{clips}"
    if (out / METADATA_FILE).is_file():
        return out
    rows = [json.loads(line) for line in (BUNDLED_DATASET / METADATA_FILE).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "train"][:clips]
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "videos").mkdir(parents=True)
    shutil.copy2(BUNDLED_DATASET / SCHEMA_FILE, partial / SCHEMA_FILE)
    for r in rows:
        shutil.copy2(BUNDLED_DATASET / r["video"], partial / r["video"])
    (partial / METADATA_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    partial.rename(out)
    return out


# ----------------------------------------------------------------------------- memory of a process tree


class TreeMemory:
    """Samples RSS of a process (/proc/PID/statm, cheap) and the USS of its descendants
    (/proc/PID/smaps_rollup, walked every CHILD_POLL_S)."""

    def __init__(self, pid: int):
        self.pid, self.page = pid, os.sysconf("SC_PAGE_SIZE")
        self.samples, self._uss, self._uss_at = [], 0, 0.0

    def _children(self, pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                found += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
        return found + [g for c in found for g in self._children(c)]

    def _private(self, pid: int) -> int:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            return 0
        kb = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in text.splitlines()[1:]) if v.strip()}
        return (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024

    def sample(self) -> None:
        now = time.time()
        try:
            rss = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * self.page
        except OSError:
            return
        if now - self._uss_at >= CHILD_POLL_S:
            self._uss, self._uss_at = sum(self._private(c) for c in self._children(self.pid)), now
        self.samples.append({"t": now, "rss": rss, "children_uss": self._uss, "total": rss + self._uss})


def run_tracked(cmd: list[str], log: Path, env: dict) -> dict:
    """Run `cmd` (stdout to LOG.out, stderr to LOG.err) and sample its process tree every POLL_S."""
    t0 = time.time()
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO_ROOT, env=env)
        memory = TreeMemory(proc.pid)
        while proc.poll() is None:
            memory.sample()
            time.sleep(POLL_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{Path(f'{log}.err').read_text()[-3000:]}")
    return {"samples": memory.samples, "wall_s": time.time() - t0, "stdout": Path(f"{log}.out").read_text()}


def peak(samples: list[dict], start: float = 0.0, end: float = float("inf")) -> int:
    return max((s["total"] for s in samples if start <= s["t"] <= end), default=0)


# ----------------------------------------------------------------------------- the training process (child mode)


def child(out_json: str, cli_args: list[str]) -> None:
    """Run `cli.py CLI_ARGS` in this process as `python cli.py` would; write its peaks at exit."""
    import atexit
    import runpy

    sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    sys.argv = [str(REPO_ROOT / "cli.py"), *cli_args]
    atexit.register(_write_peaks, out_json)
    runpy.run_path(str(REPO_ROOT / "cli.py"), run_name="__main__")


def _write_peaks(out_json: str) -> None:
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            status[key] = int(rest.split()[0]) * 1024
    data = {"vmhwm": status.get("VmHWM"), "vmrss_at_exit": status.get("VmRSS")}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        data.update(cuda_allocated=torch.cuda.max_memory_allocated(), cuda_reserved=torch.cuda.max_memory_reserved(),
                    cuda_device=torch.cuda.get_device_name())
    Path(out_json).write_text(json.dumps(data))


# ----------------------------------------------------------------------------- one model


def settings(args, name: str) -> list[str]:
    """The run's flags: LoRA, batch 1, 8 frames at the family's default size (core.models.families)."""
    from core.models.families import FAMILIES

    width, height = FAMILIES[MODELS[name]["family"]].default_size
    return ["--method", "lora", "--precision", args.precision, "--batch-size", "1", "--num-frames", "8",
            "--frame-width", str(width), "--frame-height", str(height), "--device", args.device]


def available_ram() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def measure(args, name: str, dataset: Path, env: dict) -> dict:
    logs, tag = args.work / "logs", f"{name}{f'-L{args.shrink_layers}' if args.shrink_layers else ''}"
    tag += f"-{args.device}-{args.precision}"
    logs.mkdir(parents=True, exist_ok=True)
    build = [sys.executable, str(BENCH / "real_size_build.py"), name, "--work", str(args.work)]
    model_dir = Path(run_tracked(build + ["--layers", str(args.shrink_layers)], logs / f"{name}-build",
                                 env)["stdout"].strip().splitlines()[-1])
    info = json.loads((model_dir / "real_size.json").read_text())
    cli = [sys.executable, str(REPO_ROOT / "cli.py")]
    flags = ["--model", str(model_dir), "--dataset", str(dataset), *settings(args, name)]

    est = _json(run_tracked(cli + ["estimate", *flags, "--json", "--time-steps", "0"], logs / f"{tag}-estimate0", env))
    need = est["memory"]["total"] + est["data_path"]["total"] + RUNTIME_MARGIN
    if args.device == "cpu" and need > available_ram() and not args.force:
        log(f"{name}: skipped, estimated {need / GiB:.1f} GiB with runtime > {available_ram() / GiB:.1f} GiB available")
        return {"model": name, "hub_id": info["hub_id"], "device": args.device, "precision": args.precision,
                "skipped": "does not fit in the RAM available",
                "estimate_mib": round((need - RUNTIME_MARGIN) / MiB), "available_mib": round(available_ram() / MiB)}
    log(f"{name}: estimate with {args.time_steps} timed steps ...")
    est_run = run_tracked(cli + ["estimate", *flags, "--json", "--time-steps", str(args.time_steps)],
                          logs / f"{tag}-estimate", env)
    run_dir = args.work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    peaks = logs / f"{tag}-train-peaks.json"
    log(f"{name}: train {args.steps} steps ...")
    train_run = run_tracked([sys.executable, str(Path(__file__).resolve()), "_child", str(peaks), "train", *flags,
                             "--output", str(run_dir), "--max-steps", str(args.steps), "--logging-steps", "1",
                             "--save-steps", "100000", "--no-calibrate-at-end"], logs / f"{tag}-train", env)
    (logs / f"{tag}-train-samples.json").write_text(json.dumps(train_run["samples"]))
    return result(args, info, _json(est_run), est_run, train_run, _metrics(run_dir), json.loads(peaks.read_text()))


def _json(run: dict) -> dict:
    return json.loads(run["stdout"][run["stdout"].index("{"):])


def _metrics(run_dir: Path) -> list[dict]:
    from core.layout import METRICS_FILE

    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r]


def result(args, info: dict, est: dict, est_run: dict, train_run: dict, steps: list[dict], peaks: dict) -> dict:
    memory, data_path, duration = est["memory"], est["data_path"], est.get("duration") or {}
    cpu, times = args.device == "cpu", [r["time"] for r in steps]
    estimate = memory["total"] + (data_path["total"] if cpu else 0)
    measured = peak(train_run["samples"], times[0], times[-1]) if cpu else peaks.get("cuda_allocated", 0)
    step_s = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
    out = {
        "model": info["name"], "hub_id": info["hub_id"], "family": info["family"], "parameters": info["parameters"],
        "shrink_layers": args.shrink_layers or None, "device": args.device, "precision": est["precision"],
        "precision_why": args.precision_why,
        "estimate_mib": round(estimate / MiB), "measured_mib": round(measured / MiB),
        "memory_ratio": round(measured / estimate, 3) if estimate else None,
        "estimate_s_per_step": duration.get("step_s"), "measured_s_per_step": step_s,
        "time_ratio": round(step_s / duration["step_s"], 3) if step_s and duration.get("step_s") else None,
        "measured_what": ("peak over steps 2..N of the training process's RSS + its loader worker's USS, sampled "
                          "every 0.1 s" if cpu else "torch.cuda.max_memory_allocated of the training process"),
        "estimate_what": "memory.total + data_path.total" if cpu else "memory.total",
        "estimate_parts_mib": {k: round(v / MiB) for k, v in {**memory, "data_path": data_path["total"]}.items()},
        "activation_parts_mib": {k: round(v / MiB, 1) for k, v in est["activation_parts"].items()},
        "whole_run_peak_mib": round(peak(train_run["samples"]) / MiB),
        "main_vmhwm_mib": round((peaks.get("vmhwm") or 0) / MiB),
        "estimate_process_peak_mib": round(peak(est_run["samples"]) / MiB),
        "frames": est["frames"], "frame_size": est["frame_size"], "batch_size": est["batch_size"],
        "visual_tokens": est["visual_tokens"], "max_seq_len": est["max_seq_len"], "vision_patches": est["vision_patches"],
        "trainable_parameters": est["parameters"]["trainable"], "loader_workers": data_path["workers"],
        "train_losses": [r["loss"] for r in steps], "step_times_s": [round(b - a, 2) for a, b in zip(times, times[1:])],
        "estimate_timed_steps": duration.get("timed_steps"), "estimate_wall_s": round(est_run["wall_s"]),
        "train_wall_s": round(train_run["wall_s"]), "estimate_warnings": est["warnings"],
    }
    if "cuda_allocated" in peaks:
        out.update(cuda_reserved_mib=round(peaks["cuda_reserved"] / MiB), cuda_device=peaks["cuda_device"])
    return out


# ----------------------------------------------------------------------------- main


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3:])
        return 0
    args = parse_args(argv)
    args.precision, args.precision_why = pick_precision(args.precision, args.device)
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VVW_CACHE_DIR=str(args.work / "cache"))
    dataset = prepare_dataset(args.work, args.clips)
    info = dict(machine(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    log(f"{machine_line(info)}; precision {args.precision} ({args.precision_why})")
    results = []
    for name in args.models:
        r = measure(args, name, dataset, env)
        r.update(cpu=info["cpu"], cores=info["cores"], ram_gib=info["ram_gib"], omp_num_threads=info["omp_num_threads"])
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
    save_result("real_size", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    if not args.json:
        print(report(results, info))
    return 0


def report(results: list[dict], info: dict) -> str:
    def num(x, fmt="{:.2f}"):
        return fmt.format(x) if x is not None else "-"

    rows = [[r["model"] + (f" (L{r['shrink_layers']})" if r.get("shrink_layers") else ""), r.get("precision", "-"),
             r["estimate_mib"], r.get("measured_mib", r.get("skipped")), num(r.get("memory_ratio")),
             num(r.get("estimate_s_per_step")), num(r.get("measured_s_per_step")), num(r.get("time_ratio"))]
            for r in results]
    head = ["model", "precision", "estimate MiB", "measured MiB", "meas/est", "est s/step", "meas s/step", "meas/est"]
    what = next((r["measured_what"] for r in results if "measured_what" in r), "")
    return f"{machine_line(info)}\n\n{table(rows, head)}\n\nmeasured memory: {what}\ntargets: memory within 15%, time within 30%"


if __name__ == "__main__":
    sys.exit(main())
