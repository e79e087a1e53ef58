"""Inference view: pick a clip and a model, see the frames the model gets and what it answers."""

from __future__ import annotations

import json

import gradio as gr

from core.data.dataset import load_dataset
from core.errors import WorkbenchError
from core.serve.predictor import analyse_clip
from tabs.compare import side_markdown


def _clip_choices(ws):
    try:
        data = load_dataset(ws.dataset_dir)
    except WorkbenchError:
        return [], None
    return [(f"{s.rel}  [{s.split or '-'}]", s.rel) for s in data.samples], data


def build(ws) -> None:
    choices, data = _clip_choices(ws)
    first = data.samples[0] if data and data.samples else None
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Clip",
                               elem_id="inference-clip")
            model = gr.Dropdown(choices=ws.model_choices(), value=ws.default_model, label="Model",
                                allow_custom_value=True, elem_id="inference-model")
            run = gr.Button("Run model", variant="primary", elem_id="inference-run")
            video = gr.Video(value=str(first.video) if first else None, label="Clip", interactive=False)
            truth = gr.JSON(value=first.label if first else None, label="Label (ground truth)")
        with gr.Column(scale=2):
            frames = gr.Gallery(label="Frames the model sees", columns=8, height=160, elem_id="inference-frames")
            status = gr.Markdown(elem_id="inference-status")
            raw = gr.Textbox(label="Raw output", lines=4, elem_id="inference-raw")
            parsed = gr.JSON(label="Parsed JSON")

    def show_clip(rel):
        _, data = _clip_choices(ws)
        sample = next((s for s in (data.samples if data else []) if s.rel == rel), None)
        if sample is None:
            return None, None
        return str(sample.video), sample.label

    def on_run(rel, model_name):
        _, data = _clip_choices(ws)
        sample = next((s for s in (data.samples if data else []) if s.rel == rel), None)
        if sample is None:
            raise gr.Error("pick a clip first")
        try:
            with ws.models.lock:
                predictor = ws.models.get(model_name, schema=data.schema)
                result = analyse_clip(predictor, sample.video, sample.label)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        md = side_markdown(result)
        gallery = [(f, f"frame {i}") for f, i in zip(result["frames"].frames, result["frames"].indices)]
        return gallery, md, result["text"], result["parsed"] if result["parsed"] is not None else json.dumps(None)

    clip.change(show_clip, clip, [video, truth])
    # runs finished after the page was built appear when the picker is opened
    model.focus(lambda: gr.update(choices=ws.model_choices()), None, model)
    run.click(on_run, [clip, model], [frames, status, raw, parsed], concurrency_id="gpu", concurrency_limit=1)
