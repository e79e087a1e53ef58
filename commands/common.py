"""What several subcommands share: JSON output, a progress counter, the model-loading flags."""

from __future__ import annotations

import json
import sys


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


class LineThrottle:
    """When a stream is not a terminal (a log file, a pipe, the app's launch.log), progress is
    written as whole lines, and only at every tenth of the way and at the end: a `\r` redraw there
    runs the counts together ("1/242/24...") and floods a log."""

    def __init__(self, parts: int = 10):
        self.parts = parts
        self.last = (-1, -1)  # (done, part) of the last line written

    def due(self, done: int, total: int) -> bool:
        part = self.parts * done // max(total, 1)
        if done < self.last[0]:
            self.last = (-1, -1)  # a new count started (another call in the same process)
        if done >= total or part > self.last[1]:
            self.last = (done, part)
            return True
        return False


_counts = LineThrottle()


def count_echo(done: int, total: int) -> None:
    """`done/total` on stderr: one line rewritten in place on a terminal, else whole lines (LineThrottle)."""
    out = sys.stderr
    if out.isatty():
        out.write(f"\r{done}/{total}" + ("\n" if done >= total else ""))
    elif _counts.due(done, total):
        out.write(f"{done}/{total}\n")
    out.flush()


def add_model_flags(p, batch_size: int) -> None:
    """--batch-size, --device and --trust-remote-code, for subcommands that run a model."""
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"clips per forward pass (default {batch_size})")
    p.add_argument("--device", default="auto", help="auto (GPU when visible, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a hub model run the Python code in its repository (only code you trust)")
