"""Headless entry point: every subcommand is a thin call into core.

    python cli.py inspect-video PATH [--sampling uniform|fps] [--frames N] [--fps F] [--json]
    python cli.py train --dataset DIR --output RUN_DIR [--config FILE] [--FIELD VALUE for any TrainConfig field]
    python cli.py train --resume RUN_DIR
    python cli.py estimate --dataset DIR [--config FILE] [--clip REL] [any train --flag] [--json]
    python cli.py merge RUN_DIR [--output DIR]
    python cli.py eval --model NAME_OR_RUN --dataset DIR --split test [--json]
    python cli.py models [--json]
    python cli.py predict --model M --input VIDEO_OR_DIR --output OUT.{jsonl,csv,parquet,sqlite} [--num-processes N]
    python cli.py import SRC --output DIR [--layout auto|seed|videofolder|conversation|qevd] [--merge]
    python cli.py export-dataset --dataset DIR --output OUT [--format seed|conversation]
    python cli.py split --dataset DIR [--ratios 0.8,0.1,0.1] [--seed N] [--stratify FIELD] [--keep-existing]
    python cli.py validate --dataset DIR [--schema FILE] [--json]
    python cli.py prelabel --dataset DIR --model NAME_OR_RUN [--limit N] [--redo-drafts]

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
    from core.video.frames import probe
    from core.video.sampling import SamplingSpec, sample_indices

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
    from core.train.entry import train
    from core.train.runtime import dist_info

    if args.resume:
        run_dir = args.resume
        dataset = args.dataset or _dataset_of_run(run_dir)
    else:
        if not args.dataset or not args.output:
            raise SystemExit("error: train needs --dataset DIR and --output RUN_DIR (or --resume RUN_DIR)")
        run_dir, dataset = args.output, args.dataset
    cfg = _train_config(args)
    if "LOCAL_RANK" not in os.environ and "train" in sys.argv:  # typed by a user, not started by a launcher
        from core.runs.launch import plan_launch

        plan = plan_launch(sys.argv[sys.argv.index("train") + 1:], cfg, run_dir)
        if plan.processes > 1 or plan.config_path is not None:
            os.makedirs(run_dir, exist_ok=True)
            plan.write_config()
            print(f"starting {plan.processes} processes: {' '.join(plan.cmd)}", file=sys.stderr)
            import subprocess

            return subprocess.call(plan.cmd)
    t0 = time.time()
    status = train(dataset, run_dir, cfg, resume=bool(args.resume), echo=_progress_echo)
    if dist_info()[0] == 0:
        print(f"{status['state']}: step {status.get('global_step')} in {time.time() - t0:.0f}s -> {run_dir}")
    return 0


def _train_config(args):
    """TrainConfig from the run's config.yaml (--resume) or --config FILE, then every --flag given."""
    from dataclasses import fields

    from core.config import TrainConfig

    if getattr(args, "resume", None):
        cfg = TrainConfig.from_yaml(os.path.join(args.resume, "config.yaml"))
    else:
        cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(cfg, f.name, value)
    cfg.validate("command line")
    return cfg


def _add_train_config_flags(p) -> None:
    """Every TrainConfig field as --field-name (num_frames also as --frames), for train and estimate."""
    from dataclasses import fields

    from core.config import TrainConfig

    for f in fields(TrainConfig):
        flags = ["--" + f.name.replace("_", "-")] + (["--frames"] if f.name == "num_frames" else [])
        kind = str(f.type)
        if kind.startswith("bool"):
            p.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(*flags, dest=f.name, type=typ, default=None)


def cmd_estimate(args) -> int:
    from core.train.estimate import estimate, format_estimate

    report = estimate(_train_config(args), args.dataset, clip=args.clip, sample=args.sample)
    if args.json:
        _print_json(report)
    else:
        print(format_estimate(report))
    return 0


def cmd_merge(args) -> int:
    from core.train.merge import merge_run

    out = merge_run(args.run_dir, args.output)
    print(f"merged model -> {out} (use it as --model {out})")
    return 0


def _dataset_of_run(run_dir: str) -> str:
    try:
        return open(os.path.join(run_dir, "dataset.txt")).read().strip()
    except OSError:
        raise SystemExit(f"error: {run_dir}: no dataset.txt; pass --dataset DIR") from None


