"""Compare tab: base and fine-tuned side by side on the same frames, prompt and greedy decoding."""

from __future__ import annotations

import json

import gradio as gr

from tabs.answer_view import side_markdown
from tabs.feedback import failure_text
from tabs.shared import CONSTRAINED_DEFAULT, DECODING_LABEL, frame_strip

RUNS_BASE = "(the run's own base)"
SCHEMA_PROMPT = "the run's schema prompt"
FREE_PROMPT = "free-form prompt"
EXAMPLE_PROMPT = "Analyze the dashcam footage for unsafe driver behavior."


def clip_choices(ws) -> list[tuple[str, str]]:
    return [(f"{c.rel} [{c.split or '-'}]", c.rel) for c in ws.store.clips(check_video=False)]


def run_compare(ws, rel, upload, run, base, mode, prompt, constrained):
    """Generator for the tab: yields the frames and instruction, then each side as soon as it is done,
    then the message beside the button ("" when all went well, the reason when not).

    The model work runs in a worker thread that holds the model manager's lock from start to end
    (a generator may resume on another thread, and a lock must be released where it was taken)."""
    import queue
    import threading

    from core.serve.compare import compare_clip

    skip = [gr.skip()] * 9
    if not run:
        yield (*skip, "✖ pick a fine-tuned run (train one in the Train tab)")
        return
    if upload:
        video, label = upload, None
    elif rel:
        try:
            clip = ws.store.clip(rel)
        except Exception as exc:  # a clip gone since the list was drawn: said beside the button
            yield (*skip, failure_text(exc, "compare"))
            return
        video, label = clip.path, (clip.label or None)
    else:
        yield (*skip, "✖ pick a clip or upload one")
        return
    free = mode == FREE_PROMPT
    constrained = bool(constrained) and not free
    events: queue.Queue = queue.Queue()

    def work():
        try:
            result = compare_clip(ws.models, video, run, None if base in (None, "", RUNS_BASE) else base,
                                  label=label, prompt=(prompt or EXAMPLE_PROMPT) if free else None,
                                  constrained=constrained,
                                  on_frames=lambda fr, instr: events.put(("frames", (fr, instr))),
                                  on_side=lambda name, side: events.put(("side", (name, side))))
            events.put(("done", result))
        except Exception as exc:  # handed to the UI thread, which shows it beside the button
            events.put(("error", exc))

    threading.Thread(target=work, daemon=True).start()
    view = [None, "", side_markdown(None), "", None, side_markdown(None), "", None]
    yield (*view, ws.models.status_line(), "")  # a new try clears the last one's results and message
    while True:
        kind, payload = events.get()
        if kind == "error":
            yield (*view, ws.models.status_line(), failure_text(payload, "compare"))
            return
        if kind == "frames":
            fr, instr = payload
            view[0] = [(f, f"#{i} · {t:.1f}s") for f, i, t in zip(fr.frames, fr.indices, fr.timestamps)]
            view[1] = instr
        elif kind == "side":
            name, side = payload
            at = 2 if name == "base" else 5
            view[at:at + 3] = [side_markdown(side, constrained), side["text"],
                               side["parsed"] if side["parsed"] is not None else json.dumps(None)]
        yield (*view, ws.models.status_line(), "")
        if kind == "done":
            return


def build(ws, pickers) -> None:
    choices = clip_choices(ws)
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Clip", elem_id="compare-clip")
            upload = gr.Video(label="…or upload a clip", sources=["upload"])
            run = pickers.run(label="Fine-tuned run", elem_id="compare-run")
            base = gr.Dropdown([RUNS_BASE, ws.default_model], value=RUNS_BASE, label="Base model",
                               allow_custom_value=True)
            mode = gr.Radio([SCHEMA_PROMPT, FREE_PROMPT], value=SCHEMA_PROMPT, label="Prompt")
            prompt = gr.Textbox(EXAMPLE_PROMPT, label="Free-form prompt", lines=2, visible=False)
            constrained = gr.Checkbox(CONSTRAINED_DEFAULT, label=DECODING_LABEL, elem_id="compare-constrained")
            go = gr.Button("Compare", variant="primary", elem_id="compare-run-button")
            message = gr.Markdown(elem_id="compare-message")
            memory = gr.Markdown(ws.models.status_line(), elem_id="compare-memory")
        with gr.Column(scale=3):
            frames = frame_strip("Frames both models get", "compare-frames")
            instruction = gr.Textbox(label="Instruction both models get", lines=3, interactive=False)
            with gr.Row():
                outs = []
                for title in ("Base", "Fine-tuned"):
                    with gr.Column():
                        gr.Markdown(f"### {title}")
                        outs += [gr.Markdown(elem_id=f"compare-{title.lower()}-badge", elem_classes=["vvw-scores"]),
                                 gr.Textbox(label="Raw output", lines=4),
                                 gr.JSON(label="Parsed JSON")]
    mode.change(lambda m: gr.update(visible=m == FREE_PROMPT), mode, prompt)
    clip.focus(lambda: gr.update(choices=clip_choices(ws)), None, clip)

    def on_compare(*args):
        # a generator function (not a lambda returning one): Gradio streams only what it sees is one
        yield from run_compare(ws, *args)

    go.click(on_compare, [clip, upload, run, base, mode, prompt, constrained],
             [frames, instruction, *outs, memory, message], api_name="compare", concurrency_id="gpu",
             concurrency_limit=1)
