"""Annotate and Schema tabs: form generation, handlers on a real store, and the app through gradio_client."""

from __future__ import annotations

import json

import pytest

from core.data.store import DRAFT, LABELLED, AnnotationStore
from core.schema import form
from core.schema.base import is_valid
from core.schema.presets import PRESETS
from tests.support import LABEL, SAMPLES, make_dataset

NESTED = {
    "type": "object",
    "required": ["kind", "count"],
    "properties": {
        "kind": {"enum": ["a", "b", "c", "d", "e"]},
        "tags": {"type": "array", "items": {"enum": ["x", "y"]}},
        "ok": {"type": "boolean"},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
        "note": {"type": "string"},
        "plate": {"type": "string", "maxLength": 12},
        "vehicle": {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]},
                                                      "speed": {"type": "number"}}},
        "points": {"type": "array", "items": {"type": "object"}},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    },
}


def test_form_fields_map_types_to_widgets():
    f = {x.name: x for x in form.form_fields(NESTED)}
    assert f["kind"].widget == form.DROPDOWN and f["kind"].required and f["kind"].label == "kind *"
    assert f["tags"].widget == form.CHECKBOXES and f["tags"].choices == ("x", "y")
    assert f["ok"].widget == form.CHECKBOX
    assert (f["count"].widget, f["count"].minimum, f["count"].maximum, f["count"].integer) == (form.NUMBER, 0, 9, True)
    assert f["note"].widget == form.TEXTAREA and f["plate"].widget == form.TEXT
    assert f["vehicle.colour"].widget == form.RADIO and f["vehicle.speed"].widget == form.NUMBER
    assert f["points"].widget == form.JSON and f["either"].widget == form.JSON
    warnings = form.schema_warnings(NESTED)
    assert any(w.startswith("either: anyOf") for w in warnings) and any(w.startswith("points:") for w in warnings)


def test_values_round_trip_and_empty_optional_fields_dropped():
    fields = form.form_fields(NESTED)
    label = {"kind": "b", "tags": ["y", "x"], "ok": True, "count": 3, "note": "hi",
             "vehicle": {"colour": "red", "speed": 1.5}, "points": [{"a": 1}], "either": 2}
    back, problems = form.values_to_label(fields, form.label_to_values(fields, label))
    assert problems == []
    assert back == {**label, "tags": ["x", "y"]}  # enum lists come back in schema order
    empty, _ = form.values_to_label(fields, form.label_to_values(fields, {}))
    assert empty == {"ok": False, "tags": []}
    values = form.label_to_values(fields, label)
    values[[f.name for f in fields].index("points")] = "[{"
    _, problems = form.values_to_label(fields, values)
    assert problems and problems[0].startswith("points: not valid JSON")


@pytest.mark.parametrize("schema", [*PRESETS.values(), NESTED], ids=[*PRESETS, "nested"])
def test_example_object_is_valid(schema):
    assert is_valid(schema, form.example_object(schema))


def test_schema_tab_check_text_reports_syntax_position_and_broken_labels(tmp_path):
    from tabs.schema import check_text

    store = AnnotationStore(make_dataset(tmp_path / "d", n=6))
    bad = check_text('{"type": "object",\n  "properties": {,}}', store)
    assert not bad["ok"] and "line 2, column 18" in bad["status"]
    meta = check_text('{"type": "object", "properties": {"a": {"type": "nope"}}}', store)
    assert not meta["ok"] and "properties/a/type" in meta["status"]
    narrower = json.loads((tmp_path / "d" / "schema.json").read_text())
    narrower["properties"]["visibility"]["enum"] = ["bad"]
    r = check_text(json.dumps(narrower), store)
    rows = [json.loads(x) for x in (tmp_path / "d" / "metadata.jsonl").read_text().splitlines()]
    good_vis = [x["video"] for x in rows if x["visibility"] == "good"]
    assert r["ok"] and sorted(r["broken"]["file"]) == sorted(good_vis)
    assert set(r["broken"]["field"]) == {"visibility"}
    assert "describe" in r["prompt"].lower() or "json" in r["prompt"].lower()
    assert is_valid(narrower, r["example"])


