"""A short real run of the tiny default with evaluation during training, then merging its adapter:
eval lines in metrics.jsonl, generation in eval mode on the LoRA model, and a merged folder that
plain transformers reloads with the same greedy answers and the trained vision/projector weights."""

import json

import pytest
import torch

from core.config import TrainConfig
from core.errors import ConfigError
from core.schema.base import ENUM, ENUM_LIST, fields

CONFIG = TrainConfig(max_steps=8, save_steps=8, logging_steps=2, warmup_steps=2, batch_size=4, eval_steps=4,
                     eval_max_clips=2, max_new_tokens=48, merge_at_end=True)


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return small_dataset


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset):
    from core.train.entry import train

    run = tmp_path_factory.mktemp("runs") / "short"
    status = train(dataset, run, CONFIG)
    assert status["state"] == "completed" and "merged model in merged/" in status["message"]
    # calibrated after the merge on the val clips: the merged copy carries the same calibration
    assert "confidence calibrated on" in status["message"]
    assert (run / "merged" / "calibration.json").read_bytes() == (run / "calibration.json").read_bytes()
    return run


def test_eval_lines_are_written_every_eval_steps(run_dir, dataset):
    schema = json.loads((dataset / "schema.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_per_field" in r]
    assert [r["step"] for r in evals] == [4, 8]
    scored = {f.name for f in fields(schema) if f.kind in (ENUM, ENUM_LIST)}
    for r in evals:
        assert set(r["eval_per_field"]) == scored
        assert r["eval_clips"] == 2  # the val split has 2 clips; eval_max_clips caps at 2
        for key in ("eval_schema_valid_rate", "eval_mean_field_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert all(0.0 <= v <= 1.0 for v in r["eval_per_field"].values())
    # generation time does not pollute the throughput of the step it interrupted
    assert max(r["samples_per_s"] for r in rows if "samples_per_s" in r) < 1000


def test_evaluator_generates_in_eval_mode_on_the_lora_model_and_restores_train_mode(run_dir, dataset):
    from core.data.dataset import load_dataset
    from core.models.loading import load_model, resolve_model
    from core.spec import PreprocessSpec
    from core.train.callbacks import ValEvaluator
    from core.train.stream import TrainClip

    model, processor, family = load_model(resolve_model(str(run_dir)))  # base + LoRA adapter (PeftModel)
    assert type(model).__name__.startswith("Peft")
    spec = PreprocessSpec.load(run_dir)
    data = load_dataset(dataset)
    clips = [TrainClip(str(s.video), s.label, s.rel) for s in data.split("val")]
    modes = []
    model.get_base_model().register_forward_pre_hook(lambda m, args: modes.append(m.training))
    model.train()
    row = ValEvaluator(processor, family, spec, clips, batch_size=2, max_new_tokens=8)(model, step=3)
    assert modes and not any(modes)  # every forward of the generation ran in eval mode
    assert model.training  # and training mode is back
    assert row["step"] == 3 and row["eval_clips"] == len(clips)


@pytest.fixture(scope="module")
def merged(run_dir):
    return run_dir / "merged"  # written by the run itself (merge_at_end)


def test_merged_model_answers_exactly_like_base_plus_adapter(run_dir, merged, dataset):
    from core.data.dataset import load_dataset
    from core.serve.predictor import Predictor
    from core.video.frames import sample_frames

    adapter, plain = Predictor.load(str(run_dir)), Predictor.load(str(merged))
    assert plain.spec.instruction == adapter.spec.instruction and plain.spec.sampling == adapter.spec.sampling
    frames = [sample_frames(s.video, adapter.spec.sampling_spec) for s in load_dataset(dataset).samples[:3]]
    before = adapter.generate(frames, max_new_tokens=48)
    after = plain.generate(frames, max_new_tokens=48)
    assert after == before
    base = Predictor.load("tiny:default", schema=adapter.spec.schema)
    batch = adapter.encode(frames[0])
    with torch.no_grad():
        logits = {name: p.model(**batch).logits for name, p in (("adapter", adapter), ("merged", plain), ("base", base))}
    assert (logits["adapter"] - logits["merged"]).abs().max().item() < 1e-4
    assert (logits["adapter"] - logits["base"]).abs().max().item() > 1e-2  # the adapter does change the model


def test_merged_folder_is_plain_transformers_with_the_trained_vision_and_projector(run_dir, merged):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from core.models.loading import load_base_model, resolve_model

    assert not (merged / "adapter_config.json").exists() and (merged / "preprocessing.json").is_file()
    AutoProcessor.from_pretrained(merged)
    reloaded = AutoModelForImageTextToText.from_pretrained(merged)
    saved = load_file(merged / "model.safetensors")
    source = resolve_model(str(run_dir))
    base = load_base_model(source)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    effective = PeftModel.from_pretrained(base, str(source.adapter))
    # the adapter model's effective weights: PEFT's trained copies for modules_to_save, else the base's
    eff = {}
    for name, tensor in effective.state_dict().items():
        clean = name.replace("base_model.model.", "", 1)
        if ".original_module." in clean or "lora_" in clean:
            continue
        eff[clean.replace(".modules_to_save.default.", ".")] = tensor
    towers = [k for k in saved if k.startswith("model.visual.")]
    assert any(".merger." in k for k in towers) and any(".blocks." in k for k in towers)
    for key in towers + ["model.language_model.embed_tokens.weight", "lm_head.weight"]:
        assert torch.equal(saved[key], eff[key]), key
        assert torch.equal(reloaded.state_dict()[key], eff[key]), key
    trained = [k for k in towers if not torch.equal(saved[k], original[k])]
    assert len(trained) > len(towers) // 2  # the trained copies were kept, not the random originals
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(saved[q], original[q])  # LoRA delta folded into the language model


def test_cli_merge_writes_the_same_model_and_refuses_to_overwrite(run_dir, merged, tmp_path, capsys):
    from safetensors.torch import load_file

    import cli
    from core.train.merge import merge_run

    assert cli.main(["merge", str(run_dir), "--output", str(tmp_path / "again")]) == 0
    a, b = load_file(merged / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert cli.main(["merge", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    with pytest.raises(ConfigError, match="already exists"):
        merge_run(run_dir)
