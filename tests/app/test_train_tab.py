"""Train tab: form parsing, and a real run started and watched through the Gradio API."""

import subprocess
import sys
import time

import pytest

from core.config import TrainConfig
from core.errors import ConfigError, WorkbenchError
from core.runs.manager import RunManager
from tabs.train import (
    FORM_FIELDS,
    FORM_KEYS,
    clone_config,
    config_to_form,
    duration_text,
    form_to_config,
    progress_markdown,
)
from tests.support import SAMPLES

# every form field at its default, then what these tests change
FORM = dict(config_to_form(vars(TrainConfig())), model="tiny:default", lora_r=8, num_frames=None, frame_width=None,
            frame_height=None, max_steps=12, batch_size=4, learning_rate="", save_steps=6, eval_steps=6,
            eval_max_clips=2, max_new_tokens=32)


def test_form_blank_fields_mean_model_defaults():
    cfg = form_to_config(**FORM)
    assert cfg.num_frames is None and cfg.learning_rate is None and cfg.max_steps == 12 and cfg.lora_r == 8


def test_form_rejects_bad_values():
    with pytest.raises(ConfigError):
        form_to_config(**dict(FORM, batch_size=0))
    with pytest.raises(ConfigError, match="num_frames 'eight' is not a whole number"):
        form_to_config(**dict(FORM, num_frames="eight"))


def test_blank_default_fields_are_blank_text_and_blank_means_default():
    for blank in ("", " ", None):
        cfg = form_to_config(**dict(FORM, num_frames=blank, frame_width=blank, frame_height=blank,
                                    dataloader_workers=blank))
        assert (cfg.num_frames, cfg.frame_width, cfg.frame_height, cfg.dataloader_workers) == (None,) * 4
    cfg = form_to_config(**dict(FORM, num_frames="6", frame_width="128", frame_height=96, dataloader_workers="0"))
    assert (cfg.num_frames, cfg.frame_width, cfg.frame_height, cfg.dataloader_workers) == (6, 128, 96, 0)
    with pytest.raises(ConfigError, match="num_frames must be >= 1"):  # 0 is not "blank": it says why
        form_to_config(**dict(FORM, num_frames="0"))


def _built_train_tab(tmp_path):
    import gradio as gr

    from core.runs.policy import TrainingPolicy
    from core.workspace import Workspace
    from tabs import train

    ws = Workspace(dataset_dir=SAMPLES, runs_dir=tmp_path)
    ws.runs = RunManager(tmp_path, policy=TrainingPolicy("full", "test"))
    with gr.Blocks() as demo:
        train.build(ws)
    return demo


def test_form_shows_blanks_start_on_top_and_a_wide_wrapping_estimate(tmp_path):
    import gradio as gr

    demo = _built_train_tab(tmp_path)
    blocks = list(demo.blocks.values())  # in the order they were laid out
    position = {getattr(b, "elem_id", None): i for i, b in enumerate(blocks)}
    optional = [info for info in FORM_FIELDS if info.optional]  # frames, frame size, learning rate, ...
    assert {"num_frames", "frame_width", "frame_height", "learning_rate"} <= {info.name for info in optional}
    for info in optional:
        box = blocks[position["train-" + info.name.replace("_", "-")]]
        assert isinstance(box, gr.Textbox) and box.value in ("", None) and box.placeholder == "model default"
    first_field = min(i for i, b in enumerate(blocks) if getattr(b, "info", None))
    assert position["train-start"] < first_field  # Start above the form, not under it
    groups = [b for b in blocks if isinstance(b, gr.Accordion)]
    assert [g.label for g in groups if g.open] == ["Model", "Frames and prompt", "Steps and optimisation"]
    estimate_box = blocks[position["train-estimate-out"]]
    assert isinstance(estimate_box, gr.Textbox)  # wraps its lines; a Markdown code block scrolled sideways
    assert position["train-estimate-out"] < first_field  # full width, above the two columns


def test_progress_shows_state_step_and_crash_tail():
    text = progress_markdown({"state": "running", "global_step": 5, "max_steps": 10, "loss": 0.5,
                              "started": 100.0, "updated": 110.0, "start_step": 0})
    assert "step 5/10" in text and "50%" in text and "ETA 10s" in text
    long = progress_markdown({"state": "running", "global_step": 10, "max_steps": 1000, "started": 100.0,
                              "updated": 155.5, "start_step": 0})
    assert "ETA 1h 31m" in long  # 5494.5 s, read at a glance
    assert [duration_text(x) for x in (42, 425, 3600)] == ["42s", "7m 05s", "1h 00m"]
    crashed = progress_markdown({"state": "crashed", "exit_code": -9, "log_tail": "boom"})
    assert "exit code -9" in crashed and "boom" in crashed


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from gradio_client import Client

    from app import build_app
    from core.workspace import Workspace

    data = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, str(SAMPLES / "generate.py"), "--seed", "9", "--count", "10", "--out", str(data)],
                   check=True, timeout=120)
    ws = Workspace(dataset_dir=data, runs_dir=tmp_path_factory.mktemp("runs"))
    demo = build_app(ws)
    demo.queue()
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), ws, data
    finally:
        demo.close()


