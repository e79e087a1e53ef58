"""Old commands and YAML files give the same runs: the golden files are the config.yaml and
preprocessing.json that these exact commands wrote before TrainConfig was grouped (2026-12-07). A
spec from then still loads (test_an_old_spec_still_loads)."""

import json
from pathlib import Path

import pytest
import yaml

from tests.support import SAMPLES, run_cli

GOLDEN = Path(__file__).parent / "golden"
COMMON = ["--logging-steps", "1", "--save-steps", "0", "--no-calibrate-at-end", "--dataloader-workers", "0"]
COMMANDS = {
    "flags": ["--max-steps", "2", "--batch-size", "2", "--frames", "4", "--frame-width", "64", "--frame-height", "48",
              "--lora-r", "4", "--lora-alpha", "8", "--learning-rate", "0.002", "--lr-scheduler", "linear",
              "--warmup-steps", "1", "--sampling", "uniform", *COMMON],
    "yaml": ["--config", GOLDEN / "old.yaml", "--seed", "3"],
    "grpo": ["--method", "grpo", "--max-steps", "1", "--batch-size", "2", "--num-generations", "2", "--frames", "4",
             "--max-completion-length", "16", *COMMON],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_old_command_writes_the_same_config_and_spec(name, tmp_path):
    run = tmp_path / name
    result = run_cli("train", "--dataset", SAMPLES, "--output", run, *COMMANDS[name], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load((GOLDEN / name / "config.yaml").read_text())
    old = json.loads((GOLDEN / name / "preprocessing.json").read_text())
    old.pop("answer_format")  # written into every spec and read by nothing: dropped (old specs still load)
    assert json.loads((run / "preprocessing.json").read_text()) == old


def test_an_old_spec_still_loads():
    from core.spec import PreprocessSpec

    spec = PreprocessSpec.load(GOLDEN / "flags")
    assert spec.base_model == "tiny:default" and spec.sampling["num_frames"] == 4
