"""Trainer callback that keeps the run directory current: metrics lines, status, STOP handling."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class RunCallback(TrainerCallback):
    def __init__(self, run, metrics, pspec, tokens_per_example: float = 0.0, echo=None):
        self.run = run
        self.metrics = metrics
        self.pspec = pspec
        self.tokens_per_example = tokens_per_example
        self.echo = echo  # optional callable(step, max_steps, loss) for a terminal progress line
        self.stop_requested = False
        self._t_last = None
        self._step_last = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t_last = time.time()
        self._step_last = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        now = time.time()
        steps = max(state.global_step - self._step_last, 1)
        dt = max(now - (self._t_last or now), 1e-9)
        samples_per_s = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps / dt
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": round(now, 3)}
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in logs:
                row["lr" if key == "learning_rate" else key] = round(float(logs[key]), 6)
        if "loss" in row:
            row["samples_per_s"] = round(samples_per_s, 3)
            row["tokens_per_s"] = round(samples_per_s * self.tokens_per_example, 1)
        for key, value in logs.items():
            if key.startswith("eval_") or key.startswith("train_"):
                row[key] = value
        self.metrics.write(row)
        self._t_last, self._step_last = now, state.global_step
        self.run.write_status(state="running", global_step=state.global_step, max_steps=state.max_steps,
                              loss=row.get("loss"), message="training")
        if self.echo and "loss" in row:
            self.echo(state.global_step, state.max_steps, row["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.run.stop_path.exists():
            # Save through the Trainer so the checkpoint is resumable, then end the loop.
            self.stop_requested = True
            control.should_save = True
            control.should_training_stop = True
            self.run.log(f"STOP file seen at step {state.global_step}: saving and stopping")
        return control

    def on_save(self, args, state, control, **kwargs):
        self.run.write_status(state="running", global_step=state.global_step, max_steps=state.max_steps,
                              last_checkpoint=f"checkpoint-{state.global_step}", message="checkpoint saved")
        self.pspec.save(self.run.dir)
