"""The launch command for 1 or N processes, the generated accelerate configs, and a real 2-process
run over gloo on CPU through the same launcher the Train tab uses."""

import json
import sys

import pytest
import yaml

from core.config import TrainConfig
from core.errors import ConfigError
from core.runs.files import RunFiles
from core.runs.launch import ACCELERATE_CONFIG, plan_launch, visible_gpus
from core.runs.manager import RunManager
from tests.support import REPO

ARGS = ["--dataset", "D", "--output", "R"]


def test_one_process_is_the_plain_cli(tmp_path):
    for gpus in (0, 1):
        plan = plan_launch(ARGS, TrainConfig(), tmp_path, python="py", cli="cli.py", gpus=gpus)
        assert plan.cmd == ["py", "cli.py", "train", *ARGS] and plan.processes == 1 and plan.config_path is None


def test_several_gpus_use_accelerate_launch(tmp_path):
    plan = plan_launch(ARGS, TrainConfig(), tmp_path, python="py", cli="cli.py", gpus=4)
    cmd = plan.cmd
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[-len(ARGS) - 2:] == ["cli.py", "train", *ARGS]
    asked = plan_launch(ARGS, TrainConfig(num_processes=2), tmp_path, python="py", cli="cli.py", gpus=4)
    assert asked.cmd[asked.cmd.index("--num_processes") + 1] == "2"
    single = plan_launch(ARGS, TrainConfig(num_processes=1), tmp_path, python="py", cli="cli.py", gpus=4)
    assert single.cmd == ["py", "cli.py", "train", *ARGS]
    with pytest.raises(ConfigError, match="needs 8 GPUs, but 4"):
        plan_launch(ARGS, TrainConfig(num_processes=8), tmp_path, gpus=4)


@pytest.mark.parametrize("kind,dtype", [("deepspeed", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_deepspeed_and_fsdp_write_an_accelerate_config(tmp_path, kind, dtype):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = TrainConfig(distributed=kind, grad_accum=3)
    plan = plan_launch(ARGS, cfg, tmp_path, python="py", cli="cli.py", gpus=2)
    plan.write_config()
    path = tmp_path / ACCELERATE_CONFIG
    assert plan.cmd[plan.cmd.index("--config_file") + 1] == str(path) and "--multi_gpu" not in plan.cmd
    loaded = load_config_from_file(str(path))  # accelerate itself accepts the file
    assert loaded.distributed_type.value == dtype and loaded.num_processes == 2
    raw = yaml.safe_load(path.read_text())
    if kind == "deepspeed":
        assert raw["deepspeed_config"]["zero_stage"] == 2 and raw["deepspeed_config"]["gradient_accumulation_steps"] == 3
    else:
        assert raw["fsdp_config"]["fsdp_version"] == 2
        assert raw["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    with pytest.raises(ConfigError, match="needs CUDA GPUs"):
        plan_launch(ARGS, cfg, tmp_path, gpus=0)


def test_gpu_count_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == 0


@pytest.mark.slow
def test_two_processes_over_gloo_train_together_and_rank_0_writes_once(tmp_path, small_dataset):
    """`accelerate launch` with 2 CPU processes (torchrun underneath, gloo): both ranks train on
    their own half of each global batch; only rank 0 writes status, metrics, log, checkpoint, final."""
    runs = RunManager(tmp_path, python=sys.executable, cli=REPO / "cli.py", gpus=0)
    cfg = TrainConfig(num_processes=2, max_steps=4, batch_size=2, save_steps=4, logging_steps=1, warmup_steps=1,
                      eval_steps=4, max_new_tokens=24)
    run = runs.start(small_dataset, "ddp", cfg)
    launched = json.loads((run / "launch.json").read_text())
    assert "accelerate.commands.launch" in launched["cmd"] and launched["processes"] == 2
    state = runs.wait(run, timeout_s=600)
    log = (run / "launch.log").read_text()
    assert state["state"] == "completed" and state.get("exit_code") == 0, log[-3000:]
    assert [r["rank"] for r in state["ranks"]] == [0, 1]
    for r in state["ranks"]:  # each rank consumed its own batches: 4 steps x 2 clips (+ the one fetched ahead)
        assert r["steps"] == 4 and r["examples"] >= 8
    rows = RunFiles(run).read_metrics()
    loss_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in loss_rows] == [1, 2, 3, 4]  # one line per step, not one per rank
    assert all(r["world_size"] == 2 and r["global_batch"] == 4 for r in loss_rows)
    assert [r["step"] for r in rows if "eval_per_field" in r] == [4]  # both ranks generated, one line
    assert [p.name for p in RunFiles(run).checkpoints()] == ["checkpoint-4"]
    assert sorted(p.name for p in (run / "checkpoint-4").glob("rng_state_*.pth")) == ["rng_state_0.pth",
                                                                                     "rng_state_1.pth"]
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert (run / "train.log").read_text().count("completed at step 4") == 1
    assert "processes 2" in (run / "train.log").read_text()
