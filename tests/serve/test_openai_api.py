"""`cli.py serve`, the OpenAI-compatible API, called with the official `openai` client: the same text and
JSON as `cli.py predict` for the same clip and run (constrained and free), 8 clients at once, every bad
request a 4xx in OpenAI's error shape with the server still answering, a key required off loopback, and
`app.py --api` serving the same routes beside the Gradio app. Real servers in subprocesses, the real
tiny model and real clips."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from core.runs.launch import free_port
from tests.support import REPO, SAMPLES, make_bad_files, make_dataset, run_cli

SCHEMA = json.loads((SAMPLES / "schema.json").read_text())
TOKENS = 48  # the tiny server's default budget: answers stay short and the suite fast


def _healthy(base: str) -> bool:
    # /health is ours, not OpenAI's: plain urllib, and only to know the server is up
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            return r.status == 200 and json.loads(r.read())["status"] == "ok"
    except OSError:
        return False


@contextlib.contextmanager
def serving(log_path, *args, env=None, app: bool = False):
    """`cli.py serve ARGS` (or `app.py --api ARGS`) on a free port; yields (base URL, log file)."""
    port = free_port()
    cmd = [sys.executable, str(REPO / ("app.py" if app else "cli.py"))] + ([] if app else ["serve"])
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*cmd, *map(str, args), "--port", str(port)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # only against a hang: loading torch and the model on a busy machine
        while not _healthy(base):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.3)
        yield base, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def client(base: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=300)


def video_part(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def ask(c: openai.OpenAI, url: str, model: str = "tiny:default", text: str | None = None, **kw):
    content = [video_part(url)] + ([{"type": "text", "text": text}] if text else [])
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


def data_url(path, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64," + base64.b64encode(open(path, "rb").read()).decode()


def predicted(tmp_path, model: str, clip_or_folder, *flags) -> dict[str, dict]:
    """`cli.py predict`'s rows by video key."""
    out = tmp_path / f"pred-{len(list(tmp_path.glob('pred-*')))}.jsonl"
    done = run_cli("predict", "--model", model, "--input", clip_or_folder, "--output", out, *flags, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["video"]: row for row in map(json.loads, out.read_text().splitlines())}


def fields(row: dict) -> dict:
    return {k: row[k] for k in SCHEMA["properties"] if k in row}


# --- parity with predict, for a trained run -----------------------------------------------------------

@pytest.mark.slow
def test_a_run_answers_exactly_what_predict_writes(short_run, tmp_path):
    clip = SAMPLES / "videos" / "clip_0003.mp4"  # inside the run's dataset folder: allowed with no --allow-dir
    constrained = predicted(tmp_path, short_run, clip)["clip_0003.mp4"]
    free = predicted(tmp_path, short_run, clip, "--unconstrained")["clip_0003.mp4"]
    with serving(tmp_path / "run.log", short_run) as (base, _):
        c = client(base)
        model = c.models.list().data[0].id
        assert model == short_run.name
        answers = [ask(c, str(clip), model), ask(c, clip.as_uri(), model), ask(c, data_url(clip), model)]
        unconstrained = ask(c, str(clip), model, response_format={"type": "text"})
    for answer in answers:  # a path, a file:// URL and the bytes themselves: one answer
        assert answer.choices[0].message.content == constrained["raw"]
        assert json.loads(answer.choices[0].message.content) == fields(constrained)
        extra = answer.model_extra["vvw"]
        assert extra["spec_hash"] == constrained["spec_hash"]  # the run's spec decided frames and prompt
        assert extra["confidence"] == pytest.approx(constrained["confidence"], abs=1e-6)
        assert extra["schema_valid"] is constrained["schema_valid"] is True
        # the run was calibrated at the end of training: the API serves predict's calibrated scores and decision
        assert extra["calibrated"] is True is constrained["calibrated"]
        assert extra["review_fields"] == constrained["review_fields"]
        assert extra["needs_review"] is constrained["needs_review"]
    assert unconstrained.choices[0].message.content == free["raw"]
    assert unconstrained.model_extra["vvw"]["constrained"] is False
    if free["schema_valid"]:
        assert json.loads(free["raw"]) == fields(free)


# --- batching ------------------------------------------------------------------------------------

