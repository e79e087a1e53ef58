"""Issue 19's two measurements: is per-field confidence calibrated, and does uncertainty sampling pay?

    python bench/confidence_experiment.py [--work /tmp/conf_exp] [--calib-steps 400] [--calib-save 100]
        [--calib-eval 100,200,400] [--al-steps 100] [--seed-clips 24] [--ks 24,48,96] [--seeds 0,1]
        [--skip-calib] [--skip-al] [--device cpu]

On a shared 2-core CPU, run it with OMP_NUM_THREADS=1 (two torch processes with two threads each
on two cores slowed training ~10x); the two parts can run as two processes (--skip-al and
--skip-calib) side by side: the JSON keeps the other part's figures.

1. Calibration at an early and a late checkpoint. One default fine-tune of ``tiny:default`` on the
   bundled ``sample_videos`` (``cli.py train --max-steps S --save-steps s --save-total-limit 0``).
   A ``checkpoint-N`` folder is not a run directory (no ``preprocessing.json``), so each chosen
   checkpoint is evaluated through a view of the run: a folder holding the run's
   ``preprocessing.json`` and ``final`` -> ``checkpoint-N`` (a symlink), which ``--model`` accepts
   like any run directory. Each model answers the val+test clips once (the predictor's greedy pass,
   unconstrained as ``cli.py eval``); the answers are scored with core.schema.scoring.evaluate (the
   report ``eval --json`` prints: per-field accuracy, ``calibration`` with ECE) and, per row, with
   ``score_row`` so that the error rate of low- vs high-confidence rows can be given: per field, rows
   with confidence < 0.5 vs >= 0.5, and the least sure half vs the most sure half (rows ranked by
   confidence), and the AUROC of confidence for right vs wrong rows; pooled over the enum and
   enum-list fields (where the halves also separate fields from each other); and per clip by its
   least sure enum field (share of clips with any enum field wrong).

2. Uncertainty sampling vs random. Per seed: a random seed set of ``--seed-clips`` train clips is
   labelled; a model is trained on it (``--al-steps`` steps, that seed); the other train clips form
   an unlabelled pool (a dataset folder whose metadata.jsonl lists them without label fields) that
   core.serve.prelabel.prelabel_dataset drafts with that model (schema-constrained, as ``cli.py
   prelabel``); ``report.least_sure()`` ranks them. For each K the K least sure clips, or K clips
   drawn at random from the pool (a fixed permutation per seed, so the random 24 are inside the
   random 48), are added to the seed set and a model is trained from scratch on seed + K with the
   same steps and seed, then scored on the val split (evaluate_models, as ``cli.py eval``).

Datasets are temporary folders under --work with hard links to the bundled videos. Figures are
printed and saved to bench/results/confidence_experiment.json. Runs already finished in --work
(a ``final/`` folder) are reused, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, RESULTS_DIR, git_rev, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()

SRC = REPO_ROOT / "sample_videos"
NAME = "confidence_experiment"


def save(out: dict) -> Path:
    """save_result, keeping the other part's figures from an earlier run with --skip-calib/--skip-al."""
    merged = {}
    old = RESULTS_DIR / f"{NAME}.json"
    if old.is_file() and (out["args"]["skip_calib"] or out["args"]["skip_al"]):
        try:
            merged = json.loads(old.read_text())
        except ValueError:
            merged = {}
    for part, skipped in (("calibration", "skip_calib"), ("active_learning", "skip_al")):
        if not out["args"][skipped]:
            merged.pop(part, None)
    merged.update(out)
    return save_result(NAME, merged)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- data and runs


def read_rows() -> list[dict]:
    return [json.loads(line) for line in (SRC / "metadata.jsonl").read_text().splitlines() if line.strip()]