def test_start_run_from_the_tab_and_watch_it_complete(app_client):
    client, ws, data = app_client
    form = [FORM[k] for k in FORM_KEYS]
    name, message = client.predict(str(data), "tabrun", "", *form, api_name="/start_run")
    assert name == "tabrun" and message.startswith("started tabrun")
    deadline = time.time() + 600
    while time.time() < deadline:
        _, progress, curve, eval_curve, log, table = client.predict("tabrun", api_name="/run_status")
        if progress.startswith("**completed**"):
            break
        time.sleep(1)
    assert progress.startswith("**completed**") and "step 12/12" in progress
    assert len(curve["data"]) >= 5  # the loss curve has points
    # eval at steps 6 and 12, two metrics each, on the val split the generator wrote
    assert sorted({row[0] for row in eval_curve["data"]}) == [6, 12] and len(eval_curve["data"]) == 4
    assert "completed at step 12" in log
    assert "does not evaluate" not in progress  # the hint shows only for runs without evaluations
    assert (ws.runs_dir / "tabrun" / "final" / "adapter_config.json").is_file()


def test_new_form_fields_reach_the_config():
    cfg = form_to_config(**dict(FORM, grad_accum=4, lr_scheduler="linear", optimizer="adafactor", precision="fp32",
                                gradient_checkpointing=True, lora_alpha=64, lora_dropout=0.05, lora_targets="all",
                                num_processes=2, distributed="fsdp", merge_at_end=True, report_to="none"))
    assert (cfg.grad_accum, cfg.lr_scheduler, cfg.optimizer, cfg.precision) == (4, "linear", "adafactor", "fp32")
    assert cfg.gradient_checkpointing and cfg.merge_at_end and cfg.lora_targets == "all"
    assert (cfg.lora_alpha, cfg.lora_dropout, cfg.num_processes, cfg.distributed) == (64, 0.05, 2, "fsdp")
    with pytest.raises(ConfigError, match="optimizer"):
        form_to_config(**dict(FORM, optimizer="sgd"))


def test_clone_fills_the_form_and_keeps_fields_the_form_does_not_show(tmp_path):
    from types import SimpleNamespace

    past = TrainConfig(model="tiny:qwen2_5_vl", lora_r=4, num_frames=6, learning_rate=2e-3, grad_accum=3,
                       optimizer="adafactor", eval_steps=50, freeze_vision=True, train_embeddings=True, fps=3.0)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.yaml").write_text(past.to_yaml())
    values, config = clone_config(SimpleNamespace(runs=RunManager(tmp_path)), "old")
    assert set(values) == set(FORM_KEYS)
    assert (values["model"], values["lora_r"], values["num_frames"], values["learning_rate"]) == (
        "tiny:qwen2_5_vl", 4, "6", "0.002")
    assert values["frame_width"] == "" and values["frame_height"] == ""  # a blank, not a 0 the person never typed
    assert (values["grad_accum"], values["optimizer"], values["eval_steps"]) == (3, "adafactor", 50)
    again = form_to_config(config, **values)  # Start with the cloned form, untouched
    assert vars(again) == dict(vars(past), logging_steps=again.logging_steps)
    with pytest.raises(ConfigError, match="no config.yaml"):
        clone_config(SimpleNamespace(runs=RunManager(tmp_path)), "missing")


def test_clone_config_endpoint_returns_the_finished_runs_form(app_client):
    import yaml

    client, ws, _ = app_client
    config = yaml.safe_load((ws.runs_dir / "tabrun" / "config.yaml").read_text())
    out = client.predict("tabrun", api_name="/clone_config")
    name, values, message = out[0], dict(zip(FORM_KEYS, out[1:-1])), out[-1]
    assert message.startswith("form filled from tabrun")
    assert name.startswith("run-") and name != "tabrun"
    assert values["max_steps"] == 12 and values["lora_r"] == 8 and values["eval_steps"] == 6
    assert values["num_frames"] == str(config["num_frames"]) == "8"  # the resolved value the run actually used


def test_estimate_endpoint_shows_tokens_memory_and_duration_before_start(app_client):
    import re

    client, _, data = app_client
    text, message = client.predict(str(data), True, *[FORM[k] for k in FORM_KEYS], api_name="/estimate")
    assert message == ""
    assert "visual tokens per clip: 96" in text and "memory: weights" in text and "host RAM" in text
    found = re.search(r"expected duration: about (\S+(?: \S+)?) for 12 steps, from ([0-9.]+) s/step measured", text)
    assert found and float(found.group(2)) > 0
    assert "```" not in text  # plain text for the wrapping box, not a code block that scrolls sideways
    untimed, _ = client.predict(str(data), False, *[FORM[k] for k in FORM_KEYS], api_name="/estimate")
    assert "expected duration: not measured" in untimed


