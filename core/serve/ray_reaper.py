"""Kill the Ray processes a `predict --engine ray` driver started, once that driver is gone.

Run by core.serve.ray_session as `python -I ray_reaper.py MARKER DRIVER_PID RAY_DIR` (a script run
by path, stdlib only: it must start in milliseconds and import nothing of the project). Its stdin is
a pipe whose only writer is the driver, so it reads EOF when the driver closes it (after
ray.shutdown) or dies, however it dies (kill -9 included: the kernel closes its files). Until then
it notes, once a second, every descendant of the driver that is a Ray process (the GCS, raylet,
agents, workers); at EOF it kills those still alive, and every Ray process whose environment
carries `VVW_RAY_SESSION=MARKER` (a worker started in the last second). Both are needed: Ray's
agents rename themselves with setproctitle, which overwrites the environment /proc shows, and once
the raylet dies they belong to init. Without this, a killed driver's agents spend up to 100 s
reporting the raylet's death to a GCS that died with it.

A Ray process is one whose command line starts with `ray::` (workers and agents name themselves
so) or runs a file under RAY_DIR (the installed ray package: GCS, raylet, monitors). Nothing else
is touched: the app's other children (a training run started meanwhile) are not Ray's.

Linux only (it reads /proc); elsewhere it exits without killing anything.
"""

import os
import select
import signal
import sys
import time

ENV = "VVW_RAY_SESSION"
POLL_SECONDS = 1.0


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:  # the process ended
        return None
    return None if fields[0] == "Z" else (int(fields[1]), fields[19])


def is_ray(pid: int, ray_dir: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:  # the process ended
        return False
    return cmd.startswith(b"ray::") or (ray_dir.rstrip("/") + "/").encode() in cmd


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of `root` (the start time tells a reused pid)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[0], []).append((int(name), st[1]))
    found, todo = {}, [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            found[pid] = started
            todo.append(pid)
    return found


def marked(marker: str) -> dict[int, str]:
    needle = f"{ENV}={marker}".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                hit = needle in fh.read().split(b"\0")
        except OSError:  # gone since the listing, or another user's process: not one of ours
            continue
        if hit and (st := _stat(int(name))) is not None:
            found[int(name)] = st[1]
    return found


def kill(pids: dict[int, str]) -> None:
    for pid, started in pids.items():
        if (st := _stat(pid)) is not None and st[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended on its own meanwhile
                continue


def main(marker: str, driver: int, ray_dir: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; this sweeps after it
    if not os.path.isdir("/proc"):
        sys.stdin.buffer.read()
        return
    seen: dict[int, str] = {}
    while True:
        seen.update({p: t for p, t in descendants(driver).items() if p not in seen and is_ray(p, ray_dir)})
        if select.select([sys.stdin], [], [], POLL_SECONDS)[0] and not os.read(sys.stdin.fileno(), 1024):
            break
    seen.pop(os.getpid(), None)
    kill(seen)
    for _ in range(10):  # a raylet may start a worker while the sweep runs: sweep until none is left
        left = {p: s for p, s in marked(marker).items() if p not in (os.getpid(), driver) and is_ray(p, ray_dir)}
        if not left:
            return
        kill(left)
        time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
