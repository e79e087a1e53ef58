"""Training throughput: our trainer (`python cli.py train`) vs LLaMA-Factory on the same tiny model.

    python bench/train_throughput.py [--clips 64] [--steps 30] [--batch 8] [--repeats 2]
                                     [--lf-venv /tmp/lf-venv] [--setup-lf] [--skip-lf]

Both sides train the same embedded tiny Qwen3-VL (``tiny:default``: the same safetensors file,
loaded by each side's own transformers), on the same clips, 8 frames per clip resized to 96x64
(96 visual tokens), batch 8, the same number of optimiser steps, LoRA r16/alpha 32 on the
language model's linears with embed_tokens, lm_head and the vision tower trained whole
(``modules_to_save``), AdamW lr 3e-3 cosine, fp32 on CPU, no checkpoint saving. Each run is a
fresh process started through ``bench/timed_run.py``, which times every batch fetch of the
Trainer's loop and records batch shapes (so the two sides' tensors can be compared) and peak RSS.

Our side gets an empty frame cache (``VVW_CACHE_DIR`` = a new folder), so its figures include its
first-epoch decoding. LLaMA-Factory's side is its own CLI (``llamafactory.cli train cfg.yaml``)
with the dataset converted to its sharegpt video format (``videos`` column, ``<video>`` tag);
its frames come from its own sampler (``video_fps`` chosen so that it also takes 8 frames of a
3 s clip, ``video_max_pixels`` so that its resize lands on 96x64 after the processor's rounding);
the frame indices differ slightly from ours (linspace-floor vs segment midpoints), the count and
size do not.

Figures per run: loop samples/s (steps 4..N: batch x steps / time from the 4th fetch to the end
of the loop, so start-up, model load, dataset preprocessing and the first, slow steps are out),
data-wait fraction (time inside the batch fetch / loop time over the same steps), end-to-end wall
of the command, peak RSS. ``--setup-lf`` creates the LLaMA-Factory venv (torch 2.9.1,
torchvision 0.24.1, torchaudio 2.9, llamafactory 0.9.5, about 7 GB) if it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()

BENCH = Path(__file__).resolve().parent
WARMUP_STEPS_SKIPPED = 3
LF_PACKAGES = [["torch==2.9.1", "torchvision==0.24.1"], ["torch==2.9.1", "torchaudio==2.9.*"],
               ["llamafactory==0.9.5", "torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.*"]]
LR, WARMUP, LORA_R, LORA_ALPHA = 3e-3, 5, 16, 32
LM_LINEARS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # Qwen3-VL's vision tower has none


# ----------------------------------------------------------------------------- data


def prepare_data(work: Path, n_clips: int) -> dict:
    """A seed-layout dataset of the first `n_clips` train clips, and the same as LLaMA-Factory sharegpt."""
    from core.data.dataset import load_dataset
    from core.schema.base import canonical_answer, label_errors
    from core.schema.prompt import DEFAULT_TEMPLATE, build_instruction

    src = REPO_ROOT / "sample_videos"
    data = load_dataset(src)
    chosen = [s for s in data.split("train") if not label_errors(data.schema, s.label)][:n_clips]
    ours = work / "data"
    (ours / "videos").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "schema.json", ours / "schema.json")
    lines, convs = [], []
    instruction = build_instruction(data.schema, DEFAULT_TEMPLATE)
    for s in chosen:
        dst = ours / "videos" / s.video.name
        shutil.copy(s.video, dst)
        lines.append(json.dumps({"video": f"videos/{s.video.name}", "split": "train", **s.label}))
        convs.append({"messages": [{"role": "user", "content": "<video>" + instruction},
                                   {"role": "assistant", "content": canonical_answer(data.schema, s.label)}],
                      "videos": [str(dst)]})
    (ours / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    lf = work / "lf_data"
    lf.mkdir(parents=True, exist_ok=True)
    (lf / "vvw.json").write_text(json.dumps(convs, ensure_ascii=False))
    (lf / "dataset_info.json").write_text(json.dumps({"vvw": {
        "file_name": "vvw.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    return {"ours": ours, "lf": lf, "clips": len(chosen)}


def lf_config(work: Path, model: Path, lf_data: Path, steps: int, batch: int, gc: bool = True) -> Path:
    """LLaMA-Factory's config. `gc`: its default, activation (gradient) checkpointing on; False sets
    `disable_gradient_checkpointing: true`, the setting that matches our trainer's default."""
    cfg = {
        "model_name_or_path": str(model), "trust_remote_code": False,
        "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": 0.0, "lora_target": LM_LINEARS,
        "additional_target": "embed_tokens,lm_head,visual",
        "freeze_vision_tower": False, "freeze_multi_modal_projector": False,
        "dataset": "vvw", "dataset_dir": str(lf_data), "template": "qwen3_vl_nothink", "cutoff_len": 2048,
        "overwrite_cache": True, "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
        # 8 frames of a 3 s clip (floor(3.0 * 2.7) = 8); 160x96 -> 101x60 -> processor rounds to 96x64
        "video_fps": 2.7, "video_maxlen": 8, "video_max_pixels": 96 * 64, "video_min_pixels": 16 * 16,
        "output_dir": str(work / "lf_out"), "overwrite_output_dir": True, "save_strategy": "no",
        "logging_steps": 10, "report_to": "none", "plot_loss": False,
        "per_device_train_batch_size": batch, "gradient_accumulation_steps": 1, "max_steps": steps,
        "learning_rate": LR, "lr_scheduler_type": "cosine", "warmup_steps": WARMUP, "max_grad_norm": 1.0,
        "bf16": False, "fp16": False, "seed": 0, "ddp_timeout": 180000000,
        **({} if gc else {"disable_gradient_checkpointing": True}),
    }
    import yaml

    path = work / f"lf_train{'' if gc else '_nogc'}.yaml"  # LLaMA-Factory 0.9.5 cannot read a .json config (json.load of a Path)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- runs


