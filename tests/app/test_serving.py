"""How `python app.py` serves: loopback only unless asked, auth enforced when given, and --share
refused without auth. Real processes, real sockets (read back from /proc/net/tcp)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from core.runs.launch import free_port
from tests.support import REPO

pytestmark = pytest.mark.slow  # end to end: see pyproject markers


def _listen_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket in LISTEN state on `port`."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if int(p, 16) == port and state == "0A":
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


@pytest.fixture()
def serve(tmp_path):
    procs = []

    def start(*args):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--runs", str(tmp_path / "runs"), "--port",
                                 str(port), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        procs.append(proc)
        deadline = time.time() + 180
        while not _listen_addresses(port):
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "app did not start listening"
            time.sleep(0.2)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_default_binds_loopback_only(serve):
    port = serve()
    assert _listen_addresses(port) == {"127.0.0.1"}
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).status == 200


def test_auth_is_enforced(serve):
    from gradio_client import Client

    port = serve("--auth", "ana:s3cret")
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "config", timeout=30)
    assert err.value.code == 401
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("ana", "wrong"), verbose=False)
    client = Client(url, auth=("ana", "s3cret"), verbose=False)
    assert "/save_label" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]


def test_share_without_auth_is_refused():
    out = subprocess.run([sys.executable, str(REPO / "app.py"), "--share"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert out.returncode != 0
    assert "--share exposes the app publicly; give --auth" in out.stderr
