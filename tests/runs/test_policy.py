"""Space mode: a hosted Space without a GPU limits training from the app to the embedded tiny
models, one process and LIMITED_MAX_STEPS; VVW_TRAINING overrides; the cap reaches the trainer."""

import pytest
import yaml

from core.config import TrainConfig
from core.errors import ConfigError
from core.runs.manager import RunManager
from core.runs.policy import LIMITED_MAX_STEPS, TrainingPolicy, is_tiny_model, training_policy


def test_detection_from_the_environment():
    assert training_policy({}, cuda_available=False).mode == "full"
    assert training_policy({"SPACE_ID": "me/demo"}, cuda_available=False).mode == "limited"
    assert training_policy({"SPACE_ID": "me/demo"}, cuda_available=True).mode == "full"
    assert training_policy({"SPACE_ID": "me/demo", "VVW_TRAINING": "off"}, cuda_available=True).mode == "off"
    assert training_policy({"VVW_TRAINING": "Limited"}, cuda_available=True).mode == "limited"
    with pytest.raises(ConfigError, match="VVW_TRAINING='most'"):
        training_policy({"VVW_TRAINING": "most"})


def test_limited_allows_the_tiny_models_and_caps_steps(short_run):
    limited = training_policy({"SPACE_ID": "me/demo"}, cuda_available=False)
    assert "Space me/demo" in limited.banner() and str(LIMITED_MAX_STEPS) in limited.banner()
    cfg = limited.apply({"model": "tiny:default", "max_steps": 5000})
    assert cfg["step_cap"] == LIMITED_MAX_STEPS and cfg["max_steps"] == 5000
    assert limited.apply({"model": "tiny:default", "step_cap": 10})["step_cap"] == 10
    assert is_tiny_model(str(short_run))  # a run trained on the tiny default is itself trainable
    assert limited.apply({"model": "tiny:default", "method": "grpo", "init_adapter": str(short_run)})
    with pytest.raises(ConfigError, match="only the embedded tiny models"):
        limited.apply({"model": "Qwen/Qwen2.5-VL-7B-Instruct"})
    with pytest.raises(ConfigError, match="one process only"):
        limited.apply({"model": "tiny:default", "num_processes": 2})
    with pytest.raises(ConfigError, match="one machine only"):
        limited.apply({"model": "tiny:default", "num_machines": 2, "main_process_ip": "10.0.0.1"})
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        limited.apply({"model": "tiny:default", "method": "qlora"})
    full = TrainingPolicy("full", "x")
    assert full.banner() == "" and full.apply({"model": "Qwen/Qwen2.5-VL-7B-Instruct"})["model"].startswith("Qwen")