def summarise(times: dict, batch: int, wall: float) -> dict:
    fetches = times["fetches"]
    k = WARMUP_STEPS_SKIPPED
    out = {"steps": len(fetches), "wall_s": round(wall, 2), "peak_rss_mib": round(times["peak_rss_mib"], 1)}
    if len(fetches) > k + 1:
        # the loop ends when the last step's work ends: approximated by the process's last fetch
        # end + one median step (the last step has no following fetch to mark its end)
        starts = [s for s, _ in fetches]
        periods = [b - a for a, b in zip(starts[k:], starts[k + 1:])]
        step = statistics.median(periods)
        loop = starts[-1] - starts[k] + step
        wait = sum(e - s for s, e in fetches[k:])
        cpu = times.get("cpu_at_fetch") or []
        if len(cpu) == len(fetches):  # CPU seconds (all threads) per sample, steps k..N-1: less load-sensitive
            out["cpu_s_per_sample"] = round((cpu[-1] - cpu[k]) / (batch * (len(fetches) - 1 - k)), 4)
        out.update(loop_samples_per_s=round(batch * (len(fetches) - k) / loop, 2),
                   median_step_s=round(step, 4), data_wait_fraction=round(wait / loop, 4),
                   median_fetch_ms=round(1000 * statistics.median(e - s for s, e in fetches[k:]), 2),
                   max_fetch_ms=round(1000 * max(e - s for s, e in fetches[k:]), 1),
                   first_fetch_s=round(fetches[0][1] - fetches[0][0], 3), loop_start_s=round(fetches[0][0], 1))
    b = [x for batch_list in times.get("batches", []) for x in batch_list]
    if b:
        out["batch_example"] = {k2: v for k2, v in b[0].items() if k2 != "tokens"}
        out["mean_tokens_per_sample"] = round(statistics.mean(x.get("tokens", 0) for x in b) / batch, 1)
        out["mean_label_tokens_per_sample"] = round(statistics.mean(x.get("label_tokens", 0) for x in b) / batch, 1)
    return out


