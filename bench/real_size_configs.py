"""The published configs of the real-size models `bench/real_size.py` measures, as plain dicts.

Each entry is the checkpoint's config.json as published on the Hugging Face Hub (the fields that
decide shapes verbatim: text and vision widths, layers, heads, key/value heads, intermediate sizes,
vocabulary, tied embeddings, patch size, merge / pixel-shuffle factor, image size), with the hub id
it came from and the parameter count the Hub reports for the checkpoint's safetensors. Building a
config on the `meta` device gives exactly that count (tests/models/test_real_size_configs.py), which
is the check that no shape-deciding field is wrong.

Where the values were read (nothing here is downloaded at run time):

  Qwen/Qwen2.5-VL-3B-Instruct    config.json as published (flat Qwen2.5-VL layout, rope_scaling
                                 mrope [16, 24, 24], tied embeddings); 3,754,622,976 parameters
                                 (Hub API, bf16 safetensors of 7,509,245,952 bytes = 2 B each).
  OpenGVLab/InternVL3-1B-hf      text_config = the llm_config of OpenGVLab/InternVL3-1B (Qwen2.5-0.5B
                                 layout with the vocabulary grown to 151,674, rope dynamic x2);
                                 vision_config = the InternViT-300M block OpenGVLab's custom-to-hf
                                 converter writes; lm_head is its own weight (the -hf safetensors
                                 hold it: 1.88 GB of bf16), so tie_word_embeddings is false, written
                                 out because transformers 5's InternVLConfig defaults to true;
                                 938,193,024 parameters (Hub API).
  HuggingFaceTB/SmolVLM2-2.2B-Instruct
                                 SmolLM2-1.7B text model with the vocabulary grown to 49,280 (its
                                 eos is token 49279) and untied head, SigLIP-SO400M vision tower
                                 (1152 wide, 27 layers, 384 px, patch 14), pixel shuffle 3;
                                 2,246,784,880 parameters (Hub API; the checkpoint is stored in
                                 fp32, 8.99 GB). rope_theta 273768 and 16k positions are the SmolVLM
                                 paper's long-context settings; they change no shape.

Token ids in these dicts are the real checkpoints'; `with_token_ids` replaces them by the ids of
the locally built tokenizer the bench ships beside the weights (core.models.tiny.reference), whose
vocabulary is small while the config keeps the real `vocab_size`. No transformers import at module
level: this file is read by the bench's parent process, which must start without ML libraries.
"""

from __future__ import annotations

import copy

QWEN2_5_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
    "max_window_layers": 70, "model_type": "qwen2_5_vl", "num_attention_heads": 16, "num_hidden_layers": 36,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
        "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}

INTERNVL3_1B = {
    "architectures": ["InternVLForConditionalGeneration"], "downsample_ratio": 0.5, "image_seq_length": 256,
    "image_token_id": 151667, "model_type": "internvl", "projector_hidden_act": "gelu",
    "text_config": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
        "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 70, "model_type": "qwen2",
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"}, "rope_theta": 1000000.0,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151674,
    },
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "vision_config": {
        "architectures": ["InternVisionModel"], "attention_bias": True, "attention_dropout": 0.0, "dropout": 0.0,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 1024, "image_size": [448, 448],
        "initializer_factor": 0.1, "initializer_range": 1e-10, "intermediate_size": 4096, "layer_norm_eps": 1e-06,
        "layer_scale_init_value": 0.1, "model_type": "internvl_vision", "norm_type": "layer_norm",
        "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24, "patch_size": [14, 14],
        "projection_dropout": 0.0, "torch_dtype": "bfloat16", "use_absolute_position_embeddings": True,
        "use_mask_token": False, "use_mean_pooling": True, "use_qk_norm": False,
    },
    "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
}

SMOLVLM2_2_2B = {
    "architectures": ["SmolVLMForConditionalGeneration"], "image_token_id": 49190, "model_type": "smolvlm",
    "scale_factor": 3,
    "text_config": {
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": 64,
        "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 16384,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 24, "num_key_value_heads": 32,
        "pad_token_id": 2, "rms_norm_eps": 1e-05, "rope_theta": 273768.0, "tie_word_embeddings": False,
        "vocab_size": 49280,
    },
    "tie_word_embeddings": False, "torch_dtype": "float32",
    "vision_config": {
        "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
        "layer_norm_eps": 1e-06, "model_type": "smolvlm_vision", "num_attention_heads": 16, "num_channels": 3,
        "num_hidden_layers": 27, "patch_size": 14,
    },
    "vocab_size": 49280,
}

# name -> what the bench needs about each model
MODELS = {
    "qwen2.5-vl-3b": {"hub_id": "Qwen/Qwen2.5-VL-3B-Instruct", "family": "qwen2_5_vl", "config": QWEN2_5_VL_3B,
                      "published_params": 3_754_622_976},
    "internvl3-1b": {"hub_id": "OpenGVLab/InternVL3-1B-hf", "family": "internvl", "config": INTERNVL3_1B,
                     "published_params": 938_193_024},
    "smolvlm2-2.2b": {"hub_id": "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "family": "smolvlm", "config": SMOLVLM2_2_2B,
                      "published_params": 2_246_784_880},
}

# where each family keeps (text layers, vision layers) in the config dict
LAYER_KEYS = {
    "qwen2_5_vl": (("num_hidden_layers",), ("vision_config", "depth")),
    "internvl": (("text_config", "num_hidden_layers"), ("vision_config", "num_hidden_layers")),
    "smolvlm": (("text_config", "num_hidden_layers"), ("vision_config", "num_hidden_layers")),
}


def published_config(name: str, layers: int | None = None) -> dict:
    """A copy of `name`'s published config; `layers`: keep the real widths but only that many text
    and vision layers (the bench's --shrink-layers, for a quick end-to-end check)."""
    entry = MODELS[name]
    config = copy.deepcopy(entry["config"])
    if layers:
        for path in LAYER_KEYS[entry["family"]]:
            _set(config, path, layers)
        vision = config["vision_config"]
        if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: keep the full-attention blocks that remain
            vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < layers] or [layers - 1]
    return config


def with_token_ids(config: dict, family: str, tokenizer) -> dict:
    """`config` with its special-token ids replaced by `tokenizer`'s (the vocabulary size stays the
    checkpoint's: the embedding and head are allocated at full size)."""
    config = copy.deepcopy(config)
    ids = tokenizer.convert_tokens_to_ids
    text = config.get("text_config", config)
    text.update(bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family == "qwen2_5_vl":
        config.pop("vision_token_id", None)  # <|vision_pad|>: not in the local tokenizer, unused by the model
        config.update(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                      vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    elif family == "internvl":
        config["image_token_id"] = tokenizer.context_image_token_id
    elif family == "smolvlm":
        config.update(image_token_id=ids("<image>"), pad_token_id=tokenizer.pad_token_id)
    return config


def hf_config(config: dict):
    """The transformers config object of a config dict (as `from_pretrained` would read config.json)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING[config["model_type"]].from_dict(copy.deepcopy(config))


def meta_parameter_count(config: dict) -> int:
    """Parameters of the model `config` describes, built on the meta device (no memory, seconds)."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(hf_config(config))
    return sum(p.numel() for p in model.parameters())


def _set(d: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        d = d[key]
    d[path[-1]] = value
