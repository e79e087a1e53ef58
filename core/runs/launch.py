"""The command that starts a training run: one process, or several through `accelerate launch`.

- 0-1 GPU and no DeepSpeed/FSDP: `python cli.py train ARGS` (what a user types).
- more than one process (`num_processes` > 1, or 0 = one per visible GPU with 2+ GPUs visible), or
  `distributed: deepspeed|fsdp`: `python -m accelerate.commands.launch --num_processes N
  --main_process_port P ... cli.py train ARGS`, plus, for DeepSpeed (ZeRO stage 2) or FSDP (v2,
  full state dict so checkpoints stay plain HF folders), an accelerate config written into the run
  directory as `accelerate.yaml` and passed with `--config_file`.
- several processes without a GPU (CPU, gloo): accelerate's `--cpu` flag starts a single process
  unless MPI is set up, so we use its torchrun-based launcher (`--multi_gpu`); each process then
  finds no CUDA device and accelerate picks MULTI_CPU over gloo. Used by the tests; slow for real work.
- several machines (`num_machines` > 1, always through accelerate, even with one process each):
  every machine runs the same command with its own `--machine_rank`, `--main_process_ip` of machine
  0 and one `--main_process_port`. `num_processes` counts this machine's processes, while
  accelerate's `--num_processes` is the world total (it hands torchrun total // machines per node),
  so we pass `num_processes x num_machines`. DeepSpeed gets `deepspeed_multinode_launcher: standard`
  (torchrun on each machine) instead of its pdsh default, which needs ssh and a hostfile. Only
  machine 0 writes `accelerate.yaml` into the (shared) run directory; another machine writes its
  copy to the temp folder, so the run directory keeps one writer.

GPUs are counted without importing torch (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`) so the UI
process never creates a CUDA context. This module does not start processes (core.runs.manager does).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.fileio import atomic_write_text
from core.layout import ACCELERATE_CONFIG
from core.paths import REPO_ROOT

MULTI_NODE_PORT = 29500  # torchrun's and accelerate's default: every machine must name the same port


def visible_gpus() -> int:
    """CUDA devices this process would see: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x for x in env.split(",") if x.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LaunchPlan:
    cmd: list[str]
    processes: int  # on this machine
    gpus: int
    config_path: Path | None = None  # accelerate config to write before starting
    config_text: str | None = None
    machines: int = 1

    @property
    def launcher(self) -> bool:
        """True when the command is `accelerate launch` (several processes here or across machines, or
        a DeepSpeed/FSDP config), False for the plain `cli.py train`."""
        return self.processes > 1 or self.machines > 1 or self.config_path is not None

    def write_config(self) -> None:
        if self.config_path is not None:
            atomic_write_text(self.config_path, self.config_text)


@dataclass
class Machines:
    """Where this machine stands in a (possibly one-machine) run: what accelerate's machine flags say."""
    count: int = 1
    rank: int = 0
    ip: str = ""
    port: int = 0


def accelerate_config(distributed: str, processes: int, grad_accum: int, max_grad_norm: float,
                      machines: Machines | None = None) -> dict:
    """accelerate config (the YAML `accelerate config` writes) for DeepSpeed ZeRO-2 or FSDP v2.
    `processes` is the world total across machines (accelerate's meaning). Mixed precision is left
    to the training arguments (`precision` in TrainConfig)."""
    m = machines or Machines()
    base = {"compute_environment": "LOCAL_MACHINE", "machine_rank": m.rank, "num_machines": m.count,
            "num_processes": processes, "rdzv_backend": "static", "same_network": True, "use_cpu": False,
            "main_training_function": "main", "mixed_precision": "no", "downcast_bf16": "no"}
    if m.count > 1:
        base.update(main_process_ip=m.ip, main_process_port=m.port)
    if distributed == "deepspeed":
        return {**base, "distributed_type": "DEEPSPEED", "deepspeed_config": {
            "zero_stage": 2, "offload_optimizer_device": "none", "offload_param_device": "none",
            "gradient_accumulation_steps": grad_accum, "gradient_clipping": max_grad_norm, "zero3_init_flag": False,
            # the same command on every machine, each starting its own torchrun; pdsh (the default)
            # would log into the others over ssh from a hostfile
            "deepspeed_multinode_launcher": "standard"}}
    if distributed == "fsdp":
        return {**base, "distributed_type": "FSDP", "fsdp_config": {
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's _no_split_modules
            "fsdp_reshard_after_forward": True, "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_activation_checkpointing": False}}
    raise ConfigError(f"no accelerate config for distributed={distributed!r}")


def plan_launch(train_args: list[str], cfg, run_dir, python: str = sys.executable, cli: Path = REPO_ROOT / "cli.py",
                gpus: int | None = None) -> LaunchPlan:
    """The command (and accelerate config, if any) for `cli.py train TRAIN_ARGS` under `cfg`
    (a TrainConfig or its dict: num_processes, distributed, grad_accum, max_grad_norm, device,
    num_machines, machine_rank, main_process_ip, main_process_port)."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    gpus = visible_gpus() if gpus is None else gpus
    if str(get("device", "auto")) == "cpu":
        gpus = 0
    distributed = get("distributed", "ddp") or "ddp"
    n = int(get("num_processes", 0) or 0) or max(gpus, 1)  # on this machine
    m = Machines(int(get("num_machines", 1) or 1), int(get("machine_rank", 0) or 0),
                 str(get("main_process_ip", "") or ""), int(get("main_process_port", 0) or 0))
    plain = [python, str(cli), "train", *map(str, train_args)]
    if n == 1 and m.count == 1 and distributed == "ddp":
        return LaunchPlan(plain, 1, gpus)
    if gpus and n > gpus:
        raise ConfigError(f"num_processes {n} needs {n} GPUs, but {gpus} are visible")
    if distributed != "ddp" and not gpus:
        raise ConfigError(f"distributed {distributed} needs CUDA GPUs; none are visible (use ddp)")
    # one machine: any free port; several: all must agree on it, so a fixed default
    m.port = m.port or (MULTI_NODE_PORT if m.count > 1 else free_port())
    total = n * m.count  # accelerate's --num_processes is the world total; it gives each machine total // machines
    cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(total), "--num_machines", str(m.count),
           "--main_process_port", str(m.port), "--dynamo_backend", "no"]
    if m.count > 1:
        cmd += ["--machine_rank", str(m.rank), "--main_process_ip", m.ip]
    plan = LaunchPlan(cmd, n, gpus, machines=m.count)
    if distributed == "ddp":
        cmd += ["--mixed_precision", "no", "--multi_gpu"]  # on CPU this is the torchrun launcher (gloo)
    else:
        plan.config_path = (Path(run_dir) / ACCELERATE_CONFIG if m.rank == 0 else
                            Path(tempfile.gettempdir()) / f"vvw-{Path(run_dir).name}-machine{m.rank}-{ACCELERATE_CONFIG}")
        plan.config_text = yaml.safe_dump(accelerate_config(distributed, total, int(get("grad_accum", 1) or 1),
                                                            float(get("max_grad_norm", 1.0)), m), sort_keys=False)
        cmd += ["--config_file", str(plan.config_path)]
    cmd += [str(cli), "train", *map(str, train_args)]
    return plan
