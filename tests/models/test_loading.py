"""Family table, model resolution, LoRA placement and freeze toggles on the real tiny model."""

import json

import pytest

from core.config import TrainConfig
from core.errors import ModelError
from core.models.families import FAMILIES, module_group
from core.models.loading import load_base_model, resolve_model
from core.models.tiny.registry import ensure_tiny
from core.spec import resolve_defaults
from core.train.setup import apply_trainable, trainable_counts

FAMILY = FAMILIES["qwen3_vl"]  # the embedded default's family


def test_tiny_build_is_deterministic_and_cached(tiny_path):
    again = ensure_tiny("default")
    assert again == tiny_path
    assert (tiny_path / "model.safetensors").is_file()
    assert not list(tiny_path.glob("*.bin"))
    spec = json.loads((tiny_path / "tiny_spec.json").read_text())
    assert spec["name"] == "default"


def test_tiny_model_size_is_a_few_million(tiny):
    model, processor, family = tiny
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 10_000_000
    assert model.config.model_type == "qwen3_vl" and family is FAMILY


@pytest.mark.parametrize("name,msg", [
    ("tiny:nope", "unknown tiny model"),
    ("./no/such/folder", "no such folder"),
    ("", "no model given"),
])
def test_resolve_model_errors_are_clear(name, msg):
    with pytest.raises(ModelError, match=msg):
        resolve_model(name)


def test_hub_id_passes_through():
    src = resolve_model("Qwen/Qwen2.5-VL-3B-Instruct")
    assert src.base == "Qwen/Qwen2.5-VL-3B-Instruct" and src.adapter is None


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path))


def _trainable(cfg, name="tiny:default", family=FAMILY):
    model = load_base_model(resolve_model(name))
    cfg = resolve_defaults(cfg, family, random_init=False)
    return apply_trainable(model, cfg, family)


@pytest.mark.parametrize("name,family", [("tiny:default", FAMILY), ("tiny:qwen2_5_vl", FAMILIES["qwen2_5_vl"])])
def test_lora_lands_on_language_model_only(name, family):
    model = _trainable(TrainConfig(method="lora"), name, family)
    lora_names = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert lora_names, "LoRA attached nowhere"
    assert all(".language_model.layers." in n for n in lora_names)
    assert not any("visual" in n for n in lora_names)
    counts = trainable_counts(model, family)
    assert counts["vision"] == 0 and counts["projector"] == 0 and counts["language"] > 0


def test_lora_on_all_linears_reaches_vision_when_asked():
    model = _trainable(TrainConfig(method="lora", lora_targets="all"))
    assert any("visual.blocks" in n for n, _ in model.named_modules() if n.endswith("lora_A"))


@pytest.mark.parametrize("vision,projector,language", [(True, True, False), (False, True, True), (True, False, True)])
def test_freeze_toggles_in_full_finetune(vision, projector, language):
    model = _trainable(TrainConfig(method="full", freeze_vision=vision, freeze_projector=projector,
                                   freeze_language=language, train_embeddings=False))
    counts = trainable_counts(model, FAMILY)
    assert (counts["vision"] == 0) == vision
    assert (counts["projector"] == 0) == projector
    assert (counts["language"] == 0) == language


def test_random_init_defaults_train_everything_needed():
    cfg = resolve_defaults(TrainConfig(), FAMILY, random_init=True)
    assert cfg.train_embeddings and not cfg.freeze_vision and not cfg.freeze_projector
    assert (cfg.frame_width, cfg.frame_height, cfg.num_frames) == (96, 64, 8)
    pretrained = resolve_defaults(TrainConfig(), FAMILY, random_init=False)
    assert not pretrained.train_embeddings and pretrained.freeze_vision and pretrained.learning_rate == 1e-4


def test_qwen2_5_vl_tiny_builds_and_loads():
    from core.models.loading import load_model

    model, processor, family = load_model(resolve_model("tiny:qwen2_5_vl"))
    assert model.config.model_type == "qwen2_5_vl" and family.name == "qwen2_5_vl"


def test_module_groups_see_through_peft_wrappers():
    assert module_group("base_model.model.model.visual.modules_to_save.default.blocks.0.attn.qkv.weight", FAMILY) == "vision"
    assert module_group("base_model.model.model.visual.merger.mlp.0.weight", FAMILY) == "projector"
    assert module_group("model.language_model.layers.0.mlp.up_proj.weight", FAMILY) == "language"


def test_recorded_tiny_spec_rebuilds_the_trained_model(tiny_path, monkeypatch):
    """A run records the tiny spec it trained on; changing the built-in sizes must not break it."""
    import core.models.tiny.registry as tiny_mod

    recorded = json.loads((tiny_path / "tiny_spec.json").read_text())
    monkeypatch.setitem(tiny_mod.TINY_MODELS, "default", tiny_mod.TinyQwen3Spec(hidden_size=64))
    assert resolve_model("tiny:default").base != str(tiny_path)
    assert resolve_model("tiny:default", tiny_spec=recorded).base == str(tiny_path)


def test_a_hub_out_of_reach_is_named_after_one_connect_and_a_listening_one_or_a_proxy_is_left_to_the_hub(
        monkeypatch, tmp_path):
    import socket

    from huggingface_hub import constants

    from core.models.loading import _refuse_unreachable_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    source = resolve_model("nobody/no-such-model")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert _refuse_unreachable_hub(source) is None  # something answers: huggingface_hub asks it
    # the same port, closed now
    with pytest.raises(ModelError, match="could not reach the Hugging Face Hub.*HF_ENDPOINT"):
        _refuse_unreachable_hub(source)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # behind a proxy a direct connect proves nothing
    assert _refuse_unreachable_hub(source) is None
