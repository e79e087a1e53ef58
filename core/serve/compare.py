"""A fair side-by-side of a base model and a fine-tuned run on one clip.

Both sides get the same sampled frames and the same instruction — the fine-tuned run's saved
preprocessing spec, or a free-form prompt typed by the user — and greedy decoding. The base side
is the run's own base weights with the adapter disabled (the model manager shares them), so the
comparison never holds two copies. Each side reports raw text, parsed JSON, schema validity,
per-field agreement with the label when the clip has one, latency and tokens/s.

This module does not draw anything and does not choose clips; the Compare tab and tests call it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from core.models.loading import resolve_model
from core.serve.predictor import analyse_frames
from core.video.frames import sample_frames

SIDES = ("base", "finetuned")


def side_view(predictor, spec):
    """The predictor asked exactly as `spec` says (same weights, same adapter state). Its calibration
    was measured with its own spec's prompt: asked another way, its scores are raw."""
    view = copy.copy(predictor)
    if spec is not predictor.spec and spec.instruction != predictor.spec.instruction:
        view.calibration = None
    view.spec = spec
    return view


def prepare(models, finetuned: str, base: str | None = None, prompt: str | None = None):
    """(base predictor, fine-tuned predictor, shared spec). `base` defaults to the run's own base."""
    ft = models.get(finetuned)
    spec = ft.spec if not prompt else dataclasses.replace(ft.spec, instruction=prompt)
    base_name = base or resolve_model(finetuned).base
    b = models.get(base_name, schema=spec.schema)
    return side_view(b, spec), side_view(ft, spec), spec


def compare_clip(models, video, finetuned: str, base: str | None = None, label: dict | None = None,
                 prompt: str | None = None, constrained: bool = False, max_new_tokens: int = 160,
                 on_frames=None, on_side=None) -> dict:
    """Run both sides on one clip; `on_frames(frames, instruction)` and `on_side(name, result)`
    report progress as it happens, so a UI can show each side as soon as it is ready."""
    with models.lock:
        b, ft, spec = prepare(models, finetuned, base, prompt)
        frames = sample_frames(Path(video), spec.sampling_spec)
        if on_frames:
            on_frames(frames, spec.instruction)
        result = {"frames": frames, "instruction": spec.instruction, "sides": {}}
        for name, predictor in zip(SIDES, (b, ft)):
            side = analyse_frames(predictor, frames, label, max_new_tokens, constrained)
            result["sides"][name] = side
            if on_side:
                on_side(name, side)
    return result