def test_start_refuses_what_this_machine_cannot_do_before_launching(app_client):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    client, ws, data = app_client
    form = [dict(FORM, method="qlora")[k] for k in FORM_KEYS]
    _, message = client.predict(str(data), "qlora-run", "", *form, api_name="/start_run")
    assert message.startswith("✖ start failed: ") and "bitsandbytes" in message  # beside the button, not a toast
    assert not (ws.runs_dir / "qlora-run" / "launch.json").exists()


class _CountingModels:
    """Stands in for the app's model manager: records when the models are unloaded."""

    def __init__(self, log):
        self.log = log

    def unload_all(self):
        self.log.append("unload")


def _workspace_with_fake_trainer(tmp_path, mode="full"):
    """A Workspace whose run manager launches a stand-in for cli.py (it records its argv and exits)."""
    from core.runs.policy import TrainingPolicy
    from core.workspace import Workspace

    tmp_path.mkdir(parents=True, exist_ok=True)
    fake_cli = tmp_path / "fake_cli.py"
    fake_cli.write_text("import json, sys, pathlib\n"
                        "out = pathlib.Path(sys.argv[sys.argv.index('--output') + 1])\n"
                        "(out / 'argv.json').write_text(json.dumps(sys.argv[1:]))\n")
    log = []
    ws = Workspace(dataset_dir=SAMPLES, runs_dir=tmp_path / "runs", models=_CountingModels(log))
    ws.runs = RunManager(ws.runs_dir, cli=fake_cli, gpus=0, policy=TrainingPolicy(mode, "test"))
    return ws, log


def test_start_training_unloads_only_when_the_launch_is_certain(tmp_path):
    import torch

    ws, log = _workspace_with_fake_trainer(tmp_path)
    run = ws.start_training(SAMPLES, " ok ", form_to_config(**FORM))
    assert run == ws.runs_dir / "ok" and log == ["unload"]
    state = ws.runs.wait(run, timeout_s=60)
    assert state.get("exit_code") == 0
    assert (run / "argv.json").is_file() and "--config" in (run / "argv.json").read_text()
    refusals = [(" ok ", FORM, "exists"), ("../x", FORM, "plain folder name")]
    if not torch.cuda.is_available():
        refusals.append(("q", dict(FORM, method="qlora"), "bitsandbytes"))
    for name, form, reason in refusals:
        with pytest.raises(WorkbenchError, match=reason):
            ws.start_training(SAMPLES, name, form_to_config(**form))
    assert log == ["unload"]  # no refused start unloaded anything
    assert not (ws.runs_dir / "q").exists()
    off, off_log = _workspace_with_fake_trainer(tmp_path / "off", mode="off")
    with pytest.raises(ConfigError, match="training is off"):
        off.start_training(SAMPLES, "r", form_to_config(**FORM))
    assert off_log == [] and not (off.runs_dir / "r").exists()


def test_every_form_field_shows_its_config_doc(tmp_path):
    import gradio as gr

    from core.config import field_docs
    from core.runs.policy import TrainingPolicy
    from core.workspace import Workspace
    from tabs import train

    ws = Workspace(dataset_dir=SAMPLES, runs_dir=tmp_path)
    ws.runs = RunManager(tmp_path, policy=TrainingPolicy("full", "test"))
    with gr.Blocks() as demo:
        train.build(ws)
    infos = [b.info for b in demo.blocks.values() if getattr(b, "info", None)]
    docs = field_docs()
    missing = [key for key in FORM_KEYS if not any(info.startswith(docs[key]) for info in infos)]
    assert missing == []
    assert len(infos) == len(FORM_KEYS)


def test_a_run_without_evaluations_says_how_to_get_the_val_curve():
    import pandas as pd

    from tabs.train import NO_EVAL_HINT, eval_frame, run_progress

    status = {"state": "running", "global_step": 5, "max_steps": 10}
    assert NO_EVAL_HINT in run_progress(status, eval_frame("/nonexistent-run"))
    evals = pd.DataFrame([{"step": 5, "value": 1.0, "metric": "schema-valid"}])
    assert "does not evaluate" not in run_progress(status, evals)


def test_the_poll_skips_a_run_that_did_not_change_and_redraws_one_that_did(tmp_path):
    import gradio as gr

    from core.workspace import Workspace
    from tabs.train import TrainHandlers

    run = tmp_path / "r"
    run.mkdir()
    (run / "status.json").write_text('{"state": "completed", "global_step": 3, "max_steps": 3}')
    (run / "train.log").write_text("line 1\n")
    h = TrainHandlers(Workspace(dataset_dir=SAMPLES, runs_dir=tmp_path))
    first = h.tick("r", None)
    assert "step 3/3" in first[1] and first[4] == "line 1"
    again = h.tick("r", first[-1])
    assert all(isinstance(x, type(gr.skip())) for x in again[:-1]) and again[-1] == first[-1]
    (run / "train.log").write_text("line 1\nline 2\n")
    changed = h.tick("r", again[-1])
    assert changed[4] == "line 1\nline 2" and changed[-1] != first[-1]