def run_ours(work: Path, data: Path, steps: int, batch: int, tag: str, extra: list[str] = ()) -> dict:
    cache = work / f"cache-{tag}"  # empty: includes first-epoch decoding and the tiny model build
    out = work / f"ours-{tag}"
    times = work / f"ours-{tag}.json"
    env = {**os.environ, "VVW_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(BENCH / "timed_run.py"), "--out", str(times), "--", str(REPO_ROOT / "cli.py"), "train",
           "--dataset", str(data), "--output", str(out), "--model", "tiny:default", "--max-steps", str(steps),
           "--batch-size", str(batch), "--lora-r", str(LORA_R), "--lora-alpha", str(LORA_ALPHA),
           "--learning-rate", str(LR), "--warmup-steps", str(WARMUP), "--lr-scheduler", "cosine",
           "--logging-steps", "10", "--save-steps", "100000", "--eval-steps", "0", "--device", "cpu", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-3000:], "cmd": " ".join(cmd)}
    res = summarise(json.loads(times.read_text()), batch, wall)
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    res["trainable"] = next((json.loads(line.split("parameters: ", 1)[1]) for line in log.splitlines()
                             if "parameters: " in line), None)
    res["encode_log"] = next((line for line in log.splitlines() if "encoded" in line or "checked" in line), "")
    res["cmd"] = " ".join(cmd)
    return res


def run_lf(work: Path, venv: Path, cfg: Path, batch: int, tag: str) -> dict:
    times = work / f"lf-{tag}.json"
    (work / f"lf_out-{tag}").mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1",
           "CUDA_VISIBLE_DEVICES": "", "HF_DATASETS_CACHE": str(work / f"hf-datasets-{tag}")}
    env.pop("VVW_CACHE_DIR", None)
    cmd = [str(venv / "bin" / "python"), str(BENCH / "timed_run.py"), "--allow-lf-torch29-conv3d", "--out", str(times),
           "-m", "llamafactory.cli", "train", str(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / f"lf-{tag}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not times.exists():
        return {"error": (proc.stderr or proc.stdout)[-4000:], "cmd": " ".join(cmd)}
    res = summarise(json.loads(times.read_text()), batch, wall)
    text = proc.stdout + proc.stderr
    res["trainable_line"] = next((line.split(">>")[-1].strip() for line in text.splitlines()
                                  if "trainable params:" in line), "")
    res["gradient_checkpointing"] = "Gradient checkpointing enabled" in text
    res["cmd"] = " ".join(cmd)
    return res


def lf_versions(venv: Path) -> dict:
    code = ("import json,importlib.metadata as m;print(json.dumps({p: m.version(p) for p in "
            "['llamafactory','transformers','torch','peft','trl','accelerate','datasets','av']}))")
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        return {"error": str(exc)}


def setup_lf(venv: Path) -> None:
    if (venv / "bin" / "llamafactory-cli").exists():
        return
    base = getattr(sys, "_base_executable", None) or "python3"  # the interpreter our venv was made from
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    for pkgs in LF_PACKAGES:
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pkgs], check=True)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--lf-venv", default="/tmp/lf-venv")
    p.add_argument("--setup-lf", action="store_true", help="create the LLaMA-Factory venv if it is missing")
    p.add_argument("--skip-lf", action="store_true")
    p.add_argument("--ours-extra", default="", help="extra flags for our `cli.py train`, e.g. '--dataloader-workers 1'")
    p.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = p.parse_args(argv)

    from core.models.tiny.registry import ensure_tiny

    info = machine()
    print(f"machine: {machine_line(info)}")
    venv = Path(args.lf_venv)
    if args.setup_lf and not args.skip_lf:
        setup_lf(venv)
    use_lf = not args.skip_lf and (venv / "bin" / "python").exists()
    work = Path(tempfile.mkdtemp(prefix="vvw-bench-train-"))
    t_start = time.time()
    try:
        data = prepare_data(work, args.clips)
        model = work / "tiny-default"
        shutil.copytree(ensure_tiny("default"), model)  # the same weights file both sides load
        cfgs = {"llamafactory": lf_config(work, model, data["lf"], args.steps, args.batch, gc=True),
                "llamafactory_nogc": lf_config(work, model, data["lf"], args.steps, args.batch, gc=False)}
        runs = {"ours": [], "llamafactory": [], "llamafactory_nogc": []}
        sides = list(runs) if use_lf else ["ours"]
        for r in range(args.repeats):  # rotate the order so that load lands on every side
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                if side == "ours":
                    res = run_ours(work, data["ours"], args.steps, args.batch, str(r), shlex.split(args.ours_extra))
                else:
                    res = run_lf(work, venv, cfgs[side], args.batch, f"{side}-{r}")
                res["load_avg_1min"] = round(os.getloadavg()[0], 2)
                runs[side].append(res)
                print(f"  {side} run {r}: " + json.dumps({k: v for k, v in res.items()
                                                        if k not in ("cmd", "error", "batch_example")})[:400])
                if "error" in res:
                    print(f"  {side} FAILED:\n{res['error']}")
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = {"machine": info, "args": vars(args), "clips": data["clips"], "runs": runs,
              "lf_versions": lf_versions(venv) if use_lf else None, "seconds": round(time.time() - t_start, 1)}
    result["summary"] = summary(result)
    print_summary(result)
    save_result("train_throughput", result)
    return result


