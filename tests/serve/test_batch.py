"""Batch prediction through the CLI: SQLite queried with sqlite3, reruns, error rows, sharding, formats."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from core.serve.writers import read_rows
from tests.support import SAMPLES, run_cli

N_GOOD = 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five real clips, one corrupt file, and the dataset's schema (a base model needs one)."""
    root = tmp_path_factory.mktemp("clips")
    for i in range(N_GOOD):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", root / f"clip_{i:04d}.mp4")
    (root / "sub").mkdir()
    (root / "sub" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but then nothing")
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    return root


def test_sqlite_export_rows_types_rerun_and_error_row(folder, tmp_path):
    db = tmp_path / "preds.sqlite"
    args = ("predict", "--model", "tiny:default", "--input", folder, "--output", db, "--batch-size", "4")
    first = run_cli(*args, timeout=600)
    assert first.returncode == 0, first.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == N_GOOD + 1
    errors = con.execute("SELECT video, error, raw FROM predictions WHERE error IS NOT NULL").fetchall()
    assert [(e[0], e[2]) for e in errors] == [("sub/corrupt.mp4", None)] and "corrupt.mp4" in errors[0][1]
    # constrained decoding (the default for predict): every decoded clip is schema-valid, even untrained
    assert con.execute("SELECT count(*) FROM predictions WHERE schema_valid = 1").fetchone()[0] == N_GOOD
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(predictions)")}
    assert types["event_type"] == "TEXT" and types["schema_valid"] == "INTEGER" and types["seconds"] == "REAL"
    assert con.execute("SELECT count(DISTINCT event_type) FROM predictions WHERE error IS NULL").fetchone()[0] >= 1
    model, spec_hash = con.execute("SELECT DISTINCT model, spec_hash FROM predictions").fetchone()
    assert model == "tiny:default" and len(spec_hash) == 16
    check_confidence_columns(con)
    con.close()
    again = run_cli(*args, timeout=600)
    assert again.returncode == 0 and f"{N_GOOD + 1} already done" in again.stdout
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == N_GOOD + 1
    con.close()


def check_confidence_columns(con) -> None:
    """One REAL column per top-level field plus min_confidence: probabilities for decoded clips (every
    field is there under constrained decoding), NULL for the clip that could not be decoded."""
    fields = list(json.loads((SAMPLES / "schema.json").read_text())["properties"])
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(predictions)")}
    assert all(types[f"{f}__confidence"] == "REAL" for f in fields) and types["min_confidence"] == "REAL"
    cols = ", ".join(f"{f}__confidence" for f in fields)
    for error, least, *scores in con.execute(f"SELECT error, min_confidence, {cols} FROM predictions"):
        if error:
            assert least is None and scores == [None] * len(fields)
        else:
            assert all(0.0 <= s <= 1.0 for s in scores) and least == min(scores)


@pytest.mark.slow
def test_two_worker_processes_give_the_rows_of_one(folder, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    common = ("--model", "tiny:default", "--input", folder, "--batch-size", "1", "--unconstrained",
              "--max-new-tokens", "16")
    assert run_cli("predict", *common, "--output", one, timeout=600).returncode == 0
    out = run_cli("predict", *common, "--output", two, "--num-processes", "2", timeout=600)
    assert out.returncode == 0, out.stderr
    key = lambda r: r["video"]  # noqa: E731
    a, b = sorted(read_rows(one), key=key), sorted(read_rows(two), key=key)
    assert [(r["video"], r["raw"], r["error"] is None) for r in a] == [(r["video"], r["raw"], r["error"] is None) for r in b]
    assert [r["confidence"] for r in a] == [r["confidence"] for r in b]  # the merge keeps the scores
    assert len(b) == N_GOOD + 1 and not list(tmp_path.glob("*.shard*"))


def test_csv_from_a_dataset_split(tmp_path):
    from core.data.store import AnnotationStore
    from tests.support import make_dataset

    root = make_dataset(tmp_path / "d", n=6)
    AnnotationStore(root).set_splits({"videos/clip_0001.mp4": "val", "videos/clip_0004.mp4": "val"})
    out = tmp_path / "p.csv"
    res = run_cli("predict", "--model", "tiny:default", "--input", root, "--split", "val", "--output", out,
                  "--max-new-tokens", "8", "--unconstrained", timeout=600)
    assert res.returncode == 0, res.stderr
    assert sorted(r["video"] for r in read_rows(out)) == ["videos/clip_0001.mp4", "videos/clip_0004.mp4"]


def test_progress_counts_clips_from_the_first_moment_to_the_last(folder, tmp_path):
    from core.serve.batch import predict_to_file

    calls = []
    counts = predict_to_file("tiny:default", folder, tmp_path / "p.jsonl", batch_size=2, max_new_tokens=4,
                             constrained=False, progress=lambda done, total: calls.append((done, total)))
    total = N_GOOD + 1
    assert counts["total"] == total
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == 1 + -(-total // 2)
