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

from core.config import TrainConfig
from core.config.form import TRISTATE, config_from_form, form_fields, form_values
from core.errors import WorkbenchError
from core.runs.files import RunFiles, duration_text
from tabs.feedback import failure_text
from tabs.shared import page_load

# The form's fields, in the order the handlers (and the /start_run and /estimate API) take them: every
# TrainConfig field the form shows (core.config.form), so a new field needs no edit here.
FORM_FIELDS = form_fields()
FORM_KEYS = tuple(info.name for info in FORM_FIELDS)
DEFAULTS = form_values({})  # each field's value on a new form
OPEN_GROUPS = ("Model", "Frames and prompt", "Steps and optimisation")  # the rest start folded


def form_to_config(base: dict | None = None, **form) -> TrainConfig:
    """Form values → validated TrainConfig (core.config.form.config_from_form)."""
    return config_from_form(form, base)


def config_to_form(config: dict) -> dict:
    """A run's config.yaml → form values (core.config.form.form_values)."""
    return form_values(config)


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
    policy = ws.runs.policy
    if policy.banner():
        gr.Markdown(policy.banner(), elem_id="train-policy")
    top = _actions(ws, policy)
    with gr.Row():
        with gr.Column(scale=1):
            form = _form(ws, policy)
        with gr.Column(scale=2):
            view = _runs_view(ws)
    _wire(ws, policy, top, form, view)


def _actions(ws, policy) -> dict:
    """The actions sit on top, above the long form and its accordions, and the estimate spans the
    tab's width in a wrapping box: its lines are sentences, not a table to scroll sideways."""
    t = {"base": gr.State(None)}  # the full config of a cloned run: fields the form does not show
    with gr.Row(equal_height=True):
        t["dataset"] = gr.Textbox(value=str(ws.dataset_dir), label="Dataset folder (seed layout)",
                                  elem_id="train-dataset", scale=3)
        t["name"] = gr.Textbox(value=time.strftime("run-%Y%m%d-%H%M%S"), label="Run name", elem_id="train-name",
                               scale=2)
    with gr.Row(equal_height=True):
        t["start"] = gr.Button("Start", variant="primary", elem_id="train-start", interactive=policy.mode != "off")
        t["estimate"] = gr.Button("Estimate", elem_id="train-estimate")
        t["timed"] = gr.Checkbox(value=True, label="Estimate times 2 real steps (loads the model) for the expected "
                                 "duration", elem_id="train-estimate-timed", scale=2)
        t["stop"] = gr.Button("Stop (save)", elem_id="train-stop")
        t["resume"] = gr.Button("Resume", elem_id="train-resume")
    t["message"] = gr.Markdown(elem_id="train-message")  # why the last action failed, until the next one
    t["estimate_out"] = gr.Textbox(label="Estimate", lines=3, max_lines=30, interactive=False,
                                   elem_id="train-estimate-out", placeholder="Estimate: tokens per clip, memory and "
                                   "the expected duration, before anything starts")
    return t


def _form(ws, policy) -> dict:
    """One component per form field, grouped as TrainConfig groups them; its hint is the field's doc."""
    c, default_method = {}, TrainConfig().method
    for group in dict.fromkeys(info.group for info in FORM_FIELDS):
        infos = [info for info in FORM_FIELDS if info.group == group]
        with gr.Accordion(group, open=group in OPEN_GROUPS):
            for start in range(0, len(infos), 2):  # two per row: the form column is a third of the tab
                with gr.Row():
                    for info in infos[start:start + 2]:
                        c[info.name] = _widget(ws, policy, info, default_method in info.methods)
    return c


