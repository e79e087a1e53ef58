"""The per-family table and the one loading path every model takes.

A family entry says how frames enter the prompt, which modules LoRA may touch (the language model
only, by default), which modules are the vision tower and the projector (for freeze toggles), and
default frame count/size. `resolve_model` turns what a user typed (`tiny:default`, a hub id, a local
folder, a run directory) into a local or hub source; `load_model` loads it with `from_pretrained`,
safetensors only and no remote code unless explicitly allowed. Training and inference live elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ModelError
from core.video.sampling import UNIFORM_FRAMES

TINY_PREFIX = "tiny:"


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple  # config.model_type values that belong to this family
    hub_examples: tuple
    frames_as: str  # "video": one video item; "images": one image item per frame
    # Regex (PEFT full-match) for LoRA: language-model linears only. Generic names like q_proj also
    # exist in some vision towers, so the prefix is explicit.
    lora_target_regex: str
    vision_modules: tuple  # name prefixes of the vision tower
    projector_modules: tuple  # name prefixes of the vision->text projector
    vision_tower_module: str = ""  # module name PEFT wraps whole when the tower trains under LoRA
    projector_module: str = ""  # same, for the projector alone
    projector_in_tower: bool = False  # the projector module sits inside the tower module (Qwen's merger)
    embedding_modules: tuple = ("embed_tokens", "lm_head")
    default_frames: int = UNIFORM_FRAMES  # uniform sampling; every family here is trained on 8 by default
    default_size: tuple = (448, 252)  # width, height of each frame fed to the processor
    tiny: str | None = None  # name in core.models.tiny.registry.TINY_MODELS

    def modules_to_save(self, train_embeddings: bool, freeze_vision: bool, freeze_projector: bool) -> list[str]:
        """Modules PEFT trains whole (copies) beside LoRA: embeddings/head, an unfrozen tower, an
        unfrozen projector. A projector inside the tower is covered by the tower's copy."""
        names = list(self.embedding_modules) if train_embeddings else []
        if not freeze_vision:
            names.append(self.vision_tower_module)
        if not freeze_projector and (freeze_vision or not self.projector_in_tower):
            names.append(self.projector_module)
        return [n for n in names if n]


_LM_LINEARS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"

FAMILIES = {
    "qwen2_5_vl": Family(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        hub_examples=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
        frames_as="video",
        lora_target_regex=_LM_LINEARS,
        # In transformers 5 the projector ("merger") lives inside `visual`; freezing the tower
        # excludes it so the two toggles stay independent.
        vision_modules=("model.visual.patch_embed", "model.visual.blocks"),
        projector_modules=("model.visual.merger",),
        vision_tower_module="visual",
        projector_module="merger",
        projector_in_tower=True,
        default_size=(448, 252),
        tiny="qwen2_5_vl",
    ),
    "qwen3_vl": Family(
        name="qwen3_vl",
        model_types=("qwen3_vl",),
        hub_examples=("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"),
        frames_as="video",
        lora_target_regex=_LM_LINEARS,
        vision_modules=("model.visual.patch_embed", "model.visual.pos_embed", "model.visual.blocks"),
        projector_modules=("model.visual.merger", "model.visual.deepstack_merger_list"),
        vision_tower_module="visual",
        projector_module="merger",
        projector_in_tower=True,
        default_size=(448, 256),
        tiny="qwen3_vl",
    ),
    "internvl": Family(
        name="internvl",
        model_types=("internvl",),
        hub_examples=("OpenGVLab/InternVL3-1B-hf", "OpenGVLab/InternVL3-2B-hf", "OpenGVLab/InternVL3-8B-hf"),
        # One video item; InternVLProcessor writes it as "Frame{i}: <img><IMG_CONTEXT>*256</img>" lines,
        # one 448x448 tile a frame (no dynamic tiling for video frames).
        frames_as="video",
        lora_target_regex=_LM_LINEARS,  # the vision tower has q_proj/k_proj/v_proj too
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector",),
        vision_tower_module="vision_tower",
        projector_module="multi_modal_projector",
        default_size=(448, 448),
        tiny="internvl",
    ),
    "smolvlm": Family(
        name="smolvlm",
        model_types=("smolvlm",),
        hub_examples=("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
                      "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"),
        # One video item; SmolVLMProcessor writes "You are provided the following series of N frames
        # ...\nFrame from MM:SS:<fake_token_around_image><global-img><image>*n<fake_token_around_image>".
        frames_as="video",
        lora_target_regex=r".*text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
        vision_modules=("model.vision_model",),  # SigLIP: its attention has q_proj/k_proj/v_proj/out_proj
        projector_modules=("model.connector",),
        vision_tower_module="vision_model",
        projector_module="connector",
        default_size=(384, 384),
        tiny="smolvlm",
    ),
    "llava_onevision": Family(
        name="llava_onevision",
        model_types=("llava_onevision",),
        hub_examples=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
        frames_as="video",  # <video> expands to frames x 14x14 pooled SigLIP tokens + one newline token
        lora_target_regex=_LM_LINEARS,
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector", "model.image_newline"),
        vision_tower_module="vision_tower",
        projector_module="multi_modal_projector",
        default_size=(384, 384),
        tiny="llava_onevision",
    ),
    "llava_next_video": Family(
        name="llava_next_video",
        model_types=("llava_next_video",),
        hub_examples=("llava-hf/LLaVA-NeXT-Video-7B-hf", "llava-hf/LLaVA-NeXT-Video-7B-DPO-hf"),
        # <video> expands to frames x 12x12 pooled CLIP tokens. The video processor resizes the short
        # side to 336 and CENTER-CROPS 336x336: the sides of a wide frame are never seen.
        frames_as="video",
        lora_target_regex=_LM_LINEARS,
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector", "model.image_newline"),
        vision_tower_module="vision_tower",
        projector_module="multi_modal_projector",
        default_size=(336, 336),
        tiny="llava_next_video",
    ),
}

# The embedded default is a Qwen3-VL of tiny size, with frames small enough for a CPU.
TINY_DEFAULT = "tiny:default"


# Checkpoints that load only with code from their own repository. Nothing here runs it unless the
# user opts in (`--trust-remote-code`, `trust_remote_code: true`); even then they have no family entry,
# because their preprocessing and chat format live in that code, not in a transformers processor.
REMOTE_CODE_MODEL_TYPES = {
    "internvl_chat": ("the original InternVL2.5 / InternVL3 and InternVideo2.5 checkpoints "
                      "(OpenGVLab/InternVL3-8B, OpenGVLab/InternVideo2_5_Chat_8B)", "OpenGVLab/InternVL3-8B-hf"),
}


def family_for_model_type(model_type: str) -> Family:
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    if model_type in REMOTE_CODE_MODEL_TYPES:
        what, native = REMOTE_CODE_MODEL_TYPES[model_type]
        raise ModelError(f"model type '{model_type}' is {what}: remote-code models have no family entry here "
                         f"(their preprocessing lives in the repository's code); use a transformers-native "
                         f"conversion such as {native}")
    known = ", ".join(sorted(t for f in FAMILIES.values() for t in f.model_types))
    raise ModelError(f"model type '{model_type}' is not in the family table (known: {known})")


def module_group(name: str, family: Family) -> str:
    """'vision' | 'projector' | 'language' — for freeze toggles and parameter counts."""
    clean = re.sub(r"\.(modules_to_save|original_module)(\.default)?(?=\.)", "", name.replace("base_model.model.", "", 1))
    if clean.startswith(family.projector_modules):
        return "projector"
    if clean.startswith(family.vision_modules):
        return "vision"
    return "language"
