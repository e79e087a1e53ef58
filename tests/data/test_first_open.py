"""The first open of a dataset (no index cache yet): each row parsed once for the index, the label
checks and the listing; big batches of the cache stored as one blob and read back the same; the
quick `root / rel` equal to pathlib's."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.data import index_cache
from core.data.index_cache import cache_file
from core.data.records import child_path
from core.data.store import INVALID, AnnotationStore
from tests.support import LABEL, make_dataset


def test_a_first_listing_parses_each_row_once(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "d", n=6)
    with (root / "metadata.jsonl").open("a") as fh:
        fh.write(json.dumps({"video": "videos/extra.mp4", **dict(LABEL, event_type="explosion")}) + "\n")
        fh.write("not json\n")
    lines = set((root / "metadata.jsonl").read_text().splitlines())
    parsed = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda s, *a, **k: (s in lines and parsed.append(s)) or real(s, *a, **k))
    clips = AnnotationStore(root).clips(check_video=False)
    assert len(clips) == 7 and {c.rel: c.status for c in clips}["videos/extra.mp4"] == INVALID
    assert all(c.label for c in clips)
    assert len(parsed) == 8 and set(parsed) == lines  # 7 rows and the bad line, each once
    parsed.clear()
    again = AnnotationStore(root).clips(check_video=False)  # summaries and checks from the cache
    assert [(c.rel, c.status, c.label, c.split) for c in again] == [(c.rel, c.status, c.label, c.split) for c in clips]
    assert len(parsed) == 7  # the listing still needs every label: parsed once each


def test_big_batches_are_cached_as_one_blob_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(index_cache, "BULK", 3)
    root = make_dataset(tmp_path / "d", n=6)
    schema = json.loads((root / "schema.json").read_text())
    schema["properties"]["visibility"]["enum"] = ["poor"]
    (root / "schema.json").write_text(json.dumps(schema))
    first = [(c.rel, c.status, c.problems) for c in AnnotationStore(root).clips()]
    assert {s for _, s, _ in first} == {INVALID}
    with sqlite3.connect(cache_file(root)) as con:
        names = sorted(n for (n,) in con.execute("SELECT name FROM bulk"))
        rows = con.execute("SELECT count(*) FROM summaries").fetchone()[0]
    assert names[0].startswith("checks:") and names[1] == "summaries:metadata" and rows == 0
    store = AnnotationStore(root)
    assert [(c.rel, c.status, c.problems) for c in store.clips()] == first
    with sqlite3.connect(cache_file(root)) as con:
        con.execute("UPDATE bulk SET data = 'not json'")
    assert [(c.rel, c.status, c.problems) for c in AnnotationStore(root).clips()] == first  # only a cache


@pytest.mark.parametrize("rel", ["videos/a.mp4", "a", "videos/sub dir/ü.mp4", "videos//a.mp4", "./a",
                                 "videos/../a", "videos/a.mp4/"])
def test_child_path_is_pathlibs_join(tmp_path, rel):
    ours, theirs = child_path(tmp_path, rel), tmp_path / rel
    assert (ours, str(ours), ours.parts, type(ours), hash(ours)) == (theirs, str(theirs), theirs.parts, type(theirs),
                                                                     hash(theirs))
    assert ours.parent == theirs.parent and ours.name == theirs.name and isinstance(ours, Path)
