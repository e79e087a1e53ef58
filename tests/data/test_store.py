"""The annotation store: revisions, atomic rewrites that keep bad lines, drafts, statuses, uploads."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
import zipfile

import pytest

from core.data.store import DRAFT, INVALID, LABELLED, NEW, UNLABELLED, UNREADABLE, AnnotationStore, ConflictError
from core.errors import DatasetError
from tests.support import LABEL, SAMPLES, make_dataset


def test_statuses_cover_labelled_invalid_unlabelled_draft_unreadable(tmp_path):
    root = make_dataset(tmp_path / "d", n=4, rows=2)
    store = AnnotationStore(root)
    (root / "videos" / "broken.mp4").write_bytes(b"not a video at all")
    bad = dict(LABEL, event_type="explosion")
    with (root / "metadata.jsonl").open("a") as fh:
        fh.write(json.dumps({"video": "videos/clip_0002.mp4", **bad}) + "\n")
    store.save_draft("videos/clip_0003.mp4", json.dumps(LABEL), model="m")
    status = {c.rel: c.status for c in store.clips()}
    assert status["videos/clip_0000.mp4"] == LABELLED
    assert status["videos/clip_0002.mp4"] == INVALID
    assert status["videos/clip_0003.mp4"] == DRAFT
    assert status["videos/broken.mp4"] == UNREADABLE
    broken = next(c for c in store.clips() if c.rel == "videos/broken.mp4")
    assert broken.problems and broken.revision == NEW
    invalid = next(c for c in store.clips() if c.status == INVALID)
    assert any("explosion" in p for p in invalid.problems)


def test_save_keeps_malformed_lines_verbatim_and_other_rows(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    lines = (root / "metadata.jsonl").read_text().splitlines()
    garbage = '{"video": "videos/clip_0001.mp4", "event_type": '  # truncated on purpose
    lines.insert(1, garbage)
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    store = AnnotationStore(root)
    assert store.problems() == [f"metadata.jsonl:2: {store.rows()[1].error}"]
    assert "column" in store.problems()[0]
    clip = store.clip("videos/clip_0002.mp4")
    store.save_label(clip.rel, dict(LABEL, caption="edited"), clip.revision)
    after = (root / "metadata.jsonl").read_text().splitlines()
    assert after[1] == garbage
    assert after[0] == lines[0]
    assert json.loads(after[3])["caption"] == "edited"
    assert json.loads(after[3])["split"] == "train"  # split survives a label edit
    assert not list(root.glob("*.tmp"))


def test_same_clip_conflict_different_clips_both_kept(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    tab_a, tab_b = AnnotationStore(root), AnnotationStore(root)
    a0, b0 = tab_a.clip("videos/clip_0000.mp4"), tab_b.clip("videos/clip_0001.mp4")
    tab_a.save_label(a0.rel, dict(LABEL, caption="from A"), a0.revision)
    tab_b.save_label(b0.rel, dict(LABEL, caption="from B"), b0.revision)
    store = AnnotationStore(root)
    assert store.clip(a0.rel).label["caption"] == "from A"
    assert store.clip(b0.rel).label["caption"] == "from B"
    stale = b0.revision
    tab_a.save_label(b0.rel, dict(LABEL, caption="A on B"), tab_a.clip(b0.rel).revision)
    with pytest.raises(ConflictError, match="reload"):
        tab_b.save_label(b0.rel, dict(LABEL, caption="B again"), stale)
    assert store.clip(b0.rel).label["caption"] == "A on B"


def test_label_breaking_schema_refused_and_nothing_written(tmp_path):
    root = make_dataset(tmp_path / "d", n=2)
    before = (root / "metadata.jsonl").read_bytes()
    store = AnnotationStore(root)
    clip = store.clip("videos/clip_0000.mp4")
    with pytest.raises(DatasetError, match="event_type"):
        store.save_label(clip.rel, dict(LABEL, event_type="explosion"), clip.revision)
    assert (root / "metadata.jsonl").read_bytes() == before


def test_escaping_paths_refused(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    outside = tmp_path / "outside.mp4"
    shutil.copy(SAMPLES / "videos" / "clip_0005.mp4", outside)
    (root / "videos" / "link.mp4").symlink_to(outside)
    store = AnnotationStore(root)
    for rel in ("../outside.mp4", str(outside), "videos/link.mp4"):
        with pytest.raises(DatasetError, match="escapes|absolute"):
            store.save_label(rel, LABEL, None)
    with (root / "metadata.jsonl").open("a") as fh:
        fh.write(json.dumps({"video": "../outside.mp4", **LABEL}) + "\n")
    clip = next(c for c in store.clips() if c.rel == "../outside.mp4")
    assert clip.status == UNREADABLE and "escapes" in clip.problems[0]


def _writer(root: str, rels: list[str], tag: str) -> None:
    store = AnnotationStore(root)
    for rel in rels:
        store.save_label(rel, dict(LABEL, caption=f"{tag} {rel}"), store.clip_revision(rel))


def test_two_processes_saving_200_labels_interleaved(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    store = AnnotationStore(root)
    # 200 clips that exist as files (copies of one clip) so every save is a real clip
    rels = []
    for i in range(200):
        rel = f"videos/c{i:03d}.mp4"
        (root / rel).hardlink_to(root / "videos" / "clip_0000.mp4")
        rels.append(rel)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(root), rels[k::2], f"w{k}")) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = store.rows()
    assert all(r.error is None for r in rows)
    by_video = {r.video: r.data for r in rows}
    for i, rel in enumerate(rels):
        assert by_video[rel]["caption"] == f"w{i % 2} {rel}"
    assert len(rows) == 201


def test_threads_saving_same_clip_one_wins_other_conflicts(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    rev = AnnotationStore(root).clip("videos/clip_0000.mp4").revision
    results = []

    def save(tag):
        try:
            AnnotationStore(root).save_label("videos/clip_0000.mp4", dict(LABEL, caption=tag), rev)
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=save, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "ok"]


def test_drafts_are_not_labels_until_accepted(tmp_path):
    root = make_dataset(tmp_path / "d", n=3, rows=1)
    store = AnnotationStore(root)
    good = store.save_draft("videos/clip_0001.mp4", "```json\n" + json.dumps(LABEL) + "\n```", model="m")
    bad = store.save_draft("videos/clip_0002.mp4", '{"event_type": "explosion"}', model="m")
    garbage = store.save_draft("videos/clip_0002.mp4", "no json here", model="m")
    assert good["errors"] == [] and good["label"] == LABEL
    assert bad["errors"] and garbage["errors"] == ["no JSON object in the output"]
    assert len(store.rows()) == 1  # nothing reached metadata.jsonl
    clip = store.clip("videos/clip_0002.mp4")
    assert clip.status == DRAFT and clip.problems == ("no JSON object in the output",)
    with pytest.raises(DatasetError):
        store.accept_draft(clip.rel, clip.revision)  # an invalid draft cannot become a label as is
    store.accept_draft(clip.rel, clip.revision, label=LABEL)  # ...but can once edited
    ok = store.clip("videos/clip_0001.mp4")
    store.accept_draft(ok.rel, ok.revision)
    assert store.clip(ok.rel).status == LABELLED
    assert store.drafts() == {}


def test_schema_change_lists_broken_rows_without_touching_them(tmp_path):
    root = make_dataset(tmp_path / "d", n=5)
    store = AnnotationStore(root)
    before = (root / "metadata.jsonl").read_bytes()
    schema = store.schema()
    schema["properties"]["event_type"]["enum"] = ["collision", "near_miss"]  # drop no_incident
    store.save_schema(json.dumps(schema))
    broken = store.check_labels(store.schema())
    expected = [json.loads(line)["video"] for line in before.decode().splitlines()
                if json.loads(line)["event_type"] == "no_incident"]
    assert expected and sorted({f for f, _, _ in broken}) == sorted(expected)
    assert all(field == "event_type" for _, field, _ in broken)
    assert (root / "metadata.jsonl").read_bytes() == before
    assert len(store.schema_versions()) == 2  # old and new kept by hash
    assert {c.status for c in store.clips() if c.rel in expected} == {INVALID}


def test_set_splits_creates_rows_for_unlisted_clips(tmp_path):
    root = make_dataset(tmp_path / "d", n=3, rows=1)
    store = AnnotationStore(root)
    changed = store.set_splits({"videos/clip_0000.mp4": "val", "videos/clip_0002.mp4": "test"})
    assert changed == 2
    rows = {r.video: r.data for r in store.rows()}
    assert rows["videos/clip_0000.mp4"]["split"] == "val"
    assert rows["videos/clip_0000.mp4"]["event_type"]  # label kept
    assert rows["videos/clip_0002.mp4"] == {"video": "videos/clip_0002.mp4", "split": "test"}
    assert store.clip("videos/clip_0002.mp4").status == UNLABELLED
    with pytest.raises(DatasetError, match="unknown split"):
        store.set_splits({"videos/clip_0000.mp4": "holdout"})


def test_add_videos_from_files_and_zip_with_chunking(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    store = AnnotationStore(root)
    z = tmp_path / "up.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(SAMPLES / "videos" / "clip_0007.mp4", "clips/clip_0007.mp4")
        zf.writestr("../evil.mp4", b"x")
        zf.writestr("notes.txt", b"ignored")
    text = tmp_path / "readme.txt"
    text.write_text("hi")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    added, problems = store.add_videos([SAMPLES / "videos" / "clip_0000.mp4", z, text, bad])
    assert added == ["videos/clip_0000_1.mp4", "videos/clip_0007.mp4"]  # never overwrites
    assert any("evil" in p and "escapes" in p for p in problems)
    assert any("readme.txt" in p for p in problems) and any("bad.mp4" in p for p in problems)
    assert not any(str(tmp_path) in p for p in problems)  # the file's name, not the upload's temp path
    pieces, problems = store.add_videos([SAMPLES / "videos" / "clip_0008.mp4"], chunk_seconds=1.0)
    assert pieces == [f"videos/clip_0008_chunk{i:03d}.mp4" for i in range(3)] and not problems
    assert {c.rel for c in store.clips()} >= set(pieces)
