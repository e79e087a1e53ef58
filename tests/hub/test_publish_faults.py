"""`cli.py push` / `push-dataset` when things go wrong: a Hub that never answers or cannot be
reached, Ctrl-C / SIGTERM / kill -9 in the middle of an upload, a damaged run, unreadable clips.

Every case runs the real CLI in a subprocess against real local servers (tests.hub.fake_hub, or a
socket that accepts connections and never answers); the run is a real full fine-tune folder of the
tiny base (its weights copied, not trained: these tests are about the files, not the model).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.hub.fake_hub import TOKEN, FakeHub
from tests.support import LABEL, REPO, SAMPLES, make_dataset, write_audio_only

GUARD_S = 180  # only against a hang; a never-answering Hub must end long before this


def hub_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT")}
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    # TMPDIR: push-dataset's upload copy lands where the test can look for leftovers
    env.update({"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"), "TMPDIR": str(tmp), **extra})
    return env


def cli(*args, env, timeout=GUARD_S):
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def start_cli(*args, env):
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def error_line(res) -> str:
    """The one `error:` line a failure must print (no traceback, nothing else on stderr)."""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    return lines[0]


@contextmanager
def silent_hub():
    """A server that accepts every TCP connection and never answers (a stuck Hub or proxy)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    hub = type("SilentHub", (), {"url": f"http://127.0.0.1:{server.getsockname()[1]}", "held": held})
    try:
        yield hub
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def wait_for(predicate, proc, what: str, guard_s: float = GUARD_S):
    """Poll until `predicate()`; the guard only stops a hang (the process failing early is reported)."""
    deadline = time.monotonic() + guard_s
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before {what}: {out[-1500:]} {err[-3000:]}")
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)


