"""Batch prediction over a video, a folder or a dataset split into a prediction file.

`predict_to_file` is the one call behind `cli.py predict` and the Export tab's Predict: it refuses
what cannot run before anything loads (`check_request`: flag values, an output file predict did not
write or holding the other kind of rows, a device this machine lacks, a Ray address where no
cluster answers), lists the clips, picks the schema a base model is asked with (`input_schema`: one
rule for both), loads the model (through the app's model manager when given one) or fans out to
worker processes (core.serve.sharded) or Ray (core.serve.ray_engine), and writes the file.
`run_predict` feeds clips to a loaded Predictor in batches and writes each batch's rows as soon as
it is done, so an interrupted export resumes where it stopped; a Ctrl-C becomes `PredictStopped`,
whose words say how many rows were kept and how to continue.

This module does not load models itself (core.serve.loaded hands it a predictor) or compute metrics
(core.schema.scoring does).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from core.data.dataset import SCHEMA, load_dataset
from core.errors import ConfigError, DatasetError
from core.layout import METADATA_FILE
from core.models.device import pick_device
from core.schema.base import load_schema
from core.serve.lifeline import tie_to_parent
from core.serve.loaded import check_at_least, loaded_predictor
from core.serve.outfile import check_output
from core.serve.predictor import PREFETCH_BATCHES
from core.serve.sharded import predict_with_workers, shard_path
from core.serve.windowed import check_window, run_predict_windows
from core.serve.writers import (
    FileWriter,
    kept_rows,
    make_row,
    open_writer,
    read_rows,
)
from core.spec import PreprocessSpec, is_run_dir
from core.video.container import file_problem
from core.video.frames import is_media_path


def list_inputs(path, split: str | None = None) -> list[tuple[str, Path]]:
    """(key, file) pairs: the key is the path relative to the input folder (stable across machines)."""
    path = Path(path)
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():  # missing, or a FIFO / device / socket: file_problem says which
        raise DatasetError(f"{path}: {file_problem(path, missing='no such file or folder')}")
    if split and (path / METADATA_FILE).is_file():
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
        todo, counts = pending(writer, items, model, overwrite, skip_from, progress)
        # one pass over all clips, so the loader thread samples the next batches while a batch generates
        for batch in predictor.iter_predict([p for _, p in todo], batch_size=batch_size, **generate_kwargs):
            write_predictions(writer, schema, model, spec_hash, [todo[i][0] for i, _ in batch],
                              [pred for _, pred in batch], counts, progress)
        counts["data_wait_share"] = round(predictor.stats.wait_share, 3) if todo else 0.0
    finally:
        writer.close()
    return counts


def pending(writer, items, model: str, overwrite: bool = False, skip_from=None, progress=None) -> tuple[list, dict]:
    """The (key, file) pairs still to predict for `model` (resume), and the counts a run starts from.
    Shared by both engines, so the Ray engine skips exactly what the local one would."""
    done = set() if overwrite and not isinstance(writer, FileWriter) else writer.done(model)
    if skip_from and not overwrite and Path(skip_from).is_file():
        done |= {r["video"] for r in read_rows(skip_from) if r.get("model") == model}
    todo = [(k, p) for k, p in items if k not in done]
    counts = {"total": len(items), "skipped": len(items) - len(todo), "written": 0, "errors": 0, "valid": 0}
    if progress:  # clips done / total from the start, not only after the first batch
        progress(counts["skipped"], counts["total"])
    return todo, counts


def write_predictions(writer, schema: dict, model: str, spec_hash: str, keys: list[str], preds: list,
                      counts: dict, progress=None, windows: list | None = None) -> None:
    """One row per Prediction (core.serve.predictor), written as one batch; `counts` updated. The one
    place rows are built, whichever engine produced the predictions. `windows`: (start, end) per row
    for window predictions (core.serve.windowed)."""
    rows = [make_row(schema, key, model, spec_hash, pred.text, pred.error, pred.seconds, pred.confidence,
                     window=windows[i] if windows else None, calibrated=pred.calibrated,
                     review_fields=pred.review_fields)
            for i, (key, pred) in enumerate(zip(keys, preds))]
    writer.write(rows)
    counts["written"] += len(rows)
    counts["errors"] += sum(1 for p in preds if p.error)
    counts["valid"] += sum(1 for r in rows if r.schema_valid)
    if progress:
        progress(counts["skipped"] + counts["written"], counts["total"])


class PredictStopped(KeyboardInterrupt):
    """Ctrl-C during predict, in words for a person: how many rows were kept where, and how to go on."""


@contextlib.contextmanager
def said_when_stopped(output, shard: str | None, world: int):
    """Turn a KeyboardInterrupt in the block into PredictStopped (the writers have closed by then)."""
    try:
        yield
    except PredictStopped:
        raise
    except KeyboardInterrupt:
        out = Path(output)
        if shard:
            words = f"worker {shard} stopped: {kept_rows(out)} rows kept in {out}"
        elif world > 1:
            kept = sum(kept_rows(shard_path(out, r, world)) for r in range(world))
            words = (f"stopped: {kept} rows kept in the worker files {out.name}.shard*-of-{world}.jsonl beside "
                     f"{out}; run the same command again to continue from them")
        else:
            words = (f"stopped: {kept_rows(out)} rows kept in {out}; run the same command again to continue "
                     "(the clips already there are skipped)")
        raise PredictStopped(words) from None


# --- the one call behind `cli.py predict` and the Export tab -------------------------------------

def input_schema(input_path, schema=None, fallback: dict | None = None) -> tuple[dict | None, Path | None]:
    """The schema a base model is asked with for `input_path`, and the file it was read from (if any).

    One rule for the CLI and the app: `schema` (a dict, or a schema file) when given; else the input
    folder's own schema.json (a dataset folder, or clips that come with their schema): it describes
    those clips; else `fallback` (the app passes its workspace dataset's schema, what the person is
    editing there; the CLI passes none, so a base model with neither is refused). A run ignores all
    three: it is always asked with the schema it was trained with."""
    if isinstance(schema, dict):
        return schema, None
    if schema:
        return load_schema(schema), Path(schema)
    own = Path(input_path) / SCHEMA
    if own.is_file():
        return load_schema(own), own
    return fallback, None


def rows_schema(model: str, asked: dict | None) -> dict:
    """The schema the rows are written with: a run's training schema, else the one a base is asked with.
    Refuses a base model with no schema before anything loads."""
    if is_run_dir(model):
        return PreprocessSpec.load(model).schema
    if asked is None:
        raise ConfigError(f"{model} is a base model: give --schema FILE (or an input with schema.json)")
    return asked


def predict_to_file(model: str, input_path, output, split: str | None = None, schema=None,
                    fallback_schema: dict | None = None, *, models=None, device: str = "auto",
                    trust_remote_code: bool = False, batch_size: int = 8, overwrite: bool = False,
                    num_processes: int = 1, shard: str | None = None, skip_from=None, progress=None,
                    max_new_tokens: int = 160, constrained: bool = True, engine: str = "local",
                    ray_address: str | None = None, num_workers: int | None = None,
                    window_seconds: float | None = None, stride_seconds: float | None = None,
                    prefetch: int = PREFETCH_BATCHES) -> dict:
    """Predict the clips of `input_path` (a video, a folder, or a dataset folder's `split`) into `output`.

    `schema`/`fallback_schema`: see `input_schema`. `models`: the app's ModelManager (else the model
    is loaded for this call). `num_processes` > 1 runs `cli.py predict --shard I/N` workers (the
    parent loads no weights) and merges their rows; `shard` ("I/N") and `skip_from` are what such a
    worker is given. `engine="ray"` runs core.serve.ray_engine instead (a local Ray, or the cluster at
    `ray_address`; `num_workers` model actors; `models` is not used: each actor loads its own copy).
    `window_seconds` (and `stride_seconds`, default the window): one row per window of each video
    (core.serve.windowed; local engine, one process).
    `prefetch`: batches the local engine's loader thread samples ahead while the model generates (0:
    serial, each batch decoded before it generates).
    Returns counts: total, written, skipped, errors (unreadable clips), valid (schema-valid rows; both
    None after a sharded run) and workers."""
    check_request(output, engine, device if models is None else None, batch_size=batch_size,
                  max_new_tokens=max_new_tokens, num_processes=num_processes, num_workers=num_workers,
                  prefetch=prefetch, ray_address=ray_address, window_seconds=window_seconds,
                  stride_seconds=stride_seconds)
    if shard:
        tie_to_parent()  # a worker of `predict --num-processes`: it dies with the parent
    items = list_inputs(input_path, split)
    asked, schema_file = input_schema(input_path, schema, fallback_schema)
    written_with = rows_schema(model, asked)
    with said_when_stopped(output, shard, num_processes):
        if engine == "ray":
            return _predict_on_ray(model, items, output, asked, ray_address, num_workers, device=device,
                                   trust_remote_code=trust_remote_code, batch_size=batch_size, overwrite=overwrite,
                                   progress=progress, max_new_tokens=max_new_tokens, constrained=constrained)
        if num_processes > 1:
            return predict_with_workers(model, input_path, output, split, asked, schema_file, written_with,
                                        len(items), num_processes, device=device,
                                        trust_remote_code=trust_remote_code, batch_size=batch_size,
                                        overwrite=overwrite, max_new_tokens=max_new_tokens, constrained=constrained)
        with loaded_predictor(model, asked, models, device, trust_remote_code) as predictor:
            if window_seconds:
                counts = _predict_windows(predictor, items, output, window_seconds, stride_seconds, batch_size,
                                          overwrite, progress, max_new_tokens, constrained)
            else:
                counts = run_predict(predictor, items, output, batch_size=batch_size, overwrite=overwrite,
                                     progress=progress, shard=parse_shard(shard), skip_from=skip_from,
                                     max_new_tokens=max_new_tokens, constrained=constrained, prefetch=prefetch)
    return {**counts, "workers": 1}


def check_request(output, engine: str, device: str | None, *, batch_size: int, max_new_tokens: int,
                  num_processes: int, num_workers: int | None, prefetch: int, ray_address: str | None,
                  window_seconds: float | None, stride_seconds: float | None) -> None:
    """Everything predict refuses before it lists a clip or loads a model: flag values, the output
    file (core.serve.outfile), the device, the Ray address."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine {engine!r}: use 'local' or 'ray'")
    if engine == "ray" and num_processes > 1:
        raise ConfigError("--num-processes shards the local engine; with --engine ray use --num-workers")
    check_at_least(1, batch_size=batch_size, max_new_tokens=max_new_tokens, num_processes=num_processes,
                   num_workers=num_workers)
    check_at_least(0, prefetch_batches=prefetch)
    check_window(window_seconds, stride_seconds)
    if window_seconds and (engine == "ray" or num_processes > 1):
        raise ConfigError("--window-seconds runs on the local engine in one process (not --engine ray or "
                          "--num-processes)")
    check_output(output, windows=window_seconds is not None)
    if engine == "local" and device is not None:
        pick_device(device)  # a device this machine does not have is refused here, not after loading
    if engine == "ray" and ray_address:
        from core.serve.ray_session import probe_cluster

        probe_cluster(ray_address)