def _best(runs: list[dict], key: str, low: bool = False):
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return None
    return min(vals) if low else max(vals)


SIDE_NAMES = {"ours": "ours (cli.py train)", "llamafactory": "LLaMA-Factory 0.9.5, its defaults (grad. ckpt on)",
              "llamafactory_nogc": "LLaMA-Factory 0.9.5, grad. ckpt off (= ours)"}


def summary(result: dict) -> dict:
    s = {}
    for side, runs in result["runs"].items():
        s[side] = {"samples_per_s": _best(runs, "loop_samples_per_s"),
                   "data_wait": _best(runs, "data_wait_fraction", low=True),
                   "cpu_s_per_sample": _best(runs, "cpu_s_per_sample", low=True),
                   "peak_rss_mib": _best(runs, "peak_rss_mib", low=True), "wall_s": _best(runs, "wall_s", low=True),
                   "tokens_per_sample": next((r["mean_tokens_per_sample"] for r in runs
                                              if "mean_tokens_per_sample" in r), None)}
    ours = s["ours"]
    for side in ("llamafactory", "llamafactory_nogc"):
        other = s.get(side)
        if not other or not other["samples_per_s"] or not ours["samples_per_s"]:
            continue
        pairs = [(o["loop_samples_per_s"], x["loop_samples_per_s"])
                 for o, x in zip(result["runs"]["ours"], result["runs"][side])
                 if "loop_samples_per_s" in o and "loop_samples_per_s" in x]
        other["ours_over_this_samples_per_s"] = round(ours["samples_per_s"] / other["samples_per_s"], 2)
        if ours["cpu_s_per_sample"] and other["cpu_s_per_sample"]:
            other["this_over_ours_cpu_per_sample"] = round(other["cpu_s_per_sample"] / ours["cpu_s_per_sample"], 2)
        other["per_repeat_ratios"] = [round(a / b, 2) for a, b in pairs]
        other["this_over_ours_wall"] = round(other["wall_s"] / ours["wall_s"], 2)
        other["this_over_ours_rss"] = round(other["peak_rss_mib"] / ours["peak_rss_mib"], 2)
    return s


def print_summary(result: dict) -> None:
    s = result["summary"]
    rows = []
    for side, v in s.items():
        if v["samples_per_s"] is None:
            err = next((r.get("error", "") for r in result["runs"][side] if "error" in r), "not run")
            rows.append([SIDE_NAMES[side], "failed: " + err.strip().splitlines()[-1][:80] if err else "not run",
                         "", "", "", "", "", "", ""])
            continue
        ratio = "1.00x" if side == "ours" else f"{v.get('ours_over_this_samples_per_s', 0):.2f}x"
        cpu_ratio = "1.00x" if side == "ours" else f"{v.get('this_over_ours_cpu_per_sample', 0):.2f}x"
        rows.append([SIDE_NAMES[side], f"{v['samples_per_s']:.2f}", ratio, f"{v['cpu_s_per_sample']}", cpu_ratio,
                     f"{v['data_wait']:.1%}", f"{v['wall_s']:.1f}", f"{v['peak_rss_mib']:.0f}", v["tokens_per_sample"]])
    print(f"\n### training: {result['clips']} clips, {result['args']['steps']} steps, batch {result['args']['batch']} "
          f"(best of {result['args']['repeats']} runs per side)")
    print(table(rows, ["trainer", "loop samples/s", "ours / this", "CPU s/sample", "this / ours CPU", "data wait",
                       "command wall s", "peak RSS MiB", "tokens/sample"]))
    for side in ("llamafactory", "llamafactory_nogc"):
        v = s.get(side) or {}
        if "per_repeat_ratios" in v:
            print(f"ours / {SIDE_NAMES[side]}: per repeat {v['per_repeat_ratios']}; command wall {v['this_over_ours_wall']}x; "
                  f"peak RSS {v['this_over_ours_rss']}x of ours")


if __name__ == "__main__":
    main()
