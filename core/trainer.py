"""Supervised fine-tuning of a VLM on (clip, JSON label) pairs, writing a self-describing run directory.

One readable function, `train`, does: check the config against this machine (precision, qlora)
→ load data → sample frames once (cached) → encode once → attach LoRA / set freezing → Hugging Face
`Trainer` (with greedy val evaluation every `eval_steps`) → save the final adapter and the
preprocessing spec (→ optionally merge). We use `transformers.Trainer` directly rather than TRL's
SFTTrainer: TRL has no video path and needs the same custom collator; Trainer alone gives
checkpoints, resume, schedules and accelerate/DeepSpeed/FSDP launch. Building the launch command
lives in `core.launch`, launching processes and polling the run directory in `core.runs`, the
pre-launch memory estimate in `core.estimate`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import math
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from core.config import PreprocessSpec, TrainConfig, report_targets
from core.dataset import Dataset, load_dataset
from core.errors import ConfigError, DatasetError, VideoError
from core.features import IGNORE_INDEX, collate, encode_example
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
from core.run_files import MetricsWriter, RunFiles, guarded_save
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


def capped_steps(cfg: TrainConfig, max_steps: int, run: RunFiles) -> int:
    if cfg.step_cap and max_steps > cfg.step_cap:
        run.log(f"{max_steps} steps capped at step_cap {cfg.step_cap}")
        return cfg.step_cap
    return max_steps


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


# --- the device: precision, qlora, distributed rank ----------------------------------------------

HF_OPTIMIZERS = {"adamw": "adamw_torch", "adafactor": "adafactor"}
HF_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (torchrun / accelerate launch)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def resolve_precision(precision: str, device: str) -> str:
    """auto → bf16 / fp16 on CUDA by capability, fp32 elsewhere; an explicit choice is checked."""
    cuda = device.startswith("cuda")
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError(f"precision fp16 needs a CUDA GPU (mixed precision with loss scaling); this run is on "
                          f"{device}: use fp32 or auto")
    if precision == "bf16" and cuda and not bf16_ok:
        name = torch.cuda.get_device_name(torch.device(device))
        cap = ".".join(map(str, torch.cuda.get_device_capability(torch.device(device))))
        raise ConfigError(f"precision bf16 is not supported by {name} (compute capability {cap}, bf16 needs 8.0+): "
                          "use fp16 or auto")
    if precision == "bf16" and not cuda and device != "cpu":
        raise ConfigError(f"precision bf16 is only supported on CUDA or CPU, not {device}: use fp32 or auto")
    return precision


def check_runtime(cfg: TrainConfig, device: str) -> str:
    """Everything the config asks of this machine; returns the resolved precision."""
    if cfg.method == "qlora":
        missing = []
        if importlib.util.find_spec("bitsandbytes") is None:
            missing.append("bitsandbytes is not installed (pip install bitsandbytes)")
        if not torch.cuda.is_available():
            missing.append("no CUDA GPU is visible (torch.cuda.is_available() is False)")
        elif not device.startswith("cuda"):
            missing.append(f"device is {device}, not cuda")
        if missing:
            raise ConfigError("method qlora loads the base in 4 bits with bitsandbytes, which needs a CUDA GPU: "
                              + "; ".join(missing) + ". Use method lora instead.")
    report_targets(cfg.report_to)
    return resolve_precision(cfg.precision, device)


def weight_dtype(cfg: TrainConfig, precision: str):
    """dtype the base is loaded in: a frozen LoRA base may be half precision; trained weights are fp32."""
    if precision == "fp32" or cfg.method == "full":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def family_of(source, trust_remote_code: bool = False):
    from transformers import AutoConfig

    return family_for_model_type(AutoConfig.from_pretrained(source.base, trust_remote_code=trust_remote_code).model_type)


def load_for_training(source, cfg: TrainConfig, family, device: str, precision: str):
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


# --- training ------------------------------------------------------------------------------------


def train(dataset_dir, run_dir, cfg: TrainConfig, resume: bool = False, schema_path=None, echo=None) -> dict:
    """Fine-tune and write `run_dir`. Returns the final status dict. `echo(step, max_steps, loss)`
    is called at each logging step (the CLI draws a progress bar with it).

    Under torch.distributed (launched by `accelerate launch`/torchrun) every rank trains; only rank
    0 writes the run directory (status, log, metrics, final model); HF Trainer saves checkpoints
    from the main process."""
    rank, _, _ = dist_info()
    check_runtime(cfg, pick_device(cfg.device))  # refuse what this machine cannot do before touching run_dir
    run = RunFiles(run_dir, writer=rank == 0)
    run.prepare(resume=resume)
    try:
        if cfg.method == "grpo":  # reinforcement learning with schema rewards: its own loop
            from core.grpo import train_grpo as _train_impl
        else:
            _train_impl = _train
        status = _train_impl(load_dataset(dataset_dir, schema_path), run, cfg, resume, echo)
        _finish_distributed()
        return status
    except KeyboardInterrupt:
        run.write_status(state="stopped", message="interrupted")
        raise
    except Exception as exc:
        run.write_status(state="crashed", message=f"{type(exc).__name__}: {exc}")
        raise


def _train(data: Dataset, run: RunFiles, cfg: TrainConfig, resume: bool, echo=None) -> dict:
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from core.callbacks import RunCallback

    if data.schema is None:
        raise DatasetError(f"{data.root}: no schema.json; training needs the schema that labels follow")
    rank, local_rank, world = dist_info()
    source = resolve_model(cfg.model)
    device = pick_device(cfg.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    precision = check_runtime(cfg, device)
    random_init = is_random_init(source.base)
    processor = load_processor(source, cfg.trust_remote_code)
    family = family_of(source, cfg.trust_remote_code)
    cfg = resolve_defaults(cfg, family, random_init)
    model = load_for_training(source, cfg, family, device, precision)
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
    upcast_trainable(model)
    counts = trainable_counts(model, family)
    run.log(f"parameters: {json.dumps(counts)}")
    run.log(f"device {device}, precision {precision}, processes {world}, optimizer {cfg.optimizer}, "
            f"schedule {cfg.lr_scheduler}, gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}")

    steps_per_epoch = math.ceil(len(train_ex) / (cfg.batch_size * cfg.grad_accum * world))
    max_steps = capped_steps(cfg, cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch), run)
    pspec = PreprocessSpec(
        base_model=cfg.model if not cfg.model.startswith(".") else str(Path(cfg.model).resolve()),
        family=family.name, sampling=spec.to_dict(), instruction=instruction, schema=data.schema,
        schema_hash=schema_hash(data.schema), frames_as=family.frames_as,
        extra={"tiny_spec": json.loads((Path(source.base) / "tiny_spec.json").read_text())} if random_init else {},
    )
    args = TrainingArguments(
        output_dir=str(run.dir), max_steps=max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=HF_SCHEDULERS[cfg.lr_scheduler], warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, optim=HF_OPTIMIZERS[cfg.optimizer],
        seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, save_strategy="steps",
        report_to=report_targets(cfg.report_to) or "none", run_name=run.dir.name, project="video-vlm-workbench",
        bf16=precision == "bf16", fp16=precision == "fp16", activation_checkpointing=cfg.gradient_checkpointing,
        remove_unused_columns=False, dataloader_num_workers=cfg.dataloader_workers, use_cpu=device == "cpu",
        disable_tqdm=True,
    )
    evaluator = _val_evaluator(data, cfg, processor, family, pspec, precision, run)
    callback = RunCallback(run, MetricsWriter(run.metrics_path, writer=run.writer), pspec,
                           tokens_per_example=_mean_tokens(train_ex), echo=echo, evaluator=evaluator,
                           eval_steps=cfg.eval_steps)
    collator = CountingCollator(processor.tokenizer.pad_token_id, cfg.dataloader_workers == 0)
    trainer = workbench_trainer(Trainer, run)(model=model, args=args, train_dataset=_ListDataset(train_ex),
                                              data_collator=collator, callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not stdout
    checkpoint = run.last_checkpoint() if resume else None
    start_step = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
    run.write_status(state="running", global_step=start_step, max_steps=max_steps, message="training",
                     started=time.time(), start_step=start_step, world_size=world, precision=precision)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final = run.dir / pspec.final_dir
    with guarded_save(final, run.last_checkpoint(), owner=run.writer):
        trainer.save_model(str(final))  # main process only; gathers sharded (DeepSpeed/FSDP) weights first
    ranks = gather_objects({"rank": rank, "examples": collator.examples, "steps": trainer.state.global_step})
    if run.writer:
        processor.save_pretrained(final)
        pspec.save(final)
        pspec.save(run.dir)
    state = "stopped" if callback.stop_requested else "completed"
    run.log(f"{state} at step {trainer.state.global_step}; per process: {json.dumps(ranks)}")
    status = run.write_status(state="running" if cfg.merge_at_end else state, global_step=trainer.state.global_step,
                              max_steps=max_steps, message=f"final model saved to {final.name}/", skipped=len(skipped),
                              train_seconds=round(time.time() - t0, 1), ranks=ranks)
    if cfg.merge_at_end and run.writer:
        del trainer, model, callback
        status = _merge_at_end(run, state)
    return status


def _merge_at_end(run: RunFiles, state: str) -> dict:
    import gc

    from core.merge import merge_run

    gc.collect()
    run.write_status(message="merging the adapter into the base")
    merged = merge_run(run.dir)
    run.log(f"merged model written to {merged}")
    return run.write_status(state=state, message=f"final adapter in final/, merged model in {merged.name}/")


def workbench_trainer(trainer_cls, run: RunFiles):
    """The HF Trainer with two changes: checkpoint saves that fail cleanly (disk full:
    core.run_files.guarded_save), and a loss computed from the logits of answer positions only."""

    class WorkbenchTrainer(trainer_cls):
        def _save_checkpoint(self, model, trial):
            path = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            with guarded_save(path, run.last_checkpoint(), owner=self.args.should_save):
                super()._save_checkpoint(model, trial)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """Why: the prompt (video tokens, instruction) is most of every sequence and has no labels,
            yet the default loss projects every position onto the vocabulary. Projecting only the
            positions whose next token is supervised (their union over the batch) gives the same loss
            and gradients, with a fraction of the lm_head compute and of the [batch, seq, vocab]
            logits memory (for a 7B Qwen at 4k video tokens, ~20 GB of fp32 logits per batch of 8).
            The normalisation mirrors transformers' ForCausalLMLoss and Trainer.compute_loss."""
            labels = inputs.get("labels")
            if (labels is None or self.label_smoother is not None or self.compute_loss_func is not None
                    or self.args.n_gpu > 1  # nn.DataParallel would split the positions tensor across GPUs
                    or not self._takes_logits_to_keep(model)):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            shifted = labels[:, 1:]
            keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero().flatten()
            if keep.numel() == 0:  # nothing supervised in this batch: let transformers decide what that means
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
            logits = outputs.logits.float()
            target = shifted[:, keep].to(logits.device)
            total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                      ignore_index=IGNORE_INDEX, reduction="sum")
            if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes  # num_items_in_batch counts every process
            else:
                loss = total / (target != IGNORE_INDEX).sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

        def _takes_logits_to_keep(self, model) -> bool:
            """Every family in core.models does; remote-code models may not (then: the default loss)."""
            if getattr(self, "_logits_to_keep", None) is None:
                inner = self.accelerator.unwrap_model(model)
                inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
                self._logits_to_keep = "logits_to_keep" in inspect.signature(inner.forward).parameters
            return self._logits_to_keep

    return WorkbenchTrainer


