"""The Annotate tab's tool panels: AI pre-label, upload and add from a folder, splits, import and export.

Each handler is parse → core call → message; the gallery is refreshed afterwards. Pre-label, splits
and export call the functions `cli.py prelabel`, `cli.py split` and `cli.py export-dataset` call
(core.serve.prelabel.prelabel_dataset, core.data.splits.split_dataset, core.data.exports.export_dataset);
"Add from a folder on this machine" calls core.data.ingest.ingest, as `cli.py add-clips` does, limited
to the folders the app may read (core.data.ingest.allowed_roots_for).
"""

from __future__ import annotations

import gradio as gr

from core.data.exports import DATASET_FORMATS
from core.data.ingest import allowed_roots_for, default_workers, ingest
from core.schema.base import ENUM, fields
from tabs.feedback import failure_text

REVIEW_LIST = 10  # clips named to label next after "Pre-label, then review"


def build(ws, store, listing_inputs, listing_outputs, listing, opener=None, then_show=None, pickers=None) -> None:
    from tabs.pickers import Pickers

    pickers = pickers or Pickers(ws)  # the app passes its own, refreshed with every other picker
    c = {**_prelabel_panel(pickers), **_add_panel(), **_splits_panel(store), **_io_panel()}

    def refreshed(event):
        event.then(listing, listing_inputs, listing_outputs)

    _wire(ToolHandlers(ws, store), c, refreshed, listing_inputs, opener, then_show)


def _prelabel_panel(pickers) -> dict:
    c = {}
    with gr.Accordion("AI pre-label", open=False):
        gr.Markdown("Run a model over clips without a label; its answers become **drafts** you accept or "
                    "edit. Drafts that are not schema-valid are flagged, never saved as labels. Each draft keeps "
                    "the model's confidence per field. **Label next**: pick a run, tick *random pool*, and "
                    "*Pre-label, then review* drafts N random unlabelled clips (one batched generation each) "
                    "and opens the review queue on the clip the run is least sure about.")
        with gr.Row():
            c["model"] = pickers.model(label="Model", scale=3, elem_id="annotate-prelabel-model")
            c["limit"] = gr.Number(value=20, precision=0, label="At most N clips (0 = all)", scale=1,
                                   elem_id="annotate-prelabel-limit")
            c["redo"] = gr.Checkbox(label="Re-draft clips that have a draft", scale=1)
        with gr.Row():
            c["constrained"] = gr.Checkbox(True, label="Constrain decoding to the schema")
            c["pool"] = gr.Checkbox(label="Random pool: N clips drawn at random (seed 0), not the first N")
        with gr.Row():
            c["go"] = gr.Button("Pre-label", elem_id="annotate-prelabel")
            c["go_review"] = gr.Button("Pre-label, then review the least sure first", variant="primary",
                                       elem_id="annotate-prelabel-review")
        c["pre_msg"] = gr.Markdown(elem_id="annotate-prelabel-message")
    return c


def _add_panel() -> dict:
    c = {}
    with gr.Accordion("Add clips", open=False):
        c["chunk"] = gr.Number(value=0, label="Cut into pieces of N seconds (0 = keep whole)")
        c["files"] = gr.File(file_count="multiple", file_types=["video", ".zip"], label="Videos or a zip of videos")
        c["add"] = gr.Button("Add to dataset", elem_id="annotate-add")
        c["add_msg"] = gr.Markdown(elem_id="annotate-add-message")
        gr.Markdown("**Add from a folder on this machine** (footage on the server's disk or a mounted share, "
                    "what `cli.py add-clips` does): a folder, a file or a glob such as `/footage/*.mp4`, one a line, "
                    "under the folders this app may read (the dataset's parent folder and `VVW_ALLOWED_DIRS`). "
                    "Sub-folders keep their paths under videos/; a second run adds only files not added before.")
        with gr.Row():
            c["folder"] = gr.Textbox(label="Folder, file or glob on this machine", lines=1, max_lines=8, scale=4,
                                     elem_id="annotate-ingest-path")
            c["recursive"] = gr.Checkbox(label="Include sub-folders", scale=1, elem_id="annotate-ingest-recursive")
            c["workers"] = gr.Number(value=default_workers(), precision=0, minimum=1, maximum=64, scale=1,
                                     label="Worker processes", elem_id="annotate-ingest-workers")
        c["add_folder"] = gr.Button("Add from folder", elem_id="annotate-ingest")
        c["folder_msg"] = gr.Markdown(elem_id="annotate-ingest-message")
    return c


