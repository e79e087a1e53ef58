"""Predictions from Ray Data: the engine behind `predict --engine ray` for clips beyond one process.

The pipeline has two stages, both streaming (memory is bounded by Ray's backpressure, not by the
number of clips):
- **sample** (CPU actors, one CPU each, as many as the model actors leave free): `sample_frames` with the model's sampling spec, through the
  frame cache, so a clip decoded once is not decoded again. A clip that fails to decode becomes an
  error result here, with the same text the local engine puts in `Prediction.error`.
- **generate** (an actor pool of `num_workers` model actors; one GPU each when the cluster has
  GPUs): each actor loads the Predictor once in `__init__` and runs `Predictor.generate` (greedy,
  per-field confidence) on each batch of sampled clips. Error results pass through untouched.

Results stream back to the driver as they finish (`iter_batches`), as `Prediction`s; core.serve.batch
turns them into rows with the same helper the local engine uses and writes them with the one
writer (resume, four formats). Ray is imported inside functions: `import core.serve` must not pay
for it, and the local engine must work where ray is not installed.

The session itself (joining a cluster, or a Ray started here that dies with the driver) is
core.serve.ray_session's. This module writes no files and builds no rows (core.serve.batch does).
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from core.errors import ConfigError, VideoError
from core.serve.predictor import Prediction, Predictor
from core.spec import PreprocessSpec, SamplingSpec, spec_for


def model_identity(model: str, schema: dict | None, trust_remote_code: bool = False) -> tuple[str, PreprocessSpec]:
    """(the name rows carry, the spec the model is asked with), without loading weights: the driver
    needs both before any actor is up (resume keys on the name; the sample stage needs the spec)."""
    from core.models.loading import family_of, resolve_model

    source = resolve_model(model)
    # a base model without a schema is refused (spec_for) before its config is read from the Hub
    family = family_of(source, trust_remote_code) if source.run_dir is None and schema is not None else None
    return source.display, spec_for(source, family, schema)


MAX_ACTOR_START_DEATHS = 2  # consecutive actor deaths before start that a job survives (stream_predictions)


class SampleActor:
    """The sample stage, per clip: pickled SampledFrames, or the decode error (as the local engine words it).
    An actor rather than a task: Ray fuses a task stage into the model actors that follow it (then
    the model would wait for decoding again); actors stay a stage of their own."""

    def __init__(self, sampling: dict):
        self.spec = SamplingSpec.from_dict(sampling)

    def __call__(self, row: dict) -> dict:
        from core.video.frames import sample_frames

        try:
            frames = sample_frames(Path(row["path"]), self.spec)
        except VideoError as exc:
            return {"key": row["key"], "frames": b"", "error": str(exc)}
        return {"key": row["key"], "frames": pickle.dumps(frames, protocol=pickle.HIGHEST_PROTOCOL), "error": ""}


class ModelActor:
    """The generate stage: one loaded Predictor per actor, reused for every batch it is given."""

    def __init__(self, model: str, schema: dict | None, device: str, trust_remote_code: bool, digest: str,
                 max_new_tokens: int, constrained: bool):
        self.predictor = Predictor.load(model, schema=schema, device=device, trust_remote_code=trust_remote_code)
        if self.predictor.spec.digest != digest:  # frames were sampled with the driver's spec: they must agree
            raise ConfigError(f"{model}: the actor's spec {self.predictor.spec.digest} is not the driver's {digest}")
        self.max_new_tokens, self.constrained = max_new_tokens, constrained
        self.idle_since = time.perf_counter()

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        keys, blobs, errors = list(batch["key"]), list(batch["frames"]), list(batch["error"])
        results: list[dict] = [{"text": None, "error": e} for e in errors]
        good = [i for i, e in enumerate(errors) if not e]
        if good:
            t0 = time.time()
            outs = self.predictor.generate([pickle.loads(blobs[i]) for i in good], self.max_new_tokens,
                                           constrained=self.constrained, confidence=True)
            dt = (time.time() - t0) / len(good)  # per clip, as Predictor.predict reports it
            for i, g in zip(good, outs):
                results[i] = {"text": g.text, "error": None, "seconds": dt, "new_tokens": g.new_tokens,
                              "confidence": g.confidence, "calibrated": g.calibrated,
                              "review_fields": g.review_fields}
        # the time this actor sat waiting for sampled clips (since loading or its last batch), and its
        # time on this batch: the driver sums them into the model's wait share
        results[0]["_stats"] = {"wait_s": start - self.idle_since, "busy_s": time.perf_counter() - start}
        self.idle_since = time.perf_counter()
        # one JSON string per clip: a column of None (a batch of only broken clips) would not unify with text
        return {"key": keys, "result": [json.dumps(r, ensure_ascii=False) for r in results]}


def worker_count(num_workers: int | None, device: str) -> tuple[int, int]:
    """(model actors, GPUs per actor): one GPU each when the cluster has GPUs and the device allows."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0)) if device != "cpu" else 0
    workers = num_workers or max(1, gpus)
    return workers, (1 if gpus else 0)


def configure_data_context(ctx) -> None:
    """The Ray Data settings every prediction job runs with."""
    ctx.enable_progress_bars = False  # the caller reports clips done / total
    # Ray Data fails the whole job on the first actor that dies before it starts (its default budget
    # is 0: the pool's ready-check re-raises the death). Seen once in the test suite on 2 busy cores: a
    # sample actor died while starting ("all references to the actor were removed ... The actor never
    # ran"), and the run ended with ActorDiedError though nothing was wrong with a clip or the model.
    # A few such deaths in a row now start a replacement; a constructor that always fails (a model
    # that cannot load) still ends the job, after MAX_ACTOR_START_DEATHS + 1 tries.
    ctx.max_consecutive_actor_init_deaths = MAX_ACTOR_START_DEATHS


def stream_predictions(model: str, schema: dict | None, spec: PreprocessSpec, todo: list[tuple[str, Path]], *,
                       num_workers: int, gpus_per_worker: int, device: str = "auto", trust_remote_code: bool = False,
                       batch_size: int = 8, max_new_tokens: int = 160, constrained: bool = True,
                       stats: dict | None = None):
    """Yield (keys, Predictions) per finished model batch, in completion order, inside a Ray session.
    `stats` gains the model actors' summed `wait_s` (idle, waiting for frames) and `busy_s`."""
    import ray

    if not todo:
        return
    configure_data_context(ray.data.DataContext.get_current())
    items = [{"key": k, "path": str(p)} for k, p in todo]
    # about one block per model batch: the sample stage spreads over CPUs and results stream back early
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
    # the CPUs the model actors leave free decode (at least one)
    samplers = max(1, int(ray.cluster_resources().get("CPU", 1)) - num_workers)
    ds = ds.map(SampleActor, fn_constructor_kwargs={"sampling": spec.sampling}, num_cpus=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=samplers))
    ds = ds.map_batches(ModelActor, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=num_workers), num_gpus=gpus_per_worker,
                        num_cpus=1, fn_constructor_kwargs={
                            "model": model, "schema": schema, "device": device,
                            "trust_remote_code": trust_remote_code, "digest": spec.digest,
                            "max_new_tokens": max_new_tokens, "constrained": constrained})
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        keys, results = [str(k) for k in batch["key"]], [json.loads(r) for r in batch["result"]]
        for r in results:
            for name, value in r.pop("_stats", {}).items():
                if stats is not None:
                    stats[name] = stats.get(name, 0.0) + value
        yield keys, [Prediction(video=k, **r) for k, r in zip(keys, results)]
