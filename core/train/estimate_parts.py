"""The formula behind core.train.estimate's memory terms: the model's dimensions as read from its
config, and the bytes of activations and optimizer states they imply. What each term counts, and
how it was measured, is the estimate module's docstring; core.train.estimate re-exports these names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# the language decoder's first layer: `language_model` in most families, `text_model` in SmolVLM
LM_LAYER0 = re.compile(r"(language_model|text_model)\.layers\.0\.")


@dataclass
class Dims:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_width: int
    head_dim: int
    vocab: int
    v_hidden: int
    v_intermediate: int
    v_depth: int
    merge: int
    patch_values: int  # numbers per patch token in pixel_values (channels x temporal x patch^2)
    text_gated: bool = True
    vision_gated: bool = False
    attn: str = "sdpa"


def patch_area(patch) -> int:
    """Pixels in one patch: `patch_size` is an int in most vision configs, [h, w] in InternVL's."""
    if isinstance(patch, (list, tuple)):
        return math.prod(int(x) for x in patch) if len(patch) > 1 else int(patch[0]) ** 2
    return int(patch) ** 2


def vision_merge(config) -> int:
    """How many patches per side become one visual token (patch tokens = visual tokens x merge^2)."""
    v = config.vision_config
    if getattr(v, "spatial_merge_size", None):  # Qwen2.5-VL / Qwen3-VL merger
        return int(v.spatial_merge_size)
    if getattr(config, "downsample_ratio", None):  # InternVL pixel shuffle: 0.5 -> 2x2 patches a token
        return round(1 / config.downsample_ratio)
    if getattr(config, "scale_factor", None):  # SmolVLM / Idefics3 pixel shuffle
        return int(config.scale_factor)
    if getattr(config, "spatial_pool_stride", None):  # LLaVA-NeXT-Video video pooling
        return int(config.spatial_pool_stride)
    if getattr(config, "model_type", None) == "llava_onevision":  # videos pooled to ceil(side / 2)
        return 2
    return 1


def model_dims(config, names: list[str]) -> Dims:
    t, v = config.text_config, config.vision_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    channels = getattr(v, "in_channels", None) or getattr(v, "num_channels", None) or 3
    return Dims(
        hidden=t.hidden_size, intermediate=t.intermediate_size, layers=t.num_hidden_layers,
        heads=t.num_attention_heads, kv_width=getattr(t, "num_key_value_heads", t.num_attention_heads) * head_dim,
        head_dim=head_dim, vocab=t.vocab_size, v_hidden=v.hidden_size,
        v_intermediate=getattr(v, "intermediate_size", 4 * v.hidden_size),
        v_depth=getattr(v, "depth", None) or getattr(v, "num_hidden_layers", 0),
        merge=vision_merge(config), patch_values=channels * (getattr(v, "temporal_patch_size", None) or 1)
        * patch_area(getattr(v, "patch_size", 14)),
        text_gated=any(LM_LAYER0.search(n) and "mlp.gate_proj" in n for n in names),
        vision_gated=any("visual" in n and "mlp.gate_proj" in n for n in names),
        attn=getattr(t, "_attn_implementation", None) or "sdpa",
    )


def activation_bytes(d: Dims, batch: int, seq: int, visual_tokens: int, act: int, checkpointing: bool,
                     vision_trains: bool, projector_trains: bool, lora_width: int, norms_train: bool = False,
                     patches: int | None = None, answer_tokens: int | None = None,
                     padding_mask: bool = False) -> dict:
    """Bytes autograd keeps for one micro-batch (see the module docstring for each term).
    `patches`: vision patch tokens of one clip, when known (default visual_tokens x merge^2).
    `answer_tokens`: positions the loss projects onto the vocabulary per row (default: all seq).
    `padding_mask`: the batch keeps its attention mask (a model with remote code)."""
    tokens = batch * seq
    # 6h + 2kv + 4I: the slope of live tensor bytes over decoder depth measured at real widths
    # (module docstring); the earlier 9h + 2kv + 2 head_dim counted q/k before RoPE and a GQA copy
    per_token = 6 * d.hidden + 2 * d.kv_width + (4 if d.text_gated else 2) * d.intermediate
    per_token += lora_width + (2 * d.heads * seq if d.attn == "eager" else 0)
    if norms_train:  # RMSNorm weight gradients need the normalised inputs: 2 layer norms + q/k norms
        per_token += 3 * d.hidden + d.kv_width
    layer = tokens * per_token * act
    lm = (d.layers * tokens * d.hidden * act + layer) if checkpointing else d.layers * layer
    patches = batch * (visual_tokens * d.merge ** 2 if patches is None else patches)
    v_layer = patches * (10 * d.v_hidden + (4 if d.vision_gated else 2) * d.v_intermediate) * act
    vision = 0
    if vision_trains:
        vision = (d.v_depth * patches * d.v_hidden * act + v_layer) if checkpointing else d.v_depth * v_layer
    projector = batch * visual_tokens * 5 * d.merge ** 2 * d.v_hidden * act if (vision_trains or projector_trains) else 0
    return {
        "language": lm, "mask": batch * seq * seq * act if padding_mask else 0, "logits": 3 * batch * min(seq, answer_tokens or seq) * d.vocab * 4,
        "vision": vision, "projector": projector,
        # the batch being trained on and the one the data loader fetched ahead, plus the embeddings
        "inputs": 2 * (patches * d.patch_values * 4 + 4 * tokens * 8) + 2 * tokens * d.hidden * act,
    }


def optimizer_bytes(optimizer: str, shapes: list[tuple]) -> int:
    if optimizer == "adamw":
        return sum(8 * math.prod(s) for s in shapes)
    total = 0
    for s in shapes:  # adafactor
        if len(s) >= 2:
            total += 4 * (math.prod(s[:-1]) + math.prod(s[:-2]) * s[-1])
        else:
            total += 4 * math.prod(s)
    return total


def lora_linears_per_layer(model) -> int:
    names = [n for n, _ in model.named_modules() if n.endswith("lora_A") and LM_LAYER0.search(n + ".")]
    return len(names)


