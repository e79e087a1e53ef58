"""GRPO: reinforcement learning of a LoRA adapter with rewards derived from the schema (core.train.rewards).

Why our own loop and not TRL's GRPOTrainer (trl 1.16): TRL builds prompts itself from a dataset's
`image`/`images` column and passes only image tensors (pixel_values, image_grid_thw) to the policy
and reference forward passes; there is no video column and no pixel_values_videos/video_grid_thw
(huggingface/trl#5373, #4144 open). Our clips — and our still images, which are one-frame *videos*
for the families that take video — are sampled by our SamplingSpec and encoded by core.models.inputs;
making TRL take them would mean overriding its generation, scoring and log-prob methods, i.e. most
of the trainer. The loop below is the algorithm in ~150 lines and feeds the model exactly the
tensors SFT and inference feed it:

  each step: draw `batch_size` clips → sample `num_generations` completions per clip (temperature)
  → rewards per completion → advantages normalised within each clip's group → loss on completion
  tokens = clipped policy-gradient term + beta * KL(policy || reference) (k3 estimator), averaged
  over all completion tokens → AdamW step.

The reference is the starting policy: the base with the adapter disabled, or, with `init_adapter`,
that SFT adapter loaded a second time, frozen. One policy update per generation batch, so the
importance ratio is 1 and the clip only matters for its gradient form (as in TRL's default).
The run directory follows the SFT protocol (status.json, metrics.jsonl, STOP, checkpoint-N/,
final/ + preprocessing.json) so eval, compare, predict and resume work on the result. This module
does not run several processes (one process, one device).
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from core.config import TrainConfig
from core.errors import ConfigError
from core.layout import LOG_FILE
from core.models.device import weight_dtype
from core.models.inputs import TOKEN_KEYS, collate, suppressed_token_ids
from core.models.loading import load_base_model
from core.runs.files import MetricsWriter, RunFiles, guarded_save
from core.spec import checkpoint_name
from core.train.prepare import prepare
from core.train.rewards import COMPONENTS, RewardWeights, group_advantages, load_custom_reward, score_batch
from core.train.runtime import HF_SCHEDULERS, dist_info
from core.train.setup import apply_trainable, capped_steps, upcast_trainable, val_evaluator
from core.train.stream import (
    LOADER_PREFETCH,
    ClipDataset,
    SkipLog,
    StepBatches,
    cache_budget,
    example_bytes,
    loader_workers,
    owned,
    start_clips,
)

CLIP_EPS = 0.2
REF = "reference"


def reward_weights(cfg: TrainConfig) -> RewardWeights:
    return RewardWeights(json=cfg.reward_json, schema=cfg.reward_schema, fields=cfg.reward_fields,
                         length=cfg.length_penalty, custom=1.0 if cfg.custom_reward else 0.0)


def _load(inputs):
    """(the policy model, with its trainable adapter; whether the reference is a second, frozen adapter)."""
    cfg, source = inputs.cfg, inputs.source
    model = load_base_model(source, inputs.device, weight_dtype(replace(cfg, method="lora"), inputs.precision),
                            cfg.trust_remote_code)
    if inputs.init_spec is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(source.adapter), is_trainable=True)
        model.load_adapter(str(source.adapter), adapter_name=REF, is_trainable=False)
        model.set_adapter("default")
    else:
        model = apply_trainable(model, replace(cfg, method="lora"), inputs.family)
    model.to(inputs.device)
    upcast_trainable(model)
    return model, inputs.init_spec is not None


@contextlib.contextmanager
def reference_policy(model, has_adapter: bool):
    """The model as the reference: adapter disabled, or switched to the frozen init adapter."""
    if not has_adapter:
        with model.disable_adapter():
            yield
        return
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.set_adapter(REF)
    try:
        yield
    finally:
        model.set_adapter("default")
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def _completion_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first eos of each row, 0 after."""
    is_eos = ids == eos_id
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((ids.shape[0],), ids.shape[1]))
    return (torch.arange(ids.shape[1]).unsqueeze(0) <= first.unsqueeze(1)).long()


def completion_logps(model, batch: dict, completion: torch.Tensor, mask: torch.Tensor, temperature: float):
    """Per-token log-probs of `completion` after the (left-padded) prompt batch."""
    prompt_len = batch["input_ids"].shape[1]
    inputs = dict(batch)
    inputs["input_ids"] = torch.cat([batch["input_ids"], completion], 1)
    inputs["attention_mask"] = torch.cat([batch["attention_mask"], mask.to(batch["attention_mask"].dtype)], 1)
    for key in TOKEN_KEYS:
        if key in batch and key not in ("input_ids", "attention_mask", "labels"):
            inputs[key] = torch.cat([batch[key], torch.zeros_like(completion, dtype=batch[key].dtype)], 1)
    logits = model(**inputs).logits[:, prompt_len - 1:-1, :].float() / temperature
    return torch.gather(logits.log_softmax(-1), 2, completion.unsqueeze(-1)).squeeze(-1)