def make_dataset(folder: Path, rows: list[dict], labelled: bool) -> Path:
    """A seed-layout dataset of `rows` (hard links to the bundled videos); without labels when
    `labelled` is false (every clip is then unlabelled, a pool to pre-label)."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "videos").mkdir(parents=True)
    shutil.copy(SRC / "schema.json", folder / "schema.json")
    lines = []
    for r in rows:
        src = SRC / r["video"]
        dst = folder / r["video"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy(src, dst)
        lines.append(json.dumps(r if labelled else {k: v for k, v in r.items() if k in ("video", "split")}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def train(dataset: Path, out: Path, steps: int, seed: int, device: str, save_steps: int = 0) -> dict:
    """`cli.py train` in a subprocess; an out folder with a final model is reused."""
    if (out / "final").is_dir() and (out / "preprocessing.json").is_file():
        log(f"reuse {out}")
        return {"run": str(out), "reused": True, "seconds": None}
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(REPO_ROOT / "cli.py"), "train", "--dataset", str(dataset), "--output", str(out),
           "--max-steps", str(steps), "--save-steps", str(save_steps), "--save-total-limit", "0",
           "--seed", str(seed), "--device", device]
    log("train: " + " ".join(cmd[1:]))
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    seconds = time.time() - t0
    log(f"trained {out.name} in {seconds:.0f} s")
    return {"run": str(out), "reused": False, "seconds": round(seconds, 1)}


def checkpoint_view(run: Path, step: int, views: Path) -> Path:
    """A run-directory view of `run`'s checkpoint-`step`: its preprocessing.json and final -> checkpoint."""
    ckpt = run / f"checkpoint-{step}"
    if not (ckpt / "adapter_config.json").is_file() and not (ckpt / "config.json").is_file():
        raise SystemExit(f"{ckpt}: no adapter or model in the checkpoint folder")
    view = views / f"{run.name}-step{step}"
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    shutil.copy(run / "preprocessing.json", view / "preprocessing.json")
    (view / "final").symlink_to(ckpt.resolve(), target_is_directory=True)
    return view


# ----------------------------------------------------------------------------- part 1


def low_high(pairs: list[tuple[float, float]]) -> dict:
    """Error rates (1 - mean score) of low- vs high-confidence rows: split at 0.5, and halves by rank."""
    def err(xs):
        return round(1 - sum(s for _, s in xs) / len(xs), 4) if xs else None

    lo = [p for p in pairs if p[0] < 0.5]
    right = [c for c, sc in pairs if sc == 1.0]
    wrong = [c for c, sc in pairs if sc < 1.0]
    # AUROC: the chance that a right row has a higher confidence than a wrong one (ties count half)
    auroc = (sum((a > b) + 0.5 * (a == b) for a in right for b in wrong) / (len(right) * len(wrong))
             if right and wrong else None)
    hi = [p for p in pairs if p[0] >= 0.5]
    ranked = sorted(pairs, key=lambda p: p[0])
    half = len(ranked) // 2
    return {"n": len(pairs), "n_below_0.5": len(lo), "err_below_0.5": err(lo), "err_at_least_0.5": err(hi),
            "err_least_sure_half": err(ranked[:half]), "err_most_sure_half": err(ranked[half:]),
            "median_conf": round(statistics.median(p[0] for p in pairs), 4) if pairs else None,
            "auroc_right_vs_wrong": None if auroc is None else round(auroc, 4)}


