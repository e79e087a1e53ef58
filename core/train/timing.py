"""Expected wall time of a training run, from a short calibration on this machine, now.

`calibrate` loads the configured model with the run's LoRA/freezing/precision, encodes one real
batch of train clips with the trainer's encoder, and times a few real optimiser steps on it (forward
with the trainer's answer-only loss, backward, optimiser step; the first step is a warm-up and is not
counted, it pays for allocation and kernel selection). It also times one checkpoint-sized save and,
when the run evaluates, one greedy evaluation batch through the trainer's own `ValEvaluator`.
`expected_duration` turns those measurements into seconds for the whole run:

  steps        max_steps x seconds per optimiser step (micro-batch time x grad_accum)
  first pass   decoding + encoding each clip the first time it is used (measured per clip while
               building the batch); without loader workers the loop waits for all of it, with workers
               only the part a worker cannot hide behind the steps
  checkpoints  max_steps // save_steps saves x the measured save
  evaluations  (max_steps // eval_steps, plus one at the end) x val batches x the measured batch
  start-up     loading the model, as measured

It measures this machine as loaded as it is at that moment: other jobs that start or stop later
change the real time, and several processes (num_processes > 1) are not modelled. Nothing here is
written to a run directory. Imports torch only inside functions (the estimate imports this module).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from core.config import TrainConfig
from core.errors import DatasetError
from core.models.inputs import IGNORE_INDEX, collate, for_causal_training
from core.runs.files import duration_text
from core.schema.base import label_errors

TIMED_STEPS = 2  # after one warm-up step: enough for a minutes-level ETA, cheap enough for every Estimate


def calibrate(cfg: TrainConfig, data, source, processor, family, pspec, device: str, precision: str,
              steps: int = TIMED_STEPS) -> dict:
    """Measured seconds of the run's building blocks on one real batch (see the module docstring)."""
    import torch

    from core.train.setup import apply_trainable, encode_split, load_for_training, upcast_trainable
    from core.train.stream import check_clips, training_pool

    pool = [s for s in training_pool(data)[0] if not label_errors(data.schema, s.label)]
    t0 = time.perf_counter()
    examples, _ = encode_split(pool[:cfg.batch_size], data.schema, processor, pspec.sampling_spec,
                               pspec.instruction, pspec.frames_as)
    if not examples:
        raise DatasetError(f"{data.root}: no train clip could be encoded for the timing calibration")
    encode_s = (time.perf_counter() - t0) / len(examples)

    t0 = time.perf_counter()
    model = apply_trainable(load_for_training(source, cfg, family, device, precision), cfg, family)
    upcast_trainable(model)
    load_s = time.perf_counter() - t0
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params)
    # a dataset smaller than one batch: repeat clips, as further epochs would
    examples = (examples * math.ceil(cfg.batch_size / len(examples)))[:cfg.batch_size]
    batch = collate(examples, processor.tokenizer.pad_token_id)
    batch = batch if cfg.trust_remote_code else for_causal_training(batch)  # as core.train.sft.Collator
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    durations = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        _train_step(model, optimizer, batch, precision, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # step 0 is the warm-up
            durations.append(time.perf_counter() - t0)
    micro_s = sum(durations) / len(durations)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model.save_pretrained(tmp, safe_serialization=True)
        torch.save(optimizer.state_dict(), Path(tmp) / "optimizer.pt")
        save_s = time.perf_counter() - t0

    eval_batch_s, eval_batch = 0.0, 0
    if cfg.eval_steps > 0:
        from core.train.callbacks import ValEvaluator

        eval_batch = min(cfg.batch_size, 8)  # what core.train.setup.val_evaluator uses
        clips = check_clips(data.split("val"), data.schema, [], limit=eval_batch)
        if clips:
            evaluator = ValEvaluator(processor, family, pspec, clips, batch_size=eval_batch,
                                     max_new_tokens=cfg.max_new_tokens, precision=precision)
            t0 = time.perf_counter()
            evaluator(model, 0)
            eval_batch_s = time.perf_counter() - t0
    return {"micro_batch_s": micro_s, "step_s": micro_s * cfg.grad_accum, "timed_steps": len(durations),
            "encode_s_per_clip": encode_s, "load_s": load_s, "save_s": save_s,
            "eval_batch_s": eval_batch_s, "eval_batch": eval_batch}


def _optimizer(cfg: TrainConfig, params):
    import torch

    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        # the Trainer's adafactor defaults (scale_parameter and relative_step off, the run's lr)
        return Adafactor(params, lr=cfg.learning_rate or 1e-4, scale_parameter=False, relative_step=False)
    return torch.optim.AdamW(params, lr=cfg.learning_rate or 1e-4)


def _train_step(model, optimizer, batch: dict, precision: str, device: str) -> None:
    """Forward with the answer-only loss core.train.sft.workbench_trainer computes (logits only at the
    supervised positions: the default full-sequence logits would time a heavier step than training
    runs), backward, optimiser step."""
    import contextlib

    import torch

    labels = batch["labels"]
    shifted = labels[:, 1:]
    keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    amp = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
           if precision in ("bf16", "fp16") else contextlib.nullcontext())
    with amp:
        out = model(**{k: v for k, v in batch.items() if k != "labels"}, logits_to_keep=keep)
        logits = out.logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted[:, keep].reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def planned_steps(cfg: TrainConfig, train_clips: int) -> int:
    """The optimiser steps the run will take (max_steps, or epochs over the train split; step_cap)."""
    per_step = cfg.batch_size * cfg.grad_accum * max(cfg.num_processes, 1)
    steps = cfg.max_steps or math.ceil(cfg.epochs * math.ceil(train_clips / per_step))
    return min(steps, cfg.step_cap) if cfg.step_cap else steps


