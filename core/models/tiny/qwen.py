"""Tiny Qwen2.5-VL and Qwen3-VL builds: the real classes at about a million parameters.

`TinyQwenSpec` / `TinyQwen3Spec` are the sizes (recorded as `tiny_spec.json` in the build, so a run
reloads the exact model it trained on); `build_qwen` / `build_qwen3` write a Hugging Face folder
(config, random safetensors weights, tokenizer, processor). Qwen2.5-VL constraints are noted where
they bite (mrope sections, window size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.models.tiny.tokenizer import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, build_tokenizer


@dataclass(frozen=True)
class TinyQwenSpec:
    """Sizes of the tiny Qwen2.5-VL. Defaults were chosen by what learns the sample clips on a CPU
    in minutes: LoRA r16 + trained embeddings/head at lr 2e-3 reaches exact answers on held-out clips
    in a few hundred steps (README, "Defaults for the embedded tiny model")."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    mrope_section: tuple = (4, 6, 6)  # must sum to head_dim / 2
    rope_theta: float = 10000.0
    vision_depth: int = 2
    vision_hidden: int = 64
    vision_intermediate: int = 128
    vision_heads: int = 4
    patch_size: int = 8  # 96x64 frames -> 12x8 patches -> 24 tokens per pair of frames
    seed: int = 0
    extra: dict = field(default_factory=dict)
    arch: str = "qwen2_5_vl"


@dataclass(frozen=True)
class TinyQwen3Spec(TinyQwenSpec):
    """Qwen3-VL adds what a tiny model needs to tell left from right: learned absolute position
    embeddings in the vision tower and interleaved multimodal RoPE (height/width get high rotary
    frequencies, where Qwen2.5-VL gives them the lowest)."""

    arch: str = "qwen3_vl"
    mrope_section: tuple = (6, 5, 5)
    num_position_embeddings: int = 64  # 8x8 grid of patch positions, interpolated to the frame


def _build_tokenizer(spec: TinyQwenSpec):
    return build_tokenizer(spec.vocab_size, QWEN_SPECIAL_TOKENS, QWEN_CHAT_TEMPLATE,
                           eos_token="<|im_end|>", pad_token="<|endoftext|>")


def build_qwen(spec: TinyQwenSpec, out: Path) -> None:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = _build_tokenizer(spec)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    factor = spec.patch_size * 2
    # Pixel bounds wide enough that our already-resized frames pass through unchanged.
    pix = dict(patch_size=spec.patch_size, temporal_patch_size=2, merge_size=2,
               min_pixels=factor * factor, max_pixels=512 * 512)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pix),
        video_processor=Qwen2VLVideoProcessor(**pix, cap_pixels_per_frame=True, do_sample_frames=False),
        tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta, "mrope_section": list(spec.mrope_section)},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=spec.vision_depth, hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
            num_heads=spec.vision_heads, patch_size=spec.patch_size, spatial_merge_size=2, temporal_patch_size=2,
            window_size=factor * 2, out_hidden_size=spec.hidden_size,
            fullatt_block_indexes=[spec.vision_depth - 1], tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.text_config.pad_token_id = ids["<|endoftext|>"]
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)


def build_qwen3(spec: TinyQwen3Spec, out: Path) -> None:
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = _build_tokenizer(spec)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    factor = spec.patch_size * 2
    size = {"shortest_edge": factor * factor, "longest_edge": 512 * 512}
    pix = dict(patch_size=spec.patch_size, temporal_patch_size=2, merge_size=2, size=size)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pix),
        video_processor=Qwen3VLVideoProcessor(**pix, cap_pixels_per_frame=True, do_sample_frames=False),
        tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE,
    )
    head_dim = spec.hidden_size // spec.num_heads
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, head_dim=head_dim,
            num_key_value_heads=spec.num_kv_heads, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta,
                             "mrope_section": list(spec.mrope_section), "mrope_interleaved": True},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=spec.vision_depth, hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
            num_heads=spec.vision_heads, patch_size=spec.patch_size, spatial_merge_size=2, temporal_patch_size=2,
            out_hidden_size=spec.hidden_size, num_position_embeddings=spec.num_position_embeddings,
            deepstack_visual_indexes=[],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
