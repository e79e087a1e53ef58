"""Issue 24's "Label next" measurement: which K clips should a person label next, random ones, the
ones the model is least sure about, or the least sure of each group of similar clips (hybrid)?

    python bench/label_next.py --eval-dataset DIR [--work /tmp/label_next] [--steps 250]
        [--seed-clips 24] [--ks 48,96] [--seeds 0,1,2,3,4] [--jobs 2]

Per seed: ``--seed-clips`` random clips of the bundled train split are labelled and a model is
trained on them (``cli.py train --max-steps S --seed SEED``); the other train clips are the pool,
pre-labelled by that model as ``cli.py prelabel`` does (schema-constrained, which also keeps each
clip's embedding from the same pass). For each K four picks are made from the pool:

- random: K clips of a fixed random order per seed (so the random 48 are inside the random 96);
- uncertainty: the K least sure by the answer's score, the review queue's order
  (``PrelabelReport.label_next(k, "uncertainty", by="answer")``);
- hybrid: the least sure clip, by the answer's score, of each of K k-means groups
  (``label_next(k, "hybrid", by="answer")``);
- hybrid-field: the same groups, the least sure clip of each by its least sure choice field
  (``label_next(k, "hybrid", by="field")``), the order section 9c first measured.

Each pick is added to the seed set and a model is trained from scratch on it with the same steps
and seed, then scored on ``--eval-dataset``'s test split (``cli.py eval --json``, unconstrained:
mean field accuracy over the choice fields and the caption). ``--jobs`` trainings run side by side,
each with one OpenMP thread (accuracy figures do not depend on load). Runs already finished under
--work are reused. Prints mean ± sd per K and strategy and the paired differences against random;
saves bench/results/label_next.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, git_rev, machine, machine_line, save_result, table  # noqa: E402
from confidence_experiment import log, make_dataset, read_rows  # noqa: E402

NAME = "label_next"
# name -> (core.data.picking strategy, score it ranks by); random is drawn here
PICKS = {"uncertainty": ("uncertainty", "answer"), "hybrid": ("hybrid", "answer"),
         "hybrid-field": ("hybrid", "field")}
STRATEGIES = ("random", *PICKS)


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)


def train_and_score(dataset: Path, run: Path, steps: int, seed: int, eval_dataset: str) -> dict:
    """Train (reused when `run` has a final model), then score on the eval set's test split."""
    scored = run / "label_next_eval.json"
    if scored.is_file():
        return json.loads(scored.read_text())
    t0 = time.time()
    if not (run / "final").is_dir():
        out = cli("train", "--dataset", dataset, "--output", run, "--max-steps", steps, "--seed", seed,
                  "--save-steps", 0, "--save-total-limit", 0)
        if out.returncode != 0:
            raise SystemExit(f"{run}: training failed\n{out.stderr[-3000:]}")
    trained = time.time() - t0
    out = cli("eval", "--model", run, "--dataset", eval_dataset, "--split", "test", "--unconstrained", "--json")
    if out.returncode != 0:
        raise SystemExit(f"{run}: eval failed\n{out.stderr[-3000:]}")
    rep = json.loads(out.stdout)
    result = {"mean_field_accuracy": rep["mean_field_accuracy"], "per_field": rep["per_field"],
              "schema_valid_rate": rep["schema_valid_rate"], "train_s": round(trained, 1)}
    scored.write_text(json.dumps(result))
    log(f"{run.parent.name}/{run.name}: mean field accuracy {result['mean_field_accuracy']}")
    return result


