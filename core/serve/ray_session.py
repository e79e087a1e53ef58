"""The Ray session `predict --engine ray` runs in: a cluster joined at an address, or a Ray started here.

Joining: the address is probed first (a TCP connect, then the HTTP/2 greeting every gRPC server
sends, `PROBE_SECONDS` each), because `ray.init` retries an unreachable address for many minutes
without a word (Ray 2.60: 20 tries of a 40 s GCS client start). Starting here: the local Ray's
processes are tied to this driver by core.serve.ray_reaper, so a driver killed with kill -9 takes
them with it instead of leaving agents behind for up to 100 s.

Ray is imported inside the functions: the local engine must work where ray is not installed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from core.errors import ConfigError
from core.paths import REPO_ROOT
from core.serve import ray_reaper

# Small on purpose: the store only holds sampled frames in flight (a few MB per clip) and Ray's
# backpressure keeps that bounded; a big default would claim a third of the machine's memory.
OBJECT_STORE_BYTES = 256 * 1024**2
PROBE_SECONDS = 5.0
# the client's half of an HTTP/2 greeting: the preface and an empty SETTINGS frame
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_FRAME = 4


@contextlib.contextmanager
def ray_session(address: str | None = None, num_workers: int | None = None):
    """Join the cluster at `address`, else start a Ray on this machine and shut it down afterwards.
    A session the caller already opened (a notebook, a test module) is used as it is and left open."""
    if address:
        probe_cluster(address)
        _token_mode_when_joining()  # before `import ray`: Ray reads the mode once, when it loads
    import ray

    if ray.is_initialized():
        yield
        return
    # workers import `core` from this checkout: on a cluster it must be at the same path on every machine
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    with contextlib.ExitStack() as stack:
        if address:
            _join(ray, address, runtime_env)
        else:
            stack.enter_context(_reaped(Path(ray.__file__).parent))
            # each model actor holds a CPU and sampling needs at least one more, or the pipeline stalls
            cpus = max(os.cpu_count() or 1, (num_workers or 1) + 1)
            # worker_niceness 0: the model actors are the job, and at Ray's default (15) they yield the CPU
            # to every other process on the machine (a Ray test took 214 s instead of 39 s beside busy ones)
            ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                     runtime_env=runtime_env, _system_config={"worker_niceness": 0})
        stack.callback(ray.shutdown)
        yield


def probe_cluster(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Refuse (ConfigError) an address where no Ray head answers within `seconds`: nothing listens,
    the host cannot be reached, or something accepts the connection and never speaks gRPC."""
    if address == "auto":  # Ray looks up the cluster started on this machine and says so itself
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address}: give the head's HOST:PORT, e.g. 10.0.0.1:6379")
    where = f"--ray-address {address}"
    todo = (f"start the cluster there (ray start --head --port={port}), fix the address, or leave "
            "--ray-address out to start Ray on this machine")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS head speaks only after a handshake; the TCP connect is all we check
            sock.settimeout(seconds)
            sock.sendall(H2_PREFACE)
            head = sock.recv(9, socket.MSG_WAITALL)
    except TimeoutError:
        raise ConfigError(f"{where}: no answer within {seconds:g} s; {todo}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: could not connect ({exc.strerror or exc}); {todo}") from None
    if len(head) < 9 or head[3] != SETTINGS_FRAME:
        raise ConfigError(f"{where}: something answers there, but not a Ray cluster (no gRPC greeting); {todo}")


def _join(ray, address: str, runtime_env: dict) -> None:
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--ray-address {address}: could not join the Ray cluster there ({first})") from None


@contextlib.contextmanager
def _reaped(ray_dir: Path):
    """A Ray started inside this block dies with this process (core.serve.ray_reaper), however it ends."""
    marker = uuid.uuid4().hex
    reaper = subprocess.Popen([sys.executable, "-I", str(Path(ray_reaper.__file__)), marker, str(os.getpid()),
                               str(ray_dir)], stdin=subprocess.PIPE, start_new_session=True)
    os.environ[ray_reaper.ENV] = marker  # what Ray's processes inherit, and the reaper looks for
    try:
        yield
    finally:
        os.environ.pop(ray_reaper.ENV, None)
        reaper.stdin.close()  # after ray.shutdown (the stack unwinds it first): sweep what is left
        reaper.wait()


def _token_mode_when_joining() -> None:
    """`ray start --head` turns on token auth by default, but a driver that joins does not (Ray 2.60):
    it is refused even with the cluster's token in ~/.ray/auth_token. Token mode also joins a cluster
    without auth, so it is switched on whenever a token is there and the user chose no mode."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
