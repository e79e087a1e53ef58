"""Inference view: pick a clip and a model, see the frames the model gets and what it answers."""

from __future__ import annotations

import json

import gradio as gr

from core.data.dataset import load_dataset
from core.errors import WorkbenchError
from core.serve.predictor import analyse_clip
from tabs.answer_view import side_markdown
from tabs.feedback import failure_text
from tabs.shared import CONSTRAINED_DEFAULT, DECODING_LABEL, frame_strip


def _clip_choices(ws):
    try:
        data = load_dataset(ws.dataset_dir)
    except WorkbenchError:
        return [], None
    return [(f"{s.rel}  [{s.split or '-'}]", s.rel) for s in data.samples], data


def build(ws, pickers) -> None:
    choices, data = _clip_choices(ws)
    first = data.samples[0] if data and data.samples else None
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Clip",
                               elem_id="inference-clip")
            model = pickers.model(label="Model", elem_id="inference-model")
            constrained = gr.Checkbox(CONSTRAINED_DEFAULT, label=DECODING_LABEL, elem_id="inference-constrained")
            run = gr.Button("Run model", variant="primary", elem_id="inference-run")
            message = gr.Markdown(elem_id="inference-message")
            video = gr.Video(value=str(first.video) if first else None, label="Clip", interactive=False)
            truth = gr.JSON(value=first.label if first else None, label="Label (ground truth)")
        with gr.Column(scale=2):
            frames = frame_strip("Frames the model sees", "inference-frames")
            status = gr.Markdown(elem_id="inference-status")
            raw = gr.Textbox(label="Raw output", lines=4, elem_id="inference-raw")
            parsed = gr.JSON(label="Parsed JSON")

    def show_clip(rel):
        _, data = _clip_choices(ws)
        sample = next((s for s in (data.samples if data else []) if s.rel == rel), None)
        if sample is None:
            return None, None
        return str(sample.video), sample.label

    def on_run(rel, model_name, constrained_):
        skip = [gr.skip()] * 4
        _, data = _clip_choices(ws)
        sample = next((s for s in (data.samples if data else []) if s.rel == rel), None)
        if sample is None:
            return (*skip, "✖ pick a clip first")
        if not model_name:
            return (*skip, "✖ pick a model")
        try:
            with ws.models.lock:
                predictor = ws.models.get(model_name, schema=data.schema)
                result = analyse_clip(predictor, sample.video, sample.label, constrained=bool(constrained_))
        except Exception as exc:  # the reason stays beside the button (tabs.feedback)
            return (*skip, failure_text(exc, "run model"))
        md = side_markdown(result, bool(constrained_))
        gallery = [(f, f"frame {i}") for f, i in zip(result["frames"].frames, result["frames"].indices)]
        parsed_ = result["parsed"] if result["parsed"] is not None else json.dumps(None)
        return gallery, md, result["text"], parsed_, ""

    clip.change(show_clip, clip, [video, truth])
    run.click(on_run, [clip, model, constrained], [frames, status, raw, parsed, message], api_name="run_model",
              concurrency_id="gpu", concurrency_limit=1)
