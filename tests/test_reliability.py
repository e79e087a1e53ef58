"""Reliability: bad videos at every entry point, kill -9 mid-write and mid-export, concurrent clients.

RELIABILITY.md lists what is tried here and what happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.data.store import LABELLED, UNREADABLE, AnnotationStore
from core.errors import VideoError
from tests.support import LABEL, REPO, SAMPLES, make_bad_files, make_dataset, write_test_video

pytestmark = pytest.mark.slow  # end to end: see pyproject markers


def bad_dataset(root: Path) -> tuple[Path, dict[str, Path], list[str]]:
    """A dataset whose videos/ holds good clips with awkward names, a 1-frame video, a corrupt-middle
    clip and every kind of bad file, each with a label row."""
    root = make_dataset(root, n=2)
    videos = root / "videos"
    bad = make_bad_files(videos / "bad")
    good = []
    for name in ("vidéo ünïcode.mp4", "with spaces.mp4"):
        shutil.copy(SAMPLES / "videos" / "clip_0003.mp4", videos / name)
        good.append(f"videos/{name}")
    write_test_video(videos / "one_frame.mp4", n_frames=1)
    good.append("videos/one_frame.mp4")
    clip = (SAMPLES / "videos" / "clip_0004.mp4").read_bytes()
    middle = bytearray(clip)
    middle[len(clip) // 3: len(clip) // 3 + 2000] = os.urandom(2000)  # corrupt the middle of the stream
    (videos / "corrupt_middle.mp4").write_bytes(bytes(middle))
    rows = [{"video": r, "split": "train", **LABEL} for r in good]
    rows += [{"video": p.relative_to(root).as_posix(), "split": "train", **LABEL} for p in bad.values()]
    with (root / "metadata.jsonl").open("a") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root, bad, good


def test_bad_videos_at_every_entry_point(tmp_path, tiny, short_run):
    from core.data.dataset import load_dataset
    from core.schema.base import load_schema
    from core.serve.batch import run_predict
    from core.serve.predictor import Predictor
    from core.spec import PreprocessSpec
    from core.train.setup import encode_split
    from core.video.sampling import SamplingSpec

    root, bad, good = bad_dataset(tmp_path / "d")
    store = AnnotationStore(root)
    status = {c.rel: c for c in store.clips()}
    for rel in good:
        assert status[rel].status == LABELLED, (rel, status[rel].problems)
    for kind, path in bad.items():
        clip = status[path.relative_to(root).as_posix()]
        assert clip.status == UNREADABLE and clip.problems, kind

    # training encodes the good clips and names every skipped bad one
    data = load_dataset(root)
    model, processor, family = tiny
    spec = SamplingSpec(num_frames=4, width=96, height=64)
    examples, skipped = encode_split(data.samples, data.schema, processor, spec, "Describe.", family.frames_as)
    assert len(examples) >= len(good) + 2
    for path in bad.values():
        assert any(str(path.name) in s for s in skipped), (path.name, skipped)

    # prediction: one error row per bad file, the good ones decoded
    predictor = Predictor(model, processor, family, PreprocessSpec(
        base_model="tiny:default", family=family.name, sampling=spec.to_dict(), instruction="Describe.",
        schema=load_schema(root / "schema.json"), schema_hash="x", frames_as=family.frames_as), "cpu", "tiny")
    items = [(s.rel, s.video) for s in data.samples]
    out = tmp_path / "p.sqlite"
    counts = run_predict(predictor, items, out, batch_size=4, max_new_tokens=4)
    con = sqlite3.connect(out)
    errs = dict(con.execute("SELECT video, error FROM predictions WHERE raw IS NULL").fetchall())
    bad_rels = {p.relative_to(root).as_posix() for p in bad.values()}
    assert bad_rels <= set(errs) and set(errs) - bad_rels <= {"videos/corrupt_middle.mp4"}
    assert counts["errors"] == len(errs)
    assert all(Path(rel).name in errs[rel] for rel in errs)  # each error names its file
    decoded = {r[0] for r in con.execute("SELECT video FROM predictions WHERE raw IS NOT NULL")}
    assert set(good) <= decoded
    con.close()

    # compare and inspect: a clear VideoError naming the file, no hang
    from core.serve.compare import compare_clip
    from core.serve.manager import ModelManager

    with pytest.raises(VideoError, match="notes.mp4"):
        compare_clip(ModelManager(), bad["text"], str(short_run))
    for path in bad.values():
        out = subprocess.run([sys.executable, str(REPO / "cli.py"), "inspect-video", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and path.name in out.stderr and "Traceback" not in out.stderr


def _save_forever(root: str) -> None:
    store = AnnotationStore(root)
    rels = [c.rel for c in store.clips(check_video=False)]
    i = 0
    while True:
        rel = rels[i % len(rels)]
        store.save_label(rel, dict(LABEL, caption=f"edit {i}"), None)
        i += 1


def test_kill_9_during_metadata_writes_leaves_old_or_new_never_half(tmp_path):
    root = make_dataset(tmp_path / "d", n=8)
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.test_reliability import _save_forever; " \
           f"_save_forever({str(root)!r})"
    for delay in (0.3, 0.55, 0.8, 1.1, 1.7):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = AnnotationStore(root).rows()
        assert len(rows) == 8 and all(r.error is None for r in rows)
        assert all(r.data["event_type"] in ("collision", "near_miss", "no_incident") for r in rows)


@pytest.mark.parametrize("ext", [".sqlite", ".jsonl"])
def test_kill_9_during_export_then_resume_without_duplicates(tmp_path, ext):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(10):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", clips / f"c{i}.mp4")
    shutil.copy(SAMPLES / "schema.json", clips / "schema.json")
    out = tmp_path / f"p{ext}"
    cmd = [sys.executable, str(REPO / "cli.py"), "predict", "--model", "tiny:default", "--input", str(clips),
           "--output", str(out), "--batch-size", "2", "--max-new-tokens", "24", "--unconstrained"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out.with_name(out.name + ".partial.jsonl")

    def written() -> int:
        try:
            if ext == ".sqlite":
                con = sqlite3.connect(out)
                try:
                    return con.execute("SELECT count(*) FROM predictions").fetchone()[0]
                finally:
                    con.close()
            return len(journal.read_text().splitlines())
        except (sqlite3.Error, OSError):
            return 0

    deadline = time.time() + 300
    while written() < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = written()
    assert 2 <= partial < 10
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{partial} already done" in again.stdout
    from core.serve.writers import read_rows

    videos = [r["video"] for r in read_rows(out)]
    assert sorted(videos) == sorted(f"c{i}.mp4" for i in range(10))


def test_eight_concurrent_clients_on_annotate_and_compare(tmp_path, short_run):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    root = make_dataset(tmp_path / "d", n=12, rows=0)
    ws = Workspace(dataset_dir=root, runs_dir=short_run.parent)
    demo = build_app(ws)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    errors, compares = [], []
    rels = [c.rel for c in AnnotationStore(root).clips(check_video=False)]

    def annotator(k: int) -> None:
        try:
            client = Client(demo.local_url, verbose=False)
            for rel in rels[k::6]:
                rev = client.predict(rel, api_name="/open_clip")["revision"]
                client.predict(rel, json.dumps(dict(LABEL, caption=f"by {k}")), rev, "train", api_name="/save_label")
        except Exception as exc:  # collected and asserted below: any error fails the test
            errors.append(repr(exc))

    def comparer() -> None:
        try:
            client = Client(demo.local_url, verbose=False)
            result = client.predict(rels[0], None, str(short_run), "(the run's own base)", "the run's schema prompt",
                                    "", True, api_name="/compare")
            compares.append(result)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=annotator, args=(k,)) for k in range(6)]
    threads += [threading.Thread(target=comparer) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    finally:
        demo.close()
    assert errors == []
    labels = {r.video: r.data["caption"] for r in AnnotationStore(root).rows()}
    assert labels == {rel: f"by {i % 6}" for i, rel in enumerate(rels)}  # no label lost
    assert len(compares) == 2 and all("schema-valid" in c[5] for c in compares)


def _full_disk(kind: str) -> Exception:
    """What a full disk really raises from each writer HF Trainer uses for a checkpoint."""
    import errno

    from safetensors import SafetensorError

    return {"safetensors": SafetensorError("I/O error: No space left on device (os error 28)"),
            "torch.save": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 0"),
            "json": OSError(errno.ENOSPC, "No space left on device")}[kind]


@pytest.mark.parametrize("kind", ["safetensors", "torch.save", "json"])
def test_disk_full_on_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, small_dataset, monkeypatch, kind):
    """A full disk while checkpoint-4 is being written (after its weights, as a real full disk would
    strike), with the exception each writer really raises: clear error in the exception and
    status.json, partial folder removed, checkpoint-2 byte-identical; Resume from it finishes."""
    import hashlib

    from transformers import Trainer

    from core.config import TrainConfig
    from core.runs.files import CheckpointError, RunFiles
    from core.train.entry import train

    def digests(folder: Path) -> dict:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before: dict = {}
    real = Trainer._save_optimizer_and_scheduler

    def disk_full_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            before.update(digests(Path(output_dir).parent / "checkpoint-2"))
            (Path(output_dir) / "optimizer.pt").write_bytes(b"\0" * 4096)  # a torn write
            raise _full_disk(kind)
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", disk_full_at_step_4)
    run = tmp_path / "run"
    cfg = TrainConfig(max_steps=6, save_steps=2, save_total_limit=5, batch_size=4, logging_steps=1, warmup_steps=1)
    with pytest.raises(CheckpointError) as err:
        train(small_dataset, run, cfg)
    cause = "unexpected pos" if kind == "torch.save" else "No space left on device"
    for text in ("checkpoint-4/", "MiB free", "checkpoint-2/ is intact", cause):
        assert text in str(err.value)
    status = RunFiles(run).read_status()
    assert status["state"] == "crashed" and "checkpoint-2/ is intact" in status["message"]
    assert not (run / "checkpoint-4").exists()
    assert RunFiles(run).last_checkpoint().name == "checkpoint-2"
    assert before and digests(run / "checkpoint-2") == before
    if kind != "safetensors":
        return  # resuming is the same for every kind: once is enough
    monkeypatch.undo()
    status = train(small_dataset, run, cfg, resume=True)
    assert status["state"] == "completed" and status["global_step"] == 6
    assert (run / "final" / "adapter_model.safetensors").is_file()
