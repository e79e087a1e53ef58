"""Tiny builds of real model classes, made offline from a config (random weights).

`registry` names the builds and caches them (`ensure_tiny`); `qwen` builds Qwen2.5-VL / Qwen3-VL,
`families` InternVL, SmolVLM2 and the LLaVA families; `tokenizer` trains the byte-level BPE
tokenizers they share; `reference` builds each family's real processor with a reference
checkpoint's settings (used to count vision tokens). Nothing here downloads anything.
"""

from core.models.tiny.reference import reference_processor, vision_tokens_per_clip
from core.models.tiny.registry import TINY_MODELS, ensure_tiny

__all__ = ["TINY_MODELS", "ensure_tiny", "reference_processor", "vision_tokens_per_clip"]
