"""CLI twins of the Annotate tab: split, validate, prelabel (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.data.store import DRAFT, AnnotationStore
from tests.support import REPO, make_dataset, run_cli


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
    # free decoding: the untrained model's answers are not JSON (constrained decoding is the default)
    out = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", "--batch-size", "2", "--unconstrained",
                  timeout=300)
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


def _annotate_tools_handler(root, api_name):
    """A handler of the Annotate tab's tool panels, built on `root` as the app builds it."""
    import gradio as gr

    from core.workspace import Workspace
    from tabs import annotate_tools

    ws = Workspace(dataset_dir=root, runs_dir=root.parent / "runs")
    with gr.Blocks() as demo:
        annotate_tools.build(ws, ws.store, [], [], lambda: None)
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


def test_cli_split_and_the_tabs_split_assign_the_same_splits(tmp_path):
    cli_root, tab_root = make_dataset(tmp_path / "a", n=12), make_dataset(tmp_path / "b", n=12)
    out = run_cli("split", "--dataset", cli_root, "--ratios", "0.5,0.25,0.25", "--seed", "7", "--stratify", "event_type")
    assert out.returncode == 0, out.stderr
    message = _annotate_tools_handler(tab_root, "assign_splits")("0.5,0.25,0.25", 7, "event_type", False)
    assert message.startswith("12 clips assigned") and "train 6, val 3, test 3" in message
    by_cli = {r.video: r.data["split"] for r in AnnotationStore(cli_root).rows()}
    by_tab = {r.video: r.data["split"] for r in AnnotationStore(tab_root).rows()}
    assert by_cli == by_tab and set(by_cli.values()) == {"train", "val", "test"}
    other_seed = run_cli("split", "--dataset", cli_root, "--ratios", "0.5,0.25,0.25", "--seed", "8",
                         "--stratify", "event_type")
    assert other_seed.returncode == 0
    assert {r.video: r.data["split"] for r in AnnotationStore(cli_root).rows()} != by_tab  # the seed matters


def _labels(root):
    return {r.video: r.label for r in AnnotationStore(root).rows()}


