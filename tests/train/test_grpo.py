"""GRPO runs of a few steps: run-directory protocol (metrics with reward keys, status, STOP), a final
adapter that loads for predict, starting from an SFT run's adapter, and an image dataset."""

import json
import subprocess
import sys

import pytest
import torch

from core.config import TrainConfig
from core.errors import ConfigError
from core.runs.files import RunFiles
from core.train.grpo import _completion_mask, grpo_loss
from tests.support import IMAGE_SCHEMA as SCHEMA
from tests.support import SAMPLES, terrain

SMALL = dict(method="grpo", max_steps=2, batch_size=2, num_generations=2, max_completion_length=16,
             logging_steps=1, warmup_steps=0, save_steps=1000)


@pytest.fixture(scope="module")
def four_clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    subprocess.run([sys.executable, str(SAMPLES / "generate.py"), "--seed", "3", "--count", "4", "--out", str(out)],
                   check=True, timeout=120)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        r["split"] = "train"  # all four train
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_config_validates_grpo_fields():
    TrainConfig(**SMALL).validate()
    for bad in ({"num_generations": 1}, {"temperature": 0.0}, {"beta": -1.0}):
        with pytest.raises(ConfigError, match="grpo"):
            TrainConfig(**{**SMALL, **bad}).validate()


def test_completion_mask_and_loss_shapes():
    ids = torch.tensor([[5, 6, 2, 0], [5, 5, 5, 5]])
    assert _completion_mask(ids, 2).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    logps = torch.log(torch.full((2, 4), 0.5, requires_grad=True))
    adv = torch.tensor([1.0, -1.0])
    loss, kl = grpo_loss(logps, logps.detach(), logps.detach(), adv, _completion_mask(ids, 2), beta=0.04)
    assert kl == pytest.approx(0.0) and torch.isfinite(loss)


def test_cli_exposes_the_grpo_fields():
    import argparse

    from commands.train import add_config_flags, train_config

    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_config_flags(p)
    args = p.parse_args(["--method", "grpo", "--num-generations", "3", "--beta", "0", "--init-adapter", "runs/sft",
                         "--reward-fields", "7", "--custom-reward", "m:f", "--max-completion-length", "32"])
    cfg = train_config(args)
    assert (cfg.method, cfg.num_generations, cfg.beta, cfg.init_adapter, cfg.reward_fields, cfg.custom_reward,
            cfg.max_completion_length) == ("grpo", 3, 0.0, "runs/sft", 7.0, "m:f", 32)


def test_grpo_run_writes_reward_metrics_and_a_loadable_adapter(four_clips, tmp_path):
    from core.serve.predictor import Predictor
    from core.train.entry import train

    run = tmp_path / "grpo"
    status = train(four_clips, run, TrainConfig(**SMALL))
    assert status["state"] == "completed" and status["global_step"] == 2
    rows = RunFiles(run).read_metrics()
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "kl", "reward", "reward_json", "reward_schema", "reward_fields", "completion_length"):
        assert all(key in r for r in rows), key
    assert (run / "final" / "adapter_model.safetensors").is_file() and (run / "preprocessing.json").is_file()
    rows = Predictor.load(str(run)).predict([four_clips / "videos" / "clip_0000.mp4"], max_new_tokens=4)
    assert rows[0].error is None and rows[0].new_tokens > 0


def test_grpo_from_an_sft_adapter_keeps_its_spec_and_stops_on_stop_file(four_clips, tmp_path):
    from core.train.entry import train

    sft = tmp_path / "sft"
    train(four_clips, sft, TrainConfig(max_steps=2, batch_size=4, warmup_steps=0, save_steps=1000, num_frames=4))
    run = tmp_path / "from_sft"
    cfg = TrainConfig(**{**SMALL, "init_adapter": str(sft), "max_steps": 5})
    status = train(four_clips, run, cfg, echo=lambda *a: (run / "STOP").touch())  # stop after the first step
    assert status["state"] == "stopped" and status["global_step"] == 1
    assert RunFiles(run).last_checkpoint().name == "checkpoint-1"
    spec, sft_spec = (json.loads((d / "preprocessing.json").read_text()) for d in (run, sft))
    assert spec["sampling"] == sft_spec["sampling"] and spec["sampling"]["num_frames"] == 4
    assert spec["instruction"] == sft_spec["instruction"]
    log = (run / "train.log").read_text()
    assert "reference that adapter, frozen" in log
    assert "step 1/5: loss" in log and "saved checkpoint-1" in log  # progress in the log tail, not only at set-up


