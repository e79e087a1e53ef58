import json
import os
import shutil
from pathlib import Path

import pytest

from core.data.dataset import load_dataset
from core.data.exports import export_conversations, export_seed
from core.data.imports.layouts import detect_layout, import_dataset
from core.data.schema_infer import infer_schema, infer_schema_from_file
from core.errors import DatasetError
from core.schema.base import check_schema, is_valid, load_schema
from tests.support import (
    SAMPLES,
    clip,
    label_of,
    make_conversations,
    make_qevd,
    make_seed,
    make_videofolder,
    name,
    sample_rows,
    write_jsonl,
)

ROWS = sample_rows(10)  # train, val and test rows among them


def imported(dest: Path) -> dict[str, tuple]:
    """(split, label) per clip file name, after checking every row's video exists in `dest`."""
    dataset = load_dataset(dest)
    assert dataset.problems == []
    for sample in dataset.samples:
        assert sample.video.is_file() and sample.video.is_relative_to(dest.resolve())
    return {sample.video.name: (sample.split, sample.label) for sample in dataset.samples}


def labels(dest: Path) -> dict[str, dict]:
    return {clip_name: label for clip_name, (_, label) in imported(dest).items()}


# ---------------------------------------------------------------- detection


def test_detect_layout_names_each_layout(tmp_path):
    make_seed(tmp_path / "seed", ROWS[:2])
    make_videofolder(tmp_path / "vf", ROWS[:2])
    make_videofolder(tmp_path / "vf_split", ROWS[:2], per_split=True)
    make_conversations(tmp_path / "conv" / "train.json", ROWS[:2])
    make_conversations(tmp_path / "msgs" / "data.jsonl", ROWS[:2], style="messages")
    make_qevd(tmp_path / "qevd", ROWS[:2])
    found = {p.name: detect_layout(p) for p in sorted(tmp_path.iterdir())}
    assert found == {"seed": "seed", "vf": "videofolder", "vf_split": "videofolder", "conv": "conversation",
                     "msgs": "conversation", "qevd": "qevd"}
    assert detect_layout(tmp_path / "conv" / "train.json") == "conversation"
    assert detect_layout(tmp_path / "seed" / "metadata.jsonl") == "seed"


def test_detect_layout_refuses_unknown_and_ambiguous_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="unknown layout"):
        detect_layout(tmp_path)
    make_conversations(tmp_path / "a.jsonl", ROWS[:1])
    make_conversations(tmp_path / "b.jsonl", ROWS[:1])
    with pytest.raises(DatasetError, match="several conversation files"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match="no such"):
        import_dataset(tmp_path / "missing", tmp_path / "out")


# ---------------------------------------------------------------- each layout


def test_import_seed_keeps_rows_splits_labels_and_schema(tmp_path):
    make_seed(tmp_path / "src", ROWS)
    report = import_dataset(tmp_path / "src", tmp_path / "out")
    assert (report.rows, report.problems, report.layout) == (10, [], "seed")
    assert imported(tmp_path / "out") == {name(r): (r["split"], label_of(r)) for r in ROWS}
    assert (tmp_path / "out" / "videos" / "clip_0000.mp4").is_file()  # no videos/videos/ doubling
    assert load_schema(tmp_path / "out" / "schema.json") == load_schema(SAMPLES / "schema.json")


@pytest.mark.parametrize("per_split", [False, True])
def test_import_videofolder_takes_split_from_folders(tmp_path, per_split):
    expected = make_videofolder(tmp_path / "vf", ROWS, per_split=per_split)
    report = import_dataset(tmp_path / "vf", tmp_path / "out")
    assert (report.rows, report.problems, report.layout) == (10, [], "videofolder")
    assert imported(tmp_path / "out") == expected
    assert {r["split"] for r in ROWS} == {"train", "val", "test"}
    assert (tmp_path / "out" / "videos" / "validation" / name(ROWS[9])).is_file()  # sub-path kept


