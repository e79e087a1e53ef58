"""Tiny random builds of the non-Qwen families: InternVL3 (-hf), SmolVLM2, LLaVA-OneVision, LLaVA-NeXT-Video.

Each builder makes a config of the family's REAL transformers class at a few hundred thousand
parameters, a byte-level BPE tokenizer with the family's special tokens and chat template, and the
family's real processor class assembled from parts (image processor, video processor, tokenizer).
`core.models.tiny.registry.ensure_tiny` calls `BUILDERS[arch](spec, out)` and caches the folder.

The processors are built by one function per family that takes the frame geometry as arguments
(`PROCESSOR_BUILDERS`), so the same code also builds a processor with a real checkpoint's settings
(`REFERENCE_GEOMETRY`) for counting vision tokens (`core.models.tiny.reference.vision_tokens_per_clip`): the number
of placeholder tokens a clip expands to depends only on those settings, not on the weights.

Chat templates are the checkpoints' own (as their conversion scripts in transformers write them).
Video frame sampling in every video processor is off (`do_sample_frames=False`): core.video.frames samples.
This module does not train, load or run models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.models.tiny.tokenizer import build_tokenizer

# --- chat templates (as the -hf checkpoints ship them) -------------------------------------------

CHATML_VIDEO_TEMPLATE = (  # InternVL3-hf (convert_internvl_weights_to_hf.py)
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{'<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}"
)

# SmolVLM2's own template has no video branch: SmolVLMProcessor.apply_chat_template swaps in its
# DEFAULT_CHAT_TEMPLATE whenever a message holds a video and no template is passed (we never pass one).
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

LLAVA_ONEVISION_TEMPLATE = (  # convert_llava_onevision_weights_to_hf.py
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Vicuna style (llava-hf LLaVA-NeXT-Video): no end-of-turn marker after the answer; the tokenizer
# adds <s>. core.models.inputs appends the tokenizer's eos to the answer, or the model never learns to stop.
LLAVA_NEXT_VIDEO_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# --- tokenizers: (special tokens, wrapper kwargs) per family --------------------------------------

QWEN_BASE = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
INTERNVL_IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                         "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}

TOKENIZERS = {
    "internvl": dict(
        special=QWEN_BASE + tuple(INTERNVL_IMAGE_TOKENS.values()),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_VIDEO_TEMPLATE,
        extra_special_tokens=INTERNVL_IMAGE_TOKENS),
    "smolvlm": dict(
        special=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>",
                 "<fake_token_around_image>", "<global-img>", "<video>"),
        bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|im_end|>",
        chat_template=SMOLVLM_TEMPLATE,
        extra_special_tokens={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}),
    "llava_onevision": dict(
        special=QWEN_BASE + ("<image>", "<video>"),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=LLAVA_ONEVISION_TEMPLATE),
    "llava_next_video": dict(
        special=("<unk>", "<s>", "</s>", "<image>", "<video>"),
        bos_token="<s>", eos_token="</s>", pad_token="<unk>", unk_token="<unk>", add_bos="<s>",
        chat_template=LLAVA_NEXT_VIDEO_TEMPLATE),
}


@dataclass(frozen=True)
class TinyVLMSpec:
    """Sizes of a tiny build of one of the families above (`arch`)."""

    arch: str = "internvl"
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    rope_theta: float = 10000.0
    vision_depth: int = 2
    vision_hidden: int = 64
    vision_intermediate: int = 128
    vision_heads: int = 2
    image_size: int = 64  # the square each frame is resized to by the processor
    patch_size: int = 8  # 64 / 8 = 8x8 patches; every family pools them to 16 tokens a frame
    seed: int = 0
    extra: dict = field(default_factory=dict)


# Frame geometry of one real checkpoint per family (its preprocessor / processor config), used
# only to count vision tokens; see REFERENCE_CHECKPOINT for which.
REFERENCE_GEOMETRY = {
    "internvl": dict(image_size=448, patch_size=14),  # downsample 0.5 -> 256 tokens a frame
    "smolvlm": dict(image_size=384, patch_size=14, scale_factor=3),  # 81 tokens a frame
    "llava_onevision": dict(image_size=384, patch_size=14),  # SigLIP 27x27, pooled 2x2 -> 196 a frame
    "llava_next_video": dict(image_size=336, patch_size=14),  # CLIP 24x24, pooled 2x2 -> 144 a frame
}
REFERENCE_CHECKPOINT = {
    "internvl": "OpenGVLab/InternVL3-1B-hf",
    "smolvlm": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "llava_onevision": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "llava_next_video": "llava-hf/LLaVA-NeXT-Video-7B-hf",
}
SMOLVLM_TINY_SCALE = 2


# --- processors -----------------------------------------------------------------------------------


def internvl_processor(tokenizer, image_size: int, patch_size: int, **_):
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    size = {"height": image_size, "width": image_size}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=12),
        video_processor=InternVLVideoProcessor(size=size, do_sample_frames=False),
        tokenizer=tokenizer, image_seq_length=(image_size // patch_size) ** 2 // 4,  # pixel shuffle 0.5
        chat_template=CHATML_VIDEO_TEMPLATE,
    )


def smolvlm_processor(tokenizer, image_size: int, patch_size: int, scale_factor: int = SMOLVLM_TINY_SCALE, **_):
    from transformers import SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_smolvlm import SmolVLMImageProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    edge = {"longest_edge": image_size}
    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size={"longest_edge": 4 * image_size}, max_image_size=edge),
        video_processor=SmolVLMVideoProcessor(size=edge, max_image_size=edge, do_sample_frames=False),
        tokenizer=tokenizer, image_seq_len=(image_size // patch_size) ** 2 // scale_factor ** 2,
        chat_template=SMOLVLM_TEMPLATE,
    )


def _pinpoints(side: int) -> list:
    return [[side * h, side * w] for h in (1, 2) for w in (1, 2)]


def llava_onevision_processor(tokenizer, image_size: int, patch_size: int, **_):
    from transformers import LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_llava_onevision import LlavaOnevisionImageProcessor
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

    size = {"height": image_size, "width": image_size}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=_pinpoints(image_size)),
        video_processor=LlavaOnevisionVideoProcessor(size=size, do_sample_frames=False),
        tokenizer=tokenizer, num_image_tokens=(image_size // patch_size) ** 2, vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
    )


def llava_next_video_processor(tokenizer, image_size: int, patch_size: int, **_):
    from transformers import LlavaNextVideoProcessor
    from transformers.models.llava_next.image_processing_llava_next import LlavaNextImageProcessor
    from transformers.models.llava_next_video.video_processing_llava_next_video import LlavaNextVideoVideoProcessor

    shortest, crop = {"shortest_edge": image_size}, {"height": image_size, "width": image_size}
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=shortest, crop_size=crop, do_sample_frames=False),
        image_processor=LlavaNextImageProcessor(size=shortest, crop_size=crop, image_grid_pinpoints=_pinpoints(image_size)),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_NEXT_VIDEO_TEMPLATE,
    )


PROCESSOR_BUILDERS = {
    "internvl": internvl_processor,
    "smolvlm": smolvlm_processor,
    "llava_onevision": llava_onevision_processor,
    "llava_next_video": llava_next_video_processor,
}


# --- model configs --------------------------------------------------------------------------------


def _text_config(spec: TinyVLMSpec, tokenizer, model_type: str) -> dict:
    tok = tokenizer
    return dict(
        model_type=model_type, vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.pad_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )


def _vision_dims(spec: TinyVLMSpec) -> dict:
    return dict(hidden_size=spec.vision_hidden, intermediate_size=spec.vision_intermediate,
                num_hidden_layers=spec.vision_depth, num_attention_heads=spec.vision_heads,
                image_size=spec.image_size, patch_size=spec.patch_size)


def internvl_model(spec: TinyVLMSpec, tokenizer):
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        text_config=_text_config(spec, tokenizer, "qwen2"),
        vision_config=dict(**_vision_dims(spec), use_mean_pooling=True),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=(spec.image_size // spec.patch_size) ** 2 // 4, downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    return InternVLForConditionalGeneration(config)


def smolvlm_model(spec: TinyVLMSpec, tokenizer):
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    config = SmolVLMConfig(
        text_config=_text_config(spec, tokenizer, "llama"), vision_config=_vision_dims(spec),
        scale_factor=SMOLVLM_TINY_SCALE, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    return SmolVLMForConditionalGeneration(config)


def llava_onevision_model(spec: TinyVLMSpec, tokenizer):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config=_text_config(spec, tokenizer, "qwen2"),
        vision_config=dict(model_type="siglip_vision_model", **_vision_dims(spec), vision_use_head=False),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_pinpoints(spec.image_size), vision_feature_select_strategy="full",
        vision_feature_layer=-1, tie_word_embeddings=False,
    )
    return LlavaOnevisionForConditionalGeneration(config)


def llava_next_video_model(spec: TinyVLMSpec, tokenizer):
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    per_frame = (spec.image_size // spec.patch_size) ** 2
    config = LlavaNextVideoConfig(
        text_config=_text_config(spec, tokenizer, "llama"),
        vision_config=dict(model_type="clip_vision_model", **_vision_dims(spec), projection_dim=spec.vision_hidden),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_pinpoints(spec.image_size), vision_feature_select_strategy="default",
        vision_feature_layer=-2, image_seq_length=per_frame, video_seq_length=per_frame // 4,
        tie_word_embeddings=False,
    )
    return LlavaNextVideoForConditionalGeneration(config)


MODEL_BUILDERS = {
    "internvl": internvl_model,
    "smolvlm": smolvlm_model,
    "llava_onevision": llava_onevision_model,
    "llava_next_video": llava_next_video_model,
}


def build_family(spec: TinyVLMSpec, out: Path) -> None:
    """Write the tiny `spec.arch` model, tokenizer and processor to `out` (deterministic)."""
    import torch


    tokenizer = build_tokenizer(spec.vocab_size, **TOKENIZERS[spec.arch])
    processor = PROCESSOR_BUILDERS[spec.arch](tokenizer, spec.image_size, spec.patch_size)
    torch.manual_seed(spec.seed)
    model = MODEL_BUILDERS[spec.arch](spec, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)


BUILDERS_BY_ARCH = {arch: build_family for arch in MODEL_BUILDERS}


REFERENCE_CHECKPOINT.update({"qwen2_5_vl": "Qwen/Qwen2.5-VL-7B-Instruct", "qwen3_vl": "Qwen/Qwen3-VL-8B-Instruct"})