def grpo_loss(logps, old_logps, ref_logps, advantages, mask, beta: float):
    """(loss, mean KL): clipped surrogate + beta * k3 KL, averaged over completion tokens."""
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - CLIP_EPS, 1 + CLIP_EPS) * adv)
    kl = torch.zeros_like(logps)
    if ref_logps is not None:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    m = mask.float()
    n = m.sum().clamp(min=1)
    return (per_token * m).sum() / n, float((kl.detach() * m).sum() / n)


def _to(batch, device):
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _save(model, processor, pspec, path: Path, optimizer=None, step: int = 0, previous: Path | None = None) -> None:
    with guarded_save(path, previous):
        model.save_pretrained(str(path), selected_adapters=["default"])
        if optimizer is not None:
            torch.save(optimizer.state_dict(), path / "optimizer.pt")
            (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        else:
            processor.save_pretrained(path)
            pspec.save(path)


def train_grpo(data, run: RunFiles, cfg: TrainConfig, resume: bool = False, echo=None) -> dict:
    """The GRPO counterpart of core.train.sft.train_sft: same run directory, same final layout."""
    from transformers import get_scheduler


    if dist_info()[2] > 1:
        raise ConfigError("method grpo runs in one process; set num_processes 1")
    inputs = prepare(cfg, data, "GRPO rewards are derived from the schema")
    cfg, device, precision, family, processor, pspec = (inputs.cfg, inputs.device, inputs.precision, inputs.family,
                                                        inputs.processor, inputs.spec)
    torch.manual_seed(cfg.seed)
    model, has_ref = _load(inputs)
    run.save_inputs(cfg, data)
    run.write_status(state="running", message="checking clips (labels, video headers)")
    t0 = time.time()
    clips, skipped = start_clips(data, run.log)
    prompts = ClipDataset(clips, processor, pspec, answers=False, log=SkipLog(run.dir / LOG_FILE))
    group_bytes = example_bytes(prompts[0][0]) * cfg.batch_size
    workers = loader_workers(cfg.dataloader_workers, device, 1, group_bytes, run.log)
    prompts.cache_bytes = cache_budget(cfg.encoded_cache_mb, workers)
    run.log(f"grpo: {len(clips)} clips, {cfg.num_generations} generations each, beta {cfg.beta}, lr {cfg.learning_rate}, "
            f"start {'adapter of ' + cfg.init_adapter if cfg.init_adapter else 'base'}, reference "
            f"{'that adapter, frozen' if has_ref else 'base (adapter disabled)'}")
    weights, custom = reward_weights(cfg), load_custom_reward(cfg.custom_reward)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    max_steps = capped_steps(cfg, cfg.max_steps or max(1, int(cfg.epochs * len(clips) / cfg.batch_size)), run)
    scheduler = get_scheduler(HF_SCHEDULERS[cfg.lr_scheduler], optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=max_steps)
    start = _resume(run, model, optimizer, scheduler) if resume else 0
    evaluator = val_evaluator(data, cfg, processor, family, pspec, precision, run)
    metrics = MetricsWriter(run.metrics_path, run.writer)
    run.write_status(state="running", global_step=start, max_steps=max_steps, message="training",
                     started=time.time(), start_step=start, world_size=1, precision=precision)
    stopped, acc, step = False, [], start
    tok = processor.tokenizer
    batches = torch.utils.data.DataLoader(
        prompts, batch_sampler=StepBatches(len(prompts), cfg.batch_size, cfg.seed, start, max_steps),
        collate_fn=owned if workers else list, num_workers=workers,
        prefetch_factor=LOADER_PREFETCH if workers else None)
    suppressed = suppressed_token_ids(processor, pspec.frames_as) or None
    for step, group in enumerate(batches, start=start + 1):
        acc.append(_step(model, group, data.schema, cfg, weights, custom, optimizer, scheduler, params, device,
                         has_ref, tok, suppressed))
        if step % max(cfg.logging_steps, 1) == 0 or step == max_steps:
            row = _metrics_row(step, acc, scheduler.get_last_lr()[0], weights)
            metrics.write(row)
            run.log(f"step {step}/{max_steps}: loss {row['loss']:.4f}, reward {row['reward']:.3f}")
            acc = []
            run.write_status(state="running", global_step=step, max_steps=max_steps, loss=row["loss"],
                             reward=row["reward"], message="training")
            if echo:
                echo(step, max_steps, row["loss"])
        if evaluator is not None and cfg.eval_steps and (step % cfg.eval_steps == 0 or step == max_steps):
            eval_row = evaluator(model, step)
            metrics.write(eval_row)
            run.log(f"eval at step {step}: mean field accuracy {eval_row['eval_mean_field_accuracy']:.3f}")
        stopped = run.stop_path.exists()
        if (cfg.save_steps and step % cfg.save_steps == 0) or stopped:
            _save(model, processor, pspec, run.dir / checkpoint_name(step), optimizer, step, run.last_checkpoint())
            _prune(run, cfg.save_total_limit)
            run.write_status(last_checkpoint=checkpoint_name(step), message="checkpoint saved")
            run.log(f"saved {checkpoint_name(step)}")
        if stopped:
            run.log(f"STOP file seen at step {step}: saving and stopping")
            break
    final = run.dir / pspec.final_dir
    _save(model, processor, pspec, final, previous=run.last_checkpoint())
    pspec.save(run.dir)
    state = "stopped" if stopped else "completed"
    run.log(f"{state} at step {step}")
    return run.write_status(state=state, global_step=step, max_steps=max_steps,
                            message=f"final model saved to {final.name}/", train_seconds=round(time.time() - t0, 1))


def _resume(run: RunFiles, model, optimizer, scheduler) -> int:
    """Load the last checkpoint's adapter and optimizer, fast-forward the schedule; the step it was at
    (0 without a checkpoint)."""
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        return 0
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(checkpoint)), adapter_name="default")
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    start = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    with warnings.catch_warnings():  # fast-forwarding the schedule: no optimizer step is meant here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(start):
            scheduler.step()
    run.log(f"resumed from {checkpoint.name}")
    return start