def expected_duration(cfg: TrainConfig, measured: dict, train_clips: int, workers: int) -> dict:
    """Seconds the run should take, by part, from `calibrate`'s measurements (module docstring)."""
    steps = planned_steps(cfg, train_clips)
    step_s = measured["step_s"]
    batch = cfg.batch_size * cfg.grad_accum
    first_pass_clips = min(train_clips, steps * batch)
    batch_encode_s = batch * measured["encode_s_per_clip"]
    if workers:  # workers decode ahead; the loop waits only where a batch takes longer than a step to prepare
        first_pass = math.ceil(first_pass_clips / batch) * max(0.0, batch_encode_s / workers - step_s)
    else:
        first_pass = first_pass_clips * measured["encode_s_per_clip"]
    checkpoints = steps // cfg.save_steps if cfg.save_steps else 0
    evaluations = (steps // cfg.eval_steps + (1 if steps % cfg.eval_steps else 0)) if cfg.eval_steps else 0
    eval_batches = math.ceil(cfg.eval_max_clips / measured["eval_batch"]) if measured["eval_batch"] else 0
    parts = {"steps": steps * step_s, "first_pass": first_pass, "checkpoints": checkpoints * measured["save_s"],
             "evaluations": evaluations * eval_batches * measured["eval_batch_s"], "start_up": measured["load_s"]}
    return {"seconds": sum(parts.values()), "parts": parts, "steps": steps, "checkpoints": checkpoints,
            "evaluations": evaluations, **measured}


def format_duration(d: dict) -> str:
    """The Estimate's duration lines: the total, what it is made of and the measurement behind it."""
    p = d["parts"]
    return (f"expected duration: about {duration_text(d['seconds'])} for {d['steps']} steps, from "
            f"{d['step_s']:.3f} s/step measured on this machine as loaded now (mean of {d['timed_steps']} real "
            f"training steps on one batch after a warm-up)\n"
            f"  = steps {duration_text(p['steps'])} + first-pass decoding {duration_text(p['first_pass'])} + "
            f"{d['checkpoints']} checkpoint(s) {duration_text(p['checkpoints'])} + {d['evaluations']} evaluation(s) "
            f"{duration_text(p['evaluations'])} + model load {duration_text(p['start_up'])}; other jobs starting "
            "on the machine, larger frames or batches and more evaluations make it longer")