def _widget(ws, policy, info, enabled: bool):
    """The component for one field: the model picker, a radio for choices, a checkbox, a number, or a
    text box (blank: the model's default) for a field that may be unset."""
    common = {"label": info.label, "info": info.doc + info.only_for, "elem_id": "train-" + info.name.replace("_", "-"),
              "interactive": enabled}
    value = DEFAULTS[info.name]
    if info.name == "model":
        return gr.Dropdown(choices=trainable_models(ws, policy), value=ws.default_model, allow_custom_value=True,
                           **common)
    if info.kind == "choice":
        return gr.Radio(list(info.choices), value=value, **common)
    if info.kind == "tristate":
        return gr.Radio(list(TRISTATE), value=value, **common)
    if info.kind == "bool":
        return gr.Checkbox(value=value, **common)
    if info.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if info.kind == "int" else None, **common)
    return gr.Textbox(value=value, lines=info.lines, placeholder="model default" if info.optional else None, **common)


def _runs_view(ws) -> dict:
    v = {}
    with gr.Row():
        v["selected"] = gr.Dropdown(choices=[r["run"] for r in ws.runs.list_runs()], label="Run",
                                    allow_custom_value=True, elem_id="train-run")
        v["clone"] = gr.Button("Clone config into the form", elem_id="train-clone")
        v["merge"] = gr.Button("Merge adapter", elem_id="train-merge")
    v["progress"] = gr.Markdown(elem_id="train-progress")
    with gr.Row():
        v["curve"] = gr.LinePlot(x="step", y="loss", title="Training loss", height=260, elem_id="train-curve")
        v["eval_curve"] = gr.LinePlot(x="step", y="value", color="metric", title=EVAL_TITLE, height=260,
                                      y_lim=[0, 1], elem_id="train-eval-curve")
    v["log"] = gr.Textbox(label="Log tail", lines=8, elem_id="train-log")
    v["table"] = gr.Dataframe(label="Runs", interactive=False, elem_id="train-runs")
    return v


def _wire(ws, policy, t, c, v) -> None:
    h = TrainHandlers(ws)
    form = [c[k] for k in FORM_KEYS]
    outputs = [v[k] for k in ("selected", "progress", "curve", "eval_curve", "log", "table")]
    # a run finished since the page was built can be the next run's base (it stays on the base model
    # by default: continuing from a run is a choice, not what a new run should start from)
    c["model"].focus(lambda: gr.update(choices=trainable_models(ws, policy)), None, c["model"])
    c["method"].change(lambda m: [gr.update(interactive=m in info.methods) for info in FORM_FIELDS], c["method"], form,
                       show_progress="hidden")
    sel = v["selected"]
    t["start"].click(h.start, [t["dataset"], t["name"], t["base"], t["estimate_out"], *form], [sel, t["message"]],
                     api_name="start_run").then(h.refresh, sel, outputs)
    t["estimate"].click(h.estimate, [t["dataset"], t["base"], t["timed"], *form], [t["estimate_out"], t["message"]],
                        api_name="estimate")
    v["clone"].click(h.clone, sel, [t["base"], t["name"], *form, t["message"]], api_name="clone_config")
    v["merge"].click(h.merge, sel, [t["estimate_out"], t["message"]], api_name="merge_run")
    t["stop"].click(h.stop, sel, [sel, t["message"]], api_name="stop_run").then(h.refresh, sel, outputs)
    t["resume"].click(h.resume, sel, [sel, t["message"]], api_name="resume_run").then(h.refresh, sel, outputs)
    sel.change(h.refresh, sel, outputs, api_name="run_status")
    shown = gr.State(None)  # what the last tick drew: an unchanged run is not sent (or redrawn) again
    gr.Timer(2.0).tick(h.tick, [sel, shown], [*outputs, shown], show_progress="hidden")
    page_load()(h.page_load, None, [t["base"], t["name"], t["estimate_out"], *form], show_progress="hidden")


