"""The model manager: one copy of the base weights, adapters switched by name, memory freed on unload."""

from __future__ import annotations

import gc
import weakref

from core.schema.base import load_schema
from core.serve.manager import ModelManager, rss_bytes
from core.serve.predictor import Predictor
from core.video.frames import sample_frames
from tests.support import SAMPLES

CLIPS = [SAMPLES / "videos" / f"clip_{i:04d}.mp4" for i in (3, 11, 42)]


def texts(predictor):
    frames = [sample_frames(c, predictor.spec.sampling_spec) for c in CLIPS]
    return [t for t, _ in predictor.generate(frames, max_new_tokens=40)]


def test_adapter_switching_matches_separately_loaded_models(short_run):
    schema = load_schema(SAMPLES / "schema.json")
    alone_ft = texts(Predictor.load(str(short_run)))
    alone_base = texts(Predictor.load("tiny:default", schema=schema))
    assert alone_ft != alone_base  # the adapter changes the answers, so the comparison below means something

    mm = ModelManager(max_resident=1)
    ft = mm.get(str(short_run))
    base = mm.get("tiny:default", schema=schema)
    assert base.model is ft.model and len(mm.loaded()) == 1  # one copy of the weights
    # interleave: each call must switch the adapter on or off, whatever ran before
    assert texts(base) == alone_base
    assert texts(ft) == alone_ft
    assert texts(base) == alone_base
    assert mm.status()[0]["adapters"] and "adapter" in mm.status_line()


# big enough (~130 MB of weights) that freeing it is visible in RSS above allocator noise
BIGGER = {"arch": "qwen3_vl", "hidden_size": 512, "intermediate_size": 2048, "num_layers": 8,
          "mrope_section": [24, 20, 20]}


def test_unload_all_frees_the_model_and_memory():
    from core.models.tiny.registry import ensure_tiny

    schema = load_schema(SAMPLES / "schema.json")
    folder = ensure_tiny("default", BIGGER)  # a plain local HF folder, loaded like any hub model
    gc.collect()
    before = rss_bytes()
    mm = ModelManager()
    predictor = mm.get(str(folder), schema=schema)
    ref = weakref.ref(predictor.model)
    size = mm.status()[0]["param_bytes"]
    texts(predictor)  # touch every weight: lazily mapped safetensors pages only count once read
    loaded = rss_bytes()
    del predictor
    mm.unload_all()
    after = rss_bytes()
    print(f"RSS before {before / 2**20:.0f} MiB, loaded {loaded / 2**20:.0f} MiB, after unload "
          f"{after / 2**20:.0f} MiB, parameters {size / 2**20:.0f} MiB")
    assert ref() is None and mm.loaded() == [] and mm.status_line() == "No model loaded."
    assert loaded - after >= 0.5 * size  # the weights' memory went back to the system
