"""Training runs as processes, driven the way the Train tab drives them: start, watch the files,
stop (STOP file → save), resume with the step count continuing, crash detection after kill -9."""

import json
import os
import signal
import time

import pytest

from core.config import TrainConfig
from core.errors import WorkbenchError
from core.runs.files import RunFiles
from core.runs.manager import RunError, RunManager

CONFIG = TrainConfig(max_steps=40, save_steps=10, logging_steps=2, warmup_steps=2, batch_size=4)


def wait_for(predicate, timeout_s=300, what="condition"):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def metric_steps(run_dir):
    return [row["step"] for row in RunFiles(run_dir).read_metrics() if "loss" in row]


@pytest.mark.slow
def test_start_stop_resume_continues_the_step_count(tmp_path, small_dataset):
    runs = RunManager(tmp_path)
    run = runs.start(small_dataset, "r1", CONFIG)
    # metrics lines appear while the process runs
    wait_for(lambda: len(metric_steps(run)) >= 3 and runs.state(run)["state"] == "running", what="live metrics")
    with pytest.raises(RunError, match="still running"):
        runs.start(small_dataset, "r2", CONFIG)
    stopped = runs.stop(run, grace_s=120)
    assert stopped["state"] == "stopped"
    stop_step = stopped["global_step"]
    assert 0 < stop_step < 40
    assert RunFiles(run).last_checkpoint().name == f"checkpoint-{stop_step}"
    assert (run / "final" / "adapter_model.safetensors").is_file()  # a loadable model at the stop point
    logged = [row["loss"] for row in RunFiles(run).read_metrics() if "loss" in row]
    assert stopped["loss"] == logged[-1]  # the runs table's loss column after Stop: the last logged loss
    assert next(r for r in runs.list_runs() if r["run"] == "r1")["loss"] == logged[-1]

    runs.resume(run)
    final = runs.wait(run, timeout_s=600)
    assert final["state"] == "completed" and final["global_step"] == 40
    steps = metric_steps(run)
    resumed = steps[steps.index(max(s for s in steps if s <= stop_step)) + 1:]
    assert resumed and min(resumed) > stop_step, steps  # continued, did not restart at 0
    assert json.loads((run / "preprocessing.json").read_text())["sampling"]["num_frames"] == 8


@pytest.mark.slow
def test_kill_9_is_reported_as_crashed_and_resume_works(tmp_path, small_dataset):
    runs = RunManager(tmp_path)
    run = runs.start(small_dataset, "crash", CONFIG)
    wait_for(lambda: RunFiles(run).last_checkpoint(), what="first checkpoint")
    pid = RunFiles(run).read_status()["pid"]
    os.kill(pid, signal.SIGKILL)
    state = wait_for(lambda: (s := runs.state(run))["state"] == "crashed" and s, what="crashed state")
    assert state["exit_code"] == -signal.SIGKILL
    # a watcher that did not launch the run (a reloaded page) sees the same
    assert RunManager(tmp_path).state(run)["state"] == "crashed"
    runs.resume(run)
    final = runs.wait(run, timeout_s=600)
    assert final["state"] == "completed" and final["global_step"] == 40


def test_resume_refuses_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no checkpoint"):
        RunManager(tmp_path).resume(tmp_path / "empty")


def test_clone_config_reads_config_or_launch_yaml_and_refuses_what_cannot_run(tmp_path):
    from core.errors import ConfigError

    runs = RunManager(tmp_path)
    (tmp_path / "launched").mkdir()  # a run that never wrote config.yaml: its launch.yaml is the config
    (tmp_path / "launched" / "launch.yaml").write_text(TrainConfig(lora_r=4, step_cap=50).to_yaml())
    config = runs.clone_config("launched")
    assert config["lora_r"] == 4 and "step_cap" not in config
    assert TrainConfig.from_dict(config) == TrainConfig(lora_r=4)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("num_frames: 0\n")
    with pytest.raises(ConfigError, match="config.yaml: num_frames must be >= 1"):
        runs.clone_config("broken")
    for name, reason in (("", "pick a run to clone"), ("missing", "no config.yaml"), ("../x", "plain folder name")):
        with pytest.raises(WorkbenchError, match=reason):
            runs.clone_config(name)