class TrainHandlers:
    """What the Train tab's buttons, timer and page load do; each failure becomes the message line."""

    def __init__(self, ws):
        self.ws = ws
        self.estimates: dict[str, str] = {}  # run name -> the estimate shown when it started, for a reload mid-run

    def refresh(self, run_name):
        ws = self.ws
        table_df = runs_table(ws)
        choices = table_df["run"].tolist()
        empty = (pd.DataFrame({"step": [], "loss": []}), pd.DataFrame(columns=["step", "value", "metric"]), "")
        if not run_name:
            active = ws.runs.active()
            run_name = active.name if active else (choices[0] if choices else None)
        if not run_name:
            return (gr.update(choices=choices), "No runs yet.", *empty, table_df)
        try:
            run_dir = ws.runs.run_dir(run_name)
        except WorkbenchError as exc:
            return (gr.update(choices=choices), str(exc), *empty, table_df)
        evals = eval_frame(run_dir)
        return (gr.update(choices=choices, value=run_name), run_progress(ws.runs.state(run_dir), evals),
                loss_frame(run_dir), evals, RunFiles(run_dir).log_tail(12), table_df)

    def tick(self, run_name, shown):
        """The 2 s poll: the refresh only when a run's files, its state or the list of runs changed since
        the last tick, so an unchanged run is neither re-read nor redrawn (the browser's share of CPU
        on a 2-core machine is taken from the training the page is watching)."""
        # each run's state is in the mark too: a process killed without a word changes no file
        mark = (run_name, tuple((r["run"], r.get("state"), RunFiles(r["path"]).change_mark())
                                for r in self.ws.runs.list_runs()))
        if mark == shown:
            return [gr.skip()] * 6 + [shown]
        return [*self.refresh(run_name), mark]

    def start(self, ds, run_name, base_cfg, estimate_shown, *values):
        try:
            self.ws.start_training(ds, run_name, form_to_config(base_cfg, **dict(zip(FORM_KEYS, values))))
        except Exception as exc:
            return gr.skip(), failure_text(exc, "start")
        self.estimates[run_name.strip()] = estimate_shown or ""
        return run_name.strip(), f"started {run_name.strip()}; the app's loaded models were unloaded to free memory"

    def estimate(self, ds, base_cfg, timed_on, *values):
        try:
            return estimate_text(ds, base_cfg, dict(zip(FORM_KEYS, values)), timed_on), ""
        except Exception as exc:
            return gr.skip(), failure_text(exc, "estimate")

    def clone(self, run_name):
        try:
            values, config = clone_config(self.ws, run_name)
        except Exception as exc:
            return [gr.skip()] * (2 + len(FORM_KEYS)) + [failure_text(exc, "clone")]
        return ([config, time.strftime("run-%Y%m%d-%H%M%S")] + [values[k] for k in FORM_KEYS]
                + [f"form filled from {run_name}; give the new run a name and press Start"])

    def merge(self, run_name):
        from core.train.merge import merge_run

        if not run_name:
            return gr.skip(), "✖ pick a run"
        try:
            out = merge_run(self.ws.runs.run_dir(run_name))
        except Exception as exc:
            return gr.skip(), failure_text(exc, "merge")
        return f"merged model written to {out} (usable as a model anywhere)", f"merged model written to {out}"

    def stop(self, run_name):
        if not run_name:
            return gr.skip(), "✖ pick a run"
        try:
            self.ws.runs.stop(self.ws.runs.run_dir(run_name))
        except Exception as exc:
            return gr.skip(), failure_text(exc, "stop")
        return run_name, f"asked {run_name} to stop: it saves a checkpoint and ends"

    def resume(self, run_name):
        if not run_name:
            return gr.skip(), "✖ pick a run"
        try:
            self.ws.runs.resume(self.ws.runs.run_dir(run_name))
        except Exception as exc:
            return gr.skip(), failure_text(exc, "resume")
        return run_name, f"resumed {run_name} from its last checkpoint"

    def page_load(self):
        """A reload during a run shows that run's form (its config.yaml), name and estimate, not the
        defaults a new page is built with."""
        skip, active = gr.skip(), self.ws.runs.active()
        fresh = [skip, time.strftime("run-%Y%m%d-%H%M%S"), skip] + [skip] * len(FORM_KEYS)  # a new run's name
        if active is None:
            return fresh
        try:
            values, config = clone_config(self.ws, active.name)
        except WorkbenchError:
            return fresh
        return [config, active.name, self.estimates.get(active.name, skip)] + [values[k] for k in FORM_KEYS]
