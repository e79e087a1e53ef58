"""`inspect-video`, `add-clips`, `import`, `export-dataset`, `split`, `validate`, `prelabel`, `review`:
the dataset's CLI twins of the Annotate and Export tabs.

`add-clips` is core.data.ingest.ingest, what Annotate → Add clips → "Add from a folder on this
machine" calls (the CLI reads any folder its user can; the app only its allowed folders).

`split` is core.data.splits.split_dataset and `export-dataset` core.data.exports.export_dataset,
the functions the tabs call; `import` is core.data.imports.import_dataset; `prelabel` is
core.serve.prelabel.prelabel_dataset, the Annotate tab's Pre-label call; `review` is
core.data.prelabel.review_queue, the order of the Annotate tab's review queue.
"""

from __future__ import annotations

import sys
from pathlib import Path

from commands.common import add_model_flags, count_echo, print_json
from core.data.picking import HYBRID, LABEL_NEXT, STRATEGIES


def register(sub) -> None:
    p = sub.add_parser("inspect-video", help="probe a video and show the frames the sampler picks")
    p.add_argument("path", help="a video (or image) file")
    p.add_argument("--sampling", choices=["uniform", "fps"], default="uniform",
                   help="uniform: --frames at segment mid-points; fps: --fps frames per second")
    p.add_argument("--frames", type=int, default=8, help="frames for uniform sampling (default 8)")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second for fps sampling (default 2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_inspect_video)

    p = sub.add_parser("add-clips", help="add videos from files, folders or globs on this machine to a dataset's "
                                         "videos/ (a re-run skips the files already added)")
    p.add_argument("dataset", help="dataset folder (created when missing)")
    p.add_argument("sources", nargs="+", metavar="SRC", help="video or image files, folders, or globs (quote them)")
    p.add_argument("--chunk-seconds", type=float, default=0,
                   help="cut videos into pieces of S seconds (<stem>_chunk000.mp4, ...; default 0: keep whole)")
    p.add_argument("--recursive", action="store_true", help="also add from sub-folders (keeping their paths), "
                                                            "and let ** in a glob match them")
    p.add_argument("--workers", type=int, help="processes that probe and copy/cut files (default: up to 4, one "
                                               "per CPU core; 1: in this process)")
    p.set_defaults(func=cmd_add_clips)

    p = sub.add_parser("import", help="import a dataset in another layout into the seed layout")
    p.add_argument("src", help="folder or file to import")
    p.add_argument("--output", required=True, help="dataset folder to create (seed layout)")
    p.add_argument("--layout", default="auto", choices=["auto", "seed", "videofolder", "conversation", "qevd"],
                   help="layout of SRC (default: detected)")
    p.add_argument("--merge", action="store_true", help="add to an existing dataset instead of refusing")
    p.set_defaults(func=cmd_import)

    from core.data.exports import DATASET_FORMATS

    p = sub.add_parser("export-dataset", help="write a dataset as seed layout, HF VideoFolder or conversation JSONL")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--output", required=True, help="folder to create (seed, videofolder) or .jsonl file "
                                                   "(conversation; inside it when a folder is given)")
    p.add_argument("--format", default="seed", choices=list(DATASET_FORMATS), help="layout to write (default seed)")
    p.set_defaults(func=cmd_export_dataset)

    p = sub.add_parser("split", help="assign train/val/test splits")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test (normalised)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same assignment")
    p.add_argument("--stratify", help="label field to stratify by (e.g. event_type)")
    p.add_argument("--keep-existing", action="store_true", help="only assign clips without a split")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("validate", help="check every label against the schema; exit 1 if any breaks it "
                                        "(first writes the app's pending edits into metadata.jsonl)")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--schema", help="schema file to check against (default: DIR/schema.json)")
    p.add_argument("--json", action="store_true", help="print counts and problems as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("prelabel", help="draft labels for unlabelled clips with a model")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--model", required=True, help="tiny:NAME, a hub id, a local model folder or a run directory")
    p.add_argument("--limit", type=int, help="draft at most N clips")
    p.add_argument("--redo-drafts", action="store_true", help="also re-draft clips that already have a draft")
    p.add_argument("--sample", type=int, metavar="SEED",
                   help="draw the --limit clips at random with this seed instead of taking the first N "
                        "(a pool for uncertainty sampling)")
    p.add_argument("--review", type=int, metavar="K",
                   help="then print K clips drafted here to label next, with their weakest fields")
    p.add_argument("--pick", choices=STRATEGIES, default=LABEL_NEXT,
                   help="how --review picks: the least sure clip of each of K groups of similar clips "
                        "(hybrid, default: measured best, README) or the K least sure (uncertainty)")
    p.add_argument("--unconstrained", action="store_true", help="free decoding (default: schema-constrained)")
    add_model_flags(p, batch_size=4)
    p.set_defaults(func=cmd_prelabel)

    p = sub.add_parser("review", help="list the clips with a draft, least sure first (the Annotate review queue)")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--limit", type=int, help="at most N clips")
    p.add_argument("--json", action="store_true", help="print the queue as JSON")
    p.set_defaults(func=cmd_review)


