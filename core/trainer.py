"""Supervised fine-tuning of a VLM on (clip, JSON label) pairs, writing a self-describing run directory.

One readable function, `train`, does: load data → sample frames once (cached) → encode once →
attach LoRA / set freezing → Hugging Face `Trainer` → save the final adapter and the preprocessing
spec. We use `transformers.Trainer` directly rather than TRL's SFTTrainer: TRL has no video path
and needs the same custom collator; Trainer alone gives checkpoints, resume, schedules and
accelerate/DeepSpeed launch. Launching processes and polling the run directory live in `core.runs`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from core.config import PreprocessSpec, TrainConfig
from core.dataset import Dataset, load_dataset
from core.errors import DatasetError, VideoError
from core.features import collate, encode_example
from core.models import (
    TINY_FRAME_SIZE,
    family_for_model_type,
    load_base_model,
    load_processor,
    module_group,
    pick_device,
    resolve_model,
)
from core.prompt import build_instruction
from core.run_files import MetricsWriter, RunFiles
from core.schema import canonical_answer, label_errors, schema_hash
from core.video import SamplingSpec, sample_frames

log = logging.getLogger(__name__)


def is_random_init(base_path: str) -> bool:
    """The embedded tiny models are random; they need from-scratch training defaults."""
    return (Path(base_path) / "tiny_spec.json").is_file()


def resolve_defaults(cfg: TrainConfig, family, random_init: bool) -> TrainConfig:
    """Fill the config's None fields from the family and whether the base is pretrained."""
    d = asdict(cfg)
    size = TINY_FRAME_SIZE if random_init else family.default_size
    d["num_frames"] = cfg.num_frames or family.default_frames
    d["frame_width"] = cfg.frame_width or size[0]
    d["frame_height"] = cfg.frame_height or size[1]
    d["learning_rate"] = cfg.learning_rate or (3e-3 if random_init else 1e-4)
    for key in ("train_embeddings",):
        d[key] = random_init if cfg.train_embeddings is None else cfg.train_embeddings
    for key in ("freeze_vision", "freeze_projector"):
        d[key] = (not random_init) if getattr(cfg, key) is None else getattr(cfg, key)
    return TrainConfig(**d)


def sampling_spec(cfg: TrainConfig) -> SamplingSpec:
    return SamplingSpec(
        sampling=cfg.sampling, num_frames=cfg.num_frames, fps=cfg.fps, min_frames=cfg.min_frames,
        max_frames=cfg.max_frames, width=cfg.frame_width, height=cfg.frame_height,
    )


def encode_split(samples, schema, processor, spec: SamplingSpec, instruction: str, frames_as: str):
    """Encoded training examples, plus 'file: reason' for every clip or label that was skipped."""
    examples, skipped = [], []
    for s in samples:
        errors = label_errors(schema, s.label)
        if errors:
            skipped.append(f"{s.rel}: label breaks the schema: {errors[0]}")
            continue
        try:
            frames = sample_frames(s.video, spec)
        except VideoError as exc:
            skipped.append(str(exc))
            continue
        answer = canonical_answer(schema, s.label)
        examples.append(encode_example(processor, instruction, frames, frames_as, answer))
    return examples, skipped


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def apply_trainable(model, cfg: TrainConfig, family):
    """LoRA (language-model linears unless asked otherwise) or full FT, plus freeze toggles."""
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = family.lora_target_regex if cfg.lora_targets == "language" else "all-linear"
        modules_to_save = list(family.embedding_modules) if cfg.train_embeddings else []
        # PEFT copies modules_to_save whole; the tower module (which in some families contains
        # the projector) is wrapped as one so its forward keeps working.
        if not cfg.freeze_vision:
            modules_to_save.append(family.vision_tower_module)
        elif not cfg.freeze_projector:
            modules_to_save.append(family.projector_module)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, modules_to_save=modules_to_save or None, task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    frozen = {"vision": cfg.freeze_vision, "projector": cfg.freeze_projector, "language": cfg.freeze_language}
    for name, param in model.named_parameters():
        group = module_group(name, family)
        is_embedding = any(e in name for e in family.embedding_modules)
        param.requires_grad = not frozen[group] or (is_embedding and cfg.train_embeddings)
    return model


def trainable_counts(model, family) -> dict:
    counts = {"vision": 0, "projector": 0, "language": 0, "total": 0, "trainable": 0}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        if p.requires_grad:
            counts["trainable"] += p.numel()
            counts[module_group(name, family)] += p.numel()
    return counts


