"""`predict --num-processes N`: the clips split across N worker processes, their rows merged into one file.

`predict_with_workers` runs N `cli.py predict --shard I/N` processes (one GPU each when there are
enough; the same command a user could run by hand) and, when all succeeded, merges their shard
files into the output with the one writer. Inference needs no gradient sync, so the workers are
plain processes rather than a torch.distributed group. Each worker dies with this process
(core.serve.lifeline) and a Ctrl-C here stops them (`stop_workers`), so no worker outlives the run
to race a re-run for its shard file; a worker that failed or was stopped keeps its shard file and a
re-run resumes it.

This module loads no model (the workers do, through core.serve.batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.errors import DatasetError
from core.fileio import atomic_write_text
from core.paths import REPO_ROOT
from core.serve.lifeline import parent_env
from core.serve.writers import (
    META_COLUMNS,
    PredictionRow,
    column_name,
    confidence_column,
    flatten_confidence,
    open_writer,
    read_rows,
)


def predict_with_workers(model, input_path, output, split, asked, schema_file, written_with, total, world,
                          device, trust_remote_code, batch_size, overwrite, max_new_tokens, constrained) -> dict:
    """Workers ask with the schema chosen here: its file is passed on (written beside the output when
    the schema came as a dict)."""
    temp = None
    if asked is not None and schema_file is None:
        temp = schema_file = Path(output).with_name(Path(output).name + ".schema.json")
        atomic_write_text(temp, json.dumps(asked, ensure_ascii=False))
    args = ["--model", model, "--input", str(input_path), "--batch-size", str(batch_size),
            "--max-new-tokens", str(max_new_tokens), "--device", device]
    for flag, value in (("--split", split), ("--schema", schema_file)):
        if value:
            args += [flag, str(value)]
    for flag, on in (("--unconstrained", not constrained), ("--overwrite", overwrite),
                     ("--trust-remote-code", trust_remote_code)):
        if on:
            args.append(flag)
    try:
        rows = predict_sharded(args, output, world, written_with)
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    return {"total": total, "written": len(rows), "skipped": total - len(rows), "errors": None, "valid": None,
            "workers": world}


def shard_path(out_path, rank: int, world: int) -> Path:
    out = Path(out_path)
    return out.with_name(f"{out.name}.shard{rank}-of-{world}.jsonl")


def worker_env(rank: int, world: int) -> dict:
    """One GPU per worker when there are enough of them; otherwise all share what is visible. Each
    worker dies with this process (core.serve.lifeline)."""
    env = {**os.environ, **parent_env()}
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if gpus >= world:
        env["CUDA_VISIBLE_DEVICES"] = str(rank)
    return env


def predict_sharded(cli_args: list[str], out_path, world: int, schema: dict) -> list[dict]:
    """Run `cli.py predict` in `world` worker processes, then merge their rows into `out_path`.

    `cli_args` are the predict arguments except --output/--shard. A worker that fails leaves its
    shard file in place, so re-running resumes it; the merge only happens when all succeeded.
    Workers skip clips the final file already has (unless --overwrite is among `cli_args`).
    """
    procs = []
    for rank in range(world):
        cmd = [sys.executable, str(REPO_ROOT / "cli.py"), "predict", *cli_args,
               "--output", str(shard_path(out_path, rank, world)), "--shard", f"{rank}/{world}",
               "--skip-from", str(out_path)]
        # a session of their own: a terminal's Ctrl-C reaches this process only, which stops them (below)
        procs.append(subprocess.Popen(cmd, env=worker_env(rank, world), start_new_session=True))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        stop_workers(procs)
        raise
    failed = [rank for rank, code in enumerate(codes) if code != 0]
    if failed:
        raise DatasetError(f"predict workers {failed} failed; their shard files are kept, re-run to resume")
    rows = []
    for rank in range(world):
        rows += read_rows(shard_path(out_path, rank, world))
    writer = open_writer(out_path, schema, overwrite=True)
    try:
        writer.write([_row_from_flat(r, schema) for r in rows])
    finally:
        writer.close()
    for rank in range(world):
        shard_path(out_path, rank, world).unlink(missing_ok=True)
    return rows


def stop_workers(procs: list[subprocess.Popen], grace: float = 60.0) -> None:
    """Ctrl-C for each worker still running (it closes its shard file and exits), then wait; one
    that does not end within `grace` seconds is killed (its rows are flushed per row all the same)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _row_from_flat(row: dict, schema: dict):
    flat = flatten_confidence(row)
    names = {column_name(n): n for n in schema.get("properties", {})}
    scores = {n: flat[confidence_column(n)] for n in schema.get("properties", {})
              if flat.get(confidence_column(n)) is not None}
    review = flat.get("review_fields")
    review = json.loads(review) if isinstance(review, str) else review  # JSON text in SQLite and CSV
    return PredictionRow(**{k: flat.get(k) for k in META_COLUMNS},
                         fields={names[k]: v for k, v in flat.items() if k in names and v is not None},
                         confidence=scores, calibrated=bool(flat.get("calibrated")),
                         needs_review=bool(flat.get("needs_review", True)), review_fields=review)
