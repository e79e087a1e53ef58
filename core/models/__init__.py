"""Vision-language models: which family a checkpoint is, how it is loaded, what it is fed.

Owns the per-family table (`families`: model class, how frames enter the prompt, LoRA targets on
the language model, vision/projector module names, default frames and size), resolving a name
(hub id, folder, run directory, `tiny:NAME`) and loading weights from safetensors only, remote code
only on opt-in (`loading`), the device and dtype a model runs in and whether this machine can
train a config (`device`), turning (instruction, frames, answer) into model tensors with the
answer-only label mask (`inputs`), and the tiny builds of each family's real classes (`tiny`).
Never trains, generates or decides preprocessing (core.spec does); torch is imported only inside
the functions that need it, so reading the family table stays cheap.
"""

from core.models.device import check_runtime, pick_device, pick_dtype, resolve_precision, weight_dtype
from core.models.families import FAMILIES, TINY_DEFAULT, TINY_PREFIX, Family, family_for_model_type, module_group
from core.models.inputs import IGNORE_INDEX, collate, encode_example
from core.models.loading import (
    ModelSource,
    load_base_model,
    load_model,
    load_processor,
    resolve_model,
)

__all__ = ["FAMILIES", "Family", "IGNORE_INDEX", "ModelSource", "TINY_DEFAULT", "TINY_PREFIX", "check_runtime", "collate",
    "encode_example", "family_for_model_type", "load_base_model", "load_model", "load_processor", "module_group",
    "pick_device", "pick_dtype", "resolve_model", "resolve_precision", "weight_dtype"]
