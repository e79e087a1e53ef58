"""The local engine samples the next batches' frames in a loader thread while the model generates."""

from __future__ import annotations

import threading

import pytest

import core.serve.predictor as predictor_module
from tests.support import SAMPLES

CLIPS = sorted((SAMPLES / "videos").glob("*.mp4"))[:5]


@pytest.fixture(scope="module")
def predictor():
    import json

    from core.serve.predictor import Predictor

    return Predictor.load("tiny:default", schema=json.loads((SAMPLES / "schema.json").read_text()))


def test_prefetched_batches_equal_serial_ones_and_keep_order_around_a_broken_clip(predictor, tmp_path, monkeypatch):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    videos = CLIPS[:2] + [broken] + CLIPS[2:]
    threads = []
    real = predictor_module.sample_frames

    def recording(path, spec):
        threads.append(threading.current_thread().name)
        return real(path, spec)

    monkeypatch.setattr(predictor_module, "sample_frames", recording)
    serial = predictor.predict(videos, batch_size=2, max_new_tokens=24, prefetch=0)
    assert set(threads) == {threading.current_thread().name}
    threads.clear()
    batches = list(predictor.iter_predict(videos, batch_size=2, max_new_tokens=24, prefetch=2))
    assert threads and all(name.startswith("predict-frames") for name in threads)  # never the model's thread
    flat = [pair for batch in batches for pair in batch]
    assert [i for i, _ in flat] == list(range(len(videos)))  # every clip once, in order
    assert [p.text for _, p in flat] == [p.text for p in serial]
    assert flat[2][1].error and "broken.mp4" in flat[2][1].error and serial[2].error == flat[2][1].error
    stats = predictor.stats
    assert stats.clips == len(videos) and 0.0 <= stats.wait_share <= 1.0 and stats.total_s > 0


def test_an_abandoned_iteration_stops_the_loader_thread(predictor):
    before = {t.name for t in threading.enumerate()}
    batches = predictor.iter_predict(CLIPS, batch_size=1, max_new_tokens=8, prefetch=2)
    next(batches)
    batches.close()  # e.g. the caller's writer failed
    assert not [t for t in threading.enumerate() if t.name.startswith("predict-frames") and t.name not in before]
