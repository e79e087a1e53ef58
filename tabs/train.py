"""Train tab: a form that builds a TrainConfig, and a live view of runs that polls their files.

Runs are processes (core.runs.manager); this tab only writes a config, starts/stops/resumes the
`cli.py train` process (or `accelerate launch` for several processes) and reads the run directory,
so closing the browser changes nothing and a reload re-attaches to whatever is running. Start is
core.workspace.Workspace.start_training (runtime and policy checks, unloading, launch); estimate
(core.train.estimate), merge (core.train.merge) and cloning a past run's config
(core.runs.RunManager.clone_config) are thin calls too. Each field's help is its TrainConfig doc.
"""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from core.config import TrainConfig, field_docs
from core.errors import ConfigError, WorkbenchError
from core.runs.files import RunFiles, duration_text
from tabs.annotate import page_load
from tabs.feedback import failure_text

# The form's fields, in the order the handlers (and the /start_run and /estimate API) take them.
FORM_KEYS = ("model", "method", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "frames", "sampling",
             "width", "height", "max_steps", "batch_size", "grad_accum", "lr", "lr_scheduler", "warmup_steps",
             "optimizer", "precision", "gradient_checkpointing", "save_steps", "eval_steps", "eval_max_clips",
             "max_new_tokens", "report_to", "merge_at_end", "num_processes", "distributed", "seed", "num_machines",
             "machine_rank", "main_process_ip", "main_process_port")
# form key -> TrainConfig field where the names differ
_FIELD = {"frames": "num_frames", "width": "frame_width", "height": "frame_height", "lr": "learning_rate"}
_OPTIONAL_INTS = ("frames", "width", "height")  # blank (or 0) = the model's default
_INTS = ("lora_r", "lora_alpha", "max_steps", "batch_size", "grad_accum", "warmup_steps", "save_steps", "eval_steps",
         "eval_max_clips", "max_new_tokens", "num_processes", "seed", "num_machines", "machine_rank", "main_process_port")
_INFO = field_docs()


def _info(key: str) -> str:
    """The form field's help: its TrainConfig field's doc (what `cli.py train --help` shows)."""
    return _INFO[_FIELD.get(key, key)]


