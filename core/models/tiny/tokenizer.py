"""The byte-level BPE tokenizers of the tiny builds, trained locally.

`build_tokenizer` trains one with the `tokenizers` library on `tokenizer_corpus()` (the preset
schemas, prompts and label strings) plus the full byte alphabet and a family's special tokens,
and wraps it as a transformers fast tokenizer with the family's chat template. The Qwen special
tokens and template are here because every Qwen-style build shares them.
"""

from __future__ import annotations

import json

from core.schema.base import ENUM, ENUM_LIST, fields
from core.schema.presets import CAPTION_WORDS, PRESETS
from core.schema.prompt import DEFAULT_TEMPLATE, build_instruction

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


def tokenizer_corpus() -> list[str]:
    """Deterministic training text: prompts and answers of the presets plus caption words."""
    import itertools


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