def test_import_llava_json_list_parses_json_answers(tmp_path):
    expected = make_conversations(tmp_path / "conv" / "train.json", ROWS)
    report = import_dataset(tmp_path / "conv", tmp_path / "out")
    assert (report.rows, report.problems) == (10, [])
    assert report.instruction == "Describe the clip as JSON."
    assert labels(tmp_path / "out") == expected
    first = json.loads((tmp_path / "out" / "metadata.jsonl").read_text().splitlines()[0])
    assert first["id"] == "clip_0000.mp4" and first["video"] == "videos/clips/clip_0000.mp4"


def test_import_messages_jsonl_with_fenced_json_answers(tmp_path):
    expected = make_conversations(tmp_path / "data.jsonl", ROWS, style="messages")
    report = import_dataset(tmp_path / "data.jsonl", tmp_path / "out")
    assert (report.rows, report.problems, report.instruction) == (10, [], "Describe the clip as JSON.")
    assert labels(tmp_path / "out") == expected


def test_conversation_prose_answers_missing_answers_and_extra_turns(tmp_path):
    make_conversations(tmp_path / "data.jsonl", ROWS[:4])
    turns = lambda *answers: [{"from": "human", "value": "<video>\nWhat happens?"}] + [  # noqa: E731
        {"from": "gpt", "value": a} for a in answers]
    write_jsonl(tmp_path / "data.jsonl", [
        {"video": "clips/clip_0000.mp4", "conversations": turns("A car brakes {suddenly}.")},
        {"video": "clips/clip_0001.mp4", "conversations": turns()},
        {"video": "clips/clip_0002.mp4", "conversations": turns('{"a": 1}', "second")},
        {"videos": ["clips/clip_0003.mp4", "clips/clip_0000.mp4"], "conversations": turns("x")},
    ])
    report = import_dataset(tmp_path / "data.jsonl", tmp_path / "out")
    assert report.rows == 2
    assert labels(tmp_path / "out") == {"clip_0000.mp4": {"answer": "A car brakes {suddenly}."},
                                        "clip_0002.mp4": {"a": 1}}
    assert [p.split(": ")[0] for p in report.problems] == ["data.jsonl:2", "data.jsonl:3", "data.jsonl:4"]
    assert "no answer turn" in report.problems[0] and "only the first" in report.problems[1]
    assert "2 videos" in report.problems[2]


def test_import_qevd_script_shape(tmp_path):
    expected = make_qevd(tmp_path / "dataset", ROWS[:6], extra_manifest=2)
    report = import_dataset(tmp_path / "dataset", tmp_path / "out")
    assert (report.rows, report.layout) == (4, "qevd")
    assert labels(tmp_path / "out") == expected
    assert len(report.problems) == 1 and "2 clip(s) have no ground truth" in report.problems[0]


