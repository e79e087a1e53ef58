"""Scale on paper: tokens, memory and expected throughput of real 7B/8B video VLMs. ESTIMATES ONLY.

    python bench/scale_estimate.py [--frames 8 16 32] [--batch 1] [--mfu 0.25 0.40]

Nothing here is measured on a GPU. The 7B/8B weights cannot be downloaded on this machine, so each
model is built on the ``meta`` device from its published architecture, written out below with the
real transformers config classes, then given our trainer's own LoRA setup for a pretrained base
(``core.spec.resolve_defaults`` + ``apply_trainable``: LoRA r16 on the language linears, vision
and projector frozen). From there every figure uses core's own code:

- visual tokens per clip: ``core.models.tiny.reference.vision_tokens_per_clip`` — the family's real
  processor class with the reference checkpoint's frame geometry encodes a clip of N frames at the
  family's default frame size (Qwen2.5-VL 448x252 -> 16x9 merged patches per 2 frames; InternVL3
  448x448 -> 256 tokens per frame);
- text tokens: the dashcam schema's instruction + answer as the embedded tiny tokenizer encodes
  them (324; a 150k-vocabulary Qwen tokenizer needs fewer, so this errs high);
- memory: ``core.train.estimate``'s formula (weights bf16 frozen / fp32 trainable, gradients, AdamW,
  activations from ``activation_bytes`` under bf16 autocast), per GPU, unsharded (DDP);
- throughput: FLOPs per sample (language model forward 2·N·s + attention 4·L·s²·h, doubled for the
  backward pass that LoRA needs through every frozen layer; vision tower forward only, attention
  within each temporal patch group) divided into ``MFU x 989 TFLOP/s`` (H100 SXM dense bf16),
  at two assumed MFUs; 8 GPUs = 8 x 0.9 (assumed data-parallel efficiency).

Architecture sources (looked up, not downloaded):
- Qwen2.5-VL-7B-Instruct: the printed module tree of the model (github.com/acproject/duorou,
  docs/qwen2.5vl_graph.md): embed 152064x3584, 28 decoder layers, q 3584->3584, k/v 3584->512
  (4 KV heads x 128), MLP 3584->18944; vision 32 blocks, hidden 1280, MLP 3420, 16 heads,
  Conv3d patch (2,14,14), merger 5120->3584; window 112 and full-attention blocks 7/15/23/31 from
  the published vision config (also the defaults of transformers' Qwen2_5_VLVisionConfig).
- InternVL3-8B-hf: transformers' convert_internvl_weights_to_hf.py (InternVL3-8B has a Qwen2
  language model, 448x448 frames, image token 151667); language model = Qwen2.5-7B's geometry
  (as above, vocabulary 151674 as in the InternVL3 -hf configs, untied head); vision InternViT-300M
  (24 layers, hidden 1024, MLP 4096, 16 heads, patch 14, qkv bias; the module tree printed for
  InternVL3 in github.com/shivangjhalani/multicoco), pixel-shuffle 0.5, 2-layer GELU projector.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_result, setup_path, table  # noqa: E402

setup_path()

GiB = 1024 ** 3
H100_BF16_DENSE_FLOPS = 989e12
DP_EFFICIENCY = 0.9
TEXT_TOKENS = 324  # instruction + answer of the dashcam schema (tiny tokenizer; see docstring)
ANSWER_TOKENS = 86  # the longest bundled dashcam answer (tiny tokenizer, `cli.py estimate`): positions the loss projects


def qwen2_5_vl_7b():
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=3584,
                           fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu"),
        tie_word_embeddings=False,
    )


def internvl3_8b():
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    text = Qwen2Config(vocab_size=151674, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                       rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False)
    vision = InternVLVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                                  attention_bias=True, use_qk_norm=False, image_size=[448, 448], patch_size=[14, 14],
                                  use_absolute_position_embeddings=True)
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=151667, downsample_ratio=0.5,
                          projector_hidden_act="gelu", vision_feature_layer=-1, tie_word_embeddings=False)


MODELS = {"Qwen2.5-VL-7B": ("qwen2_5_vl", qwen2_5_vl_7b), "InternVL3-8B": ("internvl", internvl3_8b)}


def meta_lora_model(config, family):
    import torch
    from transformers import AutoModelForImageTextToText

    from core.config import TrainConfig
    from core.spec import resolve_defaults
    from core.train.setup import apply_trainable

    cfg = resolve_defaults(TrainConfig(model="paper"), family, random_init=False)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
        model = apply_trainable(model, cfg, family)
    return model, cfg


def _int_patch(config):
    """core.train.estimate.model_dims multiplies by ``vision_config.patch_size``, which the published
    InternVL -hf configs give as a list ([14, 14]): it raises TypeError there (reported in
    BENCHMARKS.md). Hand it a copy with the int; nothing else changes."""
    import copy

    patch = getattr(config.vision_config, "patch_size", 14)
    if isinstance(patch, (list, tuple)):
        config = copy.deepcopy(config)
        config.vision_config.patch_size = int(patch[0])
    return config


def vision_flops(family_name: str, config, visual_tokens: int, frames: int) -> float:
    """Forward FLOPs of the (frozen) vision tower + projector for one clip."""
    v = config.vision_config
    if family_name == "qwen2_5_vl":
        patches = visual_tokens * 4  # 2x2 merge
        groups = frames // 2  # attention within each temporal patch group (windowed blocks attend less)
        per_group = patches / groups
        h, inter, depth = v.hidden_size, v.intermediate_size, v.depth
        params_per_block = 4 * h * h + 3 * h * inter
        mm = 2 * params_per_block * patches * depth
        attn = 4 * depth * groups * per_group ** 2 * h
        merger = 2 * (4 * h * 4 * h + 4 * h * v.out_hidden_size) * visual_tokens
        return mm + attn + merger
    patches_per_frame = (448 // 14) ** 2
    h, inter, depth = v.hidden_size, v.intermediate_size, v.num_hidden_layers
    per_frame = 2 * (4 * h * h + 2 * h * inter) * patches_per_frame * depth + 4 * depth * patches_per_frame ** 2 * h
    projector = 2 * (4 * h * config.text_config.hidden_size + config.text_config.hidden_size ** 2) * visual_tokens
    return frames * per_frame + projector


def language_flops(config, seq: int, lm_params: int) -> float:
    """Forward + input-gradient backward FLOPs of the language model for one sample (LoRA: no
    weight gradients for frozen weights; LoRA's own are negligible)."""
    t = config.text_config
    fwd = 2 * lm_params * seq + 4 * t.num_hidden_layers * seq ** 2 * t.hidden_size
    return 2 * fwd


def estimate_one(name: str, frames_list, batch: int, mfus) -> list[dict]:
    from core.models.families import FAMILIES, module_group
    from core.models.tiny.reference import reference_processor, vision_tokens_per_clip
    from core.train.estimate import activation_bytes, model_dims, optimizer_bytes
    from core.train.estimate_parts import lora_linears_per_layer

    family_name, build = MODELS[name]
    family = FAMILIES[family_name]
    config = build()
    model, cfg = meta_lora_model(config, family)
    names = [n for n, _ in model.named_parameters()]
    dims = model_dims(_int_patch(config), names)
    groups = {g: 0 for g in ("vision", "projector", "language")}
    weights, trainable_shapes, lm_params = 0, [], 0
    for n, p in model.named_parameters():
        groups[module_group(n, family)] += p.numel()
        if p.requires_grad:
            trainable_shapes.append(tuple(p.shape))
            weights += 4 * p.numel()
        else:
            weights += 2 * p.numel()  # bf16 frozen base
            if module_group(n, family) == "language" and "embed_tokens" not in n:
                lm_params += p.numel()
    trainable = sum(int(__import__("math").prod(s)) for s in trainable_shapes)
    lora_linears = lora_linears_per_layer(model)
    processor = reference_processor(family_name)
    rows = []
    for frames in frames_list:
        fam = dataclasses.replace(family, default_frames=frames)
        visual = vision_tokens_per_clip(fam, processor, seconds=max(frames / 2.0, 5.0), fps=30.0)
        seq = visual + TEXT_TOKENS
        for checkpointing in (False, True):
            acts = activation_bytes(dims, batch, seq, visual, 2, checkpointing, vision_trains=False,
                                    projector_trains=False, lora_width=cfg.lora_r * lora_linears,
                                    answer_tokens=ANSWER_TOKENS)
            memory = {"weights": weights, "gradients": 4 * trainable,
                      "optimizer": optimizer_bytes("adamw", trainable_shapes), "activations": sum(acts.values())}
            total = sum(memory.values())
            flops = language_flops(config, seq, lm_params) + vision_flops(family_name, config, visual, frames)
            if checkpointing:
                flops += language_flops(config, seq, lm_params) / 2  # one more language forward
            row = {"model": name, "frames": frames, "frame_size": list(family.default_size), "visual_tokens": visual,
                   "seq_len": seq, "batch": batch, "grad_ckpt": checkpointing,
                   "params_total_b": round(sum(groups.values()) / 1e9, 2), "params_trainable_m": round(trainable / 1e6, 1),
                   "memory_gib": {k: round(v / GiB, 2) for k, v in memory.items()}, "total_gib": round(total / GiB, 1),
                   "tflops_per_sample": round(flops / 1e12, 1)}
            for mfu in mfus:
                one = mfu * H100_BF16_DENSE_FLOPS / flops
                row[f"samples_per_s_1gpu_mfu{int(mfu * 100)}"] = round(one, 1)
                row[f"samples_per_s_8gpu_mfu{int(mfu * 100)}"] = round(one * 8 * DP_EFFICIENCY, 1)
            rows.append(row)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mfu", type=float, nargs="+", default=[0.25, 0.40])
    args = p.parse_args(argv)
    rows = []
    for name in MODELS:
        rows += estimate_one(name, args.frames, args.batch, args.mfu)
    lo, hi = (int(m * 100) for m in (min(args.mfu), max(args.mfu)))
    printable = [[r["model"], r["frames"], "x".join(map(str, r["frame_size"])), r["visual_tokens"], r["seq_len"],
                  "on" if r["grad_ckpt"] else "off", f"{r['params_total_b']} B / {r['params_trainable_m']} M",
                  r["memory_gib"]["weights"], r["memory_gib"]["activations"], r["total_gib"], r["tflops_per_sample"],
                  f"{r[f'samples_per_s_1gpu_mfu{lo}']}-{r[f'samples_per_s_1gpu_mfu{hi}']}",
                  f"{r[f'samples_per_s_8gpu_mfu{lo}']}-{r[f'samples_per_s_8gpu_mfu{hi}']}"] for r in rows]
    print(f"\n### ESTIMATES (not measured): LoRA r16 on the language model, bf16, AdamW, batch {args.batch} per GPU, "
          f"H100 SXM at MFU {lo}-{hi}%")
    print(table(printable, ["model", "frames", "size", "visual tok", "seq", "grad ckpt", "params / trainable",
                            "weights GiB", "activations GiB", "total GiB/GPU", "TFLOP/sample", "samples/s 1 GPU",
                            "samples/s 8 GPU"]))
    result = {"machine": machine(), "args": vars(args), "rows": rows, "estimate": True}
    save_result("scale_estimate", result)
    return result


if __name__ == "__main__":
    main()