def test_export_dataset_writes_each_format_and_each_imports_back(tmp_path):
    root = make_dataset(tmp_path / "d", n=6)
    AnnotationStore(root).set_splits({**{f"videos/clip_000{i}.mp4": "train" for i in range(4)},
                                      "videos/clip_0004.mp4": "val", "videos/clip_0005.mp4": "test"})
    # conversation paths are relative to the dataset: given the dataset folder, the file goes inside it
    conv = root / "conversations.jsonl"
    for fmt, dest, written in (("seed", tmp_path / "seed_out", tmp_path / "seed_out"),
                               ("videofolder", tmp_path / "hf", tmp_path / "hf"), ("conversation", root, conv)):
        out = run_cli("export-dataset", "--dataset", root, "--output", dest, "--format", fmt)
        assert out.returncode == 0, (fmt, out.stderr)
        assert out.stdout.startswith(f"wrote {written} (6 clips)"), out.stdout
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["schema.json", "test", "train", "validation"]
    assert len((tmp_path / "hf" / "train" / "metadata.jsonl").read_text().splitlines()) == 4
    assert len(conv.read_text().splitlines()) == 6
    assert _labels(tmp_path / "seed_out") == _labels(root)
    for src, layout in ((tmp_path / "hf", "videofolder"), (conv, "conversation")):
        back = run_cli("import", src, "--output", tmp_path / f"back_{layout}", "--layout", layout)
        assert back.returncode == 0, back.stderr
        labels_back = sorted(json.dumps(label, sort_keys=True) for label in _labels(tmp_path / f"back_{layout}").values())
        assert labels_back == sorted(json.dumps(label, sort_keys=True) for label in _labels(root).values())
    bad = run_cli("export-dataset", "--dataset", root, "--output", tmp_path / "x", "--format", "parquet")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_the_annotate_tabs_export_writes_what_the_cli_writes(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    export = _annotate_tools_handler(root, "annotate_export")
    for fmt in ("seed", "videofolder", "conversation"):
        dest = tmp_path / f"tab_{fmt}" / ("out.jsonl" if fmt == "conversation" else "out")
        assert export(str(dest), fmt) == f"wrote {dest}"
        twin = tmp_path / f"cli_{fmt}" / dest.name
        assert run_cli("export-dataset", "--dataset", root, "--output", twin, "--format", fmt).returncode == 0
        written = sorted(p.relative_to(dest.parent) for p in dest.parent.rglob("*"))
        assert written == sorted(p.relative_to(twin.parent) for p in twin.parent.rglob("*"))
        for path in written:
            if path.suffix in (".jsonl", ".json"):
                assert (dest.parent / path).read_text() == (twin.parent / path).read_text(), path


def test_cli_prelabel_and_the_tabs_prelabel_write_the_same_drafts(tmp_path, tiny_path):
    cli_root, tab_root = make_dataset(tmp_path / "a", n=5, rows=2), make_dataset(tmp_path / "b", n=5, rows=2)
    out = run_cli("prelabel", "--dataset", cli_root, "--model", "tiny:default", "--limit", "2", timeout=300)
    assert out.returncode == 0, out.stderr
    flagged = sum(bool(d["errors"]) for d in AnnotationStore(cli_root).drafts().values())
    assert out.stdout.strip() == (f"2 drafts written to {cli_root / 'drafts.jsonl'} "
                                  f"({flagged} flagged as not schema-valid, 0 unreadable)")
    message = _annotate_tools_handler(tab_root, "prelabel")("tiny:default", 2, False)
    assert message == f"2 drafts written, {flagged} flagged as not schema-valid"

    def drafts(root):
        return {rel: (d["model"], d["text"], d["errors"], sorted(d["confidence"]))
                for rel, d in AnnotationStore(root).drafts().items()}

    assert set(drafts(cli_root)) == {"videos/clip_0002.mp4", "videos/clip_0003.mp4"}
    assert drafts(cli_root) == drafts(tab_root)


def test_prelabel_refuses_a_dataset_without_schema_and_loads_nothing_when_there_is_no_work(tmp_path):
    import gradio as gr

    bare = make_dataset(tmp_path / "bare", n=2, rows=1)
    (bare / "schema.json").unlink()
    line = f"error: {bare}: no schema.json; drafts are checked against it"
    out = run_cli("prelabel", "--dataset", bare, "--model", "tiny:default")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [line]
    said = _annotate_tools_handler(bare, "prelabel")("tiny:default", 0, False)  # under the button, not a toast
    assert said == f"✖ pre-label failed: {bare}: no schema.json; drafts are checked against it"

    done = make_dataset(tmp_path / "done", n=2)  # every clip labelled
    again = run_cli("prelabel", "--dataset", done, "--model", "no/such-model")  # never loaded: no error
    assert again.returncode == 0 and again.stdout.strip() == "nothing to pre-label: every clip has a label or a draft"
    from core.workspace import Workspace
    from tabs import annotate_tools

    ws = Workspace(dataset_dir=done, runs_dir=tmp_path / "runs")
    with gr.Blocks() as demo:
        annotate_tools.build(ws, ws.store, [], [], lambda: None)
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "prelabel")
    assert handler("no/such-model", 0, True) == "Nothing to pre-label." and ws.models.loaded() == []


def _line(rel, draft, score="answer_confidence"):
    # tiny:default is a base model: nothing calibrated its scores, and the line says so; the review
    # queue shows (and sorts by) the answer's score, Label next the least sure field it picked by
    return f"{draft[score]:.3f}  {rel}  " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(draft["confidence"].items(), key=lambda kv: kv[1])[:3]) + (
        "  [raw, not calibrated]")


