"""What several subcommands share: JSON output, a progress counter, the model-loading flags."""

from __future__ import annotations

import json
import sys


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def count_echo(done: int, total: int) -> None:
    """`done/total` on one stderr line, rewritten in place."""
    sys.stderr.write(f"\r{done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def add_model_flags(p, batch_size: int) -> None:
    """--batch-size, --device and --trust-remote-code, for subcommands that run a model."""
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"clips per forward pass (default {batch_size})")
    p.add_argument("--device", default="auto", help="auto (GPU when visible, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a hub model run the Python code in its repository (only code you trust)")