def cmd_inspect_video(args) -> int:
    from core.video import SamplingSpec, inspect_video

    report = inspect_video(args.path, SamplingSpec(sampling=args.sampling, num_frames=args.frames, fps=args.fps))
    if args.json:
        print_json(report)
    else:
        for key, value in report.items():
            print(f"{key:16} {value}")
    return 0


def cmd_add_clips(args) -> int:
    from core.data.ingest import ingest

    try:
        report = ingest(args.dataset, args.sources, chunk_seconds=args.chunk_seconds or None,
                        recursive=args.recursive, workers=args.workers, progress=count_echo)
    except KeyboardInterrupt as exc:  # core words it (core.data.ingest.IngestStopped); 130: a shell's SIGINT code
        print(("\n" if sys.stderr.isatty() else "") + (str(exc) or "stopped before any file was added"),
              file=sys.stderr)
        return 130
    for problem in report.problems:
        print(f"not added: {problem}", file=sys.stderr)
    parts = [f"added {_n(len(report.added), 'clip')} from {_n(report.added_sources, 'file')} to "
             f"{Path(args.dataset) / 'videos'}"]
    parts += [f"{report.skipped} already added"] if report.skipped else []
    parts += [f"{len(report.problems)} not added (listed above)"] if report.problems else []
    parts += [f"{_n(report.ignored, 'other file')} ignored (not a video or image)"] if report.ignored else []
    print("; ".join(parts))
    if report.note:
        print(f"note: {report.note}")
    return 0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def cmd_import(args) -> int:
    from core.data.imports.layouts import import_dataset

    report = import_dataset(args.src, args.output, layout=args.layout, merge=args.merge)
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"imported {report.rows} clips ({report.layout} layout) -> {report.dest}"
          + (f"; {len(report.problems)} skipped" if report.problems else ""))
    return 0


def cmd_export_dataset(args) -> int:
    from core.data.exports import export_dataset

    report = export_dataset(args.dataset, args.output, args.format)
    print(f"wrote {report.dest} ({report.rows} clips"
          + (f"; {len(report.problems)} problems, the first: {report.problems[0]})" if report.problems else ")"))
    return 0


def cmd_split(args) -> int:
    from core.data.splits import split_dataset

    summary = split_dataset(args.dataset, args.ratios, args.seed, args.stratify, keep_existing=args.keep_existing)
    print(f"{len(summary.assignment)} clips: " + ", ".join(f"{k} {v}" for k, v in summary.counts.items())
          + f" ({summary.changed} rows changed)")
    return 0


def cmd_validate(args) -> int:
    from core.data.dataset import settle
    from core.data.store import AnnotationStore

    settle(args.dataset)  # the app's pending edits written in: what is checked is what a script reads
    report = AnnotationStore(args.dataset, schema_path=args.schema).validate()
    counts, problems = report["counts"], report["problems"]
    if args.json:
        print_json({"counts": counts, "problems": problems})
    else:
        for p in problems:
            print(f"{p['file']}: {p['field']}: {p['reason']}")
        print(", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if problems else 0


def cmd_prelabel(args) -> int:
    from core.serve.prelabel import prelabel_dataset

    report = prelabel_dataset(args.dataset, args.model, args.limit, args.redo_drafts, args.batch_size,
                              seed=args.sample, device=args.device, trust_remote_code=args.trust_remote_code,
                              progress=count_echo, constrained=not args.unconstrained,
                              keep_embeddings=bool(args.review) and args.pick == HYBRID)
    for err in report.errors:
        print(f"skipped: {err}", file=sys.stderr)
    if not report.asked:
        print(f"nothing to pre-label: every {'readable ' if report.errors else ''}clip has a label"
              + ("" if args.redo_drafts else " or a draft")
              + (f" ({len(report.errors)} unreadable, listed above)" if report.errors else ""))
        return 0
    print(f"{report.drafted} drafts written to {report.drafts_file} "
          f"({report.flagged} flagged as not schema-valid, {len(report.errors)} unreadable)")
    if args.review:
        how = ("the least sure clip of each of K groups of similar clips" if args.pick == HYBRID
               else "the K least sure")
        print(f"label these next, {how}, least sure first (`cli.py review --dataset {args.dataset}` lists "
              "every draft):")
        for item in report.label_next(args.review, args.pick):
            print(review_line(item))
    return 0


def review_line(item) -> str:
    """`0.003  videos/x.mp4  caption 0.00, rule_violations 0.05 ...`: a clip of the queue, weakest fields first."""
    score = "  -  " if item.score is None else f"{item.score:.3f}"
    fields = ", ".join(f"{name} {value:.2f}" for name, value in item.weakest) or "(no scores)"
    check = ("  [raw, not calibrated]" if not item.calibrated else "  [calibrated; check: " + ", ".join(item.review_fields) + "]"
             if item.review_fields else "  [calibrated; every field above its threshold]")
    return f"{score}  {item.rel}  {fields}" + ("  [not schema-valid]" if item.flagged else "") + check


def cmd_review(args) -> int:
    from core.data.prelabel import review_queue
    from core.data.store import AnnotationStore

    items = review_queue(AnnotationStore(args.dataset), limit=args.limit)
    if args.json:
        print_json([item.as_dict() for item in items])
    elif not items:
        print("no drafts to review (cli.py prelabel writes them)")
    else:
        for item in items:
            print(review_line(item))
    return 0