def test_requests_that_arrive_together_share_one_generate_call(tiny_path):
    from core.serve.api_requests import Ask, Batcher, generate
    from core.serve.loaded import loaded_predictor
    from core.serve.manager import ModelManager
    from core.video.frames import sample_frames

    models = ModelManager(max_resident=1)
    predictor = models.get("tiny:default", schema=SCHEMA)
    frames = [sample_frames(SAMPLES / "videos" / f"clip_{i:04d}.mp4", predictor.spec.sampling_spec) for i in range(6)]
    short = Ask(predictor.spec.instruction, SCHEMA, True, 12)
    longer = Ask(predictor.spec.instruction, SCHEMA, True, 16)  # another budget: another generate call
    # a long wait, so all six are collected however busy the machine is; a full batch does not wait
    batcher = Batcher(lambda: loaded_predictor("tiny:default", SCHEMA, models), batch_size=6, wait_s=30)
    try:
        futures = [batcher.submit(f, short if i < 4 else longer) for i, f in enumerate(frames)]
        answers = [f.result(timeout=300) for f in futures]
    finally:
        batcher.close()
    assert batcher.batches == 2
    for i, (f, answer) in enumerate(zip(frames, answers)):  # the same answer as asked alone
        alone, = generate(predictor, short if i < 4 else longer, [f])
        assert (answer.text, answer.prompt_tokens, answer.confidence) == (alone.text, alone.prompt_tokens,
                                                                          alone.confidence)
    assert answers[4].new_tokens <= 16 and answers[0].new_tokens <= 12


# --- the tiny model: concurrency, bad input ---------------------------------------------------------

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    (root / "clips").mkdir()
    for i in range(8):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", root / "clips")
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    bad = make_bad_files(root / "bad")
    (root / "bad" / "link.mp4").symlink_to(SAMPLES / "videos" / "clip_0009.mp4")  # leads outside
    big = root / "big.mp4"
    big.write_bytes(os.urandom(80_000))  # over the server's 0.05 MB data: URL limit
    return root, bad


@pytest.fixture(scope="module")
def tiny_server(folders, tmp_path_factory):
    root, _ = folders
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with serving(log, "tiny:default", "--allow-dir", root, "--max-new-tokens", TOKENS, "--max-video-mb", "0.05") as s:
        yield s


@pytest.mark.slow
def test_eight_concurrent_clients_are_all_answered(tiny_server, folders, tmp_path):
    root, _ = folders
    base, _ = tiny_server
    expected = predicted(tmp_path, "tiny:default", root / "clips", "--schema", root / "schema.json",
                         "--max-new-tokens", TOKENS)
    clips = sorted(expected)
    together = threading.Barrier(len(clips))

    def one(name: str):
        c = client(base)  # a client per thread, as separate programs would be
        together.wait(timeout=60)
        return ask(c, f"clips/{name}")  # relative: looked up in the allowed folders

    with ThreadPoolExecutor(len(clips)) as pool:
        answers = list(pool.map(one, clips))
    for name, answer in zip(clips, answers):
        assert answer.choices[0].message.content == expected[name]["raw"], name
        assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0


@pytest.mark.slow
def test_a_schema_or_an_instruction_of_the_request_is_used(tiny_server, folders):
    root, _ = folders
    c = client(tiny_server[0])
    weather = {"type": "object", "properties": {"weather": {"enum": ["sunny", "rain", "snow"]}},
               "required": ["weather"]}
    answer = ask(c, str(root / "clips" / "clip_0001.mp4"),
                 response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": weather}})
    assert set(json.loads(answer.choices[0].message.content)) == {"weather"}
    assert answer.model_extra["vvw"]["schema_valid"] is True
    free = ask(c, str(root / "clips" / "clip_0001.mp4"), text="Describe the road.", max_tokens=8)
    assert free.model_extra["vvw"]["constrained"] is False
    assert free.usage.completion_tokens <= 8


def _raw_post(base: str, body: bytes):
    # the one request the openai client cannot make: a body that is not JSON
    return httpx.post(f"{base}/v1/chat/completions", content=body, headers={"content-type": "application/json"})


BAD = {  # name -> (request kwargs for ask(), or a callable of (base, root, bad)), expected status, error code
    "no video": (lambda c, root, bad: c.chat.completions.create(
        model="tiny:default", messages=[{"role": "user", "content": "What happens?"}]), 400, "no_video"),
    "unreadable file": (lambda c, root, bad: ask(c, str(bad["text"])), 400, "unreadable_video"),
    "empty file": (lambda c, root, bad: ask(c, str(bad["empty"])), 400, "unreadable_video"),
    "missing file": (lambda c, root, bad: ask(c, str(bad["missing"])), 400, "unreadable_video"),
    "a folder": (lambda c, root, bad: ask(c, str(bad["folder"])), 400, "unreadable_video"),
    "a FIFO": (lambda c, root, bad: ask(c, str(bad["fifo"])), 400, "unreadable_video"),  # refused before any read
    "outside the folders": (lambda c, root, bad: ask(c, str(SAMPLES / "videos" / "clip_0000.mp4")), 403,
                            "path_not_allowed"),
    "dot-dot out": (lambda c, root, bad: ask(c, "../../etc/passwd"), 403, "path_not_allowed"),
    "symlink out": (lambda c, root, bad: ask(c, str(root / "bad" / "link.mp4")), 403, "path_not_allowed"),
    "remote URL": (lambda c, root, bad: ask(c, "https://example.com/clip.mp4"), 400, None),
    "bad base64": (lambda c, root, bad: ask(c, "data:video/mp4;base64,@@not base64@@"), 400, None),
    "not a video type": (lambda c, root, bad: ask(c, "data:text/plain;base64,aGVsbG8="), 400, None),
    "garbage video bytes": (lambda c, root, bad: ask(c, data_url(bad["garbage"])), 400, "unreadable_video"),
    "too large": (lambda c, root, bad: ask(c, data_url(root / "big.mp4")), 413, "video_too_large"),
    "two videos": (lambda c, root, bad: c.chat.completions.create(model="tiny:default", messages=[
        {"role": "user", "content": [video_part("clips/clip_0000.mp4"), video_part("clips/clip_0001.mp4")]}]),
        400, None),
    "unknown model": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4", model="gpt-4o"), 404, "model_not_found"),
    "stream": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4", stream=True), 400, None),
    "n of 2": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4", n=2), 400, None),
    "zero tokens": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4", max_tokens=0), 400, None),
    "schema not an object": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4", response_format={
        "type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string"}}}), 400, None),
    "unknown response_format": (lambda c, root, bad: ask(c, "clips/clip_0000.mp4",
                                                         response_format={"type": "xml"}), 400, None),
    "messages not a list": (lambda c, root, bad: c.chat.completions.create(model="tiny:default", messages="hi"),
                            400, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD) + ["malformed JSON", "unknown route"])
