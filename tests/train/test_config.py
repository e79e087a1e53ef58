"""TrainConfig's training fields through YAML and CLI flags, and the checks against this machine
(precision, qlora, report_to) that run before a run directory is touched. No training here."""

import importlib.util
from dataclasses import fields

import pytest
import torch

from commands.train import train_config
from core import config as config_mod
from core.config import TrainConfig
from core.errors import ConfigError
from core.models.device import check_runtime, resolve_precision
from core.train.entry import train
from tests.support import SAMPLES

NEW_FIELDS = dict(grad_accum=4, lr_scheduler="linear", warmup_steps=5, optimizer="adafactor",
                  gradient_checkpointing=True, precision="fp32", eval_steps=25, eval_max_clips=4,
                  lora_alpha=8, lora_dropout=0.1, lora_targets="all", merge_at_end=True, num_processes=2,
                  distributed="deepspeed")


def test_new_fields_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig(**NEW_FIELDS)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("key,value", [("optimizer", "sgd"), ("lr_scheduler", "polynomial"), ("precision", "fp8"),
                                       ("distributed", "megatron"), ("method", "dora"), ("lora_dropout", 1.5),
                                       ("eval_max_clips", 0), ("grad_accum", 0), ("warmup_steps", -1)])
def test_bad_values_are_refused_with_the_field_name(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict({key: value})


def test_merge_at_end_needs_an_adapter():
    with pytest.raises(ConfigError, match="merge_at_end"):
        TrainConfig.from_dict({"method": "full", "merge_at_end": True})


def test_old_runs_optimizer_name_still_loads():
    assert TrainConfig.from_dict({"optimizer": "adamw_torch"}).optimizer == "adamw"


def test_report_to_needs_the_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"report_to wandb needs the wandb package.*pip install wandb"):
        TrainConfig.from_dict({"report_to": "wandb"})
    with pytest.raises(ConfigError, match="not supported"):
        TrainConfig.from_dict({"report_to": "carrier-pigeon"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # "installed"
    assert TrainConfig.from_dict({"report_to": " tensorboard , trackio"}).report_to == "tensorboard,trackio"
    assert config_mod.report_targets("none") == []


def test_qlora_on_this_machine_is_a_clear_error_before_anything_is_written(tmp_path):
    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes"):
        pytest.skip("this machine can do QLoRA")
    cfg = TrainConfig(method="qlora")
    with pytest.raises(ConfigError, match="qlora.*bitsandbytes.*CUDA") as err:
        check_runtime(cfg, "cpu")
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "pip install bitsandbytes" in str(err.value)
    if not torch.cuda.is_available():
        assert "no CUDA GPU is visible" in str(err.value)
    with pytest.raises(ConfigError, match="qlora"):
        train(SAMPLES, tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()


def test_precision_on_cpu():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # CPU autocast does bf16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")


def test_precision_on_cuda_follows_the_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp16"
    with pytest.raises(ConfigError, match=r"bf16 is not supported by Tesla T4 \(compute capability 7.5"):
        resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("fp16", "cuda") == "fp16"


def test_every_config_field_is_a_train_flag(tmp_path):
    (tmp_path / "base.yaml").write_text(TrainConfig(max_steps=99, seed=3).to_yaml())
    import cli

    args = cli.build_parser().parse_args([
        "train", "--dataset", "d", "--output", "o", "--config", str(tmp_path / "base.yaml"),
        "--grad-accum", "4", "--lr-scheduler", "linear", "--warmup-steps", "5", "--optimizer", "adafactor",
        "--gradient-checkpointing", "--precision", "fp32", "--eval-steps", "25", "--eval-max-clips", "4",
        "--lora-alpha", "8", "--lora-dropout", "0.1", "--lora-targets", "all", "--merge-at-end",
        "--num-processes", "2", "--distributed", "deepspeed", "--frames", "6", "--no-freeze-vision"])
    cfg = train_config(args)
    assert cfg == TrainConfig(max_steps=99, seed=3, num_frames=6, freeze_vision=False, **NEW_FIELDS)


def test_every_field_has_a_one_line_doc_read_from_the_source():
    docs = config_mod.field_docs()
    assert set(docs) == {f.name for f in fields(TrainConfig)}
    assert [name for name, text in docs.items() if len(text.split()) < 4 or "\n" in text] == []
    assert docs["lora_alpha"] == "LoRA scaling numerator: the update is scaled by lora_alpha / lora_r."
    docs["lora_alpha"] = "changed"  # callers get a copy
    assert config_mod.field_docs()["lora_alpha"].startswith("LoRA scaling")


@pytest.mark.parametrize("key,value", [
    ("num_frames", 0), ("frame_width", 7), ("frame_height", 27), ("frame_width", 4097), ("fps", 0.0),
    ("min_frames", 0), ("max_frames", 3), ("epochs", -1.0), ("learning_rate", 0.0), ("weight_decay", -0.1),
    ("max_grad_norm", -1.0), ("save_total_limit", -1), ("save_steps", -1), ("logging_steps", 0),
    ("max_new_tokens", 0), ("dataloader_workers", -1), ("temperature", 0.0), ("max_completion_length", 0),
    ("reward_fields", -1.0), ("length_penalty", -0.5), ("device", "gpu"), ("custom_reward", "no_colon"),
    ("batch_size", 2.5), ("num_frames", "eight"), ("merge_at_end", "yes"), ("model", 7),
])
def test_every_numeric_and_frame_field_is_bounded(key, value):
    with pytest.raises(ConfigError, match=key) as err:
        TrainConfig.from_dict({key: value}, source="test.yaml")
    assert str(err.value).startswith("test.yaml: ")


def test_edge_values_that_mean_something_are_accepted():
    cfg = TrainConfig.from_dict({"frame_width": 28, "frame_height": 4096, "num_frames": 1, "min_frames": 2,
                                 "max_frames": 2, "max_grad_norm": 0.0, "save_total_limit": 0, "save_steps": 0,
                                 "max_steps": 0, "epochs": 0.5, "device": "cuda:1", "custom_reward": "pkg.mod:fn",
                                 "method": "grpo"})
    assert (cfg.frame_width, cfg.frame_height, cfg.max_grad_norm, cfg.save_total_limit) == (28, 4096, 0.0, 0)


def test_yaml_numbers_written_as_text_are_read_as_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("learning_rate: 1e-4\nnum_frames: '6'\nfps: 3\n")  # YAML 1.1 reads 1e-4 as text
    cfg = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert (cfg.learning_rate, cfg.num_frames, cfg.fps) == (1e-4, 6, 3.0)
    assert isinstance(cfg.num_frames, int) and isinstance(cfg.fps, float)