def train(dataset_dir, run_dir, cfg: TrainConfig, resume: bool = False, schema_path=None, echo=None) -> dict:
    """Fine-tune and write `run_dir`. Returns the final status dict. `echo(step, max_steps, loss)`
    is called at each logging step (the CLI draws a progress bar with it)."""
    run = RunFiles(run_dir)
    run.prepare(resume=resume)
    try:
        return _train(load_dataset(dataset_dir, schema_path), run, cfg, resume, echo)
    except KeyboardInterrupt:
        run.write_status(state="stopped", message="interrupted")
        raise
    except Exception as exc:
        run.write_status(state="crashed", message=f"{type(exc).__name__}: {exc}")
        raise


def _train(data: Dataset, run: RunFiles, cfg: TrainConfig, resume: bool, echo=None) -> dict:
    from transformers import Trainer, TrainingArguments

    if data.schema is None:
        raise DatasetError(f"{data.root}: no schema.json; training needs the schema that labels follow")
    source = resolve_model(cfg.model)
    device = pick_device(cfg.device)
    random_init = is_random_init(source.base)
    processor = load_processor(source, cfg.trust_remote_code)
    model = load_base_model(source, device, torch.float32 if device == "cpu" else None, cfg.trust_remote_code)
    family = family_for_model_type(model.config.model_type)
    cfg = resolve_defaults(cfg, family, random_init)
    spec = sampling_spec(cfg)
    instruction = build_instruction(data.schema, cfg.prompt_template)
    run.save_inputs(cfg, data)
    run.write_status(state="running", message="sampling frames and encoding clips")

    t0 = time.time()
    train_ex, skipped = encode_split(data.split("train") or data.samples, data.schema, processor, spec,
                                     instruction, family.frames_as)
    for msg in skipped:
        run.log(f"skipped {msg}")
    if not train_ex:
        raise DatasetError(f"{data.root}: no usable training clips ({len(skipped)} skipped)")
    run.log(f"encoded {len(train_ex)} clips in {time.time() - t0:.1f}s, skipped {len(skipped)}")

    model = apply_trainable(model, cfg, family)
    counts = trainable_counts(model, family)
    run.log(f"parameters: {json.dumps(counts)}")

    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_size * cfg.grad_accum))
    max_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    pspec = PreprocessSpec(
        base_model=cfg.model if not cfg.model.startswith(".") else str(Path(cfg.model).resolve()),
        family=family.name, sampling=spec.to_dict(), instruction=instruction, schema=data.schema,
        schema_hash=schema_hash(data.schema), frames_as=family.frames_as,
        extra={"tiny_spec": json.loads((Path(source.base) / "tiny_spec.json").read_text())} if random_init else {},
    )
    pad_id = processor.tokenizer.pad_token_id
    args = TrainingArguments(
        output_dir=str(run.dir), max_steps=max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, optim=cfg.optimizer, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        save_strategy="steps", report_to="none", remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_workers, use_cpu=(device == "cpu"),
        disable_tqdm=True,
    )
    from core.callbacks import RunCallback

    callback = RunCallback(run, MetricsWriter(run.metrics_path), pspec, tokens_per_example=_mean_tokens(train_ex), echo=echo)
    trainer = Trainer(model=model, args=args, train_dataset=_ListDataset(train_ex),
                      data_collator=lambda exs: collate(exs, pad_id), callbacks=[callback])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not stdout
    checkpoint = run.last_checkpoint() if resume else None
    start_step = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
    run.write_status(state="running", global_step=start_step, max_steps=max_steps, message="training",
                     started=time.time(), start_step=start_step)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final = run.dir / pspec.final_dir
    model.save_pretrained(final, safe_serialization=True)
    processor.save_pretrained(final)
    pspec.save(final)
    pspec.save(run.dir)
    state = "stopped" if callback.stop_requested else "completed"
    status = run.write_status(state=state, global_step=trainer.state.global_step, max_steps=max_steps,
                              message=f"final model saved to {final.name}/", skipped=len(skipped),
                              train_seconds=round(time.time() - t0, 1))
    run.log(f"{state} at step {trainer.state.global_step}")
    return status


def _mean_tokens(examples) -> float:
    return sum(ex["input_ids"].shape[1] for ex in examples) / max(len(examples), 1)