def test_prelabel_review_names_the_least_sure_clips_and_review_lists_every_draft_in_that_order(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=7, rows=1)
    out = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", "--limit", "4", "--sample", "1",
                  "--review", "2", timeout=300)
    assert out.returncode == 0, out.stderr
    drafts = AnnotationStore(root).drafts()
    assert len(drafts) == 4 and all(d["confidence"] for d in drafts.values())
    order = sorted(drafts, key=lambda rel: drafts[rel]["min_confidence"])
    lines = out.stdout.strip().splitlines()
    assert lines[-3].startswith("label these next, the least sure clip of each of K groups")
    # the least sure clip leads its group, so it is picked first; the other pick is another draft
    assert lines[-2] == _line(order[0], drafts[order[0]], "min_confidence")
    assert lines[-1] in [_line(rel, drafts[rel], "min_confidence") for rel in order[1:]]
    plain = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", "--limit", "4", "--sample", "1",
                    "--redo-drafts", "--review", "2", "--pick", "uncertainty", timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().splitlines()[-2:] == [_line(rel, drafts[rel], "min_confidence") for rel in order[:2]]
    again = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", "--limit", "4", "--sample", "1",
                    "--redo-drafts", timeout=300)
    assert again.returncode == 0 and set(AnnotationStore(root).drafts()) == set(drafts)  # the seed names the pool
    listed = run_cli("review", "--dataset", root, "--json")
    assert listed.returncode == 0, listed.stderr
    queue = json.loads(listed.stdout)
    drafts = AnnotationStore(root).drafts()
    assert [q["video"] for q in queue] == sorted(drafts, key=lambda rel: drafts[rel]["answer_confidence"])
    assert [q["score"] for q in queue] == sorted(d["answer_confidence"] for d in drafts.values())
    first = run_cli("review", "--dataset", root, "--limit", "1")
    assert first.stdout.strip() == _line(queue[0]["video"], drafts[queue[0]["video"]])
    empty = run_cli("review", "--dataset", make_dataset(tmp_path / "e", n=2))
    assert empty.returncode == 0 and empty.stdout.startswith("no drafts to review")


def test_prelabel_counts_and_lists_clips_already_known_unreadable(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=2, rows=0)
    for i in range(6):
        (root / "videos" / f"bad{i}.mp4").write_bytes(b"junk" * i)
    assert run_cli("validate", "--dataset", root).returncode == 1  # probes them: the index knows they are unreadable
    # bytes, not text: text mode would turn a progress line's "\r" into a newline
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "prelabel", "--dataset", str(root), "--model",
                          "tiny:default", "--batch-size", "1"], capture_output=True, timeout=300, cwd=REPO)
    stdout, stderr = out.stdout.decode(), out.stderr.decode()
    assert out.returncode == 0, stderr
    assert stdout.strip().endswith("6 unreadable)")
    skipped = [line for line in stderr.splitlines() if line.startswith("skipped: ")]
    assert sorted(line.split("/videos/")[1].split(":")[0] for line in skipped) == [f"bad{i}.mp4" for i in range(6)]
    # progress, not a terminal here: whole lines, not "1/2\r2/2" run together in a log
    assert "\r" not in stderr
    assert [line for line in stderr.splitlines() if not line.startswith("skipped")] == ["1/2", "2/2"]
    again = run_cli("prelabel", "--dataset", root, "--model", "tiny:default", timeout=300)
    assert again.stdout.strip() == "nothing to pre-label: every readable clip has a label or a draft (6 unreadable, " \
                                   "listed above)"


@pytest.mark.parametrize("command", ["review", "prelabel"])
def test_review_of_a_missing_folder_says_it_does_not_exist(tmp_path, command):
    out = run_cli(command, "--dataset", tmp_path / "nowhere", *(["--model", "tiny:default"] if command == "prelabel"
                                                              else []))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"error: {tmp_path / 'nowhere'}: the dataset folder does not exist; give the "
                                  "folder that holds metadata.jsonl and videos/")  # not "no drafts"/"no schema.json"
    assert "no drafts" not in out.stdout and not (tmp_path / "nowhere").exists()
