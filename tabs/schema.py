"""Schema tab: edit the JSON Schema that drives the form, prompt, label checks, decoding and metrics.

Every keystroke re-validates (the status line sits above the editor) and lists the stored labels the
edited schema would reject, without touching them; Save stores the schema (the previous one is kept by
hash); Revert puts the saved schema.json back in the editor.
"""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from core.errors import WorkbenchError
from core.schema import form
from core.schema.base import parse_schema, schema_hash
from core.schema.presets import PRESETS
from core.schema.prompt import build_instruction
from tabs.feedback import failure_text
from tabs.shared import render
from tabs.widgets import render_fields

RECHECK_COLUMNS = ["file", "field", "reason"]
MAX_LISTED = 500  # rows of the rejected-labels table sent per edit (a narrowed enum can reject 100,000)


def check_text(text: str, store) -> dict:
    """Everything the tab shows for an edited schema text; never raises."""
    try:
        schema = parse_schema(text or "", source="schema")
    except WorkbenchError as exc:
        return {"ok": False, "status": f"✖ {exc}", "schema": None, "prompt": "", "example": None,
                "broken": pd.DataFrame(columns=RECHECK_COLUMNS)}
    warnings = form.schema_warnings(schema)
    broken = store.check_labels(schema) if store is not None else []
    status = f"✔ valid JSON Schema (draft 2020-12) · hash `{schema_hash(schema)}`"
    if warnings:
        status += "\n\n⚠ " + "\n\n⚠ ".join(warnings)
    n_rows = store.labelled_count() if store is not None else 0
    listed = "listed below" if len(broken) <= MAX_LISTED else f"the first {MAX_LISTED} listed below"
    status += (f"\n\n{len(broken)} problems in {n_rows} stored labels under this schema"
               + (f" ({listed}; nothing was changed)" if broken else ""))
    if store is not None and not store.schema_path.is_file():
        # a new dataset: the editor holds a starting point, and Annotate asks for a schema until it is saved
        status = ("**Not saved yet**: this dataset has no schema.json; the editor holds a starting point (the "
                  "dashcam preset unless you edited it). Press Save to use it.\n\n" + status)
    return {"ok": True, "status": status, "schema": schema, "prompt": build_instruction(schema),
            "example": form.example_object(schema),
            "broken": pd.DataFrame(broken[:MAX_LISTED], columns=RECHECK_COLUMNS)}


def current_text(store) -> str:
    try:
        schema = store.schema()
    except WorkbenchError:
        return store.schema_path.read_text(encoding="utf-8", errors="replace")
    return json.dumps(schema or PRESETS["dashcam"], indent=2, ensure_ascii=False)


def build(ws, saved: gr.State) -> None:
    """`saved` holds the saved schema; the Annotate tab redraws its form when it changes."""
    store = ws.store
    text0 = current_text(store)
    first = check_text(text0, store)
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                preset = gr.Dropdown(choices=list(PRESETS), value="dashcam", label="Preset", scale=2)
                load = gr.Button("Load preset", scale=1)
                infer = gr.Button("Infer from metadata.jsonl", scale=1, elem_id="schema-infer")
                revert = gr.Button("Revert to saved", scale=1, elem_id="schema-revert")
                save = gr.Button("Save schema", variant="primary", scale=1, elem_id="schema-save")
            # above the editor, not under its 60-odd lines: the error's line and column are read
            # while the cursor is near the top of a schema as often as near the bottom
            status = gr.Markdown(first["status"], elem_id="schema-status")
            editor = gr.Code(value=text0, language="json", label="JSON Schema (draft 2020-12)", lines=24,
                             elem_id="schema-editor")
        with gr.Column(scale=2):
            prompt = gr.Textbox(first["prompt"], label="Instruction the model will see", lines=8,
                                interactive=False, elem_id="schema-prompt")
            example = gr.JSON(first["example"], label="Example valid object")
            with gr.Accordion("Form preview", open=True):
                preview_state = gr.State(first["schema"])

                @render(inputs=preview_state)
                def preview(schema):
                    if not schema:
                        gr.Markdown("(fix the schema to see its form)")
                        return
                    fields = form.form_fields(schema)
                    render_fields(fields, form.label_to_values(fields, form.example_object(schema)))
    broken = gr.Dataframe(first["broken"], label="Stored labels this schema rejects", interactive=False,
                          elem_id="schema-broken")

    def on_edit(text):
        # the table follows the text being edited: the status line counts its rows ("listed below")
        r = check_text(text, store)
        return r["status"], r["prompt"], r["example"], r["schema"], r["broken"]

    def on_save(text):
        try:
            schema = store.save_schema(text)
        except WorkbenchError as exc:
            # one toast, the reason at the status line, and the rejected-labels table left as it was
            # (an exception would also mark every output with a red "Error" badge)
            gr.Warning(f"schema not saved: {exc}")
            return f"✖ not saved: {exc}", gr.skip(), gr.skip()
        r = check_text(text, store)
        versions = len(store.schema_versions())
        gr.Info(f"schema saved ({versions} versions kept in .schema_history/)")
        return r["status"], r["broken"], schema

    def on_infer():
        from core.data.schema_infer import infer_schema_from_file

        if not store.metadata_path.is_file():  # said in the status line, not a toast with an Error badge
            return gr.skip(), f"✖ infer failed: {store.metadata_path} does not exist yet"
        try:
            inferred = infer_schema_from_file(store.metadata_path)
        except Exception as exc:
            return gr.skip(), failure_text(exc, "infer")
        return json.dumps(inferred, indent=2, ensure_ascii=False), gr.skip()

    editor.change(on_edit, editor, [status, prompt, example, preview_state, broken], trigger_mode="always_last",
                  api_name="check_schema")
    # the editor's change event re-checks the reverted text
    revert.click(lambda: current_text(store), None, editor, api_name="revert_schema")
    load.click(lambda name: json.dumps(PRESETS[name], indent=2, ensure_ascii=False), preset, editor)
    infer.click(on_infer, None, [editor, status], api_name="infer_schema")
    save.click(on_save, editor, [status, broken, saved], api_name="save_schema")