def test_import_qevd_id_shape(tmp_path):
    src = tmp_path / "q"
    (src / "v").mkdir(parents=True)
    for row in ROWS[:3]:
        shutil.copy(clip(row), src / "v" / name(row))
    (src / "manifest.json").write_text(json.dumps({f"c{i}": f"v/{name(r)}" for i, r in enumerate(ROWS[:3])}))
    (src / "ground_truth.json").write_text(json.dumps({
        "c0": {"labels": ["good_form"], "split": "train"}, "c1": ["knees_in"], "c2": "fine", "c9": {"labels": []}}))
    report = import_dataset(src, tmp_path / "out")
    assert report.rows == 3
    assert report.problems == ["ground_truth.json:c9: not in manifest.json and no such video file; skipped"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert rows[0] == {"video": "videos/v/clip_0000.mp4", "split": "train", "id": "c0", "labels": ["good_form"]}
    assert rows[1]["labels"] == ["knees_in"] and rows[2]["label"] == "fine"


def test_qevd_refuses_non_json_manifest(tmp_path):
    make_qevd(tmp_path / "q", ROWS[:1])
    (tmp_path / "q" / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json: invalid JSON at line 1"):
        import_dataset(tmp_path / "q", tmp_path / "out")


# ---------------------------------------------------------------- round trips and exports


def test_round_trip_seed_conversation_seed_keeps_every_row(tmp_path):
    make_seed(tmp_path / "seed", ROWS)
    out = tmp_path / "elsewhere" / "conv.jsonl"
    exported = export_conversations(tmp_path / "seed", out, "Label the clip.")
    assert exported.rows == 10
    first = json.loads(out.read_text().splitlines()[0])
    assert first["conversations"][0]["value"] == "<video>\nLabel the clip."
    assert first["conversations"][1]["value"].startswith('{"caption":')  # canonical, compact
    report = import_dataset(out, tmp_path / "back", video_root=tmp_path / "seed")
    assert (report.rows, report.problems, report.instruction) == (10, [], "Label the clip.")
    assert imported(tmp_path / "back") == imported(tmp_path / "seed")


def test_round_trip_without_schema_keeps_text_answers_as_text(tmp_path):
    make_seed(tmp_path / "seed", ROWS[:3], schema=False)
    write_jsonl(tmp_path / "seed" / "metadata.jsonl", [
        {"video": ROWS[0]["video"], "answer": "A plain sentence."},
        {"video": ROWS[1]["video"], "answer": '{"looks": "like json"}'},
        {"video": ROWS[2]["video"], "score": 3}])
    export_conversations(tmp_path / "seed", tmp_path / "seed" / "conv.jsonl", "Say it.")
    answers = [json.loads(line)["conversations"][1]["value"] for line in (tmp_path / "seed" / "conv.jsonl").open()]
    assert answers == ["A plain sentence.", '{"answer":"{\\"looks\\": \\"like json\\"}"}', '{"score":3}']
    import_dataset(tmp_path / "seed" / "conv.jsonl", tmp_path / "back")
    assert labels(tmp_path / "back") == labels(tmp_path / "seed")


def test_export_seed_filters_rows(tmp_path):
    make_seed(tmp_path / "seed", ROWS)
    report = export_seed(tmp_path / "seed", tmp_path / "test_only", keep=lambda row: row.get("split") == "test")
    wanted = {name(r) for r in ROWS if r["split"] == "test"}
    assert report.rows == len(wanted) > 0
    assert set(labels(tmp_path / "test_only")) == wanted
    assert sorted(p.name for p in (tmp_path / "test_only" / "videos").iterdir()) == sorted(wanted)


# ---------------------------------------------------------------- problems are per row


def test_malformed_lines_are_reported_with_line_numbers_and_the_rest_imports(tmp_path):
    make_seed(tmp_path / "src", ROWS[:4])
    write_jsonl(tmp_path / "src" / "metadata.jsonl", ROWS[:4], raw_lines={2: '{"video": "videos/x.mp4",', 4: "[1, 2]"})
    report = import_dataset(tmp_path / "src", tmp_path / "out")
    assert report.rows == 4
    assert [p.split(" ")[0] for p in report.problems] == ["metadata.jsonl:2:", "metadata.jsonl:4:"]
    assert "malformed JSON" in report.problems[0] and "not a JSON object" in report.problems[1]
    assert labels(tmp_path / "out") == {name(r): label_of(r) for r in ROWS[:4]}


def test_escaping_missing_and_duplicate_videos_are_refused_per_row(tmp_path):
    src = tmp_path / "src"
    make_seed(src, ROWS[:2])
    secret = tmp_path / "secret.mp4"
    shutil.copy(clip(ROWS[2]), secret)
    (src / "videos" / "link.mp4").symlink_to(secret)
    bad = [{"video": "../secret.mp4"}, {"video": str(secret)}, {"video": "videos/link.mp4"},
           {"video": "videos/gone.mp4"}, {"video": ROWS[0]["video"], "caption": "again"}, {"caption": "no video"}]
    write_jsonl(src / "metadata.jsonl", ROWS[:2] + bad)
    report = import_dataset(src, tmp_path / "out")
    assert report.rows == 2
    reasons = dict(p.split(": ", 1) for p in report.problems)
    assert list(reasons) == [f"metadata.jsonl:{n}" for n in range(3, 9)]
    assert "escapes" in reasons["metadata.jsonl:3"] and "absolute" in reasons["metadata.jsonl:4"]
    assert "escapes" in reasons["metadata.jsonl:5"]  # the symlink leads out of the source folder
    assert "not found" in reasons["metadata.jsonl:6"] and "duplicate" in reasons["metadata.jsonl:7"]
    assert "no video path" in reasons["metadata.jsonl:8"]
    copied = [p.name for p in (tmp_path / "out").rglob("*.mp4")]
    assert sorted(copied) == ["clip_0000.mp4", "clip_0001.mp4"]


def test_unknown_split_is_reported_and_dropped(tmp_path):
    make_seed(tmp_path / "src", ROWS[:2])
    write_jsonl(tmp_path / "src" / "metadata.jsonl", [dict(ROWS[0], split="holdout"), dict(ROWS[1], split="Validation")])
    report = import_dataset(tmp_path / "src", tmp_path / "out")
    assert report.rows == 2 and len(report.problems) == 1 and "'holdout'" in report.problems[0]
    assert {v[0] for v in imported(tmp_path / "out").values()} == {None, "val"}


# ---------------------------------------------------------------- destination rules


def test_existing_metadata_needs_merge_and_merge_never_duplicates(tmp_path):
    make_seed(tmp_path / "a", ROWS[:3])
    make_seed(tmp_path / "b", ROWS[2:5])
    import_dataset(tmp_path / "a", tmp_path / "out")
    with pytest.raises(DatasetError, match="already exists"):
        import_dataset(tmp_path / "b", tmp_path / "out")
    report = import_dataset(tmp_path / "b", tmp_path / "out", merge=True)
    assert report.rows == 2 and len(report.problems) == 1 and "already in" in report.problems[0]
    assert sorted(labels(tmp_path / "out")) == sorted(name(r) for r in ROWS[:5])


def test_a_label_saved_in_the_app_during_a_merge_import_is_kept(tmp_path, monkeypatch):
    """The import copies videos, then re-reads and rewrites metadata.jsonl under the store's lock:
    a save landing while videos are copied (simulated in the first copy) is in the file after."""
    import core.data.imports.writing as writing
    from core.data.store import AnnotationStore

    make_seed(tmp_path / "a", ROWS[:3])
    make_seed(tmp_path / "b", ROWS[3:5])
    import_dataset(tmp_path / "a", tmp_path / "out")
    store = AnnotationStore(tmp_path / "out")
    first = store.clips(check_video=False)[0]
    edited = {**first.label, "caption": "saved while the import copied videos"}
    real_place, saves = writing.place_video, []

    def place_and_save(video, target):
        if not saves:
            saves.append(store.save_label(first.rel, edited, first.revision))
        real_place(video, target)

    monkeypatch.setattr(writing, "place_video", place_and_save)
    report = import_dataset(tmp_path / "b", tmp_path / "out", merge=True)
    assert saves and report.rows == 2
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()}
    assert len(rows) == 5 and rows[first.rel]["caption"] == "saved while the import copied videos"


def test_copy_videos_false_references_videos_in_place(tmp_path):
    make_conversations(tmp_path / "ds" / "conv.json", ROWS[:3])
    report = import_dataset(tmp_path / "ds" / "conv.json", tmp_path / "ds", copy_videos=False)
    assert report.rows == 3 and not (tmp_path / "ds" / "videos").exists()
    assert json.loads((tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()[0])["video"] == "clips/clip_0000.mp4"
    assert len(labels(tmp_path / "ds")) == 3
    outside = import_dataset(tmp_path / "ds" / "conv.json", tmp_path / "other", copy_videos=False)
    assert outside.rows == 0 and all("outside" in p for p in outside.problems) and len(outside.problems) == 3


def test_videos_are_copied_when_hard_links_fail(tmp_path, monkeypatch):
    make_seed(tmp_path / "src", ROWS[:1])

    def no_links(*_):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert import_dataset(tmp_path / "src", tmp_path / "out").rows == 1
    copied = tmp_path / "out" / ROWS[0]["video"]
    assert copied.read_bytes() == clip(ROWS[0]).read_bytes() and copied.stat().st_nlink == 1


# ---------------------------------------------------------------- schema inference


def test_inferred_schema_of_samples_matches_the_bundled_enums():
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").open()]
    schema = infer_schema_from_file(SAMPLES / "metadata.jsonl")
    check_schema(schema)
    assert all(is_valid(schema, label_of(r)) for r in rows)
    bundled = load_schema(SAMPLES / "schema.json")["properties"]
    props = schema["properties"]
    assert list(props) == list(bundled) and schema["required"] == list(bundled)
    assert "enum" not in props["caption"]
    for key, prop in bundled.items():
        enum = prop.get("enum") or prop.get("items", {}).get("enum")
        got = props[key].get("enum") or props[key].get("items", {}).get("enum")
        assert set(got or ()) == set(enum or ()), key
    assert props["rule_violations"]["uniqueItems"] is True


def test_infer_schema_types_nesting_nulls_and_required():
    rows = [
        {"video": "a.mp4", "split": "train", "ok": True, "n": 1, "x": 1, "meta": {"cam": "front", "fps": 30},
         "note": None, "tags": ["a"], "mixed": "s"},
        {"video": "b.mp4", "ok": False, "n": 2, "x": 2.5, "meta": {"cam": "front"}, "note": "hi", "tags": [],
         "mixed": 3},
        {"video": "c.mp4", "ok": True, "n": 3, "x": 0, "meta": {"cam": "front"}, "note": "x", "tags": ["a", "a"]},
    ]
    schema = infer_schema(rows)
    props = schema["properties"]
    assert list(props) == ["ok", "n", "x", "meta", "note", "tags", "mixed"]
    assert schema["required"] == ["ok", "n", "x", "meta", "note", "tags"]
    assert props["ok"] == {"type": "boolean"} and props["n"] == {"type": "integer"} and props["x"] == {"type": "number"}
    assert props["meta"]["properties"]["cam"] == {"type": "string", "enum": ["front"]}
    assert props["meta"]["required"] == ["cam"]
    assert props["note"] == {"type": ["string", "null"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string", "enum": ["a"]}}  # "a","a": not unique
    assert props["mixed"] == {"type": ["string", "integer"]}
    assert all(is_valid(schema, {k: v for k, v in r.items() if k not in ("video", "split")}) for r in rows)


def test_infer_schema_from_file_skips_malformed_lines(tmp_path):
    meta = tmp_path / "metadata.jsonl"
    write_jsonl(meta, [{"video": "a", "kind": "x"}, {"video": "b", "kind": "x"}], raw_lines={2: "{broken"})
    schema = infer_schema_from_file(meta)
    assert schema["properties"] == {"kind": {"type": "string", "enum": ["x"]}}
    with pytest.raises(DatasetError, match="cannot read"):
        infer_schema_from_file(tmp_path / "missing.jsonl")


def test_export_videofolder_round_trips_through_the_videofolder_importer(tmp_path):
    from core.data.exports import export_videofolder

    rows = sample_rows(6)
    make_seed(tmp_path / "seed", rows)
    report = export_videofolder(tmp_path / "seed", tmp_path / "hf")
    assert report.rows == 6 and not report.problems
    splits = {r["split"] for r in rows}
    assert {p.name for p in (tmp_path / "hf").iterdir() if p.is_dir()} == {
        {"train": "train", "val": "validation", "test": "test"}[s] for s in splits}
    back = import_dataset(tmp_path / "hf", tmp_path / "again")
    assert back.rows == 6 and back.layout == "videofolder"
    got = {Path(s.rel).name: (s.split, s.label) for s in load_dataset(tmp_path / "again").samples}
    assert got == {name(r): (r["split"], label_of(r)) for r in rows}