def _predict_windows(predictor, items, output, window_seconds, stride_seconds, batch_size, overwrite, progress,
                     max_new_tokens, constrained) -> dict:
    spec = predictor.spec

    def write_rows(writer, keys, windows, preds, counts):
        write_predictions(writer, spec.schema, predictor.name, spec.digest, keys, preds, counts, windows=windows)

    return run_predict_windows(predictor, items, output, window_seconds, stride_seconds, batch_size, overwrite,
                               progress, max_new_tokens, constrained, write_rows)


def _predict_on_ray(model, items, output, asked, address, num_workers, device, trust_remote_code, batch_size,
                    overwrite, progress, max_new_tokens, constrained) -> dict:
    """The Ray engine's predictions into the same writer, resume and rows as `run_predict`."""
    from core.serve import ray_engine  # lazily: `import core.serve` must not import ray
    from core.serve.ray_session import ray_session

    name, spec = ray_engine.model_identity(model, asked, trust_remote_code)
    writer = open_writer(output, spec.schema, overwrite)
    try:
        todo, counts = pending(writer, items, name, overwrite, progress=progress)
        workers, stats = num_workers or 1, {}
        with ray_session(address, num_workers) if todo else contextlib.nullcontext():
            workers, gpus = ray_engine.worker_count(num_workers, device) if todo else (workers, 0)
            for keys, preds in ray_engine.stream_predictions(
                    model, asked, spec, todo, num_workers=workers, gpus_per_worker=gpus, device=device,
                    trust_remote_code=trust_remote_code, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    constrained=constrained, stats=stats):
                write_predictions(writer, spec.schema, name, spec.digest, keys, preds, counts, progress)
    finally:
        writer.close()
    total = stats.get("wait_s", 0.0) + stats.get("busy_s", 0.0)
    return {**counts, "workers": workers, "data_wait_share": round(stats["wait_s"] / total, 3) if total else 0.0}
