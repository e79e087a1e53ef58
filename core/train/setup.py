"""What SFT and GRPO share between loading the base and the first step.

Encoding a handful of clips at once (`encode_split`: the estimate and tests; training itself
streams them, core.train.stream), loading the base for training (4-bit for qlora), LoRA on the language model or full fine-tuning with the
freeze toggles (`apply_trainable`), fp32 trainable weights, parameter counts, the step cap and the
val evaluator. Neither loop's own logic is here.
"""

from __future__ import annotations

import warnings

import torch

from core.config import TrainConfig
from core.data.dataset import Dataset
from core.errors import VideoError
from core.models.device import weight_dtype
from core.models.families import module_group
from core.models.inputs import encode_example
from core.models.loading import load_base_model
from core.runs.files import RunFiles
from core.schema.base import canonical_answer
from core.train.callbacks import ValEvaluator
from core.train.runtime import HEAP_THRESHOLD, SMALL_MODEL_PARAMS, return_freed_tensors
from core.train.stream import check_clips
from core.video.frames import sample_frames
from core.video.sampling import SamplingSpec


def capped_steps(cfg: TrainConfig, max_steps: int, run: RunFiles) -> int:
    if cfg.step_cap and max_steps > cfg.step_cap:
        run.log(f"{max_steps} steps capped at step_cap {cfg.step_cap}")
        return cfg.step_cap
    return max_steps


def usable_clips(samples, schema, spec: SamplingSpec, skipped: list):
    """Yield (clip, sampled frames) for every clip that passes core.train.stream.check_clips and
    whose video decodes, appending "file: reason" to `skipped` for each one that does not. A
    generator, so a caller that encodes as it goes holds one clip's frames at a time."""
    for clip in check_clips(samples, schema, skipped):
        try:
            frames = sample_frames(clip.video, spec)
        except VideoError as exc:
            skipped.append(str(exc))
            continue
        yield clip, frames


def encode_split(samples, schema, processor, spec: SamplingSpec, instruction: str, frames_as: str):
    """Encoded training examples (prompt + canonical answer, answer-only labels), plus "file: reason"
    for every clip or label that was skipped. Holds them all: for a few clips (the estimate's
    sample, tests); training streams (core.train.stream.ClipDataset)."""
    skipped: list[str] = []
    examples = [encode_example(processor, instruction, frames, frames_as, canonical_answer(schema, s.label))
                for s, frames in usable_clips(samples, schema, spec, skipped)]
    return examples, skipped


def apply_trainable(model, cfg: TrainConfig, family):
    """LoRA (language-model linears unless asked otherwise) or full FT, plus freeze toggles."""
    if cfg.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = family.lora_target_regex if cfg.lora_targets == "language" else "all-linear"
        # PEFT copies modules_to_save whole (embeddings/head, an unfrozen tower or projector; see Family)
        modules_to_save = family.modules_to_save(cfg.train_embeddings, cfg.freeze_vision, cfg.freeze_projector)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, modules_to_save=modules_to_save or None, task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return get_peft_model(model, lora)
    frozen = {"vision": cfg.freeze_vision, "projector": cfg.freeze_projector, "language": cfg.freeze_language}
    for name, param in model.named_parameters():
        group = module_group(name, family)
        is_embedding = any(e in name for e in family.embedding_modules)
        param.requires_grad = not frozen[group] or (is_embedding and cfg.train_embeddings)
    return model


def upcast_trainable(model) -> None:
    """Trainable weights live in fp32 (the optimiser's master copy) even over a half-precision base."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def trainable_counts(model, family) -> dict:
    counts = {"vision": 0, "projector": 0, "language": 0, "total": 0, "trainable": 0}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        if p.requires_grad:
            counts["trainable"] += p.numel()
            counts[module_group(name, family)] += p.numel()
    return counts


def load_for_training(source, cfg: TrainConfig, family, device: str, precision: str):
    # before the weights arrive: loading's own temporaries must not leave resident heap holes either
    return_freed_tensors(device)
    model = _load_weights(source, cfg, family, device, precision)
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        return_freed_tensors(device, HEAP_THRESHOLD)  # a tiny model's many small tensors: the heap is faster
    return model


def _load_weights(source, cfg: TrainConfig, family, device: str, precision: str):
    dtype = weight_dtype(cfg, precision)
    if cfg.method != "qlora":
        return load_base_model(source, device, dtype, cfg.trust_remote_code)
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype,
        # vision tower, projector and head stay in 16 bits; only the language model is quantised
        llm_int8_skip_modules=[m for m in (family.vision_tower_module, family.projector_module, "lm_head") if m],
    )
    model = AutoModelForImageTextToText.from_pretrained(
        source.base, quantization_config=quant, dtype=dtype, device_map={"": torch.device(device)},
        use_safetensors=True, trust_remote_code=cfg.trust_remote_code,
    )
    # the Trainer turns on activation checkpointing itself (with input grads) when asked
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def val_evaluator(data: Dataset, cfg: TrainConfig, processor, family, pspec, precision: str, run: RunFiles):
    """Greedy generation on (at most eval_max_clips) val clips every eval_steps, or None. The clips
    are checked now and their frames sampled at each evaluation (frame cache), not held."""
    if cfg.eval_steps <= 0:
        return None
    skipped: list[str] = []
    clips = check_clips(data.split("val"), data.schema, skipped, limit=cfg.eval_max_clips)
    if not clips:
        run.log(f"eval_steps={cfg.eval_steps} but the dataset has no usable val clips: no evaluation during training")
        return None
    run.log(f"evaluating on {len(clips)} val clips every {cfg.eval_steps} steps ({len(skipped)} skipped)")
    return ValEvaluator(processor, family, pspec, clips, batch_size=min(cfg.batch_size, 8),
                        max_new_tokens=cfg.max_new_tokens, precision=precision)