def test_annotate_handlers_save_next_and_status(tmp_path):
    from core.video.sampling import SamplingSpec
    from tabs.annotate import gallery_items, next_clip, open_clip, save

    root = make_dataset(tmp_path / "d", n=4, rows=1)
    (root / "videos" / "zz_broken.mp4").write_bytes(b"junk")
    store = AnnotationStore(root)
    store.save_draft("videos/clip_0002.mp4", json.dumps(LABEL), model="tiny")
    items, rels, summary, _ = gallery_items(store)
    assert len(items) == 5 and "unreadable 1" in summary and "draft 1" in summary
    assert [r for r in rels if "broken" in r] == ["videos/zz_broken.mp4"]
    only_drafts = gallery_items(store, "draft")[1]
    assert only_drafts == ["videos/clip_0002.mp4"]
    assert gallery_items(store, "all", "clip_0003")[1] == ["videos/clip_0003.mp4"]
    view = open_clip(store, "videos/clip_0002.mp4", SamplingSpec(num_frames=4, width=32, height=32))
    assert len(view["frames"]) == 4 and view["current"]["start"] == LABEL and "Draft by" in view["title"]
    broken = open_clip(store, "videos/zz_broken.mp4", SamplingSpec())
    assert broken["video"] is None and broken["frames"] == [] and "unreadable" in broken["title"]
    msg, nxt = save(store, view["current"], LABEL, "train", rels)
    assert msg == "saved videos/clip_0002.mp4" and nxt == "videos/clip_0003.mp4"
    assert store.clip("videos/clip_0002.mp4").status == LABELLED
    assert store.clip("videos/clip_0002.mp4").split == "train"
    assert next_clip(store, rels, "videos/clip_0003.mp4") == "videos/clip_0001.mp4"  # wraps to the next to do


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    root = make_dataset(tmp_path_factory.mktemp("ds") / "d", n=6, rows=3)
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path_factory.mktemp("runs"))
    demo = build_app(ws)
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), root
    finally:
        demo.close()


def test_client_saves_label_through_api_and_conflicts_are_reported(app_client):
    client, root = app_client
    clip = client.predict("videos/clip_0004.mp4", api_name="/open_clip")
    assert clip["status"] == "unlabelled" and clip["revision"] == "new"
    out = client.predict("videos/clip_0004.mp4", json.dumps(LABEL), clip["revision"], "val", api_name="/save_label")
    assert out["message"] == "saved videos/clip_0004.mp4"
    row = next(json.loads(x) for x in (root / "metadata.jsonl").read_text().splitlines() if "clip_0004" in x)
    assert row["split"] == "val" and row["event_type"] == LABEL["event_type"]
    with pytest.raises(Exception, match="reload"):  # the stale revision from before the save
        client.predict("videos/clip_0004.mp4", json.dumps(LABEL), clip["revision"], "", api_name="/save_label")
    with pytest.raises(Exception, match="breaks the schema"):
        client.predict("videos/clip_0005.mp4", json.dumps({**LABEL, "event_type": "x"}), "new", "",
                       api_name="/save_label")
    assert AnnotationStore(root).clip("videos/clip_0005.mp4").status not in (LABELLED, DRAFT)


def test_client_saves_schema_and_it_is_versioned(app_client):
    client, root = app_client
    schema = json.loads((root / "schema.json").read_text())
    schema["properties"]["caption"]["description"] = "Edited in the Schema tab."
    client.predict(json.dumps(schema), api_name="/save_schema")
    assert json.loads((root / "schema.json").read_text())["properties"]["caption"]["description"] == \
        "Edited in the Schema tab."
    assert len(list((root / ".schema_history").glob("*.json"))) == 2


def test_gallery_pages_follow_the_open_clip():
    from tabs.annotate import PAGE_SIZE, clip_at, gallery_items

    store = AnnotationStore(SAMPLES)  # 300 clips, read only
    items, rels, summary, page = gallery_items(store)
    assert (len(items), len(rels), page) == (PAGE_SIZE, 300, 0) and "page 1 of 3" in summary
    last = gallery_items(store, page=7)  # past the end: the last page
    assert last[3] == 2 and len(last[0]) == 300 - 2 * PAGE_SIZE and "clips 241-300 of 300" in last[2]
    focus = rels[250]
    items, _, summary, page = gallery_items(store, page=0, focus=focus)
    assert page == 2 and items[250 - 2 * PAGE_SIZE][1].endswith(focus.split("/")[-1])
    assert clip_at(rels, page, 250 - 2 * PAGE_SIZE) == focus and clip_at(rels, 2, 999) is None
    one = gallery_items(store, "all", "clip_0003.mp4")
    assert one[1] == ["videos/clip_0003.mp4"] and "page" not in one[2]