def form_to_config(base: dict | None = None, **form) -> TrainConfig:
    """Form values → validated TrainConfig. Blank numeric fields mean 'the default for this model';
    fields the form does not show come from `base` (a cloned run's config), else the defaults."""
    unknown = set(form) - set(FORM_KEYS)
    if unknown:
        raise ConfigError(f"form: unknown fields {', '.join(sorted(unknown))}")
    data = dict(base or {})
    for key, value in form.items():
        if key in _OPTIONAL_INTS:
            value = _optional_int(key, value)
        elif key in _INTS:
            value = int(value)
        elif key == "lr":
            try:
                value = float(value) if str(value or "").strip() else None
            except ValueError:
                raise ConfigError(f"form: learning rate {value!r} is not a number") from None
        elif key == "lora_dropout":
            value = float(value or 0.0)
        elif key in ("gradient_checkpointing", "merge_at_end"):
            value = bool(value)
        elif key == "main_process_ip":
            value = str(value or "")
        data[_FIELD.get(key, key)] = value
    if "max_steps" in form:  # short runs still draw a curve: about 20 points, at most one every 10 steps
        data["logging_steps"] = max(1, min(10, int(form["max_steps"]) // 20))
    return TrainConfig.from_dict(data, source="form")


def _optional_int(key: str, value) -> int | None:
    """A '(blank: default)' field: blank, None or 0 → None (the model's default), else a whole number."""
    text = str(value if value is not None else "").strip()
    if text in ("", "0"):
        return None
    try:
        return int(float(text)) if float(text).is_integer() else int(text)
    except ValueError:
        raise ConfigError(f"form: {key} {text!r} is not a whole number (leave it blank for the default)") from None


def config_to_form(config: dict) -> dict:
    """A run's config.yaml → form values (the inverse of form_to_config for the fields shown)."""
    defaults = TrainConfig().__dict__
    out = {}
    for key in FORM_KEYS:
        value = config.get(_FIELD.get(key, key), defaults[_FIELD.get(key, key)])
        # text fields: blank is the default, never a 0 the person did not type
        out[key] = ("" if value is None else str(value)) if key in ("lr", *_OPTIONAL_INTS) else value
    return out


def clone_config(ws, run_name: str) -> tuple[dict, dict]:
    """(form values, full config) of a past run (core.runs.RunManager.clone_config)."""
    config = ws.runs.clone_config(run_name)
    return config_to_form(config), config


EVAL_TITLE = "Val (greedy)"
NO_EVAL_HINT = ("The Val (greedy) plot stays empty: this run does not evaluate. Set 'Evaluate on val every N "
                "steps' (eval_steps) to draw it.")


def run_progress(status: dict, evals: pd.DataFrame) -> str:
    """The progress line, plus how to get the val curve when the run has no evaluations."""
    return progress_markdown(status) + ("" if len(evals) else f"\n\n{NO_EVAL_HINT}")


def progress_markdown(status: dict) -> str:
    state = status.get("state", "unknown")
    step, total = status.get("global_step") or 0, status.get("max_steps") or 0
    pct = 100.0 * step / total if total else 0.0
    bar = "█" * int(pct / 5) + "░" * (20 - int(pct / 5))
    eta = ""
    started, updated = status.get("started"), status.get("updated")
    done = step - (status.get("start_step") or 0)
    if state == "running" and started and updated and done > 0:
        eta = f" · ETA {duration_text(max(0.0, (updated - started) / done * (total - step)))}"
    text = f"**{state}** · step {step}/{total} `{bar}` {pct:.0f}%{eta}"
    if status.get("loss") is not None:
        text += f" · loss {status['loss']:.4f}"
    if (status.get("world_size") or 1) > 1:
        text += f" · {status['world_size']} processes"
    if state == "crashed":
        text += f"\n\nexit code {status.get('exit_code', '?')}\n```\n{status.get('log_tail', '')}\n```"
    elif status.get("message"):
        text += f"\n\n{status['message']}"
    return text


def loss_frame(run_dir) -> pd.DataFrame:
    rows = [r for r in RunFiles(run_dir).read_metrics() if "loss" in r]
    return pd.DataFrame({"step": [r["step"] for r in rows], "loss": [r["loss"] for r in rows]})


def eval_frame(run_dir) -> pd.DataFrame:
    """Long format (step, value, metric) of the eval lines, for a multi-line plot."""
    rows = []
    for r in RunFiles(run_dir).read_metrics():
        for key, name in (("eval_schema_valid_rate", "schema-valid"), ("eval_mean_field_accuracy", "field accuracy")):
            if key in r:
                rows.append({"step": r["step"], "value": r[key], "metric": name})
    return pd.DataFrame(rows, columns=["step", "value", "metric"])


def runs_table(ws) -> pd.DataFrame:
    rows = [{"run": r["run"], "state": r.get("state"), "step": r.get("global_step"),
             "max_steps": r.get("max_steps"), "loss": r.get("loss")} for r in ws.runs.list_runs()]
    return pd.DataFrame(rows, columns=["run", "state", "step", "max_steps", "loss"])


def estimate_text(dataset: str, base: dict | None, form: dict, timed: bool = True) -> str:
    """The Estimate box: plain text in a wrapping box (a code block scrolled sideways)."""
    from core.train.estimate import TIMED_STEPS, estimate, format_estimate

    return format_estimate(estimate(form_to_config(base, **form), dataset, time_steps=TIMED_STEPS if timed else 0))


def trainable_models(ws, policy) -> list[str]:
    """The base-model choices; in Space mode only those the policy lets a run start from."""
    from core.runs.policy import is_tiny_model

    choices = ws.model_choices()
    return choices if policy.mode == "full" else [m for m in choices if is_tiny_model(m)]


def build(ws) -> None:
    d = TrainConfig()
    base = gr.State(None)  # the full config of a cloned run: fields the form does not show
    policy = ws.runs.policy
    if policy.banner():
        gr.Markdown(policy.banner(), elem_id="train-policy")
    # The actions sit on top, above the long form and its accordions, and the estimate spans the
    # tab's width in a wrapping box: its lines are sentences, not a table to scroll sideways.
    with gr.Row(equal_height=True):
        dataset = gr.Textbox(value=str(ws.dataset_dir), label="Dataset folder (seed layout)", elem_id="train-dataset",
                             scale=3)
        name = gr.Textbox(value=time.strftime("run-%Y%m%d-%H%M%S"), label="Run name", elem_id="train-name",
                          scale=2)
    with gr.Row(equal_height=True):
        start = gr.Button("Start", variant="primary", elem_id="train-start", interactive=policy.mode != "off")
        estimate_btn = gr.Button("Estimate", elem_id="train-estimate")
        timed = gr.Checkbox(value=True, label="Estimate times 2 real steps (loads the model) for the expected duration",
                            elem_id="train-estimate-timed", scale=2)
        stop = gr.Button("Stop (save)", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")  # why the last action failed, until the next one
    estimate_out = gr.Textbox(label="Estimate", lines=3, max_lines=30, interactive=False, elem_id="train-estimate-out",
                              placeholder="Estimate: tokens per clip, memory and the expected duration, before "
                                          "anything starts")
    with gr.Row():
        with gr.Column(scale=1):
            c = {"model": gr.Dropdown(choices=trainable_models(ws, policy), value=ws.default_model, allow_custom_value=True,
                                      label="Base model", info=_info("model")),
                 "method": gr.Radio(["lora", "qlora", "full", "grpo"], value=d.method, label="Method",
                                    info=_info("method") + " GRPO's own settings come from a cloned run or the defaults.")}
            with gr.Row():
                c["sampling"] = gr.Radio(["uniform", "fps"], value=d.sampling, label="Frame sampling",
                                         info=_info("sampling"))
                c["frames"] = gr.Textbox(value="", label="Frames per clip (blank: model default)",
                                         placeholder="model default", info=_info("frames"), elem_id="train-frames")
            with gr.Row():
                c["width"] = gr.Textbox(value="", label="Frame width (blank: default)", placeholder="model default",
                                        info=_info("width"), elem_id="train-width")
                c["height"] = gr.Textbox(value="", label="Frame height (blank: default)", placeholder="model default",
                                         info=_info("height"), elem_id="train-height")
            with gr.Row():
                c["max_steps"] = gr.Number(value=d.max_steps, label="Max steps", precision=0, elem_id="train-steps",
                                           info=_info("max_steps"))
                c["batch_size"] = gr.Number(value=d.batch_size, label="Batch size (per device)", precision=0,
                                            info=_info("batch_size"))
                c["grad_accum"] = gr.Number(value=d.grad_accum, label="Gradient accumulation", precision=0,
                                            info=_info("grad_accum"))
            with gr.Row():
                c["lr"] = gr.Textbox(value="", label="Learning rate (blank: default)", info=_info("lr"))
                c["save_steps"] = gr.Number(value=d.save_steps, label="Save every N steps", precision=0,
                                            info=_info("save_steps"))
                c["seed"] = gr.Number(value=d.seed, label="Seed", precision=0, info=_info("seed"))
            with gr.Accordion("LoRA", open=False):
                with gr.Row():
                    c["lora_r"] = gr.Number(value=d.lora_r, label="Rank", precision=0, info=_info("lora_r"))
                    c["lora_alpha"] = gr.Number(value=d.lora_alpha, label="Alpha", precision=0, info=_info("lora_alpha"))
                    c["lora_dropout"] = gr.Number(value=d.lora_dropout, label="Dropout", info=_info("lora_dropout"))
                c["lora_targets"] = gr.Radio(["language", "all"], value=d.lora_targets, label="Targets",
                                             info=_info("lora_targets"))
                c["merge_at_end"] = gr.Checkbox(value=d.merge_at_end, label="Merge the adapter into the base at the end",
                                                info=_info("merge_at_end"))
            with gr.Accordion("Optimisation", open=False):
                with gr.Row():
                    c["optimizer"] = gr.Radio(["adamw", "adafactor"], value=d.optimizer, label="Optimizer",
                                              info=_info("optimizer"))
                    c["lr_scheduler"] = gr.Radio(["cosine", "linear", "constant"], value=d.lr_scheduler,
                                                 label="LR schedule", info=_info("lr_scheduler"))
                    c["warmup_steps"] = gr.Number(value=d.warmup_steps, label="Warm-up steps", precision=0,
                                                  info=_info("warmup_steps"))
                with gr.Row():
                    c["precision"] = gr.Radio(["auto", "bf16", "fp16", "fp32"], value=d.precision, label="Precision",
                                              info=_info("precision"))
                    c["gradient_checkpointing"] = gr.Checkbox(value=d.gradient_checkpointing,
                                                              label="Gradient checkpointing",
                                                              info=_info("gradient_checkpointing"))
            with gr.Accordion("Evaluation, logging, processes", open=False):
                with gr.Row():
                    c["eval_steps"] = gr.Number(value=d.eval_steps, label="Evaluate on val every N steps (0: never)",
                                                precision=0, info=_info("eval_steps"))
                    c["eval_max_clips"] = gr.Number(value=d.eval_max_clips, label="Val clips per evaluation",
                                                    precision=0, info=_info("eval_max_clips"))
                    c["max_new_tokens"] = gr.Number(value=d.max_new_tokens, label="Max answer tokens", precision=0,
                                                    info=_info("max_new_tokens"))
                c["report_to"] = gr.Textbox(value=d.report_to, label="Report to (none, tensorboard, trackio, wandb)",
                                            info=_info("report_to"))
                with gr.Row():
                    c["num_processes"] = gr.Number(value=d.num_processes, precision=0,
                                                   label="Processes (0: one per GPU)", info=_info("num_processes"))
                    c["distributed"] = gr.Radio(["ddp", "deepspeed", "fsdp"], value=d.distributed, label="Distributed",
                                                info=_info("distributed"))
                with gr.Row():  # multi-node: this tab starts machine 0; the others run the command in launch.log
                    c["num_machines"] = gr.Number(value=d.num_machines, precision=0, label="Machines",
                                                  info=_info("num_machines"))
                    c["machine_rank"] = gr.Number(value=d.machine_rank, precision=0, label="This machine's rank",
                                                  info=_info("machine_rank"))
                    c["main_process_ip"] = gr.Textbox(value=d.main_process_ip, label="Machine 0's address",
                                                      info=_info("main_process_ip"))
                    c["main_process_port"] = gr.Number(value=d.main_process_port, precision=0,
                                                       label="Rendezvous port (0: default)",
                                                       info=_info("main_process_port"))
        with gr.Column(scale=2):
            with gr.Row():
                selected = gr.Dropdown(choices=[r["run"] for r in ws.runs.list_runs()], label="Run",
                                       allow_custom_value=True, elem_id="train-run")
                clone = gr.Button("Clone config into the form", elem_id="train-clone")
                merge = gr.Button("Merge adapter", elem_id="train-merge")
            progress = gr.Markdown(elem_id="train-progress")
            with gr.Row():
                curve = gr.LinePlot(x="step", y="loss", title="Training loss", height=260, elem_id="train-curve")
                eval_curve = gr.LinePlot(x="step", y="value", color="metric", title=EVAL_TITLE, height=260,
                                         y_lim=[0, 1], elem_id="train-eval-curve")
            log = gr.Textbox(label="Log tail", lines=8, elem_id="train-log")
            table = gr.Dataframe(label="Runs", interactive=False, elem_id="train-runs")
    form = [c[k] for k in FORM_KEYS]
    # a run finished since the page was built can be the next run's base (it stays on the base model
    # by default: continuing from a run is a choice, not what a new run should start from)
    c["model"].focus(lambda: gr.update(choices=trainable_models(ws, policy)), None, c["model"])

    def refresh(run_name):
        table_df = runs_table(ws)
        choices = table_df["run"].tolist()
        if not run_name:
            active = ws.runs.active()
            run_name = active.name if active else (choices[0] if choices else None)
        if not run_name:
            return (gr.update(choices=choices), "No runs yet.", pd.DataFrame({"step": [], "loss": []}),
                    pd.DataFrame(columns=["step", "value", "metric"]), "", table_df)
        try:
            run_dir = ws.runs.run_dir(run_name)
        except WorkbenchError as exc:
            return (gr.update(choices=choices), str(exc), pd.DataFrame({"step": [], "loss": []}),
                    pd.DataFrame(columns=["step", "value", "metric"]), "", table_df)
        status = ws.runs.state(run_dir)
        log_text = "\n".join((run_dir / "train.log").read_text().splitlines()[-12:]) if (run_dir / "train.log").is_file() else ""
        evals = eval_frame(run_dir)
        return (gr.update(choices=choices, value=run_name), run_progress(status, evals), loss_frame(run_dir), evals,
                log_text, table_df)

    skip = gr.skip()
    estimates: dict[str, str] = {}  # run name -> the estimate shown when it started, for a reload mid-run

    def on_start(ds, run_name, base_cfg, estimate_shown, *values):
        try:
            ws.start_training(ds, run_name, form_to_config(base_cfg, **dict(zip(FORM_KEYS, values))))
        except Exception as exc:
            return skip, failure_text(exc, "start")
        estimates[run_name.strip()] = estimate_shown or ""
        return run_name.strip(), f"started {run_name.strip()}; the app's loaded models were unloaded to free memory"

    def on_estimate(ds, base_cfg, timed_on, *values):
        try:
            return estimate_text(ds, base_cfg, dict(zip(FORM_KEYS, values)), timed_on), ""
        except Exception as exc:
            return skip, failure_text(exc, "estimate")

    def on_clone(run_name):
        try:
            values, config = clone_config(ws, run_name)
        except Exception as exc:
            return [skip] * (2 + len(FORM_KEYS)) + [failure_text(exc, "clone")]
        return ([config, time.strftime("run-%Y%m%d-%H%M%S")] + [values[k] for k in FORM_KEYS]
                + [f"form filled from {run_name}; give the new run a name and press Start"])

    def on_merge(run_name):
        from core.train.merge import merge_run

        if not run_name:
            return skip, "✖ pick a run"
        try:
            out = merge_run(ws.runs.run_dir(run_name))
        except Exception as exc:
            return skip, failure_text(exc, "merge")
        return f"merged model written to {out} (usable as a model anywhere)", f"merged model written to {out}"

    def on_stop(run_name):
        if not run_name:
            return skip, "✖ pick a run"
        try:
            ws.runs.stop(ws.runs.run_dir(run_name))
        except Exception as exc:
            return skip, failure_text(exc, "stop")
        return run_name, f"asked {run_name} to stop: it saves a checkpoint and ends"

    def on_resume(run_name):
        if not run_name:
            return skip, "✖ pick a run"
        try:
            ws.runs.resume(ws.runs.run_dir(run_name))
        except Exception as exc:
            return skip, failure_text(exc, "resume")
        return run_name, f"resumed {run_name} from its last checkpoint"

    def on_page_load():
        """A reload during a run shows that run's form (its config.yaml), name and estimate, not the
        defaults a new page is built with."""
        active = ws.runs.active()
        fresh = [skip, time.strftime("run-%Y%m%d-%H%M%S"), skip] + [skip] * len(FORM_KEYS)  # a new run's name
        if active is None:
            return fresh
        try:
            values, config = clone_config(ws, active.name)
        except WorkbenchError:
            return fresh
        return [config, active.name, estimates.get(active.name, skip)] + [values[k] for k in FORM_KEYS]

    outputs = [selected, progress, curve, eval_curve, log, table]
    start.click(on_start, [dataset, name, base, estimate_out, *form], [selected, message],
                api_name="start_run").then(refresh, selected, outputs)
    estimate_btn.click(on_estimate, [dataset, base, timed, *form], [estimate_out, message], api_name="estimate")
    clone.click(on_clone, selected, [base, name, *form, message], api_name="clone_config")
    merge.click(on_merge, selected, [estimate_out, message], api_name="merge_run")
    stop.click(on_stop, selected, [selected, message], api_name="stop_run").then(refresh, selected, outputs)
    resume.click(on_resume, selected, [selected, message], api_name="resume_run").then(refresh, selected, outputs)
    selected.change(refresh, selected, outputs, api_name="run_status")
    gr.Timer(2.0).tick(refresh, selected, outputs, show_progress="hidden")
    page_load()(on_page_load, None, [base, name, estimate_out, *form], show_progress="hidden")
