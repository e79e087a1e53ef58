"""Launching and watching training runs as processes; the run directory is the protocol.

`RunManager.start` writes the config into the run directory and starts the same command a user
types (`python cli.py train --dataset D --output RUN --config RUN/launch.yaml`, or `accelerate
launch ... cli.py train ...` for several processes: see core.runs.launch) in its own process group, so
closing the UI never stalls a run and a stop can reach every child. State comes from the
files (`core.runs.files`), so a reloaded page re-attaches: a `running` status whose process is gone
is reported as `crashed`, with the log tail and, when we launched it, the exit code.
`clone_config` reads a past run's config back for a new run. This module imports no torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import yaml

from core.config import TrainConfig
from core.errors import ConfigError, WorkbenchError
from core.fileio import atomic_write_text
from core.layout import CONFIG_FILE, LAUNCH_CONFIG, LAUNCH_INFO, LAUNCH_LOG, LOG_FILE, STATUS_FILE
from core.paths import REPO_ROOT
from core.runs.files import RunFiles
from core.runs.launch import LaunchPlan, plan_launch
from core.runs.policy import TrainingPolicy, training_policy

STOP_GRACE_S = 60.0


class RunError(WorkbenchError):
    """A run cannot be started, stopped or resumed as asked."""


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child we have not reaped yet is a zombie: treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def other_machine_args(dataset, run_dir: Path) -> str:
    """`cli.py train` arguments that join, from another machine, a run this manager starts on machine 0
    (the run directory and dataset on storage both see, at the same paths)."""
    return f"--dataset {dataset} --output {run_dir} --config {run_dir / LAUNCH_CONFIG}"


class RunManager:
    """Starts, stops, resumes and reports runs under `runs_dir`. One active run at a time."""

    def __init__(self, runs_dir, python: str = sys.executable, cli: Path = REPO_ROOT / "cli.py",
                 gpus: int | None = None, policy: TrainingPolicy | None = None):
        self.runs_dir = Path(runs_dir)
        self.python, self.cli = python, Path(cli)
        self.gpus = gpus  # None: count visible GPUs at launch (core.runs.launch.visible_gpus)
        self._policy = policy
        self._procs: dict[str, subprocess.Popen] = {}
        # Gradio runs start/resume handlers concurrently: the busy check and the launch are one step
        self._launching = threading.Lock()

    @property
    def policy(self) -> TrainingPolicy:
        """Space mode (core.runs.policy), detected on first use: detection may run nvidia-smi."""
        if self._policy is None:
            self._policy = training_policy()
        return self._policy

    # --- reading ---------------------------------------------------------------------------------

    def state(self, run_dir) -> dict:
        """status.json, corrected: a `running` run whose process is gone is `crashed`."""
        run = RunFiles(run_dir)
        status = run.read_status()
        proc = self._procs.get(str(Path(run_dir).resolve()))
        exit_code = proc.poll() if proc else None
        if not status:
            if proc is not None and exit_code is None:
                return {"state": "starting"}
            if proc is not None:
                return {"state": "crashed", "exit_code": exit_code, "log_tail": tail(run.dir / LAUNCH_LOG)}
            return {"state": "unknown"}
        if status.get("state") == "running" and not pid_alive(status.get("pid")):
            status = dict(status, state="crashed", log_tail=tail(run.dir / LAUNCH_LOG) or tail(run.dir / LOG_FILE))
            if proc is not None:
                try:  # it died between the first poll and the liveness check: reap it for the code
                    exit_code = proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if exit_code is not None:
                status["exit_code"] = exit_code
        elif exit_code is not None:
            status = dict(status, exit_code=exit_code)  # the launcher's (accelerate's) exit code, for runs we started
        if status.get("loss") is None:
            # the trainer's closing log line (train_runtime, no loss) clears status' loss on stop/finish
            status = dict(status, loss=run.last_logged("loss"))
        return status

    def active(self) -> Path | None:
        """The run that is running now, if any (found from the files, so it survives UI restarts)."""
        if not self.runs_dir.is_dir():
            return None
        for run_dir in self.runs_dir.iterdir():
            if (run_dir / STATUS_FILE).is_file() or (run_dir / LAUNCH_INFO).is_file():
                if self.state(run_dir).get("state") in ("running", "starting"):
                    return run_dir
        return None

    def list_runs(self) -> list[dict]:
        rows = []
        if self.runs_dir.is_dir():
            for run_dir in sorted(self.runs_dir.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
                if (run_dir / STATUS_FILE).is_file():
                    rows.append({"run": run_dir.name, "path": str(run_dir), **self.state(run_dir)})
        return rows

    # --- acting ----------------------------------------------------------------------------------

    def run_dir(self, name: str) -> Path:
        """`runs_dir/name` for a plain folder name; anything that could point elsewhere is refused."""
        name = str(name or "").strip()
        if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
            raise RunError(f"run name {name!r}: use a plain folder name (no / or ..)")
        return self.runs_dir / name

    def clone_config(self, name: str) -> dict:
        """The config of the past run `name` (its config.yaml, else launch.yaml), checked to be one a
        new run can start with; the deployment's step_cap is left behind (the policy re-adds it)."""
        if not str(name or "").strip():
            raise ConfigError("pick a run to clone")
        run_dir = self.run_dir(name)
        for file in (run_dir / CONFIG_FILE, run_dir / LAUNCH_CONFIG):
            if file.is_file():
                try:
                    config = yaml.safe_load(file.read_text()) or {}
                except yaml.YAMLError as exc:
                    raise ConfigError(f"{file}: cannot read ({exc})") from exc
                TrainConfig.from_dict(dict(config), source=str(file))  # refuse configs we cannot run
                config.pop("step_cap", None)
                return config
        raise ConfigError(f"{run_dir}: no config.yaml to clone")

    def start(self, dataset, name: str, config, before_launch=None) -> Path:
        """Launch `cli.py train` for a new run directory `runs_dir/name`. `before_launch()` runs once
        every check has passed, just before the process starts (the app frees its models there)."""
        with self._launching:
            return self._start(dataset, name, config, before_launch)

    def _start(self, dataset, name: str, config, before_launch=None) -> Path:
        self._refuse_if_busy()
        data = self.policy.apply(asdict(config) if is_dataclass(config) else dict(config))
        run_dir = self.run_dir(name)
        if int(data.get("machine_rank") or 0) > 0:
            # the app writes the run folder before launching, and only machine 0 may write it
            raise RunError(f"the app starts machine 0 of a multi-machine run; start machine 0 here, then on machine "
                           f"{data['machine_rank']} run: python cli.py train {other_machine_args(dataset, run_dir)} "
                           f"--machine-rank {data['machine_rank']}")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir}: a run with this name exists; pick another name or resume it")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / LAUNCH_CONFIG, yaml.safe_dump(data, sort_keys=False))
        args = ["--dataset", str(dataset), "--output", str(run_dir), "--config", str(run_dir / LAUNCH_CONFIG)]
        try:
            plan = plan_launch(args, data, run_dir, self.python, self.cli, gpus=self.gpus)
        except WorkbenchError:
            (run_dir / LAUNCH_CONFIG).unlink(missing_ok=True)
            raise
        if before_launch is not None:
            before_launch()
        if plan.machines > 1:
            with open(run_dir / LAUNCH_LOG, "a") as log:
                log.write(f"machine 0 of {plan.machines}; on machine R (1 to {plan.machines - 1}) run: python cli.py "
                          f"train {other_machine_args(dataset, run_dir)} --machine-rank R\n")
        return self._launch(run_dir, plan)

    def resume(self, run_dir) -> Path:
        with self._launching:
            return self._resume(Path(run_dir))

    def _resume(self, run_dir: Path) -> Path:
        self._refuse_if_busy()
        state = self.state(run_dir).get("state")
        if state == "completed":
            raise RunError(f"{run_dir}: run already completed")
        if not RunFiles(run_dir).last_checkpoint():
            raise RunError(f"{run_dir}: no checkpoint to resume from")
        try:
            data = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        if self.policy.mode != "full" and self.policy.apply(data).get("step_cap") != data.get("step_cap"):
            raise RunError(f"{run_dir}: started without the step limit of this deployment "
                           f"({self.policy.reason}); start a new run instead")
        return self._launch(run_dir, plan_launch(["--resume", str(run_dir)], data, run_dir, self.python, self.cli,
                                                 gpus=self.gpus))

    def stop(self, run_dir, grace_s: float = STOP_GRACE_S) -> dict:
        """Ask the run to save and stop (STOP file); kill its process group after `grace_s`."""
        run = RunFiles(run_dir)
        run.stop_path.touch()
        pid = run.read_status().get("pid")
        deadline = time.time() + grace_s
        while time.time() < deadline and pid_alive(pid):
            self._reap(run_dir)
            time.sleep(0.2)
        if pid_alive(pid):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            run.write_status(state="stopped", message=f"killed after {grace_s:.0f}s grace period")
        self._reap(run_dir)
        return self.state(run_dir)

    def wait(self, run_dir, timeout_s: float) -> dict:
        proc = self._procs.get(str(Path(run_dir).resolve()))
        if proc is not None:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        return self.state(run_dir)

    # --- internals -------------------------------------------------------------------------------

    def _refuse_if_busy(self) -> None:
        busy = self.active()
        if busy is not None:
            raise RunError(f"run '{busy.name}' is still running; stop it before starting another")

    def _launch(self, run_dir: Path, plan: LaunchPlan) -> Path:
        plan.write_config()
        cmd = plan.cmd
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(run_dir / LAUNCH_LOG, "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(REPO_ROOT), env=env, start_new_session=True)
        self._procs[str(run_dir.resolve())] = proc
        atomic_write_text(run_dir / LAUNCH_INFO, json.dumps({"pid": proc.pid, "cmd": cmd, "processes": plan.processes,
                                                             "started": time.time()}))
        return run_dir

    def _reap(self, run_dir) -> None:
        proc = self._procs.get(str(Path(run_dir).resolve()))
        if proc is not None:
            proc.poll()
