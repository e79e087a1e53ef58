"""`eval`, `models`, `predict`: score a model on a split, list the model families, write predictions
for a video, a folder or a split into JSONL / CSV / Parquet / SQLite.

`eval` is core.serve.report.evaluate_model (the Export tab's table builds its rows with the same
report builder and warnings; `--json` includes `calibration`, per field its ECE, reliability bins
and accuracy above confidence thresholds); `predict` is core.serve.batch.predict_to_file, the Export tab's call
too (with --num-processes N it runs worker processes that each run `cli.py predict --shard I/N`;
with --engine ray a Ray Data pipeline, core.serve.ray_engine).
"""

from __future__ import annotations

import argparse
import sys

from commands.common import add_model_flags, count_echo, print_json

MODEL_HELP = "tiny:NAME, a hub id, a local model folder or a run directory"


def register(sub) -> None:
    p = sub.add_parser("eval", help="score a model on a dataset split")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="clips to score")
    p.add_argument("--max-new-tokens", type=int, default=160, help="most tokens generated per answer")
    p.add_argument("--show", type=int, default=0, help="include the first N raw outputs")
    mode = p.add_mutually_exclusive_group()
    # the same default as predict and the app's tabs: scores of the answers predict will give
    mode.add_argument("--unconstrained", dest="constrained", action="store_false",
                      help="free decoding (default: constrained to the schema, as predict)")
    mode.add_argument("--constrained", dest="constrained", action="store_true",
                      help="constrained to the schema (the default; kept for older scripts)")
    p.set_defaults(constrained=True)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_flags(p, batch_size=8)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="fit a run's per-field confidence on a labelled split and save it in the run")
    p.add_argument("run", help="run directory")
    p.add_argument("--dataset", required=True, help="dataset folder whose split has labels the run did not train on")
    p.add_argument("--split", default="val", choices=["val", "test"], help="clips to fit on (default val)")
    p.add_argument("--target-precision", type=float, default=0.98,
                   help="per field, accept answers whose calibrated score keeps this precision on the split")
    p.add_argument("--unconstrained", dest="constrained", action="store_false",
                   help="fit on free decoding (default: constrained to the schema, as predict serves)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")
    add_model_flags(p, batch_size=8)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("models", help="list model families")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("predict", help="predict JSON for a video, a folder or a dataset split into a file")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--input", required=True, help="video file, folder of videos, or dataset folder (with --split)")
    p.add_argument("--output", required=True, help=".jsonl, .csv, .parquet or .sqlite")
    p.add_argument("--split", help="with a dataset folder: train, val, test or all")
    p.add_argument("--schema", dest="schema_from", help="schema for a base model (default: INPUT/schema.json)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="most tokens generated per answer")
    p.add_argument("--unconstrained", action="store_true", help="free decoding (default: schema-constrained)")
    p.add_argument("--overwrite", action="store_true", help="redo clips already in OUTPUT for this model")
    p.add_argument("--num-processes", type=int, default=1,
                   help="local engine: shard the clips over N worker processes on this machine")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (or --num-processes); ray: a Ray Data pipeline (local Ray or a cluster)")
    p.add_argument("--ray-address", help="with --engine ray: join this cluster (e.g. 10.0.0.1:6379; default: start one here)")
    p.add_argument("--num-workers", type=int, help="with --engine ray: model actors (default: one per GPU, else 1)")
    p.add_argument("--prefetch-batches", type=int, default=2, help="local engine: batches whose frames a loader "
                   "thread decodes ahead while the model generates (0: decode each batch before generating it)")
    p.add_argument("--window-seconds", type=float, help="predict consecutive windows of this many seconds of each "
                   "video (frames sampled with the model's spec inside each window): one row per window, with "
                   "start and end")
    p.add_argument("--stride-seconds", type=float, help="with --window-seconds: seconds between window starts "
                   "(default: the window length, no overlap)")
    p.add_argument("--shard", help=argparse.SUPPRESS)
    p.add_argument("--skip-from", help=argparse.SUPPRESS)
    add_model_flags(p, batch_size=8)
    p.set_defaults(func=cmd_predict)


def cmd_eval(args) -> int:
    from core.serve.report import evaluate_model

    report = evaluate_model(args.model, args.dataset, args.split, device=args.device,
                            trust_remote_code=args.trust_remote_code, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, constrained=args.constrained, show=args.show)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(report)
        return 0
    left = len(report.get("left_out", []))
    print(f"model {args.model} on {args.split} ({report['count']} clips scored"
          + (f"; {left} left out: unreadable, see the warning)" if left else ")")
          + f", decoding {'constrained to the schema' if args.constrained else 'unconstrained'}")
    for key in ("json_valid_rate", "schema_valid_rate", "mean_field_accuracy"):
        print(f"  {key:22} {report[key]:.3f}")
    for name, acc in report["per_field"].items():
        print(f"  field {name:28} {acc:.3f}")
    for name, s in report["text_scores"].items():
        print(f"  text  {name:28} token_f1 {s['token_f1']:.3f}")
    print(f"  confidence: {report['calibration_source']}")
    for name, cal in report.get("calibration", {}).items():
        sel = cal.get("selective")
        kept = "" if not sel else (f", accepted {sel['kept']:.0%} at precision {sel['precision']}" if sel["kept"]
                                   else ", accepted none (no threshold met the target)")
        print(f"  calibration {name:22} ECE {cal['ece']:.3f} (raw {cal['ece_raw']:.3f}) over {cal['rows']} rows"
              f", coverage at 0.98 precision {cal['coverage_at_precision']['0.98']:.0%}{kept}")
    return 0


def cmd_calibrate(args) -> int:
    from core.serve.calibrate import calibrate_run, calibration_rows

    cal = calibrate_run(args.run, args.dataset, args.split, args.target_precision, args.constrained,
                        device=args.device, batch_size=args.batch_size, trust_remote_code=args.trust_remote_code,
                        progress=count_echo)
    if args.json:
        from dataclasses import asdict

        print_json(asdict(cal))
        return 0
    print(f"calibrated {args.run} on {cal.clips} {cal.split} clips, target precision {cal.target_precision:g}")
    for note in cal.notes:
        print(f"  note: {note}")
    for r in calibration_rows(cal):
        accept = ("-" if r["coverage"] is None else "never (no threshold met the target)" if r["threshold"] is None
                  else f">= {r['threshold']:.4f} (keeps {r['coverage']:.0%} at precision {r['precision']})")
        print(f"  {r['field']:24} ECE {r['ece_raw']} -> {r['ece']} over {r['rows']} rows ({r['map']} map); "
              f"accept {accept}")
    return 0


def cmd_models(args) -> int:
    from core.models.families import FAMILIES
    from core.models.tiny.registry import TINY_MODELS

    rows = [{"family": f.name, "hub_examples": list(f.hub_examples), "frames_as": f.frames_as,
             "tiny": f"tiny:{f.tiny}" if f.tiny else None, "tiny_offline": f.tiny in TINY_MODELS,
             "default_frames": f.default_frames, "default_size": list(f.default_size)}
            for f in FAMILIES.values()]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['family']:17} {r['tiny'] or '-':23} {', '.join(r['hub_examples'])}")
    return 0