def staging(run: Path, env: dict) -> list[Path]:
    """Upload copies on disk: RUN/hub-* for push, $TMPDIR/*hub-* for push-dataset."""
    return sorted([*run.glob("hub-*"), *Path(env["TMPDIR"]).glob("*hub-*")])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A finished full fine-tune run of the tiny base, as training leaves it (spec, config, final/)."""
    from core.data.dataset import load_dataset
    from core.models.families import family_for_model_type
    from core.models.loading import resolve_model
    from core.spec import default_spec

    run = tmp_path_factory.mktemp("hub-runs") / "full"
    source = resolve_model("tiny:default")
    shutil.copytree(source.base, run / "final")
    model_type = json.loads((run / "final" / "config.json").read_text())["model_type"]
    spec = default_spec(source, family_for_model_type(model_type), load_dataset(SAMPLES).schema)
    spec.save(run)
    spec.save(run / "final")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "tiny:default", "method": "full", "max_steps": 4}))
    return run


@pytest.fixture
def run(full_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(full_run, copy)
    return copy


def bad_clip_dataset(root: Path, good: int = 3) -> tuple[Path, dict[str, Path]]:
    """A dataset whose metadata also labels a 0-byte, a text and an audio-only "video"."""
    make_dataset(root, n=good)
    bad = {"empty": root / "videos" / "empty.mp4", "text": root / "videos" / "notes.mp4",
           "audio": root / "videos" / "audio.mp4"}
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("this is not a video, just some text\n" * 20)
    write_audio_only(bad["audio"])
    with (root / "metadata.jsonl").open("a") as fh:
        for path in bad.values():
            fh.write(json.dumps({"video": f"videos/{path.name}", "split": "train", **LABEL}) + "\n")
    return root, bad


# --- a Hub that never answers, or cannot be reached ---------------------------------------------


@pytest.mark.parametrize("command", ["push", "push-dataset"])
def test_a_hub_that_never_answers_ends_with_one_line_and_no_leftovers(command, run, tmp_path):
    env = hub_env(tmp_path, HF_TOKEN=TOKEN, VVW_HUB_TIMEOUT="2")
    target = [run, "--no-eval"] if command == "push" else [SAMPLES]
    with silent_hub() as hub:
        env["HF_ENDPOINT"] = hub.url
        res = cli(command, *target, "--repo-id", "me/x", env=env)
        assert hub.held  # it did connect: the silence, not a refusal, is what it must survive
    assert res.returncode == 1
    line = error_line(res)
    assert line.startswith(f"error: could not reach the Hub at {hub.url}"), line
    assert "no answer" in line and line.endswith("check the network or HF_ENDPOINT"), line
    assert staging(run, env) == []


@pytest.mark.parametrize("command", ["push", "push-dataset"])
def test_no_reachable_hub_with_a_token_is_one_plain_line(command, run, tmp_path):
    url = closed_port_url()
    env = hub_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=url)
    target = [run, "--no-eval"] if command == "push" else [SAMPLES]
    res = cli(command, *target, "--repo-id", "me/x", env=env)
    assert res.returncode == 1
    line = error_line(res)
    assert line.startswith(f"error: could not reach the Hub at {url}") and "Traceback" not in res.stderr, line
    assert line.endswith("check the network or HF_ENDPOINT"), line
    assert staging(run, env) == []


def test_the_hub_library_error_becomes_a_workbench_error(run, tmp_path, monkeypatch):
    """What the Export tab shows: a HubError (a WorkbenchError) with the same words, never a raw one."""
    from core.errors import HubError
    from core.hub import publish_run

    url = closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", url)  # read once at import
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(HubError, match=r"could not reach the Hub at .*: check the network or HF_ENDPOINT$"):
        publish_run(run, "me/x", split=None, token=TOKEN)
    assert list(run.glob("hub-*")) == []


def test_a_bad_timeout_setting_is_refused(run, tmp_path):
    env = hub_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=closed_port_url(), VVW_HUB_TIMEOUT="soon")
    res = cli("push", run, "--no-eval", "--repo-id", "me/x", env=env)
    assert res.returncode == 1
    assert "VVW_HUB_TIMEOUT" in error_line(res)


# --- interrupted uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize("command,sig", [("push", signal.SIGINT), ("push", signal.SIGTERM),
                                         ("push-dataset", signal.SIGINT), ("push-dataset", signal.SIGTERM)])
def test_interrupting_an_upload_cleans_up_and_says_what_was_kept(command, sig, run, tmp_path):
    env = hub_env(tmp_path, HF_TOKEN=TOKEN, VVW_HUB_TIMEOUT="600")
    target = [run, "--no-eval"] if command == "push" else [SAMPLES]
    with silent_hub() as hub:
        env["HF_ENDPOINT"] = hub.url
        proc = start_cli(command, *target, "--repo-id", "me/x", env=env)
        wait_for(lambda: hub.held and staging(run, env), proc, "the upload start")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 130  # as predict and train stopped by Ctrl-C
    line = error_line(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert "interrupted" in line and "nothing was committed to me/x" in line, line
    assert "re-run the same command" in line, line
    assert staging(run, env) == []


@pytest.mark.parametrize("command", ["push", "push-dataset"])
def test_a_kill_9_leaves_a_copy_that_the_next_push_removes(command, run, tmp_path):
    env = hub_env(tmp_path, HF_TOKEN=TOKEN, VVW_HUB_TIMEOUT="600")
    target = [run, "--no-eval"] if command == "push" else [SAMPLES]
    with silent_hub() as silent:
        env["HF_ENDPOINT"] = silent.url
        proc = start_cli(command, *target, "--repo-id", "me/x", env=env)
        wait_for(lambda: silent.held and staging(run, env), proc, "the upload start")
        live = staging(run, env)
        with FakeHub() as hub:  # a second push meanwhile must not take the live copy away
            res = cli(command, *target, "--repo-id", "me/y", env={**env, "HF_ENDPOINT": hub.url})
            assert res.returncode == 0, res.stderr[-3000:]
        assert staging(run, env) == live
        proc.kill()
        proc.communicate()
    assert staging(run, env) == live  # what a kill -9 leaves
    mine = run / "hub-preview"  # a person's own folder of that name (say, a dry run) is not a leftover
    mine.mkdir()
    (mine / "README.md").write_text("kept\n")
    with FakeHub() as hub:
        res = cli(command, *target, "--repo-id", "me/x", env={**env, "HF_ENDPOINT": hub.url})
        assert res.returncode == 0, res.stderr[-3000:]
    assert staging(run, env) == [mine]
    assert (mine / "README.md").read_text() == "kept\n"


# --- a damaged run: refused before any network call, dry run included ---------------------------


def _no_weights(run):
    (run / "final" / "model.safetensors").unlink()
    return "model.safetensors"


def _no_adapter_weights(run):
    (run / "final" / "model.safetensors").unlink()
    (run / "final" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    return "adapter_model.safetensors"


def _garbage_weights(run):
    (run / "final" / "model.safetensors").write_bytes(os.urandom(4096))
    return "model.safetensors"


def _cut_weights(run):
    path = run / "final" / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "model.safetensors"


def _spec_not_an_object(run):
    (run / "preprocessing.json").write_text("[1, 2, 3]\n")
    return "preprocessing.json"


def _spec_not_json(run):
    (run / "preprocessing.json").write_text("{not json\n")
    return "preprocessing.json"


DAMAGE = [_no_weights, _no_adapter_weights, _garbage_weights, _cut_weights, _spec_not_an_object, _spec_not_json]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_a_damaged_run_is_one_line_naming_the_file_before_any_network_call(damage, run, tmp_path):
    name = damage(run)
    with FakeHub() as hub:
        res = cli("push", run, "--repo-id", "me/x", "--no-eval", env=hub_env(tmp_path, HF_TOKEN=TOKEN,
                                                                           HF_ENDPOINT=hub.url))
        assert hub.requests == []
    assert res.returncode == 1
    line = error_line(res)
    assert name in line, line
    dry = tmp_path / "dry"
    res = cli("push", run, "--repo-id", "me/x", "--no-eval", "--dry-run", dry, env=hub_env(tmp_path))
    assert res.returncode == 1
    assert error_line(res) == line
    assert not dry.exists()
    assert list(run.glob("hub-*")) == []


# --- push-dataset and clips that are not videos -------------------------------------------------


def test_push_dataset_leaves_out_unreadable_clips_and_lists_them(tmp_path):
    data, bad = bad_clip_dataset(tmp_path / "data")
    dry = tmp_path / "dry"
    res = cli("push-dataset", data, "--repo-id", "me/clips", "--dry-run", dry, env=hub_env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    reasons = {"empty": "empty", "text": "not a readable video", "audio": "no video stream"}
    for kind, path in bad.items():
        line = next((ln for ln in res.stdout.splitlines() if f"videos/{path.name}" in ln), "")
        assert line.startswith("note: left out") and reasons[kind] in line, res.stdout
    published = [json.loads(ln)["file_name"] for ln in (dry / "train" / "metadata.jsonl").read_text().splitlines()]
    assert not {p.name for p in bad.values()} & set(published)
    assert not [p for p in dry.rglob("*") if p.name in {b.name for b in bad.values()}]
    card = (dry / "README.md").read_text()
    for split in (d for d in dry.iterdir() if d.is_dir()):  # the card counts only what is published
        assert f"| {split.name} | {len((split / 'metadata.jsonl').read_text().splitlines())} |" in card

    with FakeHub() as hub:
        res = cli("push-dataset", data, "--repo-id", "me/clips", env=hub_env(tmp_path, HF_TOKEN=TOKEN,
                                                                             HF_ENDPOINT=hub.url))
        assert res.returncode == 0, res.stderr[-3000:]
        uploaded = hub.files["dataset:me/clips"]
    assert sum("note: left out" in ln for ln in res.stdout.splitlines()) == 3
    assert sorted(uploaded) == sorted(p.relative_to(dry).as_posix() for p in dry.rglob("*") if p.is_file())


def test_push_dataset_with_no_readable_clip_is_refused(tmp_path):
    data, bad = bad_clip_dataset(tmp_path / "data", good=0)
    with FakeHub() as hub:
        res = cli("push-dataset", data, "--repo-id", "me/clips", env=hub_env(tmp_path, HF_TOKEN=TOKEN,
                                                                             HF_ENDPOINT=hub.url))
        assert hub.requests == []
    assert res.returncode == 1
    line = error_line(res)
    assert "no readable clip" in line and all(p.name in line for p in bad.values()), line
