"""The foundation's promise, end to end through the CLI a user types: the embedded default, trained
with defaults on the bundled train split, answers the test split with valid, correct JSON — and on
clips from a generator seed it never saw — while the untrained base emits noise."""

import json
import subprocess
import sys

import pytest

from tests.support import SAMPLES, run_cli

pytestmark = pytest.mark.slow  # end to end: see pyproject markers

UNSEEN_SEED = 777  # never used for training or tuning


def run_ok(*args, timeout=1200):
    out = run_cli(*args, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def eval_json(model, dataset, split):
    # unconstrained: schema validity measures what the model learned, not what the grammar forces
    return json.loads(run_ok("eval", "--model", model, "--dataset", dataset, "--split", split, "--unconstrained",
                             "--json").stdout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "default"
    run_ok("train", "--dataset", SAMPLES, "--output", run)
    return run


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    out = tmp_path_factory.mktemp("unseen")
    subprocess.run([sys.executable, str(SAMPLES / "generate.py"), "--seed", str(UNSEEN_SEED), "--count", "40",
                    "--out", str(out)], check=True, timeout=300)
    return out


def test_run_directory_is_complete(run_dir):
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["global_step"] == status["max_steps"] > 0
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) >= 10 and losses[-1] < losses[0] / 10
    spec = json.loads((run_dir / "preprocessing.json").read_text())
    assert spec["sampling"]["num_frames"] == 8 and spec["sampling"]["width"] == 96
    assert spec["schema"] == json.loads((SAMPLES / "schema.json").read_text())
    assert (run_dir / "final" / "adapter_config.json").is_file()
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    assert json.loads((run_dir / "final" / "preprocessing.json").read_text()) == spec
    assert (run_dir / "config.yaml").is_file() and (run_dir / "train.log").is_file()


def test_finetuned_default_is_valid_and_correct_on_test_split(run_dir):
    report = eval_json(run_dir, SAMPLES, "test")
    assert report["schema_valid_rate"] == 1.0
    assert report["mean_field_accuracy"] >= 0.9, report["per_field"]
    assert report["text_scores"]["caption"]["token_f1"] >= 0.8


def test_finetuned_default_generalises_to_an_unseen_seed(run_dir, unseen):
    report = eval_json(run_dir, unseen, "all")
    assert report["count"] == 40
    assert report["schema_valid_rate"] == 1.0
    assert report["mean_field_accuracy"] >= 0.9, report["per_field"]


def test_untrained_base_emits_noise():
    report = eval_json("tiny:default", SAMPLES, "test")
    assert report["schema_valid_rate"] <= 0.05
    assert report["mean_field_accuracy"] <= 0.2
