"""Multi-node training with two "machines" on one host: machine ranks 0 and 1, one CPU process each
over gloo, rendezvous on 127.0.0.1, each started by its own `cli.py train` command (what a user
types on each host), both pointing at one run directory as a shared filesystem would."""

import os
import signal
import subprocess
import sys
import time

import pytest

from core.config import TrainConfig
from core.layout import CONFIG_FILE, DATASET_FILE
from core.runs.files import RunFiles
from core.runs.launch import free_port
from tests.support import REPO

TIMEOUT_S = 900


def _start_machines(tmp_path, args: list[str], tag: str, machine1: tuple = ()) -> list[tuple[subprocess.Popen, object]]:
    """Both machines' `cli.py train ARGS --machine-rank R` (machine 1 also MACHINE1, its flags winning),
    started together, each in its own process group (so a leftover accelerate/torchrun tree can be
    killed as a whole) with its own log file."""
    port = str(free_port())  # a new rendezvous per start: the first one's port may linger in TIME_WAIT
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")  # CPU and gloo, also on a GPU host
    started = []
    for rank in (0, 1):
        log = open(tmp_path / f"{tag}-machine{rank}.log", "w")
        cmd = [sys.executable, str(REPO / "cli.py"), "train", *args, "--num-machines", "2", "--machine-rank", str(rank),
               "--main-process-ip", "127.0.0.1", "--main-process-port", port, "--num-processes", "1",
               *(machine1 if rank == 1 else ())]
        started.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                         start_new_session=True), log))
    return started


def _finish(started, tmp_path, tag: str) -> None:
    """Wait for both machines; whatever is still alive at the deadline (or after a failure) is killed."""
    try:
        deadline = time.time() + TIMEOUT_S
        for proc, _ in started:
            proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        for proc, log in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    for rank, (proc, _) in enumerate(started):
        text = (tmp_path / f"{tag}-machine{rank}.log").read_text(errors="replace")
        assert proc.returncode == 0, f"machine {rank} exited {proc.returncode}:\n{text[-4000:]}"


@pytest.mark.slow
def test_two_machines_train_one_run_then_resume_together(tmp_path, small_dataset):
    run = tmp_path / "run"
    fresh = ["--dataset", str(small_dataset), "--output", str(run), "--max-steps", "3", "--batch-size", "2",
             "--save-steps", "3", "--logging-steps", "1", "--warmup-steps", "1", "--device", "cpu"]
    _finish(_start_machines(tmp_path, fresh, "fresh"), tmp_path, "fresh")

    files = RunFiles(run)
    status = files.read_status()
    assert status["state"] == "completed" and status["global_step"] == 3 and status["world_size"] == 2
    assert "warning" not in status  # machine 1 saw the run directory machine 0 wrote
    assert [(r["rank"], r["machine"]) for r in status["ranks"]] == [(0, 0), (1, 1)]
    for r in status["ranks"]:  # each machine's process consumed its own batches: 3 steps x 2 clips
        assert r["steps"] == 3 and r["examples"] >= 6
    loss_steps = [r["step"] for r in files.read_metrics() if "loss" in r]
    assert loss_steps == [1, 2, 3]  # one writer: one line per step, not one per machine
    assert (run / "train.log").read_text().count("completed at step 3") == 1
    # one run folder, one checkpoint holding each rank's RNG state (the only file machine 1 adds)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]
    assert [p.name for p in files.checkpoints()] == ["checkpoint-3"]
    assert sorted(p.name for p in (run / "checkpoint-3").glob("rng_state_*.pth")) == ["rng_state_0.pth",
                                                                                     "rng_state_1.pth"]
    launched = (tmp_path / "fresh-machine1.log").read_text()
    assert "on machine 1 of 2" in launched and "--num_processes 2 --num_machines 2" in launched

    # Resume on both machines with two more steps (flags override the run's config.yaml)
    resume = ["--resume", str(run), "--max-steps", "5", "--save-steps", "5"]
    _finish(_start_machines(tmp_path, resume, "resume"), tmp_path, "resume")

    status = files.read_status()
    assert status["state"] == "completed" and status["start_step"] == 3 and status["global_step"] == 5
    assert [(r["rank"], r["machine"], r["steps"]) for r in status["ranks"]] == [(0, 0, 5), (1, 1, 5)]
    assert all(r["examples"] >= 4 for r in status["ranks"])  # this session: steps 4 and 5, 2 clips each
    assert [r["step"] for r in files.read_metrics() if "loss" in r] == [1, 2, 3, 4, 5]  # continued, not restarted
    assert [p.name for p in files.checkpoints()] == ["checkpoint-3", "checkpoint-5"]
    assert (run / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_machine_that_does_not_see_the_run_directory_is_named_and_writes_nothing(tmp_path, small_dataset):
    """Machine 1 given another folder stands for hosts without shared storage: training still
    completes (machine 0 writes the run), status.json and train.log say Resume would not work, and
    machine 1's path holds only its RNG state."""
    run, elsewhere = tmp_path / "run", tmp_path / "machine1-run"
    args = ["--dataset", str(small_dataset), "--output", str(run), "--max-steps", "2", "--batch-size", "2",
            "--save-steps", "100", "--logging-steps", "1", "--warmup-steps", "1", "--device", "cpu"]
    _finish(_start_machines(tmp_path, args, "apart", machine1=("--output", str(elsewhere))), tmp_path, "apart")
    status = RunFiles(run).read_status()
    assert status["state"] == "completed" and [r["machine"] for r in status["ranks"]] == [0, 1]
    assert status["warning"].startswith("machine(s) 1 do not see") and "Resume" in status["warning"]
    assert "warning: machine(s) 1 do not see" in (run / "train.log").read_text()
    # all machine 1 wrote: its own part of the checkpoint Trainer saves at the last step, which is
    # why Resume needs one shared folder (status, log, metrics and the model are machine 0's alone)
    assert [str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*") if p.is_file()] == ["checkpoint-2/rng_state_1.pth"]
    assert (run / "checkpoint-2" / "rng_state_0.pth").is_file() and not (run / "checkpoint-2" / "rng_state_1.pth").exists()


def test_resuming_a_multi_machine_run_needs_each_machine_rank(tmp_path):
    """config.yaml holds machine 0's rank: without --machine-rank, machine 1 would claim rank 0."""
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(TrainConfig(num_machines=2, main_process_ip="10.0.0.1").to_yaml())
    (run / DATASET_FILE).write_text(str(tmp_path) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--resume", str(run)], capture_output=True,
                         text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode != 0 and "--machine-rank" in out.stderr
    assert sorted(p.name for p in run.iterdir()) == [CONFIG_FILE, DATASET_FILE]  # nothing started, nothing written
