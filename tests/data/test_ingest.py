"""Add clips from a folder (core.data.ingest behind `cli.py add-clips` and Annotate → Add from a folder):
the right pieces and a problem list, a re-run adds nothing, a killed run re-run adds every source
exactly once with no half-written clip, and the app reads only its allowed folders."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.data.ingest import LEDGER, LOCK, WORK, ingest
from core.errors import DatasetError
from core.video.frames import probe
from tests.support import REPO, SAMPLES, make_bad_files, make_dataset, run_cli, write_test_video

BUNDLED = [SAMPLES / "videos" / f"clip_000{i}.mp4" for i in range(3)]  # 3 s at 10 fps each
# what make_bad_files leaves as files (its "missing" is never created, its "folder.mp4" is a folder)
BAD = {"empty.mp4", "notes.mp4", "picture.mp4", "noise.mp4", "audio.mp4", "moov_end_cut.mp4"} | (
    {"pipe.mp4"} if hasattr(os, "mkfifo") else set())


@pytest.fixture
def footage(tmp_path) -> Path:
    """Bundled clips, a 60 s video, broken files in a sub-folder and a text file, as on a share."""
    src = tmp_path / "footage"
    src.mkdir()
    for clip in BUNDLED:
        shutil.copy(clip, src / clip.name)
    write_test_video(src / "long.mp4", n_frames=600, fps=10, size=(160, 90), gop=50)
    make_bad_files(src / "broken")
    (src / "notes.txt").write_text("not a video\n")
    return src


def videos(root: Path) -> list[str]:
    return sorted(p.relative_to(root / "videos").as_posix() for p in (root / "videos").rglob("*") if p.is_file())


def test_a_folder_is_cut_into_pieces_with_a_problem_list_and_a_rerun_adds_nothing(tmp_path, footage):
    root = tmp_path / "ds"
    calls = []
    report = ingest(root, [footage], chunk_seconds=5, recursive=True, workers=2,
                    progress=lambda d, t: calls.append((d, t)))
    long_pieces = [f"long_chunk{i:03d}.mp4" for i in range(12)]
    expected = sorted(long_pieces + [f"{c.stem}_chunk000.mp4" for c in BUNDLED])
    assert videos(root) == expected and sorted(Path(a).name for a in report.added) == expected
    assert [probe(root / "videos" / p).frame_count for p in long_pieces] == [50] * 12  # 5 s at 10 fps each
    # every broken file named once, with its reason; nothing else refused, the text file only counted
    named = {Path(p.split(": ", 1)[0]).name: p.split(": ", 1)[1] for p in report.problems}
    assert set(named) == BAD and len(report.problems) == len(BAD) and all(named.values())
    assert report.ignored == 1 and report.sources == 4 + len(BAD) and report.added_sources == 4
    assert calls[0] == (0, 4 + len(BAD)) and calls[-1] == (4 + len(BAD),) * 2
    assert report.no_split == 15 and "15 clips added without a split" in report.note
    assert not (root / WORK).exists() and not [p for p in (root / "videos").rglob(".*")]

    again = ingest(root, [footage], chunk_seconds=5, recursive=True, workers=1)
    assert again.added == [] and again.skipped == 4 and again.note == ""
    assert len(again.problems) == len(BAD)  # still listed: they were never added
    assert videos(root) == expected


def test_names_keep_sub_folders_and_never_overwrite_a_clip(tmp_path):
    root = make_dataset(tmp_path / "ds", n=1)  # has videos/clip_0000.mp4 (a train row)
    before = (root / "videos" / "clip_0000.mp4").read_bytes()
    src = tmp_path / "share"
    (src / "day2").mkdir(parents=True)
    shutil.copy(BUNDLED[1], src / "clip_0000.mp4")  # same name as the clip already there
    shutil.copy(BUNDLED[2], src / "day2" / "cam.mp4")
    flat = ingest(root, [src], workers=1)  # not recursive: day2/ is left alone
    assert flat.added == ["videos/clip_0000_1.mp4"]
    assert (root / "videos" / "clip_0000.mp4").read_bytes() == before
    assert (root / "videos" / "clip_0000_1.mp4").read_bytes() == BUNDLED[1].read_bytes()
    assert "training uses the train split" in flat.note
    deep = ingest(root, [src], recursive=True, workers=1)
    assert deep.added == ["videos/day2/cam.mp4"] and deep.skipped == 1
    globbed = ingest(root, [str(tmp_path / "nowhere" / "*.mp4"), tmp_path / "missing.mp4"], workers=1)
    assert globbed.added == [] and globbed.problems == [f"{tmp_path / 'missing.mp4'}: does not exist",
                                                        f"{tmp_path / 'nowhere' / '*.mp4'}: no file matches"]


def test_a_source_cut_off_between_its_clips_and_its_done_line_is_redone_once(tmp_path):
    """What a kill after the clips moved in but before the ledger's `done` leaves: a `begin` line.
    The next run removes that source's clips and adds it again, so it is there exactly once."""
    root = tmp_path / "ds"
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(BUNDLED[0], src / "a.mp4")
    st = (src / "a.mp4").stat()
    (root / "videos").mkdir(parents=True)
    shutil.copy(BUNDLED[0], root / "videos" / "a.mp4")  # placed, then killed
    (root / WORK / "x").mkdir(parents=True)
    (root / WORK / "x" / "half.mp4").write_bytes(b"\0" * 100)  # a killed run's work file
    (root / "videos" / ".a.mp4.1234abcd.part").write_bytes(b"\0" * 100)  # a killed run's staged copy
    begin = {"state": "begin", "source": os.path.realpath(src / "a.mp4"), "size": st.st_size,
             "mtime_ns": st.st_mtime_ns, "clips": ["videos/a.mp4"]}
    (root / LEDGER).write_text(json.dumps(begin) + "\n" + '{"state": "do')  # and a line cut by the kill
    report = ingest(root, [src], workers=1)
    assert report.added == ["videos/a.mp4"] and report.skipped == 0
    assert videos(root) == ["a.mp4"] and not (root / WORK).exists()
    assert not (root / "videos" / ".a.mp4.1234abcd.part").exists()
    lines = [json.loads(line) for line in (root / LEDGER).read_text().splitlines()[2:]]  # after the cut line
    assert [rec["state"] for rec in lines] == ["undone", "begin", "done"]  # none glued to the cut line
    assert ingest(root, [src], workers=1).skipped == 1


