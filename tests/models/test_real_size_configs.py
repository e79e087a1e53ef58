"""The published configs bench/real_size.py builds its real-size models from: each builds (on the
meta device) with exactly the parameter count the Hub reports for its checkpoint, the product reads
each as its family with the dimensions the estimate needs, and a folder from the bench's builder
(real widths cut to one layer, then narrowed so it runs in a second) loads through the product's
own path and trains a step with a finite loss."""

from __future__ import annotations

import math
import sys

import pytest

from core.config import TrainConfig
from core.models.families import FAMILIES
from tests.support import REPO, make_dataset

sys.path.insert(0, str(REPO / "bench"))
from real_size_build import random_model  # noqa: E402
from real_size_configs import MODELS, hf_config, meta_parameter_count, published_config, with_token_ids  # noqa: E402

NAMES = list(MODELS)
# what core.train.estimate.model_dims must read from each published config
DIMS = {
    "qwen2.5-vl-3b": dict(hidden=2048, layers=36, heads=16, kv_width=256, vocab=151936, v_hidden=1280, v_depth=32,
                          merge=2, patch_values=3 * 2 * 14 * 14),
    "internvl3-1b": dict(hidden=896, layers=24, heads=14, kv_width=128, vocab=151674, v_hidden=1024, v_depth=24,
                         merge=2, patch_values=3 * 14 * 14),
    "smolvlm2-2.2b": dict(hidden=2048, layers=24, heads=32, kv_width=2048, vocab=49280, v_hidden=1152, v_depth=27,
                          merge=3, patch_values=3 * 14 * 14),
}


@pytest.mark.parametrize("name", NAMES)
def test_each_published_config_has_the_published_parameter_count(name):
    assert meta_parameter_count(published_config(name)) == MODELS[name]["published_params"]


@pytest.mark.parametrize("name", NAMES)
def test_the_product_reads_each_config_as_its_family_with_the_real_dimensions(name, tmp_path):
    from transformers import AutoConfig

    from core.models.loading import family_of, resolve_model
    from core.train.estimate import model_dims

    hf_config(published_config(name)).save_pretrained(tmp_path)  # config.json as a downloaded folder has it
    source = resolve_model(str(tmp_path))
    assert family_of(source).name == MODELS[name]["family"]
    dims = model_dims(AutoConfig.from_pretrained(source.base), [])
    assert {k: getattr(dims, k) for k in DIMS[name]} == DIMS[name]


def test_shrinking_keeps_the_widths_and_cuts_the_layers():
    full, one = published_config("qwen2.5-vl-3b"), published_config("qwen2.5-vl-3b", layers=1)
    assert (one["num_hidden_layers"], one["vision_config"]["depth"]) == (1, 1)
    assert one["vision_config"]["fullatt_block_indexes"] == [0]
    assert one["hidden_size"] == full["hidden_size"] and one["vision_config"]["hidden_size"] == 1280
    assert published_config("internvl3-1b", layers=2)["text_config"]["num_hidden_layers"] == 2


def _narrow(config: dict, family: str) -> dict:
    """The one-layer config with every width small (the layout and the token ids stay)."""
    text, vision = config.get("text_config", config), config["vision_config"]
    text.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=4096)
    if "head_dim" in text:
        text["head_dim"] = 16
    config["vocab_size"] = 4096
    if family == "qwen2_5_vl":
        config["rope_scaling"]["mrope_section"] = [2, 3, 3]  # sums to head_dim / 2
        vision.update(hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    else:
        vision.update(hidden_size=32, intermediate_size=64, num_attention_heads=2)
    return config


@pytest.mark.parametrize("name", ["qwen2.5-vl-3b", "internvl3-1b"])
def test_a_built_folder_loads_through_the_product_and_trains_a_finite_step(name, tmp_path):
    import torch

    from core.data.dataset import load_dataset
    from core.models.inputs import collate
    from core.models.tiny.reference import reference_processor
    from core.train.prepare import prepare
    from core.train.setup import apply_trainable, encode_split, load_for_training

    family = MODELS[name]["family"]
    processor = reference_processor(family)
    model = random_model(_narrow(with_token_ids(published_config(name, 1), family, processor.tokenizer), family))
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    width, height = FAMILIES[family].default_size
    cfg = TrainConfig(model=str(tmp_path / "model"), method="lora", precision="bf16", batch_size=1, num_frames=8,
                      frame_width=width, frame_height=height, device="cpu")
    data = load_dataset(make_dataset(tmp_path / "data", n=1))
    inputs = prepare(cfg, data, "test")
    assert not inputs.random_init and inputs.cfg.freeze_vision  # loaded as a pretrained base
    examples, _ = encode_split(data.samples, data.schema, inputs.processor, inputs.spec.sampling_spec,
                               inputs.spec.instruction, inputs.spec.frames_as)
    model = apply_trainable(load_for_training(inputs.source, inputs.cfg, inputs.family, "cpu", "bf16"), inputs.cfg,
                            inputs.family)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**collate(examples, processor.tokenizer.pad_token_id)).loss
    loss.backward()
    assert math.isfinite(loss.item())
