"""Annotate tab: a refused label is worded by field and marks its fields; the empty review queue says
how to fill it; searches count their matches; the gallery goes to a typed page number."""

from __future__ import annotations

import json
import shutil

import pytest

from core.data.listing import REVIEW
from core.data.store import LABELLED, AnnotationStore
from core.schema import form
from tests.app.test_annotate_tab import NESTED
from tests.support import LABEL, SAMPLES, make_dataset


def test_form_problems_name_the_field_in_words():
    schema = json.loads((SAMPLES / "schema.json").read_text())
    fields = form.form_fields(schema)
    label = {k: v for k, v in LABEL.items() if k != "caption"}
    problems = form.label_problems(fields, schema, {**label, "event_type": "x", "rule_violations": ["speeding", "y"],
                                                    "extra": 1})
    assert problems == [
        ("caption", "caption is required"),
        (None, "not in the schema: extra"),
        ("event_type", 'event_type: "x" is not one of collision, near_miss, no_incident'),
        ("rule_violations", 'rule_violations: "y" is not one of speeding, failure_to_yield, ignoring_traffic_signs'),
    ]
    assert form.label_problems(fields, schema, LABEL) == []


def test_nested_form_problems_point_at_the_nested_field():
    fields = form.form_fields(NESTED)
    problems = form.label_problems(fields, NESTED, {"kind": "a", "count": "3", "vehicle": {"colour": "green"}})
    assert problems == [("count", 'count: "3" should be a whole number'),
                        ("vehicle.colour", 'vehicle.colour: "green" is not one of red, blue')]
    required = {"type": "object", "properties": {"v": {"type": "object", "required": ["w"],
                                                      "properties": {"w": {"type": "string"}}}}}
    assert form.label_problems(form.form_fields(required), required, {"v": {}}) == [("v.w", "v.w is required")]


def test_a_refused_form_save_words_and_marks_the_fields(tmp_path):
    from tabs.annotate import field_marks, raw_label, save_form

    store = AnnotationStore(make_dataset(tmp_path / "d", n=3, rows=0))
    schema = store.schema()
    fields = form.form_fields(schema)
    rels = [c.rel for c in store.clips()]
    current = {"rel": rels[0], "revision": store.clip_revision(rels[0])}
    values = form.label_to_values(fields, {**LABEL, "caption": "", "event_type": "meteor"})
    msg, _, moved, invalid = save_form(store, fields, schema, current, values, "(none)", rels)
    assert msg == '✖ not saved: caption is required; event_type: "meteor" is not one of collision, near_miss, no_incident'
    assert moved is False and invalid == {"caption", "event_type"}
    assert store.clip(rels[0]).status != LABELLED
    marks = {f.name: u["elem_classes"] for f, u in zip(fields, field_marks(fields, None, invalid))}
    assert {n for n, classes in marks.items() if "vvw-invalid" in classes} == {"caption", "event_type"}
    # the raw JSON editor words it the same way
    assert raw_label(json.dumps({**LABEL, "caption": None}), schema)[1] == ["caption: null should be text"]
    assert raw_label("{}", schema)[1][0] == "caption is required"
    msg, picked, moved, invalid = save_form(store, fields, schema, current, form.label_to_values(fields, LABEL),
                                            "(none)", rels)
    assert (msg, picked, moved, invalid) == (f"saved {rels[0]}", rels[1], True, set())


def test_the_empty_review_queue_says_how_to_fill_it(tmp_path):
    from tabs.annotate import gallery_items

    store = AnnotationStore(make_dataset(tmp_path / "d", n=3, rows=1))
    items, rels, summary, _ = gallery_items(store, REVIEW)
    assert items == [] and rels == []
    assert "no drafts yet" in summary and "AI pre-label" in summary and "cli.py prelabel" in summary


def test_every_search_counts_its_matches():
    from tabs.annotate import gallery_items

    store = AnnotationStore(SAMPLES)  # 300 clips, read only
    assert "1 match for “clip_0003.mp4”" in gallery_items(store, "all", "clip_0003.mp4")[2]
    many = gallery_items(store, "all", "clip_01")[2]  # clip_0100 … clip_0199: two pages
    assert "100 matches for “clip_01”" in many and "page 1 of 1" not in many
    assert "matches" not in gallery_items(store)[2]  # no search, no count beyond the clips line


@pytest.fixture
def annotate_blocks(tmp_path):
    import gradio as gr

    from core.workspace import Workspace
    from tabs import annotate

    root = tmp_path / "d"
    shutil.copytree(SAMPLES, root, ignore=shutil.ignore_patterns("generate.py", "README.md"))
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    with gr.Blocks() as demo:
        annotate.build(ws, gr.State(ws.store.schema()))
    return demo


def test_go_to_page_shows_that_page_with_the_open_clip_highlighted(annotate_blocks):
    from tabs.annotate import PAGE_SIZE

    go = next(f.fn for f in annotate_blocks.fns.values() if f.api_name == "go_to_page")
    gallery, rels, summary, page = go("all", "", 3, {"rel": "videos/clip_0250.mp4"})
    assert page == 2 and "page 3 of 3: clips 241-300" in summary and len(gallery.value) == 300 - 2 * PAGE_SIZE
    assert gallery.selected_index == 250 - 2 * PAGE_SIZE
    gallery, _, summary, page = go("all", "", 99, {})  # past the end: the last page, nothing highlighted
    assert page == 2 and gallery.selected_index is None
    gallery, _, _, page = go("all", "", 1, {"rel": "videos/clip_0250.mp4"})
    assert page == 0 and gallery.selected_index is None  # the open clip is not on page 1