def test_add_clips_killed_midway_then_rerun_adds_every_source_exactly_once(tmp_path):
    root, src = tmp_path / "ds", tmp_path / "many"
    src.mkdir()
    n = 30
    for i in range(n):
        shutil.copy(BUNDLED[i % 3], src / f"s{i:02d}.mp4")
    cmd = [sys.executable, str(REPO / "cli.py"), "add-clips", str(root), str(src), "--chunk-seconds", "1",
           "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # guards a hang only
        # 3 pieces a source: the 5th is placed when one source is done and the next is going in
        while len(list((root / "videos").glob("*.mp4"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = [json.loads(line) for line in (root / LEDGER).read_text().splitlines() if '"done"' in line]
    assert 0 < len(done) < n, "the run was not cut off midway"
    print(f"killed after {len(done)} sources")
    for clip in (root / "videos").glob("*.mp4"):  # whatever is there is whole
        assert probe(clip).frame_count == 10, clip
    result = run_cli("add-clips", root, src, "--chunk-seconds", "1", "--workers", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"; {len(done)} already added" in result.stdout
    assert videos(root) == sorted(f"s{i:02d}_chunk{k:03d}.mp4" for i in range(n) for k in range(3))
    assert not (root / WORK).exists() and not list((root / "videos").glob(".*"))
    again = run_cli("add-clips", root, src, "--chunk-seconds", "1", timeout=120)
    assert again.stdout.startswith("added 0 clips from 0 files") and f"; {n} already added" in again.stdout


def test_the_cli_lists_problems_and_counts(tmp_path, footage):
    result = run_cli("add-clips", tmp_path / "ds", footage / "broken" / "empty.mp4", footage / "clip_0000.mp4",
                     footage / "notes.txt", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (f"added 1 clip from 1 file to {tmp_path / 'ds' / 'videos'}; "
                                             "2 not added (listed above)")
    errors = [line for line in result.stderr.splitlines() if line.startswith("not added: ")]
    assert [Path(e.split(": ")[1]).name for e in errors] == ["empty.mp4", "notes.txt"]
    assert "not a video or image file" in errors[1]


def test_a_second_ingest_on_the_same_dataset_is_refused_while_one_runs(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with open(root / LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(DatasetError, match="another add-clips is running"):
            ingest(root, [BUNDLED[0]], workers=1)
    assert not (root / "videos").exists()


def _panel(ws):
    import gradio as gr

    from tabs import annotate_tools

    with gr.Blocks() as demo:
        annotate_tools.build(ws, ws.store, [], [], lambda: None)
    return next(f.fn for f in demo.fns.values() if f.api_name == "add_folder")


def test_the_app_adds_only_from_the_folders_it_may_read(tmp_path, monkeypatch):
    """Annotate → Add from a folder: a folder beside the dataset is read; one elsewhere is refused
    with the reason under the button until VVW_ALLOWED_DIRS names it; a link out is listed."""
    from core.workspace import Workspace

    monkeypatch.delenv("VVW_ALLOWED_DIRS", raising=False)
    ws = Workspace(dataset_dir=make_dataset(tmp_path / "d", n=2), runs_dir=tmp_path / "runs")
    on_add_folder = _panel(ws)
    outside = str(SAMPLES / "videos" / "clip_001[0-1].mp4")  # the repository is not beside the dataset
    message = on_add_folder(outside, 0, False, 1)
    assert message.startswith("✖ add from folder failed: ") and "outside the folders this app may read" in message
    assert "VVW_ALLOWED_DIRS" in message and "cli.py add-clips" in message
    assert not [c for c in ws.store.video_files() if "clip_001" in c]

    beside = tmp_path / "share"
    beside.mkdir()
    shutil.copy(BUNDLED[0], beside / "cam1.mp4")
    (beside / "escape.mp4").symlink_to(BUNDLED[1])  # inside, but pointing outside
    message = on_add_folder(str(beside), 0, False, 1)
    assert message.startswith("added 1 clips from 1 files\n\n⚠ 1 clip added without a split")
    assert "escape.mp4: links outside the folders this app may read" in message
    assert "videos/cam1.mp4" in ws.store.video_files()
    assert on_add_folder(str(beside), 0, False, 1).startswith("added 0 clips from 0 files; 1 already added")

    monkeypatch.setenv("VVW_ALLOWED_DIRS", os.pathsep.join(["/nonexistent", str(SAMPLES / "videos")]))
    message = on_add_folder(outside, 0, False, 1)
    assert message.startswith("added 2 clips from 2 files")
    assert on_add_folder("  ", 0, False, 1) == "✖ give a folder, file or glob on this machine"


def test_ctrl_c_keeps_what_was_added_and_says_how_to_go_on(tmp_path):
    root, src = tmp_path / "ds", tmp_path / "many"
    src.mkdir()
    for i in range(12):
        shutil.copy(BUNDLED[i % 3], src / f"s{i:02d}.mp4")
    cmd = [sys.executable, str(REPO / "cli.py"), "add-clips", str(root), str(src), "--chunk-seconds", "1",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # guards a hang only
    while len(list((root / "videos").glob("*.mp4"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("stopped: ") and "run the same command again" in err
    assert "Traceback" not in err and not (root / WORK).exists()
    result = run_cli(*cmd[2:], timeout=300)
    assert result.returncode == 0 and videos(root) == sorted(f"s{i:02d}_chunk{k:03d}.mp4" for i in range(12)
                                                              for k in range(3))
