"""Add clips (core.data.uploads behind AnnotationStore.add_videos): the temporary folder never stays,
a zip that would unpack too much is refused, and the result says the new clips have no split."""

from __future__ import annotations

import struct
import tempfile
import zipfile

import pytest

from core.data.store import AnnotationStore
from tests.support import SAMPLES, make_dataset

CLIP = SAMPLES / "videos" / "clip_0007.mp4"


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """The temp folder uploads unpack into, watched: it must be empty after every call."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_zip_upload_removes_its_temporary_folder(tmp_path, tmp_root):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=1))
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(CLIP, "a/clip_0007.mp4")
    added, problems = store.add_videos([z])
    assert added == ["videos/clip_0007.mp4"] and not problems
    added, problems = store.add_videos([z], chunk_seconds=1.0)  # cut into pieces in the temp folder too
    assert added and all("_chunk" in a for a in added) and not problems
    assert list(tmp_root.iterdir()) == []


def test_a_zip_declaring_more_than_the_limit_is_refused_unpacked_nothing(tmp_path, tmp_root, monkeypatch):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=1))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.mp4", bytes(40 << 20))  # 40 MiB of zeros: a few KiB compressed
    monkeypatch.setenv("VVW_MAX_UNPACKED_GB", str(16 / 1024))  # a 16 MiB limit
    added, problems = store.add_videos([bomb])
    assert added == []
    assert len(problems) == 1 and problems[0].startswith("bomb.zip: ") and "limit" in problems[0]
    assert list(tmp_root.iterdir()) == []


def test_a_member_that_yields_more_than_it_declares_is_skipped(tmp_path, tmp_root):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=1))
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.mp4", bytes(4 << 20))
        zf.write(CLIP, "good.mp4")
    data = bytearray(z.read_bytes())
    central = data.index(b"PK\x01\x02")  # the first member's central directory entry: declare 1 KiB
    struct.pack_into("<I", data, central + 24, 1024)
    z.write_bytes(bytes(data))
    added, problems = store.add_videos([z])
    assert added == ["videos/good.mp4"]
    assert any(p.startswith("liar.zip: big.mp4: damaged or not what the archive declares") for p in problems), problems
    assert list(tmp_root.iterdir()) == []


def test_added_clips_say_they_have_no_split(tmp_path, tmp_root):
    store = AnnotationStore(make_dataset(tmp_path / "d", n=2))  # rows with train splits
    result = store.add_videos([CLIP, SAMPLES / "videos" / "clip_0008.mp4"])
    added, problems = result  # the older tuple form still unpacks
    assert len(added) == 2 and not problems
    assert result.no_split == 2
    assert "2 clips added without a split" in result.note and "cli.py split --keep-existing" in result.note
    assert {c.split for c in store.clips() if c.rel in added} == {None}


def test_the_add_clips_panel_says_the_new_clips_have_no_split(tmp_path):
    """Annotate → Add clips: the message under the button says training leaves the new clips out
    until they get a split (they used to get split "(none)" silently), and a refused call says why."""
    import gradio as gr

    from core.workspace import Workspace
    from tabs import annotate_tools

    ws = Workspace(dataset_dir=make_dataset(tmp_path / "d", n=2), runs_dir=tmp_path / "runs")
    with gr.Blocks() as demo:
        annotate_tools.build(ws, ws.store, [], [], lambda: None)
    on_add = next(f.fn for f in demo.fns.values() if f.api_name == "add_clips")
    message = on_add([str(CLIP)], 0)
    assert message.startswith("added 1 clips\n\n⚠ 1 clip added without a split") and "leaves them out" in message
    assert on_add([], 0) == "✖ choose files first"