def calibration_at(model: str, samples: list, schema: dict, device: str) -> dict:
    from core.schema.base import ENUM, ENUM_LIST, fields
    from core.schema.scoring import evaluate, score_row
    from core.serve.loaded import loaded_predictor

    t0 = time.time()
    with loaded_predictor(model, schema, None, device) as predictor:
        preds = predictor.predict([s.video for s in samples], batch_size=8, max_new_tokens=160, constrained=False)
        train_schema = predictor.spec.schema
    texts, labels, confs = [p.text for p in preds], [s.label for s in samples], [p.confidence for p in preds]
    report = evaluate(train_schema, texts, labels, confs)
    rows = [score_row(train_schema, t, lab) for t, lab in zip(texts, labels)]
    enum_names = [f.name for f in fields(train_schema) if f.kind in (ENUM, ENUM_LIST)]
    per_field, pooled = {}, []
    for f in fields(train_schema):
        pairs = [(float(c[f.name]), r.fields[f.name]) for r, c in zip(rows, confs)
                 if c and c.get(f.name) is not None and f.name in r.fields]
        if not pairs:
            continue
        cal = report.get("calibration", {}).get(f.name, {})
        per_field[f.name] = {"kind": f.kind, "accuracy": round(sum(s for _, s in pairs) / len(pairs), 4),
                             "mean_conf": round(sum(c for c, _ in pairs) / len(pairs), 4),
                             "ece": cal.get("ece"), "coverage": cal.get("coverage"), "bins": cal.get("bins"),
                             **low_high(pairs), "rows_conf_score": [[round(c, 5), sc] for c, sc in pairs]}
        if f.name in enum_names:
            pooled += pairs
    # per clip: its least sure enum field vs whether any enum field is wrong
    clip_pairs = []
    for r, c in zip(rows, confs):
        scores = [c.get(n) for n in enum_names] if c else []
        if scores and all(s is not None for s in scores):
            clip_pairs.append((min(scores), float(all(r.fields.get(n, 0.0) == 1.0 for n in enum_names))))
    # the same with the product's min_confidence (every top-level field, caption included): the
    # review queue's and `prelabel --review`'s order; and which field is the least sure one
    product_pairs, weakest = [], {}
    for r, p in zip(rows, preds):
        m = p.min_confidence
        if m is not None and all(n in r.fields for n in enum_names):
            product_pairs.append((m, float(all(r.fields[n] == 1.0 for n in enum_names))))
            name = min((k for k, v in p.confidence.items() if v is not None), key=lambda k: p.confidence[k])
            weakest[name] = weakest.get(name, 0) + 1
    return {"model": model, "clips": len(samples), "seconds": round(time.time() - t0, 1),
            "json_valid_rate": report["json_valid_rate"], "schema_valid_rate": report["schema_valid_rate"],
            "mean_field_accuracy": report["mean_field_accuracy"], "per_field": per_field,
            "pooled_enum": {"accuracy": round(sum(s for _, s in pooled) / len(pooled), 4) if pooled else None,
                            "mean_conf": round(sum(c for c, _ in pooled) / len(pooled), 4) if pooled else None,
                            **low_high(pooled)},
            "per_clip_min_conf": low_high(clip_pairs), "per_clip_min_confidence": low_high(product_pairs),
            "least_sure_field_counts": weakest}


def part1(args, work: Path) -> dict:
    from core.data.dataset import load_dataset

    run = work / "calib_run"
    info = train(SRC, run, args.calib_steps, 0, args.device, save_steps=args.calib_save)
    data = load_dataset(SRC)
    samples = data.split("val") + data.split("test")
    results = {}
    for step in args.calib_eval:
        model = run if step == args.calib_steps else checkpoint_view(run, step, work / "views")
        log(f"calibration at step {step}: {model}")
        results[step] = calibration_at(str(model), samples, data.schema, args.device)
        print_calibration(step, results[step])
    return {"train": info, "steps": args.calib_steps, "save_steps": args.calib_save, "eval_clips": "val+test",
            "checkpoints": results}


def fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def print_calibration(step: int, r: dict) -> None:
    print(f"\n### step {step}: {r['clips']} val+test clips, mean field accuracy {fmt(r['mean_field_accuracy'])}, "
          f"schema-valid {fmt(r['schema_valid_rate'])}")
    head = ["field", "acc", "mean conf", "ECE", "rows conf<0.5", "err conf<0.5", "err conf>=0.5",
            "err least-sure half", "err most-sure half", "AUROC"]
    body = []
    for name, f in [*r["per_field"].items(), ("pooled enum fields", r["pooled_enum"]),
                    ("per clip (min enum conf; any enum wrong)", r["per_clip_min_conf"]),
                    ("per clip (min_confidence; any enum wrong)", r["per_clip_min_confidence"])]:
        body.append([name, fmt(f.get("accuracy")), fmt(f.get("mean_conf")), fmt(f.get("ece")),
                     f"{f['n_below_0.5']}/{f['n']}", fmt(f["err_below_0.5"]), fmt(f["err_at_least_0.5"]),
                     fmt(f["err_least_sure_half"]), fmt(f["err_most_sure_half"]), fmt(f["auroc_right_vs_wrong"])])
    print(table(body, head), flush=True)
    print(f"least sure field of each clip (what min_confidence is): {r['least_sure_field_counts']}")


