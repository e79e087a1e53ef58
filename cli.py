"""Headless entry point: builds the parser from the subcommand modules in commands/ and dispatches.

    python cli.py inspect-video PATH [--sampling uniform|fps] [--frames N] [--fps F] [--json]
    python cli.py train --dataset DIR --output RUN_DIR [--config FILE] [--FIELD VALUE for any TrainConfig field]
    python cli.py train --resume RUN_DIR
    python cli.py estimate --dataset DIR [--config FILE] [--clip REL] [any train --flag] [--json]
    python cli.py merge RUN_DIR [--output DIR]
    python cli.py eval --model NAME_OR_RUN --dataset DIR --split test [--json]
    python cli.py models [--json]
    python cli.py predict --model M --input VIDEO_OR_DIR --output OUT.{jsonl,csv,parquet,sqlite} [--num-processes N]
                          [--engine local|ray [--ray-address ADDR] [--num-workers N]] [--window-seconds S [--stride-seconds T]]
    python cli.py import SRC --output DIR [--layout auto|seed|videofolder|conversation|qevd] [--merge]
    python cli.py export-dataset --dataset DIR --output OUT [--format seed|videofolder|conversation]
    python cli.py split --dataset DIR [--ratios 0.8,0.1,0.1] [--seed N] [--stratify FIELD] [--keep-existing]
    python cli.py validate --dataset DIR [--schema FILE] [--json]
    python cli.py prelabel --dataset DIR --model NAME_OR_RUN [--limit N] [--redo-drafts] [--sample SEED] [--review K]
    python cli.py review --dataset DIR [--limit N] [--json]
    python cli.py push RUN --repo-id OWNER/NAME [--merged] [--private] [--dry-run DIR] [--no-eval]
    python cli.py push-dataset DATASET --repo-id OWNER/NAME [--private] [--dry-run DIR]
    python cli.py add-clips DATASET SRC... [--chunk-seconds S] [--recursive] [--workers N]
    python cli.py serve RUN_OR_MODEL [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--allow-dir DIR ...]

`python cli.py COMMAND --help` documents every flag (train's are TrainConfig's field docs).
Errors from core (core.errors.WorkbenchError, a bad config value included) are printed as one line
`error: ...` with exit code 1, never a traceback; argparse's usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from commands import api, data, hub, serve, train  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Video VLM Workbench (headless)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what core does (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (data, train, serve, hub, api):
        module.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from core.errors import WorkbenchError

    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