def test_run_manager_refuses_before_creating_the_run(tmp_path, small_dataset):
    runs = RunManager(tmp_path, policy=TrainingPolicy("off", "set by VVW_TRAINING"))
    with pytest.raises(ConfigError, match="training is off"):
        runs.start(small_dataset, "r", TrainConfig())
    limited = RunManager(tmp_path, policy=TrainingPolicy("limited", "Space me/demo runs on CPU hardware"))
    with pytest.raises(ConfigError, match="only the embedded tiny models"):
        limited.start(small_dataset, "r", TrainConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"))
    assert not (tmp_path / "r").exists()


def test_the_cap_is_saved_with_the_run_and_stops_training(tmp_path, small_dataset):
    runs = RunManager(tmp_path, policy=TrainingPolicy("limited", "test"))
    policy_cfg = runs.policy.apply({"model": "tiny:default", "step_cap": 3})
    assert policy_cfg["step_cap"] == 3
    run = runs.start(small_dataset, "capped", TrainConfig(max_steps=0, epochs=5, batch_size=4, step_cap=3,
                                                          logging_steps=1, warmup_steps=1, save_steps=100))
    assert yaml.safe_load((run / "launch.yaml").read_text())["step_cap"] == 3
    final = runs.wait(run, timeout_s=600)
    assert final["state"] == "completed", final
    assert final["global_step"] == 3 and final["max_steps"] == 3  # 5 epochs of 16 clips would be 20 steps
    assert "capped at step_cap 3" in (run / "train.log").read_text()


def test_train_tab_shows_the_banner_and_off_disables_start(tmp_path):
    from app import build_app
    from core.workspace import Workspace

    for mode, interactive in (("limited", True), ("off", False)):
        ws = Workspace(runs_dir=tmp_path / mode)
        ws.runs._policy = TrainingPolicy(mode, "Space me/demo runs on CPU hardware")
        config = build_app(ws).get_config_file()
        texts = [c["props"].get("value") for c in config["components"] if c["props"].get("elem_id") == "train-policy"]
        assert texts and "Space me/demo" in texts[0]
        start = next(c for c in config["components"] if c["props"].get("elem_id") == "train-start")
        assert start["props"].get("interactive", True) is interactive


def test_limited_mode_offers_only_trainable_base_models(tmp_path, short_run):
    import json
    import shutil

    from core.workspace import Workspace
    from tabs.train import trainable_models

    runs = tmp_path / "runs"
    shutil.copytree(short_run, runs / "tiny_run")
    hub = runs / "hub_run"
    (hub / "final").mkdir(parents=True)
    (hub / "final" / "adapter_config.json").write_text("{}")
    spec = json.loads((short_run / "preprocessing.json").read_text())
    (hub / "preprocessing.json").write_text(json.dumps({**spec, "base_model": "Qwen/Qwen2.5-VL-7B-Instruct",
                                                        "extra": {}}))
    ws = Workspace(runs_dir=runs)
    assert set(ws.model_choices()) == {"tiny:default", str(runs / "tiny_run"), str(hub)}
    limited = trainable_models(ws, TrainingPolicy("limited", "test"))
    assert set(limited) == {"tiny:default", str(runs / "tiny_run")}
    assert set(trainable_models(ws, TrainingPolicy("full", "test"))) == set(ws.model_choices())


def test_limited_bounds_the_cost_of_a_step_and_the_cap_cannot_be_undone():
    limited = TrainingPolicy("limited", "test")
    assert limited.apply(dict(TrainConfig(model="tiny:default").__dict__))["step_cap"] == LIMITED_MAX_STEPS
    for key, value in (("grad_accum", 10000), ("batch_size", 512), ("num_frames", 256), ("frame_width", 1920),
                       ("eval_max_clips", 100000), ("max_new_tokens", 100000), ("num_generations", 64)):
        with pytest.raises(ConfigError, match=f"{key} {value}: at most"):
            limited.apply({"model": "tiny:default", key: value})
    assert limited.apply({"model": "tiny:default", "step_cap": -1})["step_cap"] == LIMITED_MAX_STEPS
    with pytest.raises(ConfigError, match="step_cap must be >= 0"):
        TrainConfig(step_cap=-1).validate()


def test_run_names_cannot_leave_the_runs_folder(tmp_path):
    from core.runs.manager import RunError

    runs = RunManager(tmp_path / "runs", policy=TrainingPolicy("full", "test"))
    assert runs.run_dir("run-1") == tmp_path / "runs" / "run-1"
    for bad in ("", "..", "../x", "/etc", "a/b", "a\\b"):
        with pytest.raises(RunError, match="plain folder name"):
            runs.run_dir(bad)


def test_clone_leaves_the_deployments_step_cap_behind(tmp_path):
    from core.workspace import Workspace
    from tabs.train import clone_config

    ws = Workspace(runs_dir=tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump({**TrainConfig().__dict__, "step_cap": 1000}))
    _, config = clone_config(ws, "old")
    assert "step_cap" not in config and config["max_steps"] == TrainConfig().max_steps
    with pytest.raises(Exception, match="plain folder name"):
        clone_config(ws, "/etc")