def _prune(run: RunFiles, keep: int) -> None:
    import shutil

    for old in run.checkpoints()[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _step(model, group_items, schema, cfg, weights, custom, optimizer, scheduler, params, device, has_ref, tok,
          suppressed) -> dict:
    """One GRPO step on a batch of clips; returns this step's numbers for the metrics line."""
    g = cfg.num_generations
    encs = [enc for enc, _ in group_items for _ in range(g)]
    labels = [label for _, label in group_items for _ in range(g)]
    batch = _to(collate(encs, tok.pad_token_id, padding_side="left"), device)
    model.eval()
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                             max_new_tokens=cfg.max_completion_length, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, suppress_tokens=suppressed)
    completion = out[:, batch["input_ids"].shape[1]:]
    mask = _completion_mask(completion.cpu(), tok.eos_token_id).to(device)
    lengths = mask.sum(1).tolist()
    texts = tok.batch_decode(completion.masked_fill(mask == 0, tok.pad_token_id), skip_special_tokens=True)
    rewards = score_batch(schema, texts, labels, weights, lengths, cfg.max_completion_length, custom)
    totals = [r["total"] for r in rewards]
    adv = torch.tensor(group_advantages(totals, g), dtype=torch.float32, device=device)
    model.train()
    ref = None
    if cfg.beta > 0:
        with torch.no_grad(), reference_policy(model, has_ref):
            ref = completion_logps(model, batch, completion, mask, cfg.temperature)
    logps = completion_logps(model, batch, completion, mask, cfg.temperature)
    loss, kl = grpo_loss(logps, logps.detach(), ref, adv, mask, cfg.beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf")))
    optimizer.step()
    scheduler.step()
    row = {"loss": float(loss.detach()), "kl": kl, "grad_norm": grad_norm, "completion_length": sum(lengths) / len(lengths),
           "reward": sum(totals) / len(totals),
           "reward_std": float(torch.tensor(totals).view(-1, g).std(1).mean())}
    for c in COMPONENTS:
        row[f"reward_{c}"] = sum(r[c] for r in rewards) / len(rewards)
    return row


def _metrics_row(step: int, rows: list[dict], lr: float, weights: RewardWeights) -> dict:
    keys = [k for k in rows[0] if not (k in ("reward_length",) and not weights.length)
            and not (k == "reward_custom" and not weights.custom)]
    out = {"step": step, "time": round(time.time(), 3), "lr": lr}
    for k in keys:
        out[k] = round(sum(r[k] for r in rows) / len(rows), 6)
    return out
