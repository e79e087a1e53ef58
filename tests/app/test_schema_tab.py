"""Schema tab through gradio_client: an edit lists the stored labels it counts as broken at once (not
only after Save), and Revert puts the saved schema.json back in the editor."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import make_dataset


@pytest.fixture(scope="module")
def schema_client(tmp_path_factory):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    root = make_dataset(tmp_path_factory.mktemp("ds") / "d", n=6)
    demo = build_app(Workspace(dataset_dir=root, runs_dir=tmp_path_factory.mktemp("runs")))
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), root
    finally:
        demo.close()


def test_an_edit_lists_the_labels_it_counts(schema_client):
    client, root = schema_client
    narrower = json.loads((root / "schema.json").read_text())
    narrower["properties"]["visibility"]["enum"] = ["bad"]
    status, _prompt, _example, table = client.predict(json.dumps(narrower), api_name="/check_schema")
    rows = [json.loads(x) for x in (root / "metadata.jsonl").read_text().splitlines()]
    good = sorted(r["video"] for r in rows if r["visibility"] == "good")
    counted = int(re.search(r"(\d+) problems in \d+ stored labels", status).group(1))
    assert counted == len(good) > 0 and "listed below" in status
    files = [row[table["headers"].index("file")] for row in table["data"]]
    assert sorted(files) == good  # listed as they are counted, before any Save
    assert json.loads((root / "schema.json").read_text())["properties"]["visibility"]["enum"] == ["good", "bad"]
    # an edit that rejects nothing empties the list again
    status, *_, table = client.predict((root / "schema.json").read_text(), api_name="/check_schema")
    assert "0 problems" in status and "listed below" not in status and not table["data"]


def test_revert_puts_the_saved_schema_back(schema_client):
    client, root = schema_client
    saved = json.loads((root / "schema.json").read_text())
    text = client.predict(api_name="/revert_schema")
    assert json.loads(text) == saved
    edited = {**saved, "title": "edited, then saved"}
    client.predict(json.dumps(edited), api_name="/save_schema")
    assert json.loads(client.predict(api_name="/revert_schema")) == edited


def test_a_new_dataset_says_the_preset_in_the_editor_is_not_saved(tmp_path):
    """An empty dataset folder: the editor holds the preset, and the status says it is not saved yet
    (it used to say "✔ valid" while Annotate asked for a schema)."""
    from core.data.store import AnnotationStore
    from tabs.schema import check_text, current_text

    store = AnnotationStore(tmp_path)
    shown = check_text(current_text(store), store)
    assert shown["ok"] and shown["status"].startswith("**Not saved yet**: this dataset has no schema.json")
    make_dataset(tmp_path / "saved", n=1)
    saved = AnnotationStore(tmp_path / "saved")
    assert check_text(current_text(saved), saved)["status"].startswith("✔ valid JSON Schema")


def test_a_schema_that_rejects_many_labels_sends_a_bounded_table(tmp_path):
    """A narrowed enum can reject 100,000 labels: each edit sends at most MAX_LISTED rows, and the
    status line gives the total."""
    from types import SimpleNamespace

    from core.schema.presets import PRESETS
    from tabs.schema import MAX_LISTED, check_text

    (tmp_path / "schema.json").write_text("{}")
    many = [(f"videos/c{i}.mp4", "visibility", "'good' is not one of ['bad']") for i in range(MAX_LISTED + 100)]
    store = SimpleNamespace(check_labels=lambda schema: many, labelled_count=lambda: len(many),
                            schema_path=tmp_path / "schema.json")
    shown = check_text(json.dumps(PRESETS["dashcam"]), store)
    assert len(shown["broken"]) == MAX_LISTED
    assert f"{len(many)} problems in {len(many)} stored labels" in shown["status"]
    assert f"the first {MAX_LISTED} listed below" in shown["status"]


def test_infer_without_metadata_says_why_in_the_status_line(tmp_path):
    import gradio as gr

    from core.workspace import Workspace
    from tabs import schema

    ws = Workspace(dataset_dir=tmp_path, runs_dir=tmp_path / "runs")
    with gr.Blocks() as demo:
        schema.build(ws, gr.State(None))
    on_infer = next(f.fn for f in demo.fns.values() if f.api_name == "infer_schema")
    editor, status = on_infer()
    assert status == f"✖ infer failed: {tmp_path / 'metadata.jsonl'} does not exist yet"
