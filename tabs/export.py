"""Export tab: batch prediction to files, evaluation reports (base vs fine-tuned), model and dataset export.

Thin handlers over the calls `cli.py predict`, `cli.py eval`, `cli.py export-dataset` and `cli.py push` make
(core.serve.batch.predict_to_file, core.serve.report.evaluate_models, core.data.exports.export_dataset,
core.hub.publish_run); exporting a run's adapter or merged model (core.train.merge.export_run) has no CLI
twin (`cli.py merge` writes RUN/merged/ in place). Downloads are zipped here.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from core.data.exports import DATASET_FORMATS
from core.layout import EXPORT_KINDS
from tabs import calibrate_panel
from tabs.feedback import failure_text
from tabs.shared import CONSTRAINED_DEFAULT, DECODING_LABEL, decoding_text, render

FORMATS = [".jsonl", ".csv", ".parquet", ".sqlite"]
SPLITS = ["test", "val", "train", "all"]
SCORE_COLUMNS = ["model", "decoding", "clips", "json_valid", "schema_valid", "mean_field_acc"]


def exports_dir(ws) -> Path:
    out = ws.runs_dir / "exports"
    out.mkdir(parents=True, exist_ok=True)
    return out


def do_predict(ws, model, source, folder, split, fmt, constrained, batch_size, progress=None, engine="local",
               workers=1) -> tuple[str, str]:
    """`cli.py predict` from the tab: the same core call; the workspace dataset's schema is the
    fallback for a folder without its own schema.json (core.serve.batch.input_schema). `engine`
    "ray" is `--engine ray --num-workers N` on a Ray started for the job (its actors load their own
    copies of the model; the app's resident one is not used)."""
    from core.serve.batch import predict_to_file

    src, split_ = (Path(folder), None) if source == "folder" else (ws.dataset_dir, split)
    out = exports_dir(ws) / f"predictions-{Path(str(model)).name.replace(':', '_')}{fmt}"
    counts = predict_to_file(model, src, out, split_, fallback_schema=ws.store.schema(), models=ws.models,
                             batch_size=int(batch_size), progress=progress, constrained=bool(constrained),
                             engine=engine, num_workers=max(1, int(workers or 1)) if engine == "ray" else None)
    text = (f"{counts['written']} rows written ({counts['valid']} schema-valid, {counts['errors']} errors), "
            f"{counts['skipped']} already in the file → `{out}`")
    return text, str(out)


def do_evaluate(ws, names, split, constrained, progress=None):
    from core.serve.report import comparison_rows, confusion_rows, evaluate_models, write_report

    reports = evaluate_models(ws.models, ws.dataset_dir, split, list(names), constrained=bool(constrained),
                              progress=progress)
    js, md = write_report(reports, exports_dir(ws))
    table = score_table(comparison_rows(reports), constrained)
    last = list(reports.values())[-1]  # the last model picked: usually the fine-tuned one
    plots = {f: pd.DataFrame(confusion_rows(last, f), columns=["true", "predicted", "count"])
             for f in last.get("confusion", {})}
    warnings = [w for r in reports.values() for w in r["warnings"]]  # what `cli.py eval` prints on stderr
    return table, plots, [str(js), str(md)], last["model"], warnings


def score_table(rows: list[dict], constrained) -> pd.DataFrame:
    """The Scores table: comparison rows with how they were decoded (every score says its mode)."""
    table = pd.DataFrame(rows)
    table.insert(1, "decoding", decoding_text(bool(constrained)))
    return table


def export_model(ws, run, what) -> str:
    """A zip of the run's adapter (with its spec) or merged model (core.train.merge.export_run)."""
    from core.train.merge import export_run

    target = exports_dir(ws) / f"{Path(run).name}-{what}-{time.strftime('%Y%m%d-%H%M%S')}"
    export_run(run, what, target)
    shutil.make_archive(str(target), "zip", target)
    return str(target) + ".zip"


def publish(ws, run, repo_id, merged, private, evaluate, token, dry_run: bool) -> tuple[str, str]:
    """`cli.py push` from the tab (core.hub.publish_run): a dry run writes the folder under exports/.
    Returns the message and the model card's text."""
    from core.hub import publish_run

    target = exports_dir(ws) / f"hub-{Path(run).name}-{time.strftime('%Y%m%d-%H%M%S')}" if dry_run else None
    result = publish_run(run, repo_id, merged=bool(merged), private=bool(private), dry_run=target,
                         split="test" if evaluate else None, token=(token or "").strip() or None)
    notes = "".join(f"- {n}\n" for n in result.notes)
    what = "merged model" if result.merged else "model"
    head = (f"Dry run: the {len(result.files)} files that would be uploaded are in `{result.folder}`; nothing uploaded."
            if dry_run else f"Published the {what} to [{result.repo_id}]({result.url}).")
    card = (result.folder / "README.md").read_text() if dry_run else ""
    return head + ("\n\n" + notes if notes else ""), card


def build(ws, pickers) -> None:
    c = _predict_panel(pickers)
    c.update(_evaluate_panel(pickers))
    calibrate_panel.build(ws, pickers)
    c.update(_export_panel(pickers))
    c.update(_publish_panel(pickers))
    _wire(ExportHandlers(ws), c)


def _predict_panel(pickers) -> dict:
    c = {}
    with gr.Accordion("Batch prediction", open=True):
        with gr.Row():
            c["model"] = pickers.model(label="Model", elem_id="export-model")
            c["source"] = gr.Radio(["dataset split", "folder"], value="dataset split", label="Clips from")
            c["split"] = gr.Dropdown(SPLITS, value="test", label="Split", elem_id="export-split")
            c["folder"] = gr.Textbox(label="Folder of videos (for 'folder')")
        with gr.Row():
            c["fmt"] = gr.Dropdown(FORMATS, value=".sqlite", label="Output", elem_id="export-format")
            c["constrained"] = gr.Checkbox(CONSTRAINED_DEFAULT, label=DECODING_LABEL, elem_id="export-constrained")
            c["batch"] = gr.Number(8, precision=0, label="Batch size")
            c["engine"] = gr.Radio(["local", "ray"], value="local", label="Engine", elem_id="export-engine",
                                   info="ray: decoding and the model in parallel stages (a local Ray)")
            c["workers"] = gr.Number(1, precision=0, minimum=1, label="Model workers (ray)", elem_id="export-workers")
            c["go"] = gr.Button("Predict", variant="primary", elem_id="export-predict")
        c["pred_msg"] = gr.Markdown(elem_id="export-pred-msg")
        c["pred_file"] = gr.File(label="Predictions", elem_id="export-pred-file")
    return c


def _evaluate_panel(pickers) -> dict:
    c = {}
    with gr.Accordion("Evaluate (base vs fine-tuned)", open=True):
        with gr.Row():
            c["models"] = pickers.models(label="Models", elem_id="export-models")
            c["eval_split"] = gr.Dropdown(SPLITS, value="test", label="Split")
            c["eval_constrained"] = gr.Checkbox(CONSTRAINED_DEFAULT, label=DECODING_LABEL,
                                                elem_id="export-eval-constrained")
            c["eval_go"] = gr.Button("Evaluate", variant="primary", elem_id="export-evaluate")
        c["eval_msg"] = gr.Markdown(elem_id="export-eval-msg")
        c["table"] = gr.Dataframe(pd.DataFrame(columns=SCORE_COLUMNS), label="Scores", interactive=False,
                                  elem_id="export-scores")  # named columns before the first evaluation, not 1 2 3
        c["plots_state"] = gr.State({})
        c["plots_title"] = gr.Markdown(elem_id="export-eval-notes")

        @render(inputs=c["plots_state"])
        def draw_plots(plots):
            with gr.Row():
                for name, frame in (plots or {}).items():
                    gr.BarPlot(frame, x="true", y="count", color="predicted", title=f"Confusion: {name}",
                               x_title="label", y_title="clips")
        c["report_files"] = gr.File(label="Report (JSON, Markdown)", file_count="multiple")
    return c


def _export_panel(pickers) -> dict:
    c = {}
    with gr.Accordion("Export a model or the dataset", open=False):
        with gr.Row():
            c["run"] = pickers.run(label="Run", elem_id="export-run")
            c["what"] = gr.Radio(list(EXPORT_KINDS), value=EXPORT_KINDS[0], label="What")
            c["export_go"] = gr.Button("Export model")
        with gr.Row():
            c["ds_fmt"] = gr.Radio(list(DATASET_FORMATS), value="videofolder", label="Dataset layout")
            c["ds_go"] = gr.Button("Export dataset")
        c["export_msg"] = gr.Markdown(elem_id="export-msg")
        c["export_file"] = gr.File(label="Download")
    return c


def _publish_panel(pickers) -> dict:
    c = {}
    with gr.Accordion("Publish to the Hugging Face Hub", open=False):
        with gr.Row():
            c["hub_run"] = pickers.run(label="Run", elem_id="hub-run")
            c["hub_repo"] = gr.Textbox(label="Repository (owner/name)", elem_id="hub-repo")
            c["hub_token"] = gr.Textbox(label="Token (blank: HF_TOKEN or `hf auth login`)", type="password")
        with gr.Row():
            c["hub_merged"] = gr.Checkbox(False, label="Merged model (automatic when the base is not on the Hub)")
            c["hub_private"] = gr.Checkbox(True, label="Private")
            # unconstrained: the card's transformers snippet decodes freely, so its scores should too
            c["hub_eval"] = gr.Checkbox(True, label="Score base and fine-tuned on the test split for the card "
                                                    "(unconstrained, as the card's code decodes)")
            c["hub_dry"] = gr.Button("Preview (dry run)", elem_id="hub-dry-run")
            c["hub_go"] = gr.Button("Publish", variant="primary", elem_id="hub-publish")
        c["hub_msg"] = gr.Markdown(elem_id="hub-msg")
        c["hub_card"] = gr.Code(label="Model card (README.md)", language="markdown", interactive=False)
    return c


def _wire(h, c) -> None:
    predict_inputs = [c[k] for k in ("model", "source", "split", "folder", "fmt", "constrained", "batch", "engine",
                                     "workers")]
    c["go"].click(h.on_predict, predict_inputs, [c["pred_msg"], c["pred_file"]],
                  api_name="predict", concurrency_id="gpu", concurrency_limit=1)
    c["eval_go"].click(h.on_evaluate, [c["models"], c["eval_split"], c["eval_constrained"]],
                       [c["table"], c["plots_state"], c["plots_title"], c["report_files"], c["eval_msg"]],
                       api_name="evaluate", concurrency_id="gpu", concurrency_limit=1)
    export_out = [c["export_msg"], c["export_file"]]
    c["export_go"].click(h.on_export, [c["run"], c["what"]], export_out, api_name="export_model")
    c["ds_go"].click(h.on_export_dataset, c["ds_fmt"], export_out, api_name="export_dataset")
    hub_inputs = [c[k] for k in ("hub_run", "hub_repo", "hub_merged", "hub_private", "hub_eval", "hub_token")]
    hub_out = [c["hub_msg"], c["hub_card"]]
    c["hub_dry"].click(lambda *a: h.on_publish(True, *a), hub_inputs, hub_out, api_name="publish_dry_run",
                       concurrency_id="gpu", concurrency_limit=1)
    c["hub_go"].click(lambda *a: h.on_publish(False, *a), hub_inputs, hub_out, api_name="publish",
                      concurrency_id="gpu", concurrency_limit=1)


class ExportHandlers:
    """What the Export tab's buttons do; each failure becomes the message beside its button."""

    def __init__(self, ws):
        self.ws = ws

    def on_predict(self, model_, source_, split_, folder_, fmt_, constrained_, batch_, engine_, workers_,
                   progress=gr.Progress()):  # noqa: B008
        if source_ == "folder" and not (folder_ or "").strip():
            return "✖ give a folder of videos", gr.skip()
        if not model_:
            return "✖ pick a model", gr.skip()
        try:
            text, out = do_predict(self.ws, model_, "folder" if source_ == "folder" else "dataset", folder_, split_,
                                   fmt_, constrained_, batch_, engine=engine_, workers=workers_,
                                   progress=lambda d, t: progress((d, t), desc="predicting"))
        except Exception as exc:  # the reason stays beside the button (tabs.feedback), not in a fading toast
            return failure_text(exc, "predict"), gr.skip()
        return f"{text} · decoding {decoding_text(bool(constrained_))}", out

    def on_evaluate(self, names, split_, constrained_, progress=gr.Progress()):  # noqa: B008
        skip = gr.skip()
        if not names:
            return skip, skip, skip, skip, "✖ pick at least one model"
        try:
            table_, plots, files, shown, warnings = do_evaluate(
                self.ws, names, split_, constrained_, progress=lambda d, t: progress((d, t), desc="evaluating"))
        except Exception as exc:
            return skip, skip, skip, skip, failure_text(exc, "evaluate")
        title = "".join(f"**Warning:** {w}\n\n" for w in warnings) + f"Confusion matrices of `{shown}`"
        return table_, plots, title, files, f"scored {len(names)} model(s) on {split_}, decoding " \
                                           f"{decoding_text(bool(constrained_))}"

    def on_export(self, run_, what_):
        if not run_:
            return "✖ pick a run", gr.skip()
        try:
            return "", export_model(self.ws, run_, what_)
        except Exception as exc:
            return failure_text(exc, "export"), gr.skip()

    def on_publish(self, dry_run, run_, repo_, merged_, private_, eval_, token_):
        # a new try replaces the last message and card, so an old preview never sits under a new error
        if not run_:
            return "✖ pick a run", ""
        try:
            return publish(self.ws, run_, repo_, merged_, private_, eval_, token_, dry_run)
        except Exception as exc:
            return failure_text(exc, "preview" if dry_run else "publish"), ""

    def on_export_dataset(self, layout):
        from core.data.exports import export_dataset

        target = exports_dir(self.ws) / f"dataset-{layout}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.mkdir(parents=True)  # a folder for every layout, so the download is one zip
        try:
            export_dataset(self.ws.dataset_dir, target, layout)
        except Exception as exc:
            shutil.rmtree(target, ignore_errors=True)
            return failure_text(exc, "export dataset"), gr.skip()
        shutil.make_archive(str(target), "zip", target)
        return "", str(target) + ".zip"
