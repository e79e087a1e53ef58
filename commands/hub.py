"""`push`, `push-dataset`: publish a run or a dataset to the Hugging Face Hub (core.hub).

The token is huggingface_hub's usual one (HF_TOKEN, or `hf auth login`); the endpoint is HF_ENDPOINT's;
VVW_HUB_TIMEOUT (seconds, default 60) bounds every wait for the Hub's answer.
`--dry-run DIR` writes exactly the folder that would be uploaded and needs no token.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("push", help="publish a run to the Hugging Face Hub with a model card",
                       description="Publish a finished run: its adapter (or the merged model), preprocessing spec, "
                                   "schema, training config, evaluation and a model card. A damaged run is refused "
                                   "before anything is sent; VVW_HUB_TIMEOUT (seconds, default 60) bounds each wait "
                                   "for the Hub.")
    p.add_argument("run_dir", metavar="RUN", help="run directory of a finished run")
    p.add_argument("--repo-id", required=True, help="owner/name of the model repository (created if missing)")
    p.add_argument("--merged", action="store_true", help="publish the adapter merged into its base (a plain "
                   "transformers model); automatic when the base is not on the Hub")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be uploaded to DIR; upload nothing")
    p.add_argument("--dataset", help="dataset folder to evaluate on (default: the run's own)")
    p.add_argument("--eval-split", default="test", help="split the card's evaluation scores base and fine-tuned on")
    p.add_argument("--no-eval", action="store_true", help="write the card without an evaluation")
    p.add_argument("--dataset-repo", help="the dataset's Hub id, listed in the card's front matter")
    p.add_argument("--license", help="license identifier for the card (e.g. apache-2.0); default: none stated")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("push-dataset", help="publish a dataset to the Hugging Face Hub as VideoFolder",
                       description="Publish a dataset folder as Hugging Face VideoFolder with its schema and a card. "
                                   "Clips that do not open as videos are left out and listed.")
    p.add_argument("dataset", metavar="DATASET", help="dataset folder in the seed layout")
    p.add_argument("--repo-id", required=True, help="owner/name of the dataset repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be uploaded to DIR; upload nothing")
    p.add_argument("--license", help="license identifier for the card; default: none stated")
    p.set_defaults(func=cmd_push_dataset)


def _report(result, what: str) -> int:
    for note in result.notes:
        print(f"note: {note}")
    where = f"-> {result.url}" if result.url else f"dry run: {len(result.files)} files in {result.folder}, nothing uploaded"
    print(f"{what} {result.repo_id} {where}")
    return 0


def _stopped(exc) -> int:
    """Ctrl-C or SIGTERM: core's words (what was kept, how to go on) and 130, as predict and train."""
    print(f"error: {exc}", file=sys.stderr)
    return 130


def cmd_push(args) -> int:
    from core.hub import PublishInterrupted, publish_run

    try:
        result = publish_run(args.run_dir, args.repo_id, merged=args.merged, private=args.private,
                             dry_run=args.dry_run, dataset=args.dataset,
                             split=None if args.no_eval else args.eval_split, license=args.license,
                             datasets=[args.dataset_repo] if args.dataset_repo else None)
    except PublishInterrupted as exc:
        return _stopped(exc)
    return _report(result, "merged model" if result.merged else "model")


def cmd_push_dataset(args) -> int:
    from core.hub import PublishInterrupted, publish_dataset

    try:
        result = publish_dataset(args.dataset, args.repo_id, private=args.private, dry_run=args.dry_run,
                                 license=args.license)
    except PublishInterrupted as exc:
        return _stopped(exc)
    return _report(result, "dataset")
