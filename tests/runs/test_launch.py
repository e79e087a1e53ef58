"""The launch command for 1 or N processes, the generated accelerate configs, and a real 2-process
run over gloo on CPU through the same launcher the Train tab uses."""

import json
import sys

import pytest
import yaml

from core.config import TrainConfig
from core.errors import ConfigError
from core.layout import ACCELERATE_CONFIG
from core.runs.files import RunFiles
from core.runs.launch import plan_launch, visible_gpus
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


def _accelerate_reads(cmd: list[str]):
    """accelerate's own parsing and checks of our launch flags, then what it hands torchrun."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    prepare_multi_gpu_env(args)  # machine rank > 0 here: no port check against this host
    return args


def test_several_machines_launch_through_accelerate_with_this_machines_processes(tmp_path):
    # one CPU process per machine is still a distributed run: accelerate, not the plain CLI
    cfg = TrainConfig(num_machines=2, machine_rank=1, main_process_ip="10.1.2.3", device="cpu")
    plan = plan_launch(ARGS, cfg, tmp_path, python="py", cli="cli.py", gpus=0)
    cmd = plan.cmd
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd and plan.launcher
    flags = {k: cmd[cmd.index(k) + 1] for k in ("--num_processes", "--num_machines", "--machine_rank",
                                                 "--main_process_ip", "--main_process_port")}
    assert flags == {"--num_processes": "2", "--num_machines": "2", "--machine_rank": "1",
                     "--main_process_ip": "10.1.2.3", "--main_process_port": "29500"}
    args = _accelerate_reads(cmd)
    assert (args.nproc_per_node, args.nnodes, args.node_rank, args.rdzv_endpoint) == ("1", "2", 1, "10.1.2.3:29500")
    # num_processes counts this machine's: 3 GPUs here x 2 machines = a world of 6, 3 started here
    gpus3 = plan_launch(ARGS, TrainConfig(num_machines=2, machine_rank=1, main_process_ip="h", main_process_port=7000),
                        tmp_path, python="py", cli="cli.py", gpus=3)
    assert gpus3.processes == 3 and gpus3.cmd[gpus3.cmd.index("--num_processes") + 1] == "6"
    args = _accelerate_reads(gpus3.cmd)
    assert (args.nproc_per_node, args.nnodes, args.rdzv_endpoint) == ("3", "2", "h:7000")
    assert not plan_launch(ARGS, TrainConfig(), tmp_path, python="py", cli="cli.py", gpus=0).launcher


@pytest.mark.parametrize("kind", ["deepspeed", "fsdp"])
def test_machine_settings_reach_the_deepspeed_and_fsdp_configs(tmp_path, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    for rank in (0, 1):
        cfg = TrainConfig(distributed=kind, num_processes=2, num_machines=2, machine_rank=rank,
                          main_process_ip="10.1.2.3", main_process_port=4321)
        plan = plan_launch(ARGS, cfg, tmp_path, python="py", cli="cli.py", gpus=2)
        plan.write_config()
        loaded = load_config_from_file(str(plan.config_path))
        assert (loaded.num_machines, loaded.machine_rank, loaded.num_processes) == (2, rank, 4)
        assert (loaded.main_process_ip, loaded.main_process_port) == ("10.1.2.3", 4321)
        # only machine 0 writes into the run directory
        assert (plan.config_path == tmp_path / ACCELERATE_CONFIG) == (rank == 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ACCELERATE_CONFIG]
    args = _accelerate_reads(plan.cmd)  # machine 1's command with its own config file
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("2", "2", 1)
    if kind == "deepspeed":  # torchrun on each machine, not pdsh over ssh
        assert args.deepspeed_multinode_launcher == "standard"


def test_machine_settings_are_checked():
    for bad, match in [(dict(num_machines=2), "needs main_process_ip"),
                       (dict(num_machines=2, machine_rank=2, main_process_ip="h"), r"machine_rank must be 0 to num_machines - 1 \(1\), not 2"),
                       (dict(num_machines=0), "num_machines must be >= 1"),
                       (dict(main_process_port=70000), "main_process_port must be"),
                       (dict(num_machines=2, main_process_ip="a b"), "one address"),
                       (dict(method="grpo", num_machines=2, main_process_ip="h"), "grpo runs in one process")]:
        with pytest.raises(ConfigError, match=match):
            TrainConfig.from_dict(bad)
    cfg = TrainConfig.from_dict({"num_machines": "2", "machine_rank": 1, "main_process_ip": " 10.0.0.1 "})
    assert (cfg.num_machines, cfg.main_process_ip) == (2, "10.0.0.1")


def test_the_app_starts_only_machine_0(tmp_path):
    from core.runs.manager import RunError
    from core.runs.policy import TrainingPolicy

    runs = RunManager(tmp_path, gpus=0, policy=TrainingPolicy("full", "test"))
    cfg = TrainConfig(num_machines=2, machine_rank=1, main_process_ip="10.1.2.3")
    with pytest.raises(RunError, match="--config .*launch.yaml --machine-rank 1"):
        runs.start("data", "mn", cfg)
    assert not (tmp_path / "mn").exists()
    # machine 0 starts (a stand-in interpreter that exits at once) and says what the others run
    runs = RunManager(tmp_path, python="true", gpus=0, policy=TrainingPolicy("full", "test"))
    run = runs.start("data", "mn", TrainConfig(num_machines=2, main_process_ip="10.1.2.3"))
    runs.wait(run, timeout_s=30)
    launched = json.loads((run / "launch.json").read_text())["cmd"]
    assert launched[launched.index("--machine_rank") + 1] == "0"
    assert (f"python cli.py train --dataset data --output {run} --config {run / 'launch.yaml'} --machine-rank R"
            in (run / "launch.log").read_text())


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