# ----------------------------------------------------------------------------- part 2


def val_accuracy(run: Path, device: str) -> dict:
    from core.serve.report import evaluate_models

    rep = evaluate_models(None, SRC, "val", [str(run)], device=device)[str(run)]
    return {"mean_field_accuracy": rep["mean_field_accuracy"], "per_field": rep["per_field"],
            "schema_valid_rate": rep["schema_valid_rate"]}


def part2(args, work: Path, out: dict, checkpoint) -> dict:
    from core.serve.prelabel import prelabel_dataset

    rows = read_rows()
    train_rows = [r for r in rows if r.get("split") == "train"]
    res = out.setdefault("seeds", {})
    state = {}
    # first every seed's seed-set model and ranked pool, then K by K over the seeds (so that an
    # interrupted run has both seeds for the smaller K)
    for seed in args.seeds:
        base = work / f"al-seed{seed}"
        shuffled = train_rows[:]
        random.Random(seed).shuffle(shuffled)
        seed_rows, pool_rows = shuffled[:args.seed_clips], shuffled[args.seed_clips:]
        r_seed = res.setdefault(str(seed), {"seed_clips": [r["video"] for r in seed_rows]})
        seed_ds = make_dataset(base / "data-seed", seed_rows, labelled=True)
        info = train(seed_ds, base / "run-seed", args.al_steps, seed, args.device)
        r_seed["seed_model"] = {**info, "val": val_accuracy(base / "run-seed", args.device)}
        log(f"seed {seed}: seed-set model val mean field acc {r_seed['seed_model']['val']['mean_field_accuracy']}")

        pool = make_dataset(base / "data-pool", pool_rows, labelled=False)
        t0 = time.time()
        rep = prelabel_dataset(pool, str(base / "run-seed"), batch_size=8, device=args.device)
        # uncertainty sampling by the least sure field, as section 9b measured it (the review queue's
        # order, rep.least_sure(), is the answer's score since #24)
        scores = {rel: d.get("min_confidence") for rel, d in rep.drafts.items()}
        ranked = sorted(scores, key=lambda rel: (scores[rel] is None, scores[rel] or 0.0))
        log(f"seed {seed}: pre-labelled {rep.drafted} pool clips in {time.time() - t0:.0f} s "
            f"({rep.flagged} flagged, {len(rep.errors)} errors)")
        random_order = [r["video"] for r in pool_rows]
        random.Random(1000 + seed).shuffle(random_order)
        r_seed["pool"] = {"clips": len(pool_rows), "drafted": rep.drafted, "flagged": rep.flagged,
                          "seconds": round(time.time() - t0, 1),
                          "min_conf_quantiles": quantiles([s for s in scores.values() if s is not None])}
        state[seed] = (base, seed_rows, {r["video"]: r for r in pool_rows}, ranked, random_order, scores)
        checkpoint()
    for k in args.ks:
        for seed in args.seeds:
            base, seed_rows, by_video, ranked, random_order, scores = state[seed]
            for method, order in (("random", random_order), ("uncertainty", ranked)):
                chosen = order[:k]
                ds = make_dataset(base / f"data-{method}-k{k}", seed_rows + [by_video[v] for v in chosen],
                                  labelled=True)
                info = train(ds, base / f"run-{method}-k{k}", args.al_steps, seed, args.device)
                val = val_accuracy(base / f"run-{method}-k{k}", args.device)
                picked = [scores.get(v) for v in chosen]
                res[str(seed)].setdefault(f"k{k}", {})[method] = {
                    **info, "val": val, "chosen": chosen,
                    "chosen_mean_min_conf": round(statistics.mean(p for p in picked if p is not None), 4)
                    if any(p is not None for p in picked) else None}
                log(f"seed {seed} K={k} {method}: val mean field acc {val['mean_field_accuracy']}")
                checkpoint()
    return res


