"""Export tab's "Confidence and review" panel: a run's calibration table, and the button that fits it.

Thin over core.serve.calibrate.calibrate_run (what `cli.py calibrate` calls): the run answers a
labelled split as it is served, per-field maps and review thresholds are fitted and saved in the
run, and every later prediction, draft and API answer of that run is calibrated.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from tabs.feedback import failure_text

COLUMNS = ["field", "rows", "map", "ece_raw", "ece", "threshold", "precision", "coverage"]


def calibration_view(run) -> tuple[str, pd.DataFrame]:
    """(what the run's scores are, in words; its per-field table) for a picked run."""
    from core.schema.calibration import for_run
    from core.serve.calibrate import calibration_rows
    from core.serve.report import calibration_source

    if not run:
        return "", pd.DataFrame(columns=COLUMNS)
    cal = for_run(run)
    text = f"Scores of this run: {calibration_source(cal)}."
    if cal is not None:
        text += ("\n\nA field is accepted without a person when its calibrated score reaches its threshold; "
                 "a blank threshold means no threshold kept the target precision, so that field is always "
                 "reviewed. " + " ".join(cal.notes))
    return text, pd.DataFrame(calibration_rows(cal) if cal else [], columns=COLUMNS)


def build(ws, pickers) -> None:
    with gr.Accordion("Confidence and review (calibrate a run)", open=False):
        with gr.Row():
            run = pickers.run(label="Run", elem_id="calibrate-run")
            split = gr.Dropdown(["val", "test"], value="val", label="Labelled split to fit on (not trained on)")
            target = gr.Number(0.98, label="Target precision of accepted fields", minimum=0.5, maximum=0.999)
            go = gr.Button("Calibrate", elem_id="calibrate-go")
        msg = gr.Markdown(elem_id="calibrate-msg")
        table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Per field", interactive=False,
                             elem_id="calibrate-table")

    def on_calibrate(run_, split_, target_, progress=gr.Progress()):  # noqa: B008
        from core.serve.calibrate import calibrate_run

        if not run_:
            return "✖ pick a run", gr.skip()
        try:
            calibrate_run(run_, ws.dataset_dir, split_, float(target_), models=ws.models,
                          progress=lambda d, t: progress((d, t), desc="calibrating"))
        except Exception as exc:
            return failure_text(exc, "calibrate"), gr.skip()
        return calibration_view(run_)

    run.change(calibration_view, run, [msg, table])
    go.click(on_calibrate, [run, split, target], [msg, table], api_name="calibrate",
             concurrency_id="gpu", concurrency_limit=1)