def test_image_dataset_trains_with_grpo(tmp_path):
    from core.train.entry import train

    root = tmp_path / "wildfire"
    (root / "videos").mkdir(parents=True)
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    rows = []
    for i in range(4):
        terrain(i, i % 2 == 0).save(root / "videos" / f"tile_{i}.png")
        rows.append({"video": f"videos/tile_{i}.png", "split": "train", "wildfire": "yes" if i % 2 == 0 else "no"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    status = train(root, tmp_path / "run", TrainConfig(**{**SMALL, "max_completion_length": 8}))
    assert status["state"] == "completed" and status["global_step"] == 2
    assert all("reward_fields" in r for r in RunFiles(tmp_path / "run").read_metrics())


def test_crash_then_resume_continues_from_the_last_checkpoint(four_clips, tmp_path, monkeypatch):
    import core.train.grpo
    from core.train.entry import train

    real_step, calls = core.train.grpo._step, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash at step 3")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(core.train.grpo, "_step", crash_on_third)
    run = tmp_path / "run"
    cfg = TrainConfig(**{**SMALL, "max_steps": 4, "save_steps": 2})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(four_clips, run, cfg)
    files = RunFiles(run)
    assert files.read_status()["state"] == "crashed"
    assert files.last_checkpoint().name == "checkpoint-2"
    saved = (run / "checkpoint-2" / "adapter_model.safetensors").read_bytes()

    monkeypatch.undo()
    status = train(four_clips, run, cfg, resume=True)
    assert status["state"] == "completed" and status["global_step"] == 4
    assert "resumed from checkpoint-2" in (run / "train.log").read_text()
    steps = [row["step"] for row in files.read_metrics() if "loss" in row]
    assert steps == [1, 2, 3, 4], steps  # steps 1-2 before the crash, 3-4 after: none repeated
    assert (run / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == saved
    assert files.last_checkpoint().name == "checkpoint-4"


def test_an_sft_run_given_as_the_model_is_continued_from_its_adapter(four_clips, tmp_path):
    """`train --method grpo --model SFT_RUN` means init_adapter SFT_RUN: start from what SFT learned."""
    from core.train.entry import train

    sft = tmp_path / "sft"
    train(four_clips, sft, TrainConfig(max_steps=2, batch_size=4, warmup_steps=0, save_steps=1000, num_frames=4))
    run = tmp_path / "grpo"
    status = train(four_clips, run, TrainConfig(**{**SMALL, "model": str(sft)}))
    assert status["state"] == "completed"
    log = (run / "train.log").read_text()
    assert f"start adapter of {sft}" in log and "reference that adapter, frozen" in log
    assert json.loads((run / "preprocessing.json").read_text())["sampling"]["num_frames"] == 4


def test_sampled_completions_never_contain_vision_placeholders(four_clips, tmp_path, monkeypatch):
    """The crash seen from an SFT start ("Video features and video tokens do not match"): a sampled
    <|video_pad|> makes the scoring forward pass count more video tokens than features. The head is
    biased towards the placeholders here, so without suppression every completion would hold them."""
    import core.train.grpo
    from core.models.inputs import suppressed_token_ids, vision_placeholder_ids
    from core.train.entry import train

    real_load, seen = core.train.grpo._load, {}

    def biased_load(inputs):
        loaded = real_load(inputs)
        model, processor = loaded[0], inputs.processor
        placeholders = sorted(vision_placeholder_ids(processor))
        seen["placeholders"], seen["suppressed"] = placeholders, suppressed_token_ids(processor)

        def towards_placeholders(module, args, output):
            output[..., placeholders] += 50.0
            return output

        model.get_output_embeddings().register_forward_hook(towards_placeholders)
        return loaded

    monkeypatch.setattr(core.train.grpo, "_load", biased_load)
    status = train(four_clips, tmp_path / "run", TrainConfig(**{**SMALL, "temperature": 2.0}))
    assert status["state"] == "completed" and status["global_step"] == 2
    assert seen["placeholders"] and set(seen["placeholders"]) <= set(seen["suppressed"])


def test_suppressed_tokens_are_the_special_ones_except_the_answer_end(tiny):
    from core.models.inputs import suppressed_token_ids

    _, processor, _ = tiny
    tok = processor.tokenizer
    ids = set(suppressed_token_ids(processor))
    names = {tok.convert_ids_to_tokens(i) for i in ids}
    assert {"<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|im_start|>"} <= names
    assert tok.eos_token_id not in ids and tok.pad_token_id not in ids


def test_the_templates_end_of_turn_is_never_suppressed(tiny):
    """Where the tokenizer's eos is not the token the chat template closes the answer with (ChatML
    <|im_end|> beside eos <|endoftext|>), suppressing it would make every answer run to the token limit."""
    import copy

    from core.models.inputs import suppressed_token_ids

    _, processor, _ = tiny
    other = copy.deepcopy(processor)
    other.tokenizer.eos_token = "<|endoftext|>"
    ids = suppressed_token_ids(other)
    assert other.tokenizer.convert_tokens_to_ids("<|im_end|>") not in ids
    assert other.tokenizer.convert_tokens_to_ids("<|video_pad|>") in ids
