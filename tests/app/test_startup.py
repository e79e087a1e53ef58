"""What `python app.py --dataset DIR` does with a folder that is not there or is empty, and where
the default dataset lives (a copy, so trying the app never edits the repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from core.runs.launch import free_port
from tests.support import REPO, SAMPLES, start_app, stop_app


def test_a_missing_dataset_folder_is_refused_with_one_line(tmp_path):
    missing = tmp_path / "no-such-folder"
    out = subprocess.run([sys.executable, str(REPO / "app.py"), "--dataset", str(missing), "--runs",
                          str(tmp_path / "runs"), "--port", str(free_port())],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines == [f"error: dataset folder {missing} does not exist (check the path; to start a new dataset, "
                     f"create the empty folder first)"]
    assert not missing.exists()  # not created behind the person's back


@pytest.mark.slow
def test_an_empty_folder_is_offered_as_a_new_dataset(tmp_path):
    empty = tmp_path / "new-dataset"
    empty.mkdir()
    log = tmp_path / "app.log"
    proc, url = start_app(["--dataset", empty, "--runs", tmp_path / "runs"], log)
    try:
        config = json.loads(urllib.request.urlopen(f"{url}/config", timeout=30).read())
        notes = [c["props"].get("value", "") for c in config["components"]
                 if c.get("props", {}).get("elem_id") == "app-note"]
        assert len(notes) == 1 and notes[0].startswith(f"**New dataset** in `{empty}`: no clips and no schema yet")
    finally:
        stop_app(proc)
    assert f"New dataset in {empty}: no clips and no schema yet" in log.read_text()


def test_the_default_dataset_is_a_copy_of_the_bundle_outside_the_repository(tmp_path, monkeypatch):
    from core.paths import default_dataset
    from core.workspace import Workspace

    monkeypatch.setenv("VVW_DATA_DIR", str(tmp_path / "data"))
    ws = Workspace(runs_dir=tmp_path / "runs")
    assert ws.dataset_dir == tmp_path / "data" / "sample_videos" and ws.open_note() is None
    assert (ws.dataset_dir / "metadata.jsonl").read_bytes() == (SAMPLES / "metadata.jsonl").read_bytes()
    for name in ("metadata.jsonl", "schema.json"):  # files a person may edit in place are real copies
        assert not os.path.samefile(ws.dataset_dir / name, SAMPLES / name)
    assert len(list((ws.dataset_dir / "videos").iterdir())) == len(list((SAMPLES / "videos").iterdir()))
    # a label saved in the app lands in the copy; the bundle is untouched
    before = (SAMPLES / "metadata.jsonl").read_bytes()
    clip = ws.store.clips(check_video=False)[0]
    ws.store.save_label(clip.rel, {**clip.label, "caption": "edited in the copy"}, ws.store.clip_revision(clip.rel))
    assert (SAMPLES / "metadata.jsonl").read_bytes() == before
    assert not (SAMPLES / ".store.lock").exists()
    assert "edited in the copy" in ws.dataset_dir.joinpath("metadata.jsonl").read_text() + "".join(
        p.read_text() for p in ws.dataset_dir.glob("metadata.pending.jsonl"))
    assert default_dataset() == ws.dataset_dir  # made once, then reused
    monkeypatch.delenv("VVW_DATA_DIR")
    from core.paths import data_dir

    assert data_dir() == REPO / "data"  # the default, which .gitignore covers (checked in the slow test)
    assert not any(p.name.startswith(".sample_videos.partial") for p in (tmp_path / "data").iterdir())


@pytest.mark.slow
def test_a_default_app_session_leaves_the_checkout_as_it_was(tmp_path):
    """`python app.py` with no --dataset, a label saved and a draft-free session closed: `git status`
    of the checkout is what it was before (the session wrote into its copy of the bundle)."""
    from gradio_client import Client

    def status():
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], capture_output=True,
                              text=True, cwd=REPO, timeout=60, check=True).stdout

    before = status()
    env = dict(os.environ, VVW_DATA_DIR=str(tmp_path / "data"))
    proc, url = start_app(["--runs", tmp_path / "runs"], tmp_path / "app.log", env=env)
    try:
        client = Client(url, verbose=False)
        rel = "videos/clip_0003.mp4"
        opened = client.predict(rel, api_name="/open_clip")
        out = client.predict(rel, json.dumps(dict(opened["label"], caption="saved in a default session")),
                             opened["revision"], opened["split"] or "train", api_name="/save_label")
        assert "saved" in out["message"] and "not saved" not in out["message"], out
    finally:
        stop_app(proc)
    copy = tmp_path / "data" / "sample_videos"
    saved = (copy / "metadata.jsonl").read_text() + "".join(p.read_text() for p in copy.glob("metadata.pending.jsonl"))
    assert "saved in a default session" in saved
    assert status() == before
    # and without VVW_DATA_DIR the copy goes to data/, which git ignores
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/sample_videos/metadata.jsonl"], cwd=REPO, timeout=60)
    assert ignored.returncode == 0