def cmd_predict(args) -> int:
    try:
        summary = _predict(args)
    except KeyboardInterrupt as exc:  # core words it (core.serve.batch.PredictStopped): what was kept, how to go on
        end_progress = "\n" if sys.stderr.isatty() else ""  # a terminal's progress line has no newline yet
        # a bare KeyboardInterrupt (before the writer started) has no words of its own
        print(f"{end_progress}{str(exc) or f'stopped before any clip was predicted; nothing written to {args.output}'}",
              file=sys.stderr)
        return 130
    if summary["valid"] is None:  # sharded workers: their counts stay in their own output
        print(f"{summary['written']} rows from {summary['workers']} workers -> {args.output}")
    else:
        print(f"{summary['written']} rows written ({summary['valid']} schema-valid, {summary['errors']} errors), "
              f"{summary['skipped']} already done -> {args.output}")
    return 0


def _predict(args) -> dict:
    from core.serve.batch import predict_to_file

    return predict_to_file(args.model, args.input, args.output, args.split, schema=args.schema_from,
                           device=args.device, trust_remote_code=args.trust_remote_code,
                           batch_size=args.batch_size, overwrite=args.overwrite, num_processes=args.num_processes,
                           shard=args.shard, skip_from=args.skip_from, progress=count_echo,
                           max_new_tokens=args.max_new_tokens, constrained=not args.unconstrained,
                           engine=args.engine, ray_address=args.ray_address, num_workers=args.num_workers,
                           window_seconds=args.window_seconds, stride_seconds=args.stride_seconds,
                           prefetch=args.prefetch_batches)