def cmd_eval(args) -> int:
    from core.data.dataset import load_dataset
    from core.schema.scoring import evaluate
    from core.serve.predictor import Predictor

    data = load_dataset(args.dataset)
    samples = data.split(args.split)
    if not samples:
        raise SystemExit(f"error: {args.dataset}: split '{args.split}' has no clips")
    predictor = Predictor.load(args.model, schema=data.schema, device=args.device,
                               trust_remote_code=args.trust_remote_code)
    schema = predictor.spec.schema
    from core.schema.base import schema_hash

    if data.schema is not None and schema_hash(data.schema) != predictor.spec.schema_hash:
        print(f"warning: {args.dataset}/schema.json differs from the schema {args.model} was trained with; "
              "scoring against the training schema", file=sys.stderr)
    t0 = time.time()
    preds = predictor.predict([s.video for s in samples], batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens, constrained=args.constrained)
    report = evaluate(schema, [p.text for p in preds], [s.label for s in samples])
    report.update(model=args.model, split=args.split, constrained=args.constrained,
                  seconds=round(time.time() - t0, 2),
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
    from core.models.families import FAMILIES
    from core.models.tiny.registry import TINY_MODELS

    rows = [{"family": f.name, "hub_examples": list(f.hub_examples), "frames_as": f.frames_as,
             "tiny": f"tiny:{f.tiny}" if f.tiny else None, "tiny_offline": f.tiny in TINY_MODELS,
             "default_frames": f.default_frames, "default_size": list(f.default_size)}
            for f in FAMILIES.values()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['family']:17} {r['tiny'] or '-':23} {', '.join(r['hub_examples'])}")
    return 0


def cmd_predict(args) -> int:
    from core.serve.batch import list_inputs, parse_shard, predict_sharded, run_predict

    items = list_inputs(args.input, args.split)
    if args.num_processes > 1:
        # the parent only needs the schema the workers write with; it loads no weights
        schema = _predict_schema(args)
        passthrough = _worker_args(args)
        rows = predict_sharded(passthrough, args.output, args.num_processes, schema)
        print(f"{len(rows)} rows from {args.num_processes} workers -> {args.output}")
        return 0
    from core.serve.predictor import Predictor

    predictor = Predictor.load(args.model, schema=_dataset_schema(args), device=args.device,
                               trust_remote_code=args.trust_remote_code)
    counts = run_predict(predictor, items, args.output, batch_size=args.batch_size, overwrite=args.overwrite,
                         progress=_count_echo, shard=parse_shard(args.shard), skip_from=args.skip_from,
                         max_new_tokens=args.max_new_tokens, constrained=not args.unconstrained)
    print(f"{counts['written']} rows written ({counts['valid']} schema-valid, {counts['errors']} errors), "
          f"{counts['skipped']} already done -> {args.output}")
    return 0


def _worker_args(args) -> list[str]:
    """The predict arguments each shard worker gets (the parent adds --output and --shard)."""
    out = ["--model", args.model, "--input", str(args.input), "--batch-size", str(args.batch_size),
           "--max-new-tokens", str(args.max_new_tokens), "--device", args.device]
    for flag, value in (("--split", args.split), ("--schema", args.schema_from)):
        if value:
            out += [flag, str(value)]
    for flag, on in (("--unconstrained", args.unconstrained), ("--overwrite", args.overwrite),
                     ("--trust-remote-code", args.trust_remote_code)):
        if on:
            out.append(flag)
    return out


def _predict_schema(args):
    from pathlib import Path

    from core.models.loading import is_run_dir
    from core.spec import PreprocessSpec

    if Path(args.model).is_dir() and is_run_dir(Path(args.model)):
        return PreprocessSpec.load(args.model).schema
    schema = _dataset_schema(args)
    if schema is None:
        raise SystemExit(f"error: {args.model} is a base model: give --schema FILE (or an input with schema.json)")
    return schema


def _dataset_schema(args):
    """The schema a base model is asked with: --schema FILE, else the input dataset's schema.json."""
    from pathlib import Path

    from core.schema.base import load_schema

    if args.schema_from:
        return load_schema(args.schema_from)
    candidate = Path(args.input) / "schema.json"
    return load_schema(candidate) if candidate.is_file() else None


def cmd_import(args) -> int:
    from core.data.imports.layouts import import_dataset

    report = import_dataset(args.src, args.output, layout=args.layout, merge=args.merge)
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"imported {report.rows} clips ({report.layout} layout) -> {report.dest}"
          + (f"; {len(report.problems)} skipped" if report.problems else ""))
    return 0


def cmd_export_dataset(args) -> int:
    from core.data.exports import export_conversations, export_seed

    if args.format == "seed":
        export_seed(args.dataset, args.output)
    else:
        from core.data.store import AnnotationStore
        from core.schema.prompt import build_instruction

        schema = AnnotationStore(args.dataset).schema()
        if schema is None:
            raise SystemExit(f"error: {args.dataset}: no schema.json; the conversation prompt is built from it")
        export_conversations(args.dataset, args.output, build_instruction(schema))
    print(f"wrote {args.output}")
    return 0


def cmd_split(args) -> int:
    from core.data.splits import assign_splits, parse_ratios
    from core.data.store import AnnotationStore

    store = AnnotationStore(args.dataset)
    clips = store.clips(check_video=False)
    if args.keep_existing:
        clips = [c for c in clips if c.split is None]
    assignment = assign_splits([(c.rel, c.label) for c in clips], parse_ratios(args.ratios), args.seed,
                               args.stratify)
    changed = store.set_splits(assignment)
    counts = {s: sum(1 for v in assignment.values() if v == s) for s in ("train", "val", "test")}
    print(f"{len(assignment)} clips: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({changed} rows changed)")
    return 0