def test_bad_input_is_a_4xx_in_openais_shape_and_the_server_goes_on(tiny_server, folders, case):
    root, bad = folders
    base, log = tiny_server
    c = client(base)
    lines_before = len(log.read_text().splitlines())
    if case == "malformed JSON":
        response = _raw_post(base, b'{"model": "tiny:default", "messages": [')
        status, code, error = response.status_code, None, response.json()["error"]
    elif case == "unknown route":
        response = httpx.get(f"{base}/v1/engines")
        status, code, error = response.status_code, None, response.json()["error"]
    else:
        call, status, code = BAD[case]
        with pytest.raises(openai.APIStatusError) as refused:
            call(c, root, bad)
        assert refused.value.status_code == status
        error = refused.value.body
    assert 400 <= status < 500
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    new = log.read_text().splitlines()[lines_before:]
    assert len(new) == 1 and f"-> {status} " in new[0], new  # one line in the log, no traceback
    assert _healthy(base) and c.models.list().data[0].id == "tiny:default"


@pytest.mark.slow
def test_after_all_refusals_a_good_request_is_answered(tiny_server, folders):
    base, log = tiny_server
    answer = ask(client(base), "clips/clip_0002.mp4")
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content
    assert "Traceback" not in log.read_text()


# --- keys ----------------------------------------------------------------------------------------

def test_a_host_off_loopback_needs_a_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VVW_API_KEY"}
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "tiny:default", "--host", "0.0.0.0"],
                         capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: --host 0.0.0.0 lets other machines connect: give --api-key KEY")


def test_a_port_in_use_is_one_error_line_before_the_model_loads(folders):
    import socket

    root, _ = folders
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli("serve", "tiny:default", "--allow-dir", root, "--port", port, timeout=120)
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}") and "--port" in lines[0]


@pytest.mark.slow
def test_with_a_key_requests_without_it_are_refused(folders, tmp_path):
    root, _ = folders
    with serving(tmp_path / "key.log", "tiny:default", "--host", "0.0.0.0", "--allow-dir", root,
                 "--max-new-tokens", 8, env={"VVW_API_KEY": "s3cret"}) as (base, _):
        for wrong in ("none", "s3cre"):
            with pytest.raises(openai.AuthenticationError) as refused:
                ask(client(base, wrong), "clips/clip_0000.mp4")
            assert refused.value.status_code == 401 and refused.value.body["code"] == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                client(base, wrong).models.list()
        assert ask(client(base, "s3cret"), "clips/clip_0000.mp4").choices[0].message.content
        assert _healthy(base)


# --- the app ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_app_serves_the_same_api(tiny_server, tmp_path):
    dataset = make_dataset(tmp_path / "ds", n=2)
    with serving(tmp_path / "app.log", "--api", "--dataset", dataset, "--runs", tmp_path / "runs", app=True) as (
            base, _):
        c = client(base)
        assert c.models.list().data[0].id == "tiny:default"  # no finished run: the default model
        answer = ask(c, "videos/clip_0000.mp4", max_tokens=TOKENS)
        with urllib.request.urlopen(f"{base}/", timeout=30) as page:  # and the Gradio app beside it
            assert page.status == 200
    # the dataset holds the sample schema, so the app's answer is the tiny server's for the same clip
    shutil.copy(dataset / "videos" / "clip_0000.mp4", tmp_path / "same.mp4")
    again = ask(client(tiny_server[0]), data_url(tmp_path / "same.mp4"))
    assert answer.choices[0].message.content == again.choices[0].message.content