def _val_evaluator(data: Dataset, cfg: TrainConfig, processor, family, pspec, precision: str, run: RunFiles):
    """Greedy generation on (at most eval_max_clips) val clips every eval_steps, or None."""
    from core.callbacks import ValEvaluator

    if cfg.eval_steps <= 0:
        return None
    clips, skipped = [], 0
    for s in data.split("val"):
        if len(clips) >= cfg.eval_max_clips:
            break
        if label_errors(data.schema, s.label):
            skipped += 1
            continue
        try:
            clips.append((sample_frames(s.video, pspec.sampling_spec), s.label))
        except VideoError:
            skipped += 1
    if not clips:
        run.log(f"eval_steps={cfg.eval_steps} but the dataset has no usable val clips: no evaluation during training")
        return None
    run.log(f"evaluating on {len(clips)} val clips every {cfg.eval_steps} steps ({skipped} skipped)")
    return ValEvaluator(processor, family, pspec, clips, batch_size=min(cfg.batch_size, 8),
                        max_new_tokens=cfg.max_new_tokens, precision=precision)


class CountingCollator:
    """Batches examples and counts how many this process consumed (the per-rank proof of work)."""

    def __init__(self, pad_id: int, counts: bool = True):
        self.pad_id = pad_id
        self.examples = 0 if counts else None

    def __call__(self, examples):
        if self.examples is not None:
            self.examples += len(examples)
        return collate(examples, self.pad_id)


def _finish_distributed() -> None:
    """Wait for every rank (rank 0 may still be merging), then tear the process group down: a gloo
    group left to the interpreter's exit aborts ('terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj) -> list:
    """`obj` from every rank (in rank order); `[obj]` when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _mean_tokens(examples) -> float:
    return sum(ex["input_ids"].shape[1] for ex in examples) / max(len(examples), 1)