def picks(seed_run: Path, pool: Path, ks: list[int], seed: int, cache: Path) -> dict:
    """{k: {strategy: [clip, ...]}} from one pre-labelling pass of the pool (saved, so reused)."""
    if cache.is_file():
        cached = {int(k): v for k, v in json.loads(cache.read_text()).items()}
        if any(set(v) != set(STRATEGIES) for v in cached.values()):
            # an older version of this script named other orders by the same names; its runs are not these
            raise SystemExit(f"{cache} holds the picks {sorted(next(iter(cached.values())))}, not {list(STRATEGIES)}: "
                             "made by an older bench/label_next.py; give a new --work")
        return cached
    from core.serve.prelabel import prelabel_dataset

    rep = prelabel_dataset(pool, str(seed_run), batch_size=8, device="cpu", constrained=True, redo_drafts=True,
                           keep_embeddings=True)
    order = sorted(rep.drafts)
    random.Random(1000 + seed).shuffle(order)
    out = {k: {"random": order[:k], **{name: [i.rel for i in rep.label_next(k, strategy, by=by)]
                                       for name, (strategy, by) in PICKS.items()}} for k in ks}
    cache.write_text(json.dumps(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-dataset", required=True)
    ap.add_argument("--work", default="/tmp/label_next")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--seed-clips", type=int, default=24)
    ap.add_argument("--ks", default="48,96")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--report", action="store_true",
                    help="train nothing: print the table from the runs already scored under --work")
    args = ap.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    work = Path(args.work)
    if args.report:
        return report(work, ks, seeds, args)
    work.mkdir(parents=True, exist_ok=True)
    print(machine_line(), flush=True)
    t0 = time.time()
    train_rows = [r for r in read_rows() if r.get("split") == "train"]
    split = {}
    for seed in seeds:
        rows = train_rows[:]
        random.Random(seed).shuffle(rows)
        split[seed] = (rows[:args.seed_clips], rows[args.seed_clips:])
    pool = ThreadPoolExecutor(args.jobs)
    seed_models = {seed: pool.submit(train_and_score, make_dataset(work / f"s{seed}/data-seed", split[seed][0], True),
                                     work / f"s{seed}/run-seed", args.steps, seed, args.eval_dataset)
                   for seed in seeds}
    jobs = {}
    for seed in seeds:  # each seed's picks as soon as its seed model is there, while the others train
        seed_models[seed].result()
        pool_ds = make_dataset(work / f"s{seed}/data-pool", split[seed][1], False)
        chosen = picks(work / f"s{seed}/run-seed", pool_ds, ks, seed, work / f"s{seed}/picks.json")
        by_video = {r["video"]: r for r in split[seed][1]}
        for k in ks:
            for strategy in STRATEGIES:
                name = f"{strategy}-k{k}"
                ds = make_dataset(work / f"s{seed}/data-{name}", split[seed][0] + [by_video[v] for v in chosen[k][strategy]],
                                  True)
                jobs[seed, k, strategy] = pool.submit(train_and_score, ds, work / f"s{seed}/run-{name}", args.steps,
                                                      seed, args.eval_dataset)
    results = {f"{seed}/{k}/{s}": job.result() for (seed, k, s), job in jobs.items()}
    seed_acc = {seed: f.result()["mean_field_accuracy"] for seed, f in seed_models.items()}
    summarise(results, seed_acc, ks, seeds, args, t0)
    return 0


def report(work: Path, ks: list[int], seeds: list[int], args) -> int:
    """The table over the seeds whose every run is scored (an unfinished experiment's state)."""
    def scored(seed, name):
        path = work / f"s{seed}/run-{name}/label_next_eval.json"
        return json.loads(path.read_text()) if path.is_file() else None

    done = [seed for seed in seeds if all(scored(seed, f"{s}-k{k}") for k in ks for s in STRATEGIES)
            and scored(seed, "seed")]
    if not done:
        print("no seed has all its runs scored yet")
        return 1
    results = {f"{seed}/{k}/{s}": scored(seed, f"{s}-k{k}") for seed in done for k in ks for s in STRATEGIES}
    summarise(results, {seed: scored(seed, "seed")["mean_field_accuracy"] for seed in done}, ks, done, args,
              time.time())
    return 0


def summarise(results: dict, seed_acc: dict, ks: list[int], seeds: list[int], args, t0: float) -> None:
    body, summary = [], {}
    for k in ks:
        acc = {s: [results[f"{seed}/{k}/{s}"]["mean_field_accuracy"] for seed in seeds] for s in STRATEGIES}
        for s in STRATEGIES:
            diff = [a - r for a, r in zip(acc[s], acc["random"])]
            summary[f"{k}/{s}"] = {"mean": statistics.mean(acc[s]), "sd": statistics.stdev(acc[s]) if len(seeds) > 1 else 0,
                                   "per_seed": acc[s], "minus_random": diff}
            body.append([k, s, f"{statistics.mean(acc[s]):.3f} ± {summary[f'{k}/{s}']['sd']:.3f}",
                         " ".join(f"{a:.3f}" for a in acc[s]),
                         "-" if s == "random" else f"{statistics.mean(diff):+.3f} ({sum(d > 0 for d in diff)}/{len(diff)} above)"])
    print(f"\nseed-set models ({args.seed_clips} clips): " + ", ".join(f"{v:.3f}" for v in seed_acc.values()))
    print(table(body, ["K", "strategy", "mean ± sd", "per seed", "minus random (seeds above)"]))
    save_result(NAME, {"machine": machine(), "commit": git_rev(), "args": vars(args), "seed_models": seed_acc,
                       "results": results, "summary": summary, "wall_s": round(time.time() - t0)})
    print(f"seeds {seeds}; wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