def _splits_panel(store) -> dict:
    c = {}
    with gr.Accordion("Splits", open=False):
        enum_fields = [f.name for f in fields(store.schema() or {"properties": {}}) if f.kind == ENUM]
        with gr.Row():
            c["ratios"] = gr.Textbox("0.8,0.1,0.1", label="train,val,test")
            c["seed"] = gr.Number(0, precision=0, label="Seed")
            c["stratify"] = gr.Dropdown(["(none)", *enum_fields], value=enum_fields[0] if enum_fields else "(none)",
                                        label="Stratify by")
            c["keep"] = gr.Checkbox(True, label="Keep existing splits")
        c["assign"] = gr.Button("Assign splits", elem_id="annotate-split")
        c["split_msg"] = gr.Markdown(elem_id="annotate-split-message")
    return c


def _io_panel() -> dict:
    c = {}
    with gr.Accordion("Import / export", open=False):
        with gr.Row():
            c["src"] = gr.Textbox(label="Import from (folder or .json/.jsonl file on this machine)", scale=3)
            c["layout"] = gr.Dropdown(["auto", "seed", "videofolder", "conversation", "qevd"], value="auto",
                                      label="Layout", scale=1)
        c["do_import"] = gr.Button("Import into this dataset", elem_id="annotate-import")
        with gr.Row():
            c["out"] = gr.Textbox(label="Export to (folder for seed or VideoFolder layout, .jsonl for conversations)",
                                  scale=3)
            c["fmt"] = gr.Dropdown(list(DATASET_FORMATS), value="conversation", label="Format", scale=1)
        c["do_export"] = gr.Button("Export")
        c["io_msg"] = gr.Markdown(elem_id="annotate-io-message")
    return c


def _wire(h, c, refreshed, listing_inputs, opener, then_show) -> None:
    prelabel_inputs = [c["model"], c["limit"], c["redo"], c["constrained"], c["pool"]]
    refreshed(c["go"].click(h.on_prelabel, prelabel_inputs, c["pre_msg"], api_name="prelabel",
                            concurrency_id="gpu", concurrency_limit=1))
    if opener is not None:
        # the filter switches to the queue (its change event lists it) and the least sure clip opens
        then_show(c["go_review"].click(h.on_prelabel_review, prelabel_inputs,
                                       [c["pre_msg"], listing_inputs[0], *opener], api_name="prelabel_review",
                                       concurrency_id="gpu", concurrency_limit=1))
    refreshed(c["add"].click(h.on_add, [c["files"], c["chunk"]], c["add_msg"], api_name="add_clips"))
    refreshed(c["add_folder"].click(h.on_add_folder, [c["folder"], c["chunk"], c["recursive"], c["workers"]],
                                    c["folder_msg"], api_name="add_folder"))
    refreshed(c["assign"].click(h.on_split, [c["ratios"], c["seed"], c["stratify"], c["keep"]], c["split_msg"],
                                api_name="assign_splits"))
    refreshed(c["do_import"].click(h.on_import, [c["src"], c["layout"]], c["io_msg"]))
    c["do_export"].click(h.on_export, [c["out"], c["fmt"]], c["io_msg"], api_name="annotate_export")


