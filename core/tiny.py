"""The embedded default: tiny models of real architectures, built offline and deterministically.

`ensure_tiny(name)` builds the model once into the cache (a normal Hugging Face folder: config,
safetensors weights, tokenizer, processor with chat template) and returns its path, so everything
downstream loads it with the same `from_pretrained` code a hub model takes. The weights are random:
the base emits noise, which is the point of the demo. This module builds the Qwen ones (`default`,
`qwen3_vl`, `qwen2_5_vl`) and the shared tokenizer; `core.tiny_families` builds one per other family
in the table (`tiny:internvl`, `tiny:smolvlm`, `tiny:llava_onevision`, `tiny:llava_next_video`).
It does not train or run models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ModelError
from core.paths import cache_dir
from core.presets import CAPTION_WORDS, PRESETS
from core.prompt import DEFAULT_TEMPLATE, build_instruction

# Bump when the builder changes what it writes, so old cached builds are not reused.
BUILDER_VERSION = 1

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)

# Qwen-style chat template. The assistant turn sits in {% generation %} so that
# `return_assistant_tokens_mask=True` works for anyone using the template directly.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ message['content'] }}<|im_end|>{% endif %}"
    "{% else %}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{% endgeneration %}"
    "{% else %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>"
    "{% endif %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyQwenSpec:
    """Sizes of the tiny Qwen2.5-VL. Defaults were chosen by what learns the sample clips on a CPU
    in minutes (see FIELD-NOTES and the foundation closing note)."""

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


def _family_spec(arch: str):
    from core.tiny_families import TinyVLMSpec

    return TinyVLMSpec(arch=arch)


# name -> spec; the spec's `arch` picks the builder (`_builder`).
TINY_MODELS = {
    "default": TinyQwen3Spec(), "qwen3_vl": TinyQwen3Spec(), "qwen2_5_vl": TinyQwenSpec(),
    **{arch: _family_spec(arch) for arch in ("internvl", "smolvlm", "llava_onevision", "llava_next_video")},
}


def tokenizer_corpus() -> list[str]:
    """Deterministic training text: prompts and answers of the presets plus caption words."""
    import itertools

    from core.schema import ENUM, ENUM_LIST, fields

    corpus = []
    for schema in PRESETS.values():
        corpus.append(build_instruction(schema, DEFAULT_TEMPLATE))
        corpus.append(json.dumps(schema, separators=(",", ":")))
        for f in fields(schema):
            if f.kind in (ENUM, ENUM_LIST):
                for choice in f.choices:
                    corpus.append(f'"{f.name}":"{choice}",')
                    corpus.append(f'"{f.name}":["{choice}"],')
                for a, b in itertools.combinations(f.choices, 2):
                    corpus.append(f'"{f.name}":["{a}","{b}"]')
            else:
                corpus.append(f'{{"{f.name}":"')
    words = list(CAPTION_WORDS)
    for i in range(len(words)):
        corpus.append(" ".join(words[i: i + 12]) + ". " + " ".join(words[i: i + 5]).capitalize() + "; ")
    return corpus * 4


def build_tokenizer(vocab_size: int, special: tuple, chat_template: str, add_bos: str | None = None, **wrapper):
    """Byte-level BPE trained on `tokenizer_corpus()` with `special` tokens first (ids 0..), wrapped as a
    fast tokenizer. `add_bos`: a token the tokenizer puts before every text (Llama-style); `wrapper`:
    eos/pad/bos/unk tokens and `extra_special_tokens` (named tokens processors read as attributes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{add_bos} $A", pair=f"{add_bos} $A $B", special_tokens=[(add_bos, tok.token_to_id(add_bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=chat_template, model_max_length=4096,
                                   padding_side="right", **wrapper)


def _build_tokenizer(spec: TinyQwenSpec):
    return build_tokenizer(spec.vocab_size, QWEN_SPECIAL_TOKENS, QWEN_CHAT_TEMPLATE,
                           eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _build_qwen(spec: TinyQwenSpec, out: Path) -> None:
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


def _build_qwen3(spec: TinyQwen3Spec, out: Path) -> None:
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


def spec_from_dict(recorded: dict):
    """The spec dataclass of a recorded `tiny_spec.json` (its `arch` picks the class)."""
    from core.tiny_families import TinyVLMSpec

    fields = {k: v for k, v in recorded.items() if k != "name"}
    arch = fields.get("arch", "qwen2_5_vl")
    cls = {"qwen3_vl": TinyQwen3Spec, "qwen2_5_vl": TinyQwenSpec}.get(arch, TinyVLMSpec)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _builder(arch: str):
    if arch == "qwen3_vl":
        return _build_qwen3
    if arch == "qwen2_5_vl":
        return _build_qwen
    from core.tiny_families import BUILDERS_BY_ARCH

    if arch not in BUILDERS_BY_ARCH:
        raise ModelError(f"no tiny builder for architecture {arch!r}")
    return BUILDERS_BY_ARCH[arch]


def _spec_key(name: str, spec) -> str:
    # The tokenizer corpus is part of what is built: a changed preset must not reuse an old build.
    corpus = hashlib.sha256("\n".join(tokenizer_corpus()).encode()).hexdigest()
    blob = json.dumps({"name": name, "v": BUILDER_VERSION, "spec": asdict(spec), "corpus": corpus}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_tiny(name: str = "default", spec: dict | None = None) -> Path:
    """Path of the built tiny model `name`, building it on first use (< 1 s).

    `spec` (a recorded `tiny_spec.json`) rebuilds exactly the model a run was trained on, even
    after the built-in sizes change: the build is deterministic, so the adapter fits again.
    """
    if name not in TINY_MODELS:
        raise ModelError(f"unknown tiny model 'tiny:{name}'; available: {', '.join('tiny:' + k for k in TINY_MODELS)}")
    spec = spec_from_dict(spec) if spec is not None else TINY_MODELS[name]
    out = cache_dir() / "models" / f"tiny-{name}-{_spec_key(name, spec)}"
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        _builder(spec.arch)(spec, tmp)
        (tmp / "tiny_spec.json").write_text(json.dumps({"name": name, **asdict(spec)}, indent=2))
        try:
            os.replace(tmp, out)  # atomic: a concurrent builder either wins or finds ours
        except OSError:
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
