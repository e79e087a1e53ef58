"""Batch prediction over a video, a folder or a dataset split into a prediction file.

`run_predict` feeds clips to a loaded Predictor in batches and writes each batch's rows as soon as
it is done, so an interrupted export resumes where it stopped. `predict_sharded` splits the clip
list across N worker processes (one GPU each when there are enough) and merges their rows with a
single writer. Inference needs no gradient sync, so the workers are plain processes rather than a
torch.distributed group; each runs the same `cli.py predict --shard i/N` a user could run by hand.

This module does not load models (core.serve.predictor does) or compute metrics (core.schema.scoring does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.data.dataset import load_dataset
from core.errors import DatasetError
from core.paths import REPO_ROOT
from core.serve.writers import META_COLUMNS, FileWriter, PredictionRow, column_name, make_row, open_writer, read_rows
from core.video.frames import is_media_path


def list_inputs(path, split: str | None = None) -> list[tuple[str, Path]]:
    """(key, file) pairs: the key is the path relative to the input folder (stable across machines)."""
    path = Path(path)
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    if split and (path / "metadata.jsonl").is_file():
        return [(s.rel, s.video) for s in load_dataset(path).split(split)]
    files = sorted(p for p in path.rglob("*") if p.is_file() and is_media_path(p) and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{path}: no video or image files found")
    return [(p.relative_to(path).as_posix(), p) for p in files]


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        rank, world = (int(x) for x in text.split("/"))
    except ValueError:
        raise DatasetError(f"--shard {text!r}: use I/N, e.g. 0/2") from None
    if not 0 <= rank < world:
        raise DatasetError(f"--shard {text!r}: need 0 <= I < N")
    return rank, world


def run_predict(predictor, items: list[tuple[str, Path]], out_path, batch_size: int = 8, overwrite: bool = False,
                progress=None, shard: tuple[int, int] = (0, 1), skip_from=None, **generate_kwargs) -> dict:
    """Predict `items` (skipping those already in `out_path` — or in `skip_from`, the final file of a
    sharded run — for this model) and write the rows."""
    rank, world = shard
    items = items[rank::world]
    schema, model, spec_hash = predictor.spec.schema, predictor.name, predictor.spec.digest
    writer = open_writer(out_path, schema, overwrite)
    try:
        done = set() if overwrite and not isinstance(writer, FileWriter) else writer.done(model)
        if skip_from and not overwrite and Path(skip_from).is_file():
            done |= {r["video"] for r in read_rows(skip_from) if r.get("model") == model}
        todo = [(k, p) for k, p in items if k not in done]
        counts = {"total": len(items), "skipped": len(items) - len(todo), "written": 0, "errors": 0, "valid": 0}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            preds = predictor.predict([p for _, p in chunk], batch_size=batch_size, **generate_kwargs)
            rows = [make_row(schema, key, model, spec_hash, pred.text, pred.error, pred.seconds)
                    for (key, _), pred in zip(chunk, preds)]
            writer.write(rows)
            counts["written"] += len(rows)
            counts["errors"] += sum(1 for p in preds if p.error)
            counts["valid"] += sum(1 for r in rows if r.schema_valid)
            if progress:
                progress(counts["skipped"] + counts["written"], counts["total"])
    finally:
        writer.close()
    return counts


def shard_path(out_path, rank: int, world: int) -> Path:
    out = Path(out_path)
    return out.with_name(f"{out.name}.shard{rank}-of-{world}.jsonl")


def worker_env(rank: int, world: int) -> dict:
    """One GPU per worker when there are enough of them; otherwise all share what is visible."""
    env = dict(os.environ)
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
        procs.append(subprocess.Popen(cmd, env=worker_env(rank, world)))
    failed = [rank for rank, p in enumerate(procs) if p.wait() != 0]
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


def _row_from_flat(flat: dict, schema: dict):
    names = {column_name(n): n for n in schema.get("properties", {})}
    return PredictionRow(**{k: flat.get(k) for k in META_COLUMNS},
                         fields={names[k]: v for k, v in flat.items() if k in names and v is not None})