class ToolHandlers:
    """What the tool panels' buttons do; each failure is said under its button (tabs.feedback)."""

    def __init__(self, ws, store):
        self.ws = ws
        self.store = store

    def prelabel(self, model_name, n, redo_, constrained_, pool_, progress, keep_embeddings=False):
        from core.serve.prelabel import prelabel_dataset

        return prelabel_dataset(self.store, model_name, int(n or 0) or None, bool(redo_), models=self.ws.models,
                                seed=0 if pool_ else None, constrained=bool(constrained_),
                                progress=lambda d, t: progress((d, t), desc="pre-labelling"),
                                keep_embeddings=keep_embeddings)

    def on_prelabel(self, model_name, n, redo_, constrained_=True, pool_=False, progress=gr.Progress()):  # noqa: B008
        try:
            return prelabel_message(self.prelabel(model_name, n, redo_, constrained_, pool_, progress))
        except Exception as exc:  # said under the button (tabs.feedback), not in a fading toast
            return failure_text(exc, "pre-label")

    def on_prelabel_review(self, model_name, n, redo_, constrained_=True, pool_=False,
                           progress=gr.Progress()):  # noqa: B008
        """Pre-label, then the gallery's review queue on its least sure clip; the message names the
        clips this model is least sure about (what to label next)."""
        from core.data.listing import REVIEW, matching

        try:
            report = self.prelabel(model_name, n, redo_, constrained_, pool_, progress, keep_embeddings=True)
        except Exception as exc:
            return failure_text(exc, "pre-label"), gr.skip(), gr.skip(), gr.skip()
        text = prelabel_message(report)
        if report.drafts:
            text += (f"\n\n**Label next**: of the clips `{model_name}` drafted, the least sure clip of each group of "
                     "similar clips, least sure first:\n") + "\n".join(
                f"{k}. `{item.rel}` least sure field {_score(item.score)} — "
                + (", ".join(f"{name} {v:.2f}" for name, v in item.weakest) or "no scores")
                for k, item in enumerate(report.label_next(REVIEW_LIST), 1))
        queue = matching(self.store, REVIEW)[0]
        return text, REVIEW, (queue[0] if queue else None), True

    def on_add(self, paths, seconds):
        if not paths:
            return "✖ choose files first"
        try:
            result = self.store.add_videos([getattr(p, "name", p) for p in paths], chunk_seconds=seconds or None)
        except Exception as exc:  # a refused archive: the reason stays under the button
            return failure_text(exc, "add clips")
        note = f"\n\n⚠ {result.note}" if result.no_split else ""  # training leaves split-less clips out
        problems = "".join(f"\n- {p}" for p in result.problems)
        return f"added {len(result.added)} clips{note}" + (f"\n\nnot added:{problems}" if problems else "")

    def on_add_folder(self, text, seconds, recursive_, workers_, progress=gr.Progress()):  # noqa: B008
        sources = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if not sources:
            return "✖ give a folder, file or glob on this machine"
        try:
            report = ingest(self.store, sources, chunk_seconds=seconds or None, recursive=bool(recursive_),
                            workers=max(1, int(workers_ or 1)), allowed_roots=allowed_roots_for(self.store.root),
                            progress=lambda d, t: progress((d, t), desc="adding clips", unit="files"))
        except Exception as exc:  # a path outside the allowed folders, another run going: said under the button
            return failure_text(exc, "add from folder")
        return ingest_message(report)

    def on_split(self, ratios_, seed_, strat, keep_):
        from core.data.splits import split_dataset

        try:
            summary = split_dataset(self.store, ratios_, int(seed_ or 0), None if strat == "(none)" else strat,
                                    keep_existing=keep_)
        except Exception as exc:
            return failure_text(exc, "assign splits")
        return (f"{len(summary.assignment)} clips assigned ({summary.changed} changed): "
                + ", ".join(f"{k} {v}" for k, v in summary.counts.items()))

    def on_import(self, path, layout_):
        from core.data.imports.layouts import import_dataset

        if not (path or "").strip():
            return "✖ give a folder or file to import"
        try:
            report = import_dataset(path.strip(), self.store.root, layout=layout_, merge=True)
        except Exception as exc:
            return failure_text(exc, "import")
        lines = [f"imported {report.rows} clips ({report.layout} layout)"]
        lines += [f"- skipped: {p}" for p in report.problems[:20]]
        return "\n".join(lines)

    def on_export(self, path, fmt_):
        from core.data.exports import export_dataset

        if not (path or "").strip():
            return "✖ give a destination"
        try:
            report = export_dataset(self.store.root, path.strip(), fmt_)
        except Exception as exc:
            return failure_text(exc, "export")
        return f"wrote {report.dest}"


def prelabel_message(report) -> str:
    unreadable = (f"{len(report.errors)} unreadable: " + "; ".join(report.errors[:3])
                  + (" …" if len(report.errors) > 3 else "")) if report.errors else ""
    if not report.asked:  # the CLI's words: clips it cannot read are counted, not silently skipped
        return "Nothing to pre-label." + (f" {unreadable}" if unreadable else "")
    text = f"{report.drafted} drafts written, {report.flagged} flagged as not schema-valid"
    return text + (f"; {unreadable}" if unreadable else "")


def ingest_message(report, shown: int = 20) -> str:
    """The CLI's summary in the page's words: added, already added, the problems (the first `shown`)."""
    text = f"added {len(report.added)} clips from {report.added_sources} files"
    text += f"; {report.skipped} already added (skipped)" if report.skipped else ""
    text += f"; {report.ignored} other files ignored (not videos or images)" if report.ignored else ""
    text += f"\n\n⚠ {report.note}" if report.no_split else ""
    if report.problems:
        more = len(report.problems) - shown
        text += f"\n\nnot added ({len(report.problems)}):" + "".join(f"\n- {p}" for p in report.problems[:shown])
        text += f"\n- … and {more} more (`cli.py add-clips` lists them all)" if more > 0 else ""
    return text


def _score(value) -> str:
    return "(no confidence)" if value is None else f"{value:.2f}"