def quantiles(xs: list[float]) -> dict | None:
    if not xs:
        return None
    xs = sorted(xs)
    return {q: round(xs[min(len(xs) - 1, int(q * len(xs)))], 4) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}


def print_al(args, res: dict) -> list:
    head = ["K", "seed", "seed-only acc", "random acc", "uncertainty acc", "unc - rand",
            "schema-valid (rand / unc)", "picked mean min_conf (rand / unc)"]
    body, diffs = [], {}
    for k in args.ks:
        for seed in args.seeds:
            r = res.get(str(seed), {})
            got = r.get(f"k{k}", {})
            if "random" not in got or "uncertainty" not in got:
                continue
            ra = got["random"]["val"]["mean_field_accuracy"]
            ua = got["uncertainty"]["val"]["mean_field_accuracy"]
            diffs.setdefault(k, []).append(ua - ra)
            body.append([k, seed, fmt(r["seed_model"]["val"]["mean_field_accuracy"]), fmt(ra), fmt(ua),
                         f"{ua - ra:+.3f}", f"{fmt(got['random']['val']['schema_valid_rate'], 2)} / "
                                            f"{fmt(got['uncertainty']['val']['schema_valid_rate'], 2)}",
                         f"{fmt(got['random']['chosen_mean_min_conf'])} / "
                                            f"{fmt(got['uncertainty']['chosen_mean_min_conf'])}"])
    print(table(body, head), flush=True)
    fields_head = ["K", "seed", "method"]
    per_field_rows = []
    names = None
    for k in args.ks:
        for seed in args.seeds:
            got = res.get(str(seed), {}).get(f"k{k}", {})
            for method in ("random", "uncertainty"):
                if method in got:
                    pf = got[method]["val"]["per_field"]
                    names = names or list(pf)
                    per_field_rows.append([k, seed, method, *[fmt(pf.get(n)) for n in names]])
    if names:
        print("\nper field (val accuracy):")
        print(table(per_field_rows, fields_head + names), flush=True)
    summary = []
    for k, d in diffs.items():
        summary.append({"k": k, "mean_diff": round(statistics.mean(d), 4), "diffs": [round(x, 4) for x in d]})
        print(f"K={k}: uncertainty - random = {statistics.mean(d):+.3f} on average over {len(d)} seeds "
              f"(per seed {', '.join(f'{x:+.3f}' for x in d)})")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/conf_exp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calib-steps", type=int, default=400)
    ap.add_argument("--calib-save", type=int, default=100)
    ap.add_argument("--calib-eval", default="100,200,400")
    ap.add_argument("--al-steps", type=int, default=100)
    ap.add_argument("--seed-clips", type=int, default=24)
    ap.add_argument("--ks", default="24,48,96")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--skip-calib", action="store_true")
    ap.add_argument("--skip-al", action="store_true")
    args = ap.parse_args()
    args.calib_eval = [int(x) for x in args.calib_eval.split(",") if x]
    args.ks = [int(x) for x in args.ks.split(",") if x]
    args.seeds = [int(x) for x in args.seeds.split(",") if x]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    info = machine()
    print(machine_line(info), flush=True)
    out: dict = {"machine": info, "git": git_rev(), "args": vars(args)}
    try:
        if not args.skip_calib:
            print("\n## 1. Calibration of per-field confidence (val+test clips)")
            out["calibration"] = part1(args, work)
            save(out)
        if not args.skip_al:
            print("\n## 2. Uncertainty sampling vs random (val split)")
            out["active_learning"] = {"steps": args.al_steps, "seed_clips": args.seed_clips, "ks": args.ks,
                                      "seeds": {}}
            al = out["active_learning"]
            part2(args, work, al, lambda: save(out))
            print()
            al["summary"] = print_al(args, al["seeds"])
    finally:
        out["wall_seconds"] = round(time.time() - t0, 1)
        path = save(out)
        print(f"\nwall {out['wall_seconds']:.0f} s; saved {path}", flush=True)


if __name__ == "__main__":
    main()
