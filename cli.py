"""Headless entry point: every subcommand is a thin call into core.

    python cli.py inspect-video PATH [--sampling uniform|fps] [--frames N] [--fps F] [--json]
    python cli.py train --dataset DIR --output RUN_DIR [--config FILE] [--model NAME] [--max-steps N]
    python cli.py train --resume RUN_DIR
    python cli.py eval --model NAME_OR_RUN --dataset DIR --split test [--json]
    python cli.py models [--json]

Errors from core are printed as one line `error: ...` with exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_inspect_video(args) -> int:
    from core.video import SamplingSpec, probe, sample_indices

    info = probe(args.path)
    spec = SamplingSpec(sampling=args.sampling, num_frames=args.frames, fps=args.fps)
    indices = sample_indices(info, spec)
    report = {
        "path": info.path, "frame_count": info.frame_count, "frame_count_exact": info.frame_count_exact,
        "fps": round(info.fps, 3), "duration": round(info.duration, 3), "width": info.width,
        "height": info.height, "keyframe_count": info.keyframe_count, "codec": info.codec,
        "rotation": info.rotation, "sampling": args.sampling, "indices": indices,
    }
    if args.json:
        _print_json(report)
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")
    return 0


def _progress_echo(step: int, max_steps: int, loss: float) -> None:
    width = 30
    done = int(width * step / max(max_steps, 1))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{max_steps} loss {loss:.4f}")
    sys.stderr.flush()
    if step >= max_steps:
        sys.stderr.write("\n")


def cmd_train(args) -> int:
    from core.config import TrainConfig
    from core.trainer import train

    if args.resume:
        import yaml

        run_dir = args.resume
        cfg = TrainConfig.from_dict(yaml.safe_load(open(os.path.join(run_dir, "config.yaml"))) or {})
        dataset = args.dataset or _dataset_of_run(run_dir)
    else:
        if not args.dataset or not args.output:
            raise SystemExit("error: train needs --dataset DIR and --output RUN_DIR (or --resume RUN_DIR)")
        cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
        run_dir, dataset = args.output, args.dataset
    overrides = {"model": args.model, "max_steps": args.max_steps, "save_steps": args.save_steps,
                 "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
                 "num_frames": args.frames, "method": args.method}
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    cfg.validate()
    t0 = time.time()
    status = train(dataset, run_dir, cfg, resume=bool(args.resume), echo=_progress_echo)
    print(f"{status['state']}: step {status.get('global_step')} in {time.time() - t0:.0f}s -> {run_dir}")
    return 0


def _dataset_of_run(run_dir: str) -> str:
    try:
        return open(os.path.join(run_dir, "dataset.txt")).read().strip()
    except OSError:
        raise SystemExit(f"error: {run_dir}: no dataset.txt; pass --dataset DIR") from None


def cmd_eval(args) -> int:
    from core.dataset import load_dataset
    from core.evaluation import evaluate
    from core.inference import Predictor

    data = load_dataset(args.dataset)
    samples = data.split(args.split)
    if not samples:
        raise SystemExit(f"error: {args.dataset}: split '{args.split}' has no clips")
    predictor = Predictor.load(args.model, schema=data.schema, device=args.device,
                               trust_remote_code=args.trust_remote_code)
    schema = predictor.spec.schema
    from core.schema import schema_hash

    if data.schema is not None and schema_hash(data.schema) != predictor.spec.schema_hash:
        print(f"warning: {args.dataset}/schema.json differs from the schema {args.model} was trained with; "
              "scoring against the training schema", file=sys.stderr)
    t0 = time.time()
    preds = predictor.predict([s.video for s in samples], batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens)
    report = evaluate(schema, [p.text for p in preds], [s.label for s in samples])
    report.update(model=args.model, split=args.split, seconds=round(time.time() - t0, 2),
                  spec_schema_hash=predictor.spec.schema_hash)
    if args.show:
        report["examples"] = [{"video": s.rel, "output": p.text, "error": p.error} for s, p in zip(samples, preds)][: args.show]
    if args.json:
        _print_json(report)
    else:
        print(f"model {args.model} on {args.split} ({report['count']} clips)")
        for key in ("json_valid_rate", "schema_valid_rate", "mean_field_accuracy"):
            print(f"  {key:22} {report[key]:.3f}")
        for name, acc in report["per_field"].items():
            print(f"  field {name:28} {acc:.3f}")
        for name, s in report["text_scores"].items():
            print(f"  text  {name:28} token_f1 {s['token_f1']:.3f}")
    return 0


def cmd_models(args) -> int:
    from core.models import FAMILIES

    rows = [{"family": f.name, "hub_examples": list(f.hub_examples), "frames_as": f.frames_as,
             "tiny": f"tiny:{f.tiny}" if f.tiny else None, "default_frames": f.default_frames}
            for f in FAMILIES.values()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['family']:14} {r['tiny'] or '-':18} {', '.join(r['hub_examples'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Video VLM Workbench (headless)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect-video", help="probe a video and show the frames the sampler picks")
    p.add_argument("path")
    p.add_argument("--sampling", choices=["uniform", "fps"], default="uniform")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect_video)

    p = sub.add_parser("train", help="fine-tune a model on a dataset folder")
    p.add_argument("--dataset")
    p.add_argument("--output")
    p.add_argument("--config")
    p.add_argument("--resume", metavar="RUN_DIR")
    p.add_argument("--model")
    p.add_argument("--method", choices=["lora", "full"])
    p.add_argument("--max-steps", type=int)
    p.add_argument("--save-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--frames", type=int)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a model on a dataset split")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--show", type=int, default=0, help="include the first N raw outputs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="list model families")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from core.errors import WorkbenchError

    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
