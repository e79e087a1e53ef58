"""Issue 24's measurements: is calibrated confidence calibrated on test, do the val thresholds hold
their precision on test, and which signal ranks the clips that have a wrong field first?

    python bench/calibration_experiment.py --dataset DIR --run RUN [--run RUN2 ...] [--split test]
        [--target 0.98] [--batch-size 8]

Each RUN is a finished run trained on DIR (``cli.py train``), calibrated on DIR's val split (at the
end of training, or ``cli.py calibrate``). For each run the clips of ``--split`` are answered twice
with schema-constrained decoding, as ``predict`` serves them:

- as served: the run's spec (8 frames at the midpoints of 8 equal segments);
- re-sampled: the same clip sampled at 16 segment midpoints, keeping every second frame starting
  with the second (each frame a quarter segment later than served; the two samplings are half a
  segment apart from each other's neighbours), so the model sees the same clip through other frames.

Figures per run (printed, and saved to bench/results/calibration_experiment.json):

1. Per field: accuracy, ECE of the raw scores and of the calibrated ones (10 bins, as ``eval``),
   and what the val threshold kept on this split: share kept and its precision (target − 0.02 is the
   bar), plus the coverage at 0.95/0.98/0.99 precision on this split itself (``eval --json``).
2. Ranking: AUROC for "this clip has a wrong enum, list or boolean field" (the chance a clip with an
   error ranks less sure than one without; 0.5 is chance) per signal:
   ``min_all`` (the least sure field including free text: the old queue order), ``product`` (the
   least sure choice field, raw), ``margin`` (the smallest p(taken) - p(runner-up) over the
   tokens that decided any choice field), ``calibrated`` (the same, calibrated), ``all_right`` (the
   product of the calibrated scores: the chance every choice field is right if fields erred
   independently), ``disagree`` (number of choice fields whose value differs between the two samplings),
   ``combined`` (disagreement first, then the calibrated score), ``review`` (the product's review
   decision: number of review fields, then the calibrated score), ``caption`` (the free-text
   caption's score alone), ``answer_logprob`` (the mean log-probability of the whole answer's
   tokens). Per field, the AUROC of its own raw score for "this field is wrong". Every clip's
   inputs to these signals are saved too (``per_clip``), so other orders can be scored offline.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import auroc, git_rev, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()

NAME = "calibration_experiment"


def shifted(frames, video, spec):
    """The clip re-sampled a quarter segment later (see the module doc)."""
    from core.video.frames import SampledFrames, sample_frames

    dense = sample_frames(video, dataclasses.replace(spec, num_frames=2 * spec.num_frames))
    return SampledFrames(dense.frames[1::2], dense.indices[1::2], dense.timestamps[1::2], dense.info)


def answer_clips(predictor, samples, batch_size: int):
    """[(served Generated, re-sampled Generated)] per clip, schema-constrained."""
    from core.video.frames import sample_frames

    spec = predictor.spec.sampling_spec
    out = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        served = [sample_frames(s.video, spec) for s in chunk]
        moved = [shifted(f, s.video, spec) for f, s in zip(served, chunk)]
        a = predictor.generate(served, 160, constrained=True, confidence=True)
        b = predictor.generate(moved, 160, constrained=True, confidence=True)
        out += list(zip(a, b))
        print(f"  {min(start + batch_size, len(samples))}/{len(samples)}", file=sys.stderr, flush=True)
    return out


def measure_run(run: str, dataset: str, split: str, batch_size: int) -> dict:
    from core.data.dataset import load_dataset
    from core.schema.base import extract_json
    from core.schema.calibration import choice_fields
    from core.schema.scoring import evaluate, score_row
    from core.serve.predictor import Predictor

    predictor = Predictor.load(run)
    cal = predictor.calibration
    if cal is None:
        raise SystemExit(f"{run}: not calibrated; run cli.py calibrate first")
    samples = load_dataset(dataset).split(split)
    schema = predictor.spec.schema
    choices = choice_fields(schema)
    answers = answer_clips(predictor, samples, batch_size)
    thresholds = {k: m.threshold for k, m in cal.fields.items() if m.decides_review}
    report = evaluate(schema, [a.text for a, _ in answers], [s.label for s in samples],
                      [a.confidence for a, _ in answers], [a.confidence_raw for a, _ in answers], thresholds)
    signals: dict[str, list] = {k: [] for k in ("min_all", "product", "margin", "calibrated", "all_right",
                                                "disagree", "combined", "review", "caption", "answer_logprob")}
    clips = []  # per clip, what every signal reads, so other orders can be scored offline
    wrong_clip, per_field, per_margin = [], {f: ([], []) for f in choices}, {f: ([], []) for f in choices}
    for s, (a, b) in zip(samples, answers):
        row = score_row(schema, a.text, s.label).fields
        wrong_clip.append(any(row.get(f, 0.0) < 1.0 for f in choices))
        raw = {f: a.confidence_raw.get(f, 0.0) for f in choices}
        calib = {f: a.confidence.get(f, 0.0) for f in choices}
        pa, pb = extract_json(a.text)[0] or {}, extract_json(b.text)[0] or {}
        disagree = sum(pa.get(f) != pb.get(f) for f in choices)
        least = min(calib.values())
        signals["min_all"].append(-min(a.confidence_raw.values(), default=0.0))
        signals["product"].append(-min(raw.values()))
        margins = {f: (a.margins or {}).get(f, 0.0) for f in choices}
        signals["margin"].append(-min(margins.values()))
        signals["calibrated"].append(-least)
        signals["all_right"].append(-math.prod(calib.values()))
        signals["disagree"].append(disagree)
        signals["combined"].append(disagree - least)
        signals["review"].append(len(a.review_fields) - least)
        signals["caption"].append(-(a.confidence_raw.get("caption") or 0.0))
        score = a.answer_confidence  # the queue's score (#24); None: no tokens
        mean_logprob = math.log(max(score, 1e-300)) if score is not None else 0.0
        signals["answer_logprob"].append(-mean_logprob)
        clips.append({"video": str(s.video), "wrong": {f: row.get(f, 0.0) < 1.0 for f in choices}, "raw": raw,
                      "calibrated": calib, "margins": margins, "caption_raw": a.confidence_raw.get("caption"),
                      "caption_calibrated": a.confidence.get("caption"), "disagree": disagree,
                      "mean_logprob": mean_logprob, "resampled_raw": {f: b.confidence_raw.get(f, 0.0)
                                                                                 for f in choices}})
        for f in choices:
            bad, good = per_field[f]
            (bad if row.get(f, 0.0) < 1.0 else good).append(-raw[f])
            bad, good = per_margin[f]
            (bad if row.get(f, 0.0) < 1.0 else good).append(-margins[f])
    ranking = {name: auroc([v for v, w in zip(vals, wrong_clip) if w], [v for v, w in zip(vals, wrong_clip) if not w])
               for name, vals in signals.items()}
    fields = {}
    for f, entry in report["calibration"].items():
        fields[f] = {"accuracy": report["per_field"].get(f, report["text_scores"].get(f, {}).get("token_f1")),
                     "ece_raw": entry["ece_raw"], "ece": entry["ece"],
                     "coverage_at_precision": entry["coverage_at_precision"],
                     "selective": entry.get("selective"), "val_threshold": thresholds.get(f),
                     "val_precision": cal.fields[f].precision, "val_coverage": cal.fields[f].coverage,
                     "auroc_field_wrong": auroc(*per_field[f]) if f in per_field else None,
                     "auroc_field_wrong_margin": auroc(*per_margin[f]) if f in per_margin else None}
    return {"run": run, "split": split, "clips": len(samples), "clips_with_an_error": sum(wrong_clip),
            "calibrated_on": f"{cal.clips} {cal.split} clips", "target_precision": cal.target_precision,
            "mean_field_accuracy": report["mean_field_accuracy"], "fields": fields, "ranking_auroc": ranking,
            "per_clip": clips}


def print_run(r: dict) -> None:
    print(f"\n{r['run']} on {r['split']} ({r['clips']} clips, {r['clips_with_an_error']} with a wrong choice "
          f"field; calibrated on {r['calibrated_on']}; mean field accuracy {r['mean_field_accuracy']})")
    rows = []
    for f, x in r["fields"].items():
        sel = x["selective"] or {}
        rows.append([f, x["accuracy"], x["ece_raw"], x["ece"], x["val_threshold"], sel.get("kept"), sel.get("precision"),
                     x["coverage_at_precision"]["0.98"], x["auroc_field_wrong"], x["auroc_field_wrong_margin"]])
    print(table(rows, ["field", "accuracy", "ECE raw", "ECE calibrated", "val threshold", "kept", "precision kept",
                       "coverage@0.98 (oracle)", "AUROC field (product)", "AUROC field (margin)"]))
    print(table([[k, v] for k, v in r["ranking_auroc"].items()], ["signal", "AUROC clip has a wrong field"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    info = machine()
    print(machine_line(info))
    runs = []
    for run in args.run:
        r = measure_run(run, args.dataset, args.split, args.batch_size)
        print_run(r)
        runs.append(r)
    save_result(NAME, {"machine": info, "commit": git_rev(), "dataset": args.dataset, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