def test_a_refused_save_says_why_inline_and_stays_on_the_clip(tmp_path):
    from tabs.annotate import save_inline

    root = make_dataset(tmp_path / "d", n=3, rows=0)
    store = AnnotationStore(root)
    rels = [c.rel for c in store.clips()]
    current = {"rel": rels[0], "revision": store.clip_revision(rels[0])}
    msg, picked, moved = save_inline(store, current, {**LABEL, "event_type": "meteor"}, "(none)", rels)
    assert msg.startswith("✖ not saved:") and "event_type" in msg and "breaks the schema" in msg
    assert moved is False and store.clip(rels[0]).status not in (LABELLED, DRAFT)
    msg, _, moved = save_inline(store, current, None, "(none)", rels, problems=["count: not a whole number"])
    assert msg == "✖ not saved: count: not a whole number" and moved is False
    msg, picked, moved = save_inline(store, current, LABEL, "(none)", rels)
    assert (msg, picked, moved) == (f"saved {rels[0]}", rels[1], True)


def test_the_gallery_highlight_follows_the_open_clip():
    from tabs.annotate import PAGE_SIZE, focus_index, gallery_items

    store = AnnotationStore(SAMPLES)  # 300 clips, read only
    _, rels, _, page = gallery_items(store, focus=rels_at(store, 130))
    assert page == 1 and focus_index(rels, page, rels[130]) == 130 - PAGE_SIZE
    assert focus_index(rels, 0, rels[130]) is None  # not on the page shown: nothing highlighted
    assert focus_index(rels, 0, "videos/not_there.mp4") is None and focus_index(rels, 0, None) is None


def rels_at(store, i):
    return [c.rel for c in store.clips()][i]


def test_save_schema_with_a_syntax_error_says_so_once_and_keeps_the_table(app_client):
    client, root = app_client
    before = (root / "schema.json").read_text()
    status, _table = client.predict('{"type": "object",\n  "properties": {', api_name="/save_schema")
    assert status.startswith("✖ not saved:") and "line 2" in status
    assert (root / "schema.json").read_text() == before


def test_prelabel_then_review_opens_the_least_sure_draft_with_its_weak_fields_marked(tmp_path, tiny_path):
    import gradio as gr

    from core.data.listing import REVIEW
    from core.schema.calibration import RAW_UNSURE_BELOW
    from core.video.sampling import SamplingSpec
    from core.workspace import Workspace
    from tabs import annotate

    root = make_dataset(tmp_path / "d", n=5, rows=1)
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    with gr.Blocks() as demo:
        annotate.build(ws, gr.State(ws.store.schema()))
    handler = next(f.fn for f in demo.fns.values() if f.api_name == "prelabel_review")
    text, status, first, moved = handler("tiny:default", 0, False, True, False)
    drafts = AnnotationStore(root).drafts()
    order = sorted(drafts, key=lambda rel: drafts[rel]["answer_confidence"])  # the queue's rank
    assert len(order) == 4 and (status, first, moved) == (REVIEW, order[0], True)
    picked = sorted(drafts, key=lambda rel: drafts[rel]["min_confidence"])  # Label next's "least sure" (9c)
    assert "Label next" in text and [text.index(f"`{rel}`") for rel in picked] == sorted(
        text.index(f"`{rel}`") for rel in picked)  # listed least sure first
    items, rels, summary, _ = annotate.gallery_items(ws.store, REVIEW)
    assert rels == order and "review queue: 4 drafts" in summary
    assert [c for _, c in items] == [f"✎ {drafts[r]['answer_confidence']:.2f} {r.split('/')[-1]}" for r in order]
    view = annotate.open_clip(ws.store, first, SamplingSpec(num_frames=2, width=32, height=32))
    conf = drafts[first]["confidence"]
    least = drafts[first]["min_confidence"]  # the least sure choice field: the caption leaves it
    assert least == min(v for k, v in conf.items() if k != "caption")
    assert view["current"]["confidence"] == conf and f"Lowest field confidence: {least:.2f}" in view["title"]
    assert f"Answer confidence: {drafts[first]['answer_confidence']:.2f} (the review queue's order" in view["title"]
    assert "(raw, not calibrated)" in view["title"]  # tiny:default is a base: nothing measured its scores
    fields = form.form_fields(ws.store.schema())
    updates = annotate.field_updates(fields, form.label_to_values(fields, view["current"]["start"]), conf)
    for f, update in zip(fields, updates):
        unsure = conf[f.name] < RAW_UNSURE_BELOW
        assert ("vvw-unsure" in update["elem_classes"]) == unsure
        assert update["label"] == (f"{f.label} · ⚠ model unsure ({conf[f.name]:.2f})" if unsure
                                   else f"{f.label} · model {conf[f.name]:.2f}")
    assert any("vvw-unsure" in u["elem_classes"] for u in updates)  # an untrained model is unsure somewhere
    # Save & next in the queue accepts the draft and moves to the next least sure
    msg, nxt = annotate.save(ws.store, view["current"], view["current"]["start"], "(none)", rels)
    assert msg == f"saved {first}" and nxt == order[1]
    assert annotate.gallery_items(ws.store, REVIEW)[1] == order[1:]
