"""The estimate's expected duration: real training steps of the configured model are timed on one
real batch, and the duration is built from that measurement (a clock we control proves it: every
measured interval becomes exactly 0.5 s, so the steps part must be max_steps x 0.5 x grad_accum)."""

import json

import pytest

from core.config import TrainConfig
from core.train import timing
from core.train.estimate import estimate, format_estimate


class _Clock:
    """perf_counter that advances 0.5 s per call: each start/stop pair measures 0.5 s."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 0.5
        return self.now


def test_duration_is_built_from_the_measured_step_time(small_dataset, monkeypatch):
    calls = []
    real_step = timing._train_step
    monkeypatch.setattr(timing, "_train_step", lambda *a: calls.append(1) or real_step(*a))
    monkeypatch.setattr(timing, "time", _Clock())
    cfg = TrainConfig(batch_size=2, grad_accum=3, max_steps=40, save_steps=10, eval_steps=0)
    est = estimate(cfg, small_dataset, sample=2, time_steps=2)
    d = est["duration"]
    assert len(calls) == 3  # one warm-up and two timed real steps on the real model
    assert d["timed_steps"] == 2 and d["micro_batch_s"] == 0.5 and d["step_s"] == 1.5  # x grad_accum 3
    assert d["steps"] == 40 and d["parts"]["steps"] == 40 * 1.5
    assert d["checkpoints"] == 4 and d["parts"]["checkpoints"] == 4 * 0.5
    assert d["evaluations"] == 0 and d["parts"]["evaluations"] == 0
    assert d["seconds"] == pytest.approx(sum(d["parts"].values()))
    text = format_estimate(est)
    assert "expected duration: about 1m" in text and "1.500 s/step" in text


def test_duration_with_the_real_clock_and_evaluations(small_dataset):
    est = estimate(TrainConfig(batch_size=2, max_steps=30, eval_steps=20, eval_max_clips=2, max_new_tokens=8),
                   small_dataset, sample=2, time_steps=1)
    d = est["duration"]
    assert d["step_s"] > 0 and d["eval_batch_s"] > 0 and d["evaluations"] == 2  # at step 20 and at the end (30)
    assert d["parts"]["steps"] == pytest.approx(30 * d["step_s"])
    assert d["parts"]["evaluations"] == pytest.approx(2 * 1 * d["eval_batch_s"])  # 2 clips fit one batch of 2
    assert f"{d['step_s']:.3f} s/step" in format_estimate(est)


def test_skipping_the_timing_loads_no_weights(small_dataset, monkeypatch):
    monkeypatch.setattr(timing, "calibrate", lambda *a, **k: pytest.fail("calibrated although time_steps=0"))
    est = estimate(TrainConfig(batch_size=2), small_dataset, sample=1, time_steps=0)
    assert est["duration"] is None and "expected duration: not measured" in format_estimate(est)


def test_steps_and_overheads_follow_the_config():
    measured = {"micro_batch_s": 0.2, "step_s": 0.2, "timed_steps": 2, "encode_s_per_clip": 0.1, "load_s": 1.0,
                "save_s": 0.5, "eval_batch_s": 3.0, "eval_batch": 8}
    cfg = TrainConfig(max_steps=800, batch_size=8, save_steps=200, eval_steps=300, eval_max_clips=16)
    d = timing.expected_duration(cfg, measured, train_clips=240, workers=0)
    assert d["evaluations"] == 3 and d["parts"]["evaluations"] == 3 * 2 * 3.0  # 300, 600 and the end; 2 batches
    assert d["checkpoints"] == 4 and d["parts"]["first_pass"] == pytest.approx(240 * 0.1)
    # a loader worker decodes ahead: 8 clips x 0.1 s = 0.8 s a batch against a 0.2 s step leaves 0.6 s a batch
    hidden = timing.expected_duration(cfg, measured, train_clips=240, workers=1)
    assert hidden["parts"]["first_pass"] == pytest.approx(30 * 0.6)
    by_epochs = timing.expected_duration(TrainConfig(max_steps=0, epochs=2, batch_size=8), measured, 240, 0)
    assert by_epochs["steps"] == 60
    capped = timing.expected_duration(TrainConfig(max_steps=800, step_cap=100), measured, 240, 0)
    assert capped["steps"] == 100


def test_cli_estimate_prints_the_duration(small_dataset, capsys):
    import cli

    assert cli.main(["estimate", "--dataset", str(small_dataset), "--batch-size", "2", "--sample", "1",
                     "--max-steps", "10", "--time-steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["duration"]["steps"] == 10 and report["duration"]["step_s"] > 0
    assert cli.main(["estimate", "--dataset", str(small_dataset), "--sample", "1", "--time-steps", "0"]) == 0
    assert "expected duration: not measured" in capsys.readouterr().out


def test_a_run_that_does_not_fit_is_not_timed(small_dataset, monkeypatch):
    """Timing loads the model and trains: never for a run the memory estimate says does not fit."""
    import core.train.estimate as estimate_module

    monkeypatch.setattr(estimate_module, "calibrate", lambda *a, **k: pytest.fail("timed a run that does not fit"))
    monkeypatch.setattr(estimate_module, "device_memory", lambda device: (1024, "a 1 KiB test device"))
    est = estimate(TrainConfig(batch_size=2), small_dataset, sample=1, time_steps=2)
    assert est["duration"] is None
    assert any("expected duration not measured" in w for w in est["warnings"])
    assert any("exceeds" in w for w in est["warnings"])
