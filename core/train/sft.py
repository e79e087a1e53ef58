"""Supervised fine-tuning of a VLM on (clip, JSON label) pairs, writing a self-describing run directory.

`train_sft` (called by core.train.entry.train) does: load the base and processor → resolve the
config's blanks and build the preprocessing spec (core.spec) → check every clip cheaply (label,
video header) → attach LoRA / set freezing → Hugging Face `Trainer` (with greedy val evaluation
every `eval_steps`; its DataLoader samples and encodes clips as batches need them,
core.train.stream) → save the final adapter and the spec (→ optionally merge). We use
`transformers.Trainer` directly rather than TRL's SFTTrainer: TRL has no video path and needs the
same custom collator; Trainer alone gives checkpoints, resume, schedules and accelerate/DeepSpeed/FSDP
launch. `workbench_trainer` adds the three changes we make to it (guarded checkpoint saves, an
answer-only loss, batches counted and their wait timed). Launching and watching processes is core.runs'.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from pathlib import Path

import torch

from core.config import TrainConfig, report_targets
from core.data.dataset import Dataset
from core.layout import LOG_FILE
from core.models.inputs import IGNORE_INDEX, collate, for_causal_training
from core.runs.files import MetricsWriter, RunFiles, guarded_save
from core.spec import checkpoint_name, checkpoint_step
from core.train.callbacks import RunCallback
from core.train.merge import merge_run
from core.train.prepare import prepare
from core.train.runtime import HF_OPTIMIZERS, HF_SCHEDULERS, dist_info, gather_objects, machine_rank, unseen_by
from core.train.setup import (
    apply_trainable,
    capped_steps,
    load_for_training,
    trainable_counts,
    upcast_trainable,
    val_evaluator,
)
from core.train.stream import (
    LOADER_PREFETCH,
    ClipDataset,
    SkipLog,
    cache_budget,
    example_bytes,
    loader_workers,
    start_clips,
)


def train_sft(data: Dataset, run: RunFiles, cfg: TrainConfig, resume: bool, echo=None) -> dict:
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback


    rank, local_rank, world = dist_info()
    inputs = prepare(cfg, data, "training needs the schema that labels follow", local_rank, world)
    cfg, device, precision, family, processor, pspec = (inputs.cfg, inputs.device, inputs.precision, inputs.family,
                                                        inputs.processor, inputs.spec)
    model = load_for_training(inputs.source, cfg, family, device, precision)
    run.save_inputs(cfg, data)
    t0 = time.time()
    dataset, skipped, workers, tokens = training_clips(data, run, cfg, processor, pspec, device, world, rank)

    model = apply_trainable(model, cfg, family)
    upcast_trainable(model)
    counts = trainable_counts(model, family)
    run.log(f"parameters: {json.dumps(counts)}")
    run.log(f"device {device}, precision {precision}, processes {world}, optimizer {cfg.optimizer}, "
            f"schedule {cfg.lr_scheduler}, gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}")

    steps_per_epoch = math.ceil(len(dataset) / (cfg.batch_size * cfg.grad_accum * world))
    max_steps = capped_steps(cfg, cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch), run)
    args = TrainingArguments(
        output_dir=str(run.dir), max_steps=max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=HF_SCHEDULERS[cfg.lr_scheduler], warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, optim=HF_OPTIMIZERS[cfg.optimizer],
        seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps, save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, save_strategy="steps",
        report_to=report_targets(cfg.report_to) or "none", run_name=run.dir.name, project="video-vlm-workbench",
        bf16=precision == "bf16", fp16=precision == "fp16", activation_checkpointing=cfg.gradient_checkpointing,
        remove_unused_columns=False, dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0,
        dataloader_prefetch_factor=LOADER_PREFETCH if workers else None,
        use_cpu=device == "cpu", disable_tqdm=True,
    )
    if cfg.num_machines > 1:
        _check_shared(run, args)
    evaluator = val_evaluator(data, cfg, processor, family, pspec, precision, run)
    clock = DataClock()
    callback = RunCallback(run, MetricsWriter(run.metrics_path, writer=run.writer), pspec,
                           tokens_per_example=tokens, echo=echo, evaluator=evaluator,
                           eval_steps=cfg.eval_steps, clips=len(dataset), data_clock=clock)
    collator = Collator(processor.tokenizer.pad_token_id, keep_mask=cfg.trust_remote_code)
    trainer = workbench_trainer(Trainer, run, clock)(model=model, args=args, train_dataset=dataset,
                                                     data_collator=collator, callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not stdout
    checkpoint = run.last_checkpoint() if resume else None
    start_step = checkpoint_step(checkpoint.name) if checkpoint else 0
    run.write_status(state="running", global_step=start_step, max_steps=max_steps, message="training",
                     started=time.time(), start_step=start_step, world_size=world, precision=precision)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final = run.dir / pspec.final_dir
    with guarded_save(final, run.last_checkpoint(), owner=run.writer):
        trainer.save_model(str(final))  # main process only; gathers sharded (DeepSpeed/FSDP) weights first
    ranks = gather_objects({"rank": rank, "machine": machine_rank(), "examples": clock.examples,
                            "steps": trainer.state.global_step})
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


def training_clips(data: Dataset, run: RunFiles, cfg: TrainConfig, processor, pspec, device: str, world: int,
                   rank: int):
    """(the streaming dataset, skipped "file: reason"s, loader workers, mean tokens per clip): the
    cheap checks now, in train.log; decoding and encoding later, in the loader. A few clips are
    encoded now, so a pipeline that cannot encode fails before the first step and the size of an
    encoded clip is known (for the /dev/shm check and the tokens/s figure)."""
    run.write_status(state="running", message="checking clips (labels, video headers)")
    t0 = time.time()
    clips, skipped = start_clips(data, run.log,
                                 progress=lambda k, n: run.write_status(message=f"checking clips: {k} of {n}"))
    # cached while it is not yet known whether workers will encode: in-process, these are kept
    log = SkipLog(run.dir / LOG_FILE, rank) if machine_rank() == 0 else MachineSkipLog(rank, machine_rank())
    dataset = ClipDataset(clips, processor, pspec, log=log,
                          cache_bytes=cache_budget(cfg.encoded_cache_mb, 0))
    first = [dataset[i] for i in range(min(4, len(dataset)))]
    tokens = sum(ex["input_ids"].shape[1] for ex in first) / len(first)
    workers = loader_workers(cfg.dataloader_workers, device, world, example_bytes(first[0]) * cfg.batch_size, run.log)
    dataset.set_cache_budget(cache_budget(cfg.encoded_cache_mb, workers) if workers == 0 else 0)
    dataset.cache_bytes = cache_budget(cfg.encoded_cache_mb, workers)
    cache = f"encoded clips cached up to {cfg.encoded_cache_mb} MiB" if dataset.cache_bytes else "no encoded-clip cache"
    run.log(f"checked {len(clips)} clips in {time.time() - t0:.1f}s, skipped {len(skipped)}; frames are decoded and "
            f"encoded as batches need them ({workers} loader worker{'s' if workers != 1 else ''} per process, {cache})")
    return dataset, skipped, workers, tokens


def _check_shared(run: RunFiles, args) -> None:
    """Multi-node: say in train.log and status.json when a machine does not see the run directory.
    Training goes on (rank 0 still writes everything), but Resume needs the checkpoints' other-rank
    parts and config.yaml on every machine, so the folder belongs on storage they all mount."""
    _ = args.device  # forms the process group (accelerate's PartialState) if nothing has yet
    blind = unseen_by(run)
    if blind:
        text = (f"machine(s) {', '.join(map(str, blind))} do not see {run.dir} as machine 0 writes it: training "
                "goes on, but Resume needs the run directory on storage every machine mounts at the same path")
        run.log(f"warning: {text}")
        run.write_status(warning=text)


class MachineSkipLog:
    """Clips skipped mid-run on machines other than machine 0. Those machines write nothing into the
    run directory (appends from several hosts to one file on a network filesystem can interleave),
    so the line goes to their own launcher output. Picklable, for loader workers."""

    def __init__(self, rank: int, machine: int):
        self.rank, self.machine = rank, machine

    def __call__(self, message: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} skipped (rank {self.rank}, machine "
                         f"{self.machine}) {message}\n")
        sys.stderr.flush()


def _merge_at_end(run: RunFiles, state: str) -> dict:
    import gc


    gc.collect()
    run.write_status(message="merging the adapter into the base")
    merged = merge_run(run.dir)
    run.log(f"merged model written to {merged}")
    return run.write_status(state=state, message=f"final adapter in final/, merged model in {merged.name}/")


class DataClock:
    """What the training loop took from its data loader: seconds spent waiting for batches (read by
    the callback) and examples consumed (each rank's proof of work). Counted in the training
    process, whether the batches were made there or by loader workers."""

    def __init__(self):
        self.wait_s = 0.0
        self.examples = 0


def workbench_trainer(trainer_cls, run: RunFiles, clock: DataClock | None = None):
    """The HF Trainer with three changes: checkpoint saves that fail cleanly (disk full:
    core.runs.files.guarded_save), a loss computed from the logits of answer positions only, and
    the time spent waiting for batches (the data path) added to `clock`."""

    class WorkbenchTrainer(trainer_cls):
        def get_batch_samples(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super().get_batch_samples(*args, **kwargs)
            if clock is not None:
                clock.wait_s += time.perf_counter() - t0
                clock.examples += sum(b["input_ids"].shape[0] for b in out[0])
            return out

        def _save_checkpoint(self, model, trial):
            path = Path(self._get_output_dir(trial=trial)) / checkpoint_name(self.state.global_step)
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
            """Every family in core.models.families does; remote-code models may not (then: the default loss)."""
            if getattr(self, "_logits_to_keep", None) is None:
                inner = self.accelerator.unwrap_model(model)
                inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
                self._logits_to_keep = "logits_to_keep" in inspect.signature(inner.forward).parameters
            return self._logits_to_keep

    return WorkbenchTrainer


class Collator:
    """Pads and batches encoded examples (core.models.inputs.collate) on the right, without the
    attention mask where that changes nothing (`for_causal_training`); picklable for loader workers.
    A model with remote code keeps the mask: its attention is not known to be causal."""

    def __init__(self, pad_id: int, keep_mask: bool = False):
        self.pad_id = pad_id
        self.keep_mask = keep_mask

    def __call__(self, examples):
        batch = collate(examples, self.pad_id)
        return batch if self.keep_mask else for_causal_training(batch)