def cmd_validate(args) -> int:
    from core.data.store import INVALID, UNREADABLE, AnnotationStore

    store = AnnotationStore(args.dataset, schema_path=args.schema)
    schema = store.schema()
    if schema is None:
        raise SystemExit(f"error: {args.dataset}: no schema.json (give --schema FILE)")
    problems = [{"file": f, "field": fld, "reason": r} for f, fld, r in store.check_labels(schema)]
    clips = store.clips()
    problems += [{"file": c.rel, "field": "(video)", "reason": c.problems[0]} for c in clips if c.status == UNREADABLE]
    counts = {s: sum(1 for c in clips if c.status == s) for s in ("labelled", INVALID, "draft", "unlabelled", UNREADABLE)}
    if args.json:
        _print_json({"counts": counts, "problems": problems})
    else:
        for p in problems:
            print(f"{p['file']}: {p['field']}: {p['reason']}")
        print(", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if problems else 0


def cmd_prelabel(args) -> int:
    from core.data.prelabel import clips_to_prelabel, prelabel
    from core.data.store import AnnotationStore
    from core.serve.predictor import Predictor

    store = AnnotationStore(args.dataset)
    schema = store.schema()
    if schema is None:
        raise SystemExit(f"error: {args.dataset}: no schema.json; drafts are checked against it")
    rels = clips_to_prelabel(store, include_drafts=args.redo_drafts, limit=args.limit)
    if not rels:
        print("nothing to pre-label: every clip has a label" + ("" if args.redo_drafts else " or a draft"))
        return 0
    predictor = Predictor.load(args.model, schema=schema, device=args.device,
                               trust_remote_code=args.trust_remote_code)
    report = prelabel(store, predictor, rels, batch_size=args.batch_size, progress=_count_echo)
    for err in report.errors:
        print(f"skipped: {err}", file=sys.stderr)
    print(f"{report.drafted} drafts written to {store.root / 'drafts.jsonl'} "
          f"({report.flagged} flagged as not schema-valid, {len(report.errors)} unreadable)")
    return 0


def _count_echo(done: int, total: int) -> None:
    sys.stderr.write(f"\r{done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


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
    p.add_argument("--config", help="YAML with any TrainConfig field; flags override it")
    p.add_argument("--resume", metavar="RUN_DIR")
    _add_train_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("estimate", help="tokens, parameters and memory of a training run, without training")
    p.add_argument("--dataset", required=True)
    p.add_argument("--config", help="YAML with any TrainConfig field; flags override it")
    p.add_argument("--clip", help="report this clip's exact sequence length (path as in metadata.jsonl)")
    p.add_argument("--sample", type=int, default=16, help="clips encoded for the maximum sequence length")
    p.add_argument("--json", action="store_true")
    _add_train_config_flags(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("merge", help="merge a run's LoRA adapter into its base (a plain HF model folder)")
    p.add_argument("run_dir")
    p.add_argument("--output", help="folder to write (default RUN_DIR/merged)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("eval", help="score a model on a dataset split")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--show", type=int, default=0, help="include the first N raw outputs")
    p.add_argument("--constrained", action="store_true", help="mask decoding to the schema")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="list model families")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("predict", help="predict JSON for a video, a folder or a dataset split into a file")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="video file, folder of videos, or dataset folder (with --split)")
    p.add_argument("--output", required=True, help=".jsonl, .csv, .parquet or .sqlite")
    p.add_argument("--split", help="with a dataset folder: train, val, test or all")
    p.add_argument("--schema", dest="schema_from", help="schema for a base model (default: INPUT/schema.json)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--unconstrained", action="store_true", help="free decoding (default: schema-constrained)")
    p.add_argument("--overwrite", action="store_true", help="redo clips already in OUTPUT for this model")
    p.add_argument("--num-processes", type=int, default=1, help="shard the clips over N worker processes")
    p.add_argument("--shard", help=argparse.SUPPRESS)
    p.add_argument("--skip-from", help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("import", help="import a dataset in another layout into the seed layout")
    p.add_argument("src", help="folder or file to import")
    p.add_argument("--output", required=True, help="dataset folder to create (seed layout)")
    p.add_argument("--layout", default="auto", choices=["auto", "seed", "videofolder", "conversation", "qevd"])
    p.add_argument("--merge", action="store_true", help="add to an existing dataset instead of refusing")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export-dataset", help="write a dataset as seed layout or conversation JSONL")
    p.add_argument("--dataset", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--format", default="seed", choices=["seed", "conversation"])
    p.set_defaults(func=cmd_export_dataset)

    p = sub.add_parser("split", help="assign train/val/test splits")
    p.add_argument("--dataset", required=True)
    p.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test (normalised)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stratify", help="label field to stratify by (e.g. event_type)")
    p.add_argument("--keep-existing", action="store_true", help="only assign clips without a split")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("validate", help="check every label against the schema; exit 1 if any breaks it")
    p.add_argument("--dataset", required=True)
    p.add_argument("--schema", help="schema file to check against (default: DIR/schema.json)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("prelabel", help="draft labels for unlabelled clips with a model")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--redo-drafts", action="store_true", help="also re-draft clips that already have a draft")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_prelabel)
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
