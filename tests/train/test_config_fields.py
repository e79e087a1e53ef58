"""One source for each training setting: a field declared in core/config/groups.py is a flag, a form
field and a line of the YAML docs with no other edit; a value a method ignores is refused."""

import shutil
import subprocess
import sys
from dataclasses import fields

import pytest
import yaml

from core.config import TrainConfig, described, yaml_docs
from core.config.checks import default_of
from core.config.form import config_from_form, form_values
from core.errors import ConfigError
from tests.support import REPO

NEW_FIELD = '''
    knob_for_a_test: int = opt(7, "Knob for a test")
    """A field that exists only in this test: it must reach --help, the form and the YAML docs."""
'''
PROBE = r'''
import gradio as gr, sys
from core.config import TrainConfig, yaml_docs
from core.workspace import Workspace
from core.runs.manager import RunManager
from core.runs.policy import TrainingPolicy
from tabs import train
ws = Workspace(dataset_dir=sys.argv[1], runs_dir=sys.argv[2])
ws.runs = RunManager(sys.argv[2], policy=TrainingPolicy("full", "test"))
with gr.Blocks() as demo:
    train.build(ws)
box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "train-knob-for-a-test")
print("FORM", type(box).__name__, box.label, box.value, box.info)
print("CONFIG", train.form_to_config(**dict(train.config_to_form({}), knob_for_a_test=9)).knob_for_a_test)
lines = yaml_docs().splitlines()
at = lines.index("knob_for_a_test: 7")
print("YAML", " ".join(lines[at - 2:at + 1]))
'''


def test_a_field_added_in_one_place_reaches_help_form_and_yaml_docs(tmp_path):
    copy = tmp_path / "repo"
    for part in ("core", "tabs", "commands"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "cli.py", copy / "cli.py")
    groups = copy / "core" / "config" / "groups.py"
    text = groups.read_text()
    anchor = "@dataclass\nclass FrameArgs:"
    assert anchor in text
    groups.write_text(text.replace(anchor, anchor.replace("class FrameArgs:", "class FrameArgs:" + NEW_FIELD.rstrip()
                                                          + "\n"), 1))  # the one edit
    run = dict(capture_output=True, text=True, timeout=300, cwd=copy)
    helped = subprocess.run([sys.executable, "cli.py", "train", "--help"], **run)
    assert helped.returncode == 0, helped.stderr
    assert "--knob-for-a-test" in helped.stdout and "must reach --help" in " ".join(helped.stdout.split())
    probe = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "sample_videos"), str(tmp_path / "runs")], **run)
    assert probe.returncode == 0, probe.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in probe.stdout.splitlines() if line.split(" ", 1)[0] in
               ("FORM", "CONFIG", "YAML"))
    assert out["FORM"].startswith("Number Knob for a test 7 A field that exists only in this test")
    assert out["CONFIG"] == "9"
    assert out["YAML"].endswith("must reach --help, the form and the YAML docs. knob_for_a_test: 7")
    trained = subprocess.run([sys.executable, "cli.py", "train", "--knob-for-a-test", "x"], **run)
    assert "knob-for-a-test" in trained.stderr and "invalid int value" in trained.stderr


def _other_value(f):
    """A valid value for field f that is not its default."""
    default, kind = default_of(f), str(f.type)
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != default)
    if kind.startswith("bool"):
        return not default if default is not None else True
    if kind.startswith("int"):
        return 64 if f.name.startswith("frame_") else (default or 0) + 2
    if kind.startswith("float"):
        return (default or 0.0) + 0.25
    return {"custom_reward": "pkg.mod:fn", "device": "cpu", "report_to": "tensorboard"}.get(f.name, "somewhere")


@pytest.mark.parametrize("method", ["lora", "qlora", "full", "grpo"])
def test_every_field_a_method_ignores_is_refused_with_its_name(method, monkeypatch):
    from core.config import checks

    # no reporter package is installed here: let "tensorboard" count as installed (its module: json)
    monkeypatch.setitem(checks.REPORTERS, "tensorboard", ("json",))
    ignored = [f for f in fields(TrainConfig) if method not in f.metadata["methods"]]
    assert ignored  # each method ignores something (grpo: the optimiser; the others: grpo's rewards)
    for f in ignored:
        with pytest.raises(ConfigError, match=rf"method {method} does not use {f.name} \(") as err:
            TrainConfig.from_dict({"method": method, f.name: _other_value(f)}, source="run.yaml")
        assert str(err.value).startswith("run.yaml: ") and "leave it at" in str(err.value)
    used = [f for f in fields(TrainConfig) if method in f.metadata["methods"] and f.name not in (
        "method", "num_machines", "machine_rank", "main_process_ip", "num_generations")]
    for f in used:  # and a field it uses is taken (multi-node and group-size fields need partners: tested elsewhere)
        TrainConfig.from_dict({"method": method, f.name: _other_value(f)})


def test_the_cases_the_review_found():
    with pytest.raises(ConfigError, match="method grpo does not use optimizer .*GRPO's own loop steps AdamW"):
        TrainConfig.from_dict({"method": "grpo", "optimizer": "adafactor"})
    with pytest.raises(ConfigError, match="method grpo does not use gradient_checkpointing"):
        TrainConfig.from_dict({"method": "grpo", "gradient_checkpointing": True})
    with pytest.raises(ConfigError, match="method full does not use merge_at_end .*already a whole model"):
        TrainConfig.from_dict({"method": "full", "merge_at_end": True})
    with pytest.raises(ConfigError, match="method lora does not use num_generations"):
        TrainConfig.from_dict({"num_generations": 8})


def test_the_form_drops_what_the_chosen_method_ignores_instead_of_refusing_it():
    """A cloned GRPO run's reward weights stay on the (greyed-out) form when the person picks lora:
    they are not sent, so Start works and the run gets the defaults."""
    grpo = TrainConfig.from_dict({"method": "grpo", "num_generations": 8, "reward_fields": 3.0})
    values = dict(form_values(vars(grpo)), method="lora")
    cfg = config_from_form(values, base=vars(grpo))
    assert (cfg.method, cfg.num_generations, cfg.reward_fields) == ("lora", 4, 5.0)
    with pytest.raises(ConfigError, match="optimizer"):  # a field the method uses is still checked
        config_from_form(dict(values, optimizer="sgd"))


def test_the_yaml_docs_are_a_config_of_the_defaults_with_every_doc():
    text = yaml_docs()


    assert TrainConfig.from_dict(yaml.safe_load(text)) == TrainConfig()
    folded = " ".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith("# "))
    for info in described(TrainConfig):
        assert " ".join(info.doc.split()) in " ".join(folded.split()), info.name
    assert [g for g in ("Model", "Frames and prompt", "GRPO") if f"# --- {g} ---" in text] == ["Model", "Frames and prompt", "GRPO"]
