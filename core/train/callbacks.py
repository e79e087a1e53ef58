"""Trainer callback that keeps the run directory current: metrics lines, status, STOP handling, and
greedy evaluation on val clips every `eval_steps`.

Hugging Face calls callbacks on every rank of a distributed run. Only rank 0 writes (its RunFiles
and MetricsWriter are the writers; the others' are no-ops), but every rank takes the same decisions
at the same step: the STOP file is read by rank 0 and broadcast, and evaluation runs on all ranks,
each on its share of the val clips, because a sharded model (FSDP) can only generate with all ranks
taking part. This module does not build or launch the trainer (core.train.sft, core.runs.launch).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from transformers import TrainerCallback

from core.errors import VideoError
from core.schema.scoring import evaluate
from core.serve.predictor import Predictor
from core.spec import checkpoint_name
from core.video.frames import SampledFrames, VideoInfo, sample_frames


class RunCallback(TrainerCallback):
    def __init__(self, run, metrics, pspec, tokens_per_example: float = 0.0, echo=None, evaluator=None,
                 eval_steps: int = 0, clips: int = 0, data_clock=None):
        self.run = run
        self.metrics = metrics
        self.pspec = pspec
        self.tokens_per_example = tokens_per_example
        self.echo = echo  # optional callable(step, max_steps, loss) for a terminal progress line
        self.evaluator = evaluator  # optional ValEvaluator
        self.eval_steps = eval_steps
        self.stop_requested = False
        self._t_last = None
        self._step_last = 0
        self._paused_s = 0.0  # time spent evaluating since the last log line: not training throughput
        self._evaluated_step = -1
        self.clips = clips  # training clips: the first pass over them is when frames are decoded
        self.data_clock = data_clock  # core.train.sft.DataClock: the loop's wait for batches
        self._wait_last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t_last = time.time()
        self._step_last = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        logs = dict(logs or {})
        now = time.time()
        steps = max(state.global_step - self._step_last, 1)
        dt = max(now - (self._t_last or now) - self._paused_s, 1e-9)
        global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        samples_per_s = steps * global_batch / dt
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": round(now, 3)}
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in logs:
                row["lr" if key == "learning_rate" else key] = round(float(logs[key]), 6)
        if "loss" in row:
            row["samples_per_s"] = round(samples_per_s, 3)
            row["tokens_per_s"] = round(samples_per_s * self.tokens_per_example, 1)
            row["world_size"] = args.world_size
            row["global_batch"] = global_batch
        wait = None
        if self.data_clock is not None and "loss" in row:
            wait = min((self.data_clock.wait_s - self._wait_last) / dt, 1.0)
            row["data_wait"] = round(wait, 4)
        for key, value in logs.items():
            if key.startswith("eval_") or key.startswith("train_"):
                row[key] = value
        self.metrics.write(row)
        if "loss" in row:  # the Train tab's log tail moves with the run, not only at set-up
            self.run.log(f"step {state.global_step}/{state.max_steps}: loss {row['loss']:.4f}, "
                         f"{row['samples_per_s']:.1f} samples/s")
        self._t_last, self._step_last, self._paused_s = now, state.global_step, 0.0
        self._wait_last = self.data_clock.wait_s if self.data_clock is not None else 0.0
        self.run.write_status(state="running", global_step=state.global_step, max_steps=state.max_steps,
                              loss=row.get("loss"), message=self._message(state.epoch or 0.0, wait))
        if self.echo and "loss" in row:
            self.echo(state.global_step, state.max_steps, row["loss"])

    def _message(self, epoch: float, wait: float | None) -> str:
        """The status line: during the first pass over the clips, how far decoding has got, and how
        much of the time the model waits for it when that is the bottleneck."""
        if not self.clips or epoch >= 1:
            return "training"
        message = f"training; first pass over the clips: {min(round(epoch * self.clips), self.clips)} of {self.clips} read"
        if wait is not None and wait >= 0.2:
            message += f", the model waits for video decoding {wait:.0%} of the time"
        return message

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if _any_rank(self.run.stop_path.exists() if state.is_world_process_zero else False, args.device):
            # Save through the Trainer so the checkpoint is resumable, then end the loop.
            self.stop_requested = True
            control.should_save = True
            control.should_training_stop = True
            self.run.log(f"STOP file seen at step {state.global_step}: saving and stopping")
            return control
        due = self.eval_steps > 0 and (state.global_step % self.eval_steps == 0 or state.global_step >= state.max_steps)
        if self.evaluator is not None and due and state.global_step != self._evaluated_step:
            self._evaluate(state, model)
        return control

    def _evaluate(self, state, model) -> None:
        self._evaluated_step = state.global_step
        t0 = time.time()
        self.run.write_status(state="running", global_step=state.global_step, max_steps=state.max_steps,
                              message=f"evaluating on {len(self.evaluator.clips)} val clips")
        row = self.evaluator(model, state.global_step)
        if row is not None:
            self.metrics.write(row)
            self.run.log(f"eval at step {state.global_step}: schema-valid {row['eval_schema_valid_rate']:.2f}, "
                         f"mean field accuracy {row['eval_mean_field_accuracy']:.2f} ({row['eval_seconds']:.1f}s)")
        self._paused_s += time.time() - t0

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.run.write_status(state="running", global_step=state.global_step, max_steps=state.max_steps,
                              last_checkpoint=checkpoint_name(state.global_step), message="checkpoint saved")
        self.run.log(f"saved {checkpoint_name(state.global_step)}")
        self.pspec.save(self.run.dir)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def _any_rank(flag: bool, device) -> bool:
    """True on every rank when it is true on any (rank 0's view of the STOP file, shared)."""
    dist = _dist()
    if dist is None:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class ValEvaluator:
    """Greedy answers on val clips (core.train.stream.TrainClip, checked at start-up; frames are
    sampled per batch through the frame cache, so an evaluation holds one batch of frames), scored
    with core.schema.scoring. A clip that no longer decodes is left out of that evaluation.

    Generation goes through `core.serve.predictor.Predictor.generate` — the prompt, processor call and
    left-padded batching that eval and serving use — on the model being trained (a PEFT model
    generates through its adapter), in eval mode and under the run's autocast, then the model is put
    back in train mode. With several ranks each generates for its share of the clips (padded to
    equal length so every rank runs the same number of batches) and rank 0 scores the gathered
    answers. Returns the metrics row on rank 0, None elsewhere."""

    def __init__(self, processor, family, pspec, clips: list, batch_size: int = 8, max_new_tokens: int = 160,
                 precision: str = "fp32"):
        self.processor, self.family, self.pspec = processor, family, pspec
        self.clips = clips  # [TrainClip]
        self.batch_size, self.max_new_tokens, self.precision = batch_size, max_new_tokens, precision

    def _autocast(self, device):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=device.type, dtype=dtype)
        return contextlib.nullcontext()

    def __call__(self, model, step: int) -> dict | None:
        dist = _dist()
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
        per_rank = -(-len(self.clips) // world)
        mine = [(rank + world * k) % len(self.clips) for k in range(per_rank)]  # rank-strided, padded by wrap
        device = next(model.parameters()).device
        predictor = Predictor(model, self.processor, self.family, self.pspec, str(device))
        t0 = time.time()
        was_training = model.training
        model.eval()
        texts = []
        try:
            with self._autocast(device):
                for i in range(0, len(mine), self.batch_size):
                    texts += self._answers(predictor, mine[i:i + self.batch_size])
        finally:
            model.train(was_training)
        answers = {}
        if dist:
            gathered = [None] * world
            dist.all_gather_object(gathered, list(zip(mine, texts)))
            for part in gathered:
                answers.update(dict(part))
        else:
            answers = dict(zip(mine, texts))
        if rank != 0:
            return None
        order = [i for i in range(len(self.clips)) if answers[i] is not None]
        report = evaluate(self.pspec.schema, [answers[i] for i in order], [self.clips[i].label for i in order])
        return {
            "step": step, "eval_clips": report["count"], "eval_seconds": round(time.time() - t0, 2),
            "eval_json_valid_rate": report["json_valid_rate"], "eval_schema_valid_rate": report["schema_valid_rate"],
            "eval_mean_field_accuracy": report["mean_field_accuracy"], "eval_per_field": report["per_field"],
            "eval_text_f1": {k: v["token_f1"] for k, v in report["text_scores"].items()},
        }

    def _answers(self, predictor, indices: list[int]) -> list:
        """Generated texts for these clips, None for one whose frames no longer decode. Such a clip
        is generated for anyway, on blank frames, and its answer dropped: every rank must run the
        same generate calls (a sharded model generates with all ranks taking part)."""
        frames, texts = [], []
        for j in indices:
            try:
                frames.append(sample_frames(self.clips[j].video, self.pspec.sampling_spec))
            except VideoError:
                frames.append(None)
        stand_in = next((f for f in frames if f is not None), None) or blank_frames(self.pspec.sampling_spec)
        outs = predictor.generate([f if f is not None else stand_in for f in frames], self.max_new_tokens)
        for f, (text, _) in zip(frames, outs):
            texts.append(text if f is not None else None)
        return texts


def blank_frames(spec) -> SampledFrames:
    """Black frames of the spec's size: what a batch generates on when none of its clips decode."""
    n = spec.num_frames or spec.min_frames
    info = VideoInfo(path="", frame_count=n, fps=1.0, duration=float(n), width=spec.width, height=spec.height,
                     keyframe_count=1, codec="none", rotation=0, frame_count_exact=True)
    return SampledFrames(np.zeros((n, spec.height, spec.width, 3), np.uint8), list(range(n)),
                         [float(i) for i in range(n)], info)
