"""The pending-edits journal (metadata.pending.jsonl): saves append to it, every reader sees them,
folds write them into metadata.jsonl; replay is idempotent, a torn line is ignored, a hand edit
wins over a pending edit and the loser is reported; kill -9 between the append and the fold and
between the replace and the delete loses nothing (real files, real processes)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys

import pytest

from core.data import journal
from core.data.dataset import load_dataset, settle
from core.data.splits import split_dataset
from core.data.store import INVALID, LABELLED, AnnotationStore, ConflictError
from tests.support import LABEL, REPO, make_dataset, run_cli

RELS = [f"videos/clip_{i:04d}.mp4" for i in range(6)]


@pytest.fixture
def journalled(monkeypatch):
    """Every save goes through the journal, however small the dataset (normally below
    journal.SMALL_FILE metadata.jsonl is rewritten per save)."""
    monkeypatch.setattr(journal, "SMALL_FILE", 0)
    monkeypatch.setattr(journal, "FOLD_RATIO", 0)  # fold by the entry count only


def _file_rows(root) -> dict[str, dict]:
    rows = {}
    for line in (root / "metadata.jsonl").read_text().splitlines():
        obj = json.loads(line)
        rows.setdefault(obj["video"], obj)
    return rows


def _save(store, rel, caption, **extra) -> str:
    return store.save_label(rel, dict(LABEL, caption=caption, **extra), store.clip_revision(rel))


def test_saves_append_readers_see_them_and_a_fold_writes_them(tmp_path, journalled):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    meta, pending = root / "metadata.jsonl", root / "metadata.pending.jsonl"
    before = meta.read_bytes()
    store = AnnotationStore(root)
    rev = _save(store, RELS[1], "one")
    _save(store, RELS[1], "two")  # a chain: based on the first edit
    _save(store, RELS[5], "new clip")  # a clip without a row
    assert meta.read_bytes() == before  # nothing rewritten
    assert len(pending.read_text().splitlines()) == 3
    for view in (store, AnnotationStore(root)):  # this store and a new process's
        assert {c.rel: c.label.get("caption") for c in view.clips()}[RELS[1]] == "two"
        assert view.clip(RELS[5]).status == LABELLED and view.clip(RELS[5]).label["caption"] == "new clip"
        assert len(view.rows()) == 5
    assert store.clip_revision(RELS[1]) != rev
    with pytest.raises(ConflictError):  # revisions and conflicts work across the journal
        store.save_label(RELS[1], LABEL, rev)
    revs = {rel: store.clip_revision(rel) for rel in RELS}
    data = load_dataset(root)  # a whole-file reader folds first
    assert not pending.exists()
    assert {s.rel: s.label["caption"] for s in data.samples}[RELS[1]] == "two"
    assert _file_rows(root)[RELS[5]]["caption"] == "new clip" and len(data.samples) == 5
    assert {rel: AnnotationStore(root).clip_revision(rel) for rel in RELS} == revs  # same rows, same revisions
    assert {rel: store.clip_revision(rel) for rel in RELS} == revs  # the first store follows the fold


def test_fold_after_the_entry_bound_and_on_request(tmp_path, journalled, monkeypatch):
    monkeypatch.setattr(journal, "FOLD_ENTRIES", 3)
    root = make_dataset(tmp_path / "d", n=6)
    pending = root / "metadata.pending.jsonl"
    store = AnnotationStore(root)
    _save(store, RELS[0], "a")
    _save(store, RELS[1], "b")
    assert pending.exists() and _file_rows(root)[RELS[0]]["caption"] != "a"
    _save(store, RELS[2], "c")  # the third entry folds
    assert not pending.exists() and [_file_rows(root)[r]["caption"] for r in RELS[:3]] == ["a", "b", "c"]
    _save(store, RELS[3], "d")
    store.fold()
    assert not pending.exists() and _file_rows(root)[RELS[3]]["caption"] == "d"
    store.fold()  # nothing pending: nothing happens
    assert not pending.exists()


def test_whole_file_operations_fold_first(tmp_path, journalled):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    store = AnnotationStore(root)
    _save(store, RELS[0], "before split")
    _save(store, RELS[4], "added before split")
    split_dataset(store, "1,0,0")
    rows = _file_rows(root)
    assert rows[RELS[0]]["caption"] == "before split" and rows[RELS[4]]["caption"] == "added before split"
    assert {r["split"] for r in rows.values()} == {"train"} and not (root / "metadata.pending.jsonl").exists()
    assert AnnotationStore(root).clip(RELS[4]).split == "train"
    _save(store, RELS[1], "before schema change")
    store.save_schema((root / "schema.json").read_text())
    assert _file_rows(root)[RELS[1]]["caption"] == "before schema change"
    _save(store, RELS[2], "before export")
    out = run_cli("export-dataset", "--dataset", str(root), "--output", str(tmp_path / "copy"))
    assert out.returncode == 0, out.stderr
    assert _file_rows(tmp_path / "copy")[RELS[2]]["caption"] == "before export"
    _save(store, RELS[3], "before validate")
    out = run_cli("validate", "--dataset", str(root))
    assert out.returncode == 0, out.stdout + out.stderr
    assert _file_rows(root)[RELS[3]]["caption"] == "before validate"


def test_replay_is_idempotent_when_the_fold_stopped_before_the_delete(tmp_path, journalled):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    meta, pending = root / "metadata.jsonl", root / "metadata.pending.jsonl"
    store = AnnotationStore(root)
    original = store.clip(RELS[0]).label
    _save(store, RELS[0], "x")
    store.save_label(RELS[0], original, store.clip_revision(RELS[0]))  # back to the original: A -> B -> A
    _save(store, RELS[0], "y")  # ... -> C
    _save(store, RELS[4], "new")
    _save(store, RELS[4], "newer")
    journal_bytes = pending.read_bytes()
    expected = [(c.rel, c.label, c.revision) for c in store.clips()]
    store.fold()
    folded = meta.read_bytes()
    pending.write_bytes(journal_bytes)  # as if killed after the replace, before the delete
    for view in (AnnotationStore(root), store):
        assert [(c.rel, c.label, c.revision) for c in view.clips()] == expected
        assert view.conflicts() == []
    assert settle(root) == 5 and meta.read_bytes() == folded  # applied once, not twice
    assert not (root / "metadata.conflicts.jsonl").exists()


def test_a_torn_last_line_is_ignored_and_the_next_save_still_lands(tmp_path, journalled, caplog):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    pending = root / "metadata.pending.jsonl"
    store = AnnotationStore(root)
    _save(store, RELS[0], "kept")
    whole = journal.Entry(RELS[1], "0" * 40, json.dumps({"video": RELS[1], **LABEL}))
    with pending.open("ab") as fh:
        fh.write(whole.line().encode()[:40])  # a kill in the middle of an append
    with caplog.at_level(logging.WARNING, logger="core.data.journal"):
        fresh = AnnotationStore(root)
        assert fresh.clip(RELS[0]).label["caption"] == "kept"
    assert "incomplete last line" in caplog.text
    _save(fresh, RELS[2], "after the tear")
    assert AnnotationStore(root).clip(RELS[2]).label["caption"] == "after the tear"
    fresh.fold()
    rows = _file_rows(root)
    assert rows[RELS[0]]["caption"] == "kept" and rows[RELS[2]]["caption"] == "after the tear"
    assert len(rows) == 4


def test_a_hand_edit_wins_over_a_pending_edit_and_the_loser_is_reported(tmp_path, journalled):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    meta = root / "metadata.jsonl"
    store = AnnotationStore(root)
    _save(store, RELS[0], "app edit, loses")
    _save(store, RELS[1], "app edit, stands")
    _save(store, RELS[3], "app edit of a row deleted by hand, loses")
    lines = meta.read_text().splitlines()  # a person's editor: the file without the pending edits
    lines[0] = json.dumps({"video": RELS[0], **dict(LABEL, caption="hand edit")})
    lines[2] = json.dumps({"video": RELS[2], **dict(LABEL, caption="hand edit too", event_type="explosion")})
    del lines[3]
    meta.write_text("\n".join(lines) + "\n")
    clips = {c.rel: c for c in store.clips()}
    assert clips[RELS[0]].label["caption"] == "hand edit"
    assert clips[RELS[1]].label["caption"] == "app edit, stands"
    assert clips[RELS[2]].status == INVALID and not clips[RELS[3]].label  # the deletion stands too
    lost, deleted = store.conflicts()
    assert RELS[0] in lost and "was not applied" in lost and RELS[3] in deleted and "has no row" in deleted
    out = run_cli("validate", "--dataset", str(root), "--json")  # folds, then reports the lost save
    report = json.loads(out.stdout)
    assert any(p["field"] == "(conflict)" and RELS[0] in p["reason"] for p in report["problems"])
    assert not (root / "metadata.pending.jsonl").exists()
    rows = _file_rows(root)
    assert rows[RELS[0]]["caption"] == "hand edit" and rows[RELS[1]]["caption"] == "app edit, stands"
    kept = journal.read_conflicts(meta)
    assert [k["video"] for k in kept] == [RELS[0], RELS[3]] and RELS[3] not in rows
    assert json.loads(kept[0]["row"])["caption"] == "app edit, loses"
    assert AnnotationStore(root).conflicts() == store.conflicts() != []  # until the file is deleted


def test_two_stores_see_each_others_appends(tmp_path, journalled):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    a, b = AnnotationStore(root), AnnotationStore(root)
    a.clips(), b.clips()
    _save(a, RELS[0], "by a")
    assert b.clip(RELS[0]).label["caption"] == "by a"  # read from where b stopped
    _save(b, RELS[0], "by b")
    _save(b, RELS[5], "new by b")
    assert a.clip(RELS[0]).label["caption"] == "by b" and a.clip(RELS[5]).status == LABELLED
    a.fold()
    assert b.clip(RELS[5]).label["caption"] == "new by b" and len(b.rows()) == 5


def _killed_inside(root: str, where: str, rels: list[str]) -> None:
    """Save `rels` in turn and SIGKILL this process right after `where` the first time it is reached
    on the last save: after the journal append (before any fold), or after the fold's replace of
    metadata.jsonl (before the journal is deleted)."""
    import os

    from core.data import journal as jr
    from core.data import pending

    jr.SMALL_FILE, jr.FOLD_RATIO, jr.FOLD_ENTRIES = 0, 0, len(rels)
    target = (jr, "append") if where == "append" else (pending.PendingLines, "rewrite")
    original = getattr(*target)
    last = rels[-1]

    def then_die(*args, **kwargs):
        out = original(*args, **kwargs)
        if current[0] == last:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    current = [None]
    setattr(*target, then_die)
    store = AnnotationStore(root)
    for k, rel in enumerate(rels):
        current[0] = rel
        store.save_label(rel, dict(LABEL, caption=f"edit {k}"), store.clip_revision(rel))
        print(rel, flush=True)


@pytest.mark.parametrize("where", ["append", "rewrite"])
def test_kill_9_between_append_and_fold_and_between_replace_and_delete(tmp_path, where):
    root = make_dataset(tmp_path / "d", n=6, rows=4)
    rels = [RELS[0], RELS[1], RELS[0], RELS[5]]  # a chain and a new row; the last save folds
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.data.test_journal import _killed_inside; "
            f"_killed_inside({str(root)!r}, {where!r}, {rels!r})")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.split() == rels[:-1]  # the last save never returned
    assert (root / "metadata.pending.jsonl").exists()  # killed before the fold finished
    store = AnnotationStore(root)
    captions = {c.rel: c.label.get("caption") for c in store.clips()}
    assert captions[RELS[0]] == "edit 2" and captions[RELS[1]] == "edit 1"
    assert captions[RELS[5]] == "edit 3"  # appended (and fsynced) before the kill: it counts
    assert len(store.rows()) == 5 and store.conflicts() == []
    assert settle(root) == 4
    rows = _file_rows(root)
    assert len((root / "metadata.jsonl").read_text().splitlines()) == 5
    assert [rows[r]["caption"] for r in (RELS[0], RELS[1], RELS[5])] == ["edit 2", "edit 1", "edit 3"]


def test_the_workspace_folds_every_open_store_when_the_app_idles_or_closes(tmp_path, journalled):
    from core.workspace import Workspace

    root = make_dataset(tmp_path / "d", n=6, rows=4)
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    ws.fold_pending()  # no store opened yet: nothing to do, nothing built
    assert not (root / "metadata.pending.jsonl").exists()
    _save(ws.store, RELS[2], "pending edit")
    assert (root / "metadata.pending.jsonl").exists() and "pending edit" not in (root / "metadata.jsonl").read_text()
    ws.fold_pending()
    assert not (root / "metadata.pending.jsonl").exists()
    assert _file_rows(root)[RELS[2]]["caption"] == "pending edit"
