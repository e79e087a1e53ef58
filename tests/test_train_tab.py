"""Train tab: form parsing, and a real run started and watched through the Gradio API."""

import subprocess
import sys
import time

import pytest

from conftest import SAMPLES
from core.errors import ConfigError
from tabs.train import form_to_config, progress_markdown

FORM = dict(model="tiny:default", method="lora", lora_r=8, frames=None, sampling="uniform", width=None,
            height=None, max_steps=12, batch_size=4, lr="", save_steps=6, seed=0)


def test_form_blank_fields_mean_model_defaults():
    cfg = form_to_config(**FORM)
    assert cfg.num_frames is None and cfg.learning_rate is None and cfg.max_steps == 12 and cfg.lora_r == 8


def test_form_rejects_bad_values():
    with pytest.raises(ConfigError):
        form_to_config(**dict(FORM, batch_size=0))


def test_progress_shows_state_step_and_crash_tail():
    text = progress_markdown({"state": "running", "global_step": 5, "max_steps": 10, "loss": 0.5,
                              "started": 100.0, "updated": 110.0, "start_step": 0})
    assert "step 5/10" in text and "50%" in text and "ETA 10s" in text
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
    form = [FORM[k] for k in ("model", "method", "lora_r", "frames", "sampling", "width", "height", "max_steps",
                              "batch_size", "lr", "save_steps", "seed")]
    name = client.predict(str(data), "tabrun", *form, api_name="/start_run")
    assert name == "tabrun"
    deadline = time.time() + 600
    while time.time() < deadline:
        _, progress, curve, log, table = client.predict("tabrun", api_name="/run_status")
        if progress.startswith("**completed**"):
            break
        time.sleep(1)
    assert progress.startswith("**completed**") and "step 12/12" in progress
    assert len(curve["data"]) >= 5  # the loss curve has points
    assert "completed at step 12" in log
    assert (ws.runs_dir / "tabrun" / "final" / "adapter_config.json").is_file()
