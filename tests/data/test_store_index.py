"""The store's index at work: reused while metadata.jsonl is unchanged, patched by its own writes,
rebuilt after a hand edit; bytes it does not own kept verbatim; the drafts log; the gallery's page,
filter, search, Save & next and background scan; and saves at 20,000 rows under kill -9 and two
writer processes (real files, real processes)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from core.data import drafts as drafts_module
from core.data.index_cache import cache_file
from core.data.listing import PAGE_SIZE, gallery_page, next_clip, start_video_scan
from core.data.store import DRAFT, INVALID, LABELLED, UNLABELLED, UNREADABLE, AnnotationStore
from tests.support import LABEL, REPO, make_dataset


def big_dataset(root, n: int, labelled_every: int = 1):
    """`n` clips as hard links to one sample clip; a metadata row for every `labelled_every`-th."""
    root = make_dataset(root, n=1, rows=0)
    clip = root / "videos" / "clip_0000.mp4"
    rows = []
    for i in range(n):
        rel = f"videos/c{i:06d}.mp4"
        os.link(clip, root / rel)
        if i % labelled_every == 0:
            rows.append(json.dumps({"video": rel, "split": "train", **LABEL}) + "\n")
    clip.unlink()
    (root / "metadata.jsonl").write_text("".join(rows))
    return root


def test_hand_edits_are_seen_and_foreign_bytes_kept(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    meta = root / "metadata.jsonl"
    store = AnnotationStore(root)
    assert {c.status for c in store.clips()} == {LABELLED}
    junk = b'{"video": "videos/clip_0001.mp4", "caption": "caf\xe9 \xff"'  # not UTF-8, not JSON
    meta.write_bytes(meta.read_bytes() + b"\n" + junk)  # a blank line, and no final newline
    assert store.problems() == [f"metadata.jsonl:6: {store.rows()[-1].error}"]
    rel = "videos/clip_0002.mp4"
    store.save_label(rel, dict(LABEL, caption="edited"), store.clip_revision(rel))
    after = meta.read_bytes().split(b"\n")
    assert after[4] == b"" and after[5] == junk  # kept byte for byte, newline added after it
    assert json.loads(after[2])["caption"] == "edited"
    # a person edits the file by hand (same inode, other content): the next read sees it
    lines = meta.read_text(errors="replace").splitlines()
    lines[0] = json.dumps({"video": "videos/clip_0000.mp4", **dict(LABEL, event_type="explosion")})
    meta.write_text("\n".join(lines) + "\n")
    assert store.clip("videos/clip_0000.mp4").status == INVALID
    fresh = AnnotationStore(root)  # another process's view, from the cache on disk
    assert [(c.rel, c.status, c.revision) for c in fresh.clips()] == \
        [(c.rel, c.status, c.revision) for c in store.clips()]


def test_index_cache_is_only_a_cache(tmp_path):
    root = make_dataset(tmp_path / "d", n=5)
    schema = json.loads((root / "schema.json").read_text())
    schema["properties"]["visibility"]["enum"] = ["poor"]
    AnnotationStore(root).save_schema(json.dumps(schema))
    expected = [(c.rel, c.status, c.problems) for c in AnnotationStore(root).clips()]
    assert INVALID in {s for _, s, _ in expected}
    cache_file(root).write_bytes(b"this is not a database")
    for suffix in ("-wal", "-shm"):
        cache_file(root).with_name(cache_file(root).name + suffix).unlink(missing_ok=True)
    assert [(c.rel, c.status, c.problems) for c in AnnotationStore(root).clips()] == expected
    cache_file(root).unlink()
    assert [(c.rel, c.status, c.problems) for c in AnnotationStore(root).clips()] == expected


def test_split_change_keeps_a_rows_check_and_status(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    meta = root / "metadata.jsonl"
    rows = [json.loads(x) for x in meta.read_text().splitlines()]
    rows[1]["event_type"] = "explosion"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = AnnotationStore(root)
    assert store.set_splits({rows[1]["video"]: "test", "videos/clip_0000.mp4": "val"}) == 2
    assert {c.rel: c.status for c in store.clips()}[rows[1]["video"]] == INVALID
    assert json.loads(meta.read_text().splitlines()[1])["split"] == "test"


def test_drafts_log_appends_drops_and_compacts(tmp_path, monkeypatch):
    monkeypatch.setattr(drafts_module, "DRAFT_LOG_SLACK", 4)
    root = make_dataset(tmp_path / "d", n=6, rows=0)
    store = AnnotationStore(root)
    rels = [c.rel for c in store.clips()]
    for rel in rels:
        store.save_draft(rel, json.dumps(LABEL), model="m")
    inode = (root / "drafts.jsonl").stat().st_ino
    store.save_draft(rels[0], '{"event_type": "explosion"}', model="m2")  # a later draft wins
    assert (root / "drafts.jsonl").stat().st_ino == inode  # appended, not rewritten
    assert store.drafts()[rels[0]]["model"] == "m2" and store.clip(rels[0]).problems
    for rel in rels[:4]:
        store.save_label(rel, LABEL, store.clip_revision(rel))
    assert sorted(store.drafts()) == rels[4:]
    assert {r: s for r, s in store.statuses()} == {**dict.fromkeys(rels[:4], LABELLED), **dict.fromkeys(rels[4:], DRAFT)}
    lines = (root / "drafts.jsonl").read_text().splitlines()
    assert len(lines) < 6 + 1 + 4  # compacted: the dead drafts are gone
    assert AnnotationStore(root).drafts() == store.drafts()


def test_gallery_page_filter_search_and_save_next(tmp_path):
    root = big_dataset(tmp_path / "d", 300, labelled_every=3)
    (root / "videos" / "c000005.mp4").unlink()
    (root / "videos" / "c000005.mp4").write_bytes(b"junk")  # on the first page
    (root / "videos" / "c000290.mp4").unlink()
    (root / "videos" / "c000290.mp4").write_bytes(b"junk")  # on the last page: the scan finds it
    store = AnnotationStore(root)
    page = gallery_page(store)
    assert (page.total, page.pages, len(page.clips)) == (300, 3, PAGE_SIZE)
    assert page.counts[UNREADABLE] == 1 and page.counts[LABELLED] == 100
    todo = gallery_page(store, UNLABELLED)
    assert len(todo.rels) == 199 and "videos/c000005.mp4" not in todo.rels
    assert gallery_page(store, "all", "C000123").rels == ["videos/c000123.mp4"]
    assert len(gallery_page(store, "all", "no_incident").rels) == 100  # label text is searched
    rel = todo.rels[10]
    store.save_label(rel, LABEL, store.clip_revision(rel))
    assert next_clip(store, todo.rels, rel) == todo.rels[11]
    assert dict(store.statuses())[rel] == LABELLED
    scan = start_video_scan(store)
    scan.join(120)
    assert scan.progress() is None and dict(store.statuses())["videos/c000290.mp4"] == UNREADABLE
    assert AnnotationStore(root).statuses() == store.statuses()  # probes kept for the next process


def _saver(root: str, rels: list[str], log: str) -> None:
    store = AnnotationStore(root)
    with open(log, "a") as fh:
        for k, rel in enumerate(rels):
            store.save_label(rel, dict(LABEL, caption=f"edit {k}"), store.clip_revision(rel))
            fh.write(f"{rel}\tedit {k}\n")
            fh.flush()


@pytest.mark.slow
def test_kill_9_while_saving_into_20000_rows_loses_nothing(tmp_path):
    root = big_dataset(tmp_path / "d", 20_000)
    rels = [f"videos/c{i:06d}.mp4" for i in range(0, 20_000, 7)]
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.data.test_store_index import _saver; "
            f"_saver({str(root)!r}, {rels!r}, {str(tmp_path / 'done.log')!r})")
    log = tmp_path / "done.log"
    log.touch()
    for delay in (0.0, 0.15, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        seen = len(log.read_text().splitlines())
        deadline = time.time() + 120  # only a guard against a hang: the kill lands among saves
        while len(log.read_text().splitlines()) == seen and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = AnnotationStore(root).rows()
        assert len(rows) == 20_000 and all(r.error is None for r in rows)
        by_video = {r.video: r.data["caption"] for r in rows}
        done = [line.split("\t") for line in log.read_text().splitlines()]
        assert done and all(by_video[rel] == caption for rel, caption in done)


@pytest.mark.slow
def test_two_processes_saving_into_20000_rows_both_kept(tmp_path):
    root = big_dataset(tmp_path / "d", 20_000, labelled_every=2)
    rels = [f"videos/c{i:06d}.mp4" for i in range(1, 400, 2)]  # clips without a row: each save appends
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_saver, args=(str(root), rels[k::2], str(tmp_path / f"w{k}.log"))) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    rows = AnnotationStore(root).rows()
    assert len(rows) == 10_000 + len(rels) and all(r.error is None for r in rows)
    assert {r.video for r in rows} >= set(rels)
    statuses = dict(AnnotationStore(root).statuses())
    assert all(statuses[rel] == LABELLED for rel in rels)

