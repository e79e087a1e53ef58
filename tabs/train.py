"""Train tab: a form that builds a TrainConfig, and a live view of runs that polls their files.

Runs are processes (core.runs); this tab only writes a config, starts/stops/resumes the
`cli.py train` process and reads the run directory, so closing the browser changes nothing and a
reload re-attaches to whatever is running.
"""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from core.config import TrainConfig
from core.errors import WorkbenchError
from core.run_files import RunFiles


def form_to_config(model, method, lora_r, frames, sampling, width, height, max_steps, batch_size, lr,
                   save_steps, seed) -> TrainConfig:
    """Form values → validated TrainConfig. Blank numeric fields mean 'the default for this model'."""
    def opt_int(v):
        return int(v) if v not in (None, "", 0) else None

    data = {"model": model, "method": method, "lora_r": int(lora_r), "sampling": sampling,
            "num_frames": opt_int(frames), "frame_width": opt_int(width), "frame_height": opt_int(height),
            "max_steps": int(max_steps), "batch_size": int(batch_size), "save_steps": int(save_steps),
            "seed": int(seed), "learning_rate": float(lr) if lr not in (None, "") else None,
            # short runs still draw a curve: about 20 points, at most one every 10 steps
            "logging_steps": max(1, min(10, int(max_steps) // 20))}
    return TrainConfig.from_dict(data, source="form")


def progress_markdown(status: dict) -> str:
    state = status.get("state", "unknown")
    step, total = status.get("global_step") or 0, status.get("max_steps") or 0
    pct = 100.0 * step / total if total else 0.0
    bar = "█" * int(pct / 5) + "░" * (20 - int(pct / 5))
    eta = ""
    started, updated = status.get("started"), status.get("updated")
    done = step - (status.get("start_step") or 0)
    if state == "running" and started and updated and done > 0:
        eta = f" · ETA {max(0.0, (updated - started) / done * (total - step)):.0f}s"
    text = f"**{state}** · step {step}/{total} `{bar}` {pct:.0f}%{eta}"
    if status.get("loss") is not None:
        text += f" · loss {status['loss']:.4f}"
    if state == "crashed":
        text += f"\n\nexit code {status.get('exit_code', '?')}\n```\n{status.get('log_tail', '')}\n```"
    elif status.get("message"):
        text += f"\n\n{status['message']}"
    return text


def loss_frame(run_dir) -> pd.DataFrame:
    rows = [r for r in RunFiles(run_dir).read_metrics() if "loss" in r]
    return pd.DataFrame({"step": [r["step"] for r in rows], "loss": [r["loss"] for r in rows]})


def runs_table(ws) -> pd.DataFrame:
    rows = [{"run": r["run"], "state": r.get("state"), "step": r.get("global_step"),
             "max_steps": r.get("max_steps"), "loss": r.get("loss")} for r in ws.runs.list_runs()]
    return pd.DataFrame(rows, columns=["run", "state", "step", "max_steps", "loss"])


def build(ws) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            dataset = gr.Textbox(value=str(ws.dataset_dir), label="Dataset folder (seed layout)", elem_id="train-dataset")
            name = gr.Textbox(value=lambda: time.strftime("run-%Y%m%d-%H%M%S"), label="Run name", elem_id="train-name")
            model = gr.Dropdown(choices=ws.model_choices(), value=ws.default_model, allow_custom_value=True,
                                label="Base model")
            method = gr.Radio(["lora", "full"], value="lora", label="Method")
            lora_r = gr.Number(value=16, label="LoRA rank", precision=0)
            with gr.Row():
                sampling = gr.Radio(["uniform", "fps"], value="uniform", label="Frame sampling")
                frames = gr.Number(value=None, label="Frames per clip (blank: model default)", precision=0)
            with gr.Row():
                width = gr.Number(value=None, label="Frame width (blank: default)", precision=0)
                height = gr.Number(value=None, label="Frame height (blank: default)", precision=0)
            with gr.Row():
                max_steps = gr.Number(value=TrainConfig.max_steps, label="Max steps", precision=0, elem_id="train-steps")
                batch_size = gr.Number(value=TrainConfig.batch_size, label="Batch size", precision=0)
            with gr.Row():
                lr = gr.Textbox(value="", label="Learning rate (blank: default)")
                save_steps = gr.Number(value=TrainConfig.save_steps, label="Save every N steps", precision=0)
                seed = gr.Number(value=0, label="Seed", precision=0)
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (save)", elem_id="train-stop")
                resume = gr.Button("Resume", elem_id="train-resume")
        with gr.Column(scale=2):
            selected = gr.Dropdown(choices=[r["run"] for r in ws.runs.list_runs()], label="Run", allow_custom_value=True,
                                   elem_id="train-run")
            progress = gr.Markdown(elem_id="train-progress")
            curve = gr.LinePlot(x="step", y="loss", title="Training loss", height=260, elem_id="train-curve")
            log = gr.Textbox(label="Log tail", lines=8, elem_id="train-log")
            table = gr.Dataframe(label="Runs", interactive=False)

    def refresh(run_name):
        table_df = runs_table(ws)
        choices = table_df["run"].tolist()
        if not run_name:
            active = ws.runs.active()
            run_name = active.name if active else (choices[0] if choices else None)
        if not run_name:
            return gr.update(choices=choices), "No runs yet.", pd.DataFrame({"step": [], "loss": []}), "", table_df
        run_dir = ws.runs_dir / run_name
        status = ws.runs.state(run_dir)
        log_text = "\n".join((run_dir / "train.log").read_text().splitlines()[-12:]) if (run_dir / "train.log").is_file() else ""
        return (gr.update(choices=choices, value=run_name), progress_markdown(status), loss_frame(run_dir),
                log_text, table_df)

    def on_start(ds, run_name, *form):
        try:
            cfg = form_to_config(*form)
            ws.models.unload_all()  # a training process needs the memory the app's models hold
            ws.runs.start(ds, run_name.strip(), cfg)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"started {run_name}; the app's loaded models were unloaded to free memory")
        return run_name.strip()

    def on_stop(run_name):
        if not run_name:
            raise gr.Error("pick a run")
        ws.runs.stop(ws.runs_dir / run_name)
        return run_name

    def on_resume(run_name):
        try:
            ws.runs.resume(ws.runs_dir / run_name)
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        return run_name

    form = [model, method, lora_r, frames, sampling, width, height, max_steps, batch_size, lr, save_steps, seed]
    outputs = [selected, progress, curve, log, table]
    start.click(on_start, [dataset, name, *form], selected, api_name="start_run").then(refresh, selected, outputs)
    stop.click(on_stop, selected, selected, api_name="stop_run").then(refresh, selected, outputs)
    resume.click(on_resume, selected, selected, api_name="resume_run").then(refresh, selected, outputs)
    selected.change(refresh, selected, outputs, api_name="run_status")
    gr.Timer(2.0).tick(refresh, selected, outputs, show_progress="hidden")
