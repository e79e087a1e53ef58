"""CLI twins of the Annotate tab: split, validate, prelabel (subprocesses, as a user runs them)."""

from __future__ import annotations

import json

from core.data.store import DRAFT, AnnotationStore
from tests.support import make_dataset, run_cli


def test_validate_passes_clean_data_and_reports_each_broken_row(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    ok = run_cli("validate", "--dataset", root)
    assert ok.returncode == 0, ok.stderr
    assert "4 labelled" in ok.stdout
    lines = (root / "metadata.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["visibility"] = "foggy"
    lines[2] = json.dumps(row)
    lines.insert(1, "{broken")
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    bad = run_cli("validate", "--dataset", root, "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert {"file": row["video"], "field": "visibility", "reason": "'foggy' is not one of ['good', 'bad']"} \
        in report["problems"]
    assert any(p["file"] == "metadata.jsonl:2" for p in report["problems"])
    assert report["counts"]["invalid"] == 1 and report["counts"]["labelled"] == 3


def test_split_assigns_every_clip_once_and_keep_existing(tmp_path):
    root = make_dataset(tmp_path / "d", n=12, rows=6)
    out = run_cli("split", "--dataset", root, "--ratios", "0.5,0.25,0.25", "--seed", "4",
                  "--stratify", "event_type")
    assert out.returncode == 0, out.stderr
    assert "12 clips: train 6, val 3, test 3" in out.stdout
    rows = AnnotationStore(root).rows()
    assert len(rows) == 12 and len({r.video for r in rows}) == 12
    before = {r.video: r.data["split"] for r in rows}
    (root / "videos" / "new.mp4").write_bytes((root / "videos" / "clip_0000.mp4").read_bytes())
    again = run_cli("split", "--dataset", root, "--keep-existing")
    assert again.returncode == 0 and "1 clips" in again.stdout
    after = {r.video: r.data["split"] for r in AnnotationStore(root).rows()}
    assert {k: after[k] for k in before} == before and "videos/new.mp4" in after


def test_prelabel_writes_drafts_for_unlabelled_clips_only(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=5, rows=2)
    labels_before = (root / "metadata.jsonl").read_bytes()
    out = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", "--batch-size", "2", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "3 drafts written" in out.stdout
    store = AnnotationStore(root)
    assert set(store.drafts()) == {f"videos/clip_000{i}.mp4" for i in (2, 3, 4)}
    assert (root / "metadata.jsonl").read_bytes() == labels_before  # drafts never become labels
    assert {c.status for c in store.clips() if c.rel in store.drafts()} == {DRAFT}
    # the untrained model writes garbage: every draft is flagged with a reason
    assert all(d["errors"] for d in store.drafts().values())
    again = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", timeout=120)
    assert again.returncode == 0 and "nothing to pre-label" in again.stdout


def test_import_each_layout_then_export_round_trips(tmp_path):
    from tests.support import make_conversations, make_qevd, make_videofolder, sample_rows

    rows = sample_rows(4)
    make_conversations(tmp_path / "conv.jsonl", rows)
    make_videofolder(tmp_path / "vf", rows)
    make_qevd(tmp_path / "qevd", rows)
    for src in ("conv.jsonl", "vf", "qevd"):
        out = run_cli("import", tmp_path / src, "--output", tmp_path / f"ds_{src}")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("imported 4 clips")
        assert len(AnnotationStore(tmp_path / f"ds_{src}").rows()) == 4
    again = run_cli("import", tmp_path / "vf", "--output", tmp_path / "ds_vf")
    assert again.returncode == 1 and "merge" in again.stderr
    seed = tmp_path / "ds_conv.jsonl"
    exported = run_cli("export-dataset", "--dataset", seed, "--output", tmp_path / "out" / "ds", "--format", "seed")
    assert exported.returncode == 0, exported.stderr
    back = {r.video: r.label for r in AnnotationStore(tmp_path / "out" / "ds").rows()}
    assert back == {r.video: r.label for r in AnnotationStore(seed).rows()}
