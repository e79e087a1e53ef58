"""Sampled frames + instruction (+ answer) → model tensors, and batching them.

The prompt and the answer are tokenised separately and concatenated: the prompt exactly as
inference will see it (chat template with the generation prompt, vision placeholders expanded by
the processor), the answer as the template's assistant suffix. The label mask is then exact by
construction — only answer tokens carry labels — with no re-tokenisation guesswork at the boundary.
When the template closes the assistant turn without the tokenizer's eos token (Vicuna-style
templates such as LLaVA-NeXT-Video's end the answer with a space), the eos token is appended to the
answer: generation stops on it, so the model has to learn to emit it.
"""

from __future__ import annotations

import numpy as np

from core.schema.prompt import build_messages

IGNORE_INDEX = -100
# Per-token keys are padded along the sequence; everything else (pixel tensors, grids) is
# concatenated along dim 0, which is how every processor we use batches vision inputs.
TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids")


def vision_placeholder_ids(processor) -> set[int]:
    """Token ids the model replaces with vision features (the processor's image and video tokens,
    e.g. <|video_pad|>, <IMG_CONTEXT>, <image>, <video>): what a clip costs in sequence length."""
    tok = processor.tokenizer
    ids = set()
    for attr in ("image_token", "video_token"):
        name = getattr(processor, attr, None)
        if isinstance(name, str):
            tid = tok.convert_tokens_to_ids(name)
            if tid is not None and tid != tok.unk_token_id:
                ids.add(int(tid))
    return ids


def suppressed_token_ids(processor, frames_as: str = "video") -> list[int]:
    """Tokens generation must never produce: the vision placeholders (a sampled <|video_pad|> makes
    the next forward pass count more video tokens than features and fail) and the tokenizer's other
    special tokens (<|im_start|>, <|vision_start|>, ...), except those that end an answer: the eos
    and padding tokens and whatever the chat template closes the assistant turn with (ChatML's
    <|im_end|> where the tokenizer's eos is <|endoftext|>). Passed as `suppress_tokens` wherever we
    generate: GRPO's sampling, the evaluation during training and prediction."""
    tok = processor.tokenizer
    keep = {tok.eos_token_id, tok.pad_token_id}
    try:
        suffix = render_answer_suffix(processor, "Describe.", 1, frames_as, "{}")
        keep |= set(tok(suffix, add_special_tokens=False)["input_ids"])
    except (ValueError, TypeError):  # a template that renders no assistant turn: eos and pad only
        pass
    special = {int(i) for i, t in getattr(tok, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    special |= {int(i) for i in getattr(tok, "all_special_ids", [])}
    return sorted((special | vision_placeholder_ids(processor)) - keep)


def render_prompt(processor, instruction: str, num_frames: int, frames_as: str) -> str:
    messages = build_messages(instruction, num_frames, frames_as)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def render_answer_suffix(processor, instruction: str, num_frames: int, frames_as: str, answer: str,
                         prompt: str | None = None) -> str:
    """The text after the generation prompt in a full conversation: answer + end-of-turn marker."""
    prompt = prompt or render_prompt(processor, instruction, num_frames, frames_as)
    full = processor.apply_chat_template(
        build_messages(instruction, num_frames, frames_as, answer=answer), tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("chat template renders the prompt differently with and without an answer")
    return full[len(prompt):]


def video_metadata(sampled, indices=None):
    from transformers.video_utils import VideoMetadata

    info = sampled.info
    fps = info.fps or 1.0
    return VideoMetadata(
        total_num_frames=info.frame_count, fps=fps, duration=info.duration,
        frames_indices=list(sampled.indices if indices is None else indices), width=info.width, height=info.height,
    )


def processor_inputs(processor, prompt: str, sampled, frames_as: str) -> dict:
    frames = np.ascontiguousarray(sampled.frames)
    if frames_as == "video":
        # A still image is a one-frame clip; video processors that patch frames in time (Qwen:
        # temporal_patch_size 2) need that many frames, so it is repeated, as their image path does.
        indices = list(sampled.indices)
        need = int(getattr(getattr(processor, "video_processor", None), "temporal_patch_size", 1) or 1)
        if len(frames) < need:
            frames = np.concatenate([frames] + [frames[-1:]] * (need - len(frames)))
            indices += [indices[-1]] * (need - len(indices))
        out = processor(text=[prompt], videos=[frames], video_metadata=[video_metadata(sampled, indices)],
                        do_sample_frames=False, return_tensors="pt")
    else:
        out = processor(text=[prompt], images=[list(frames)], return_tensors="pt")
    return dict(out)


def encode_example(processor, instruction: str, sampled, frames_as: str, answer: str | None = None) -> dict:
    """One example as tensors with a leading batch dim of 1; with `labels` when `answer` is given."""
    import torch  # here, not at the top: core.models is read by torch-free code (the run manager)

    n = len(sampled.frames)
    prompt = render_prompt(processor, instruction, n, frames_as)
    enc = processor_inputs(processor, prompt, sampled, frames_as)
    if answer is None:
        return enc
    suffix = render_answer_suffix(processor, instruction, n, frames_as, answer, prompt)
    ans_ids = processor.tokenizer(suffix, add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = processor.tokenizer.eos_token_id
    if eos is not None and not (ans_ids == eos).any():
        ans_ids = torch.cat([ans_ids, torch.tensor([[eos]], dtype=ans_ids.dtype)], dim=1)
    prompt_len = enc["input_ids"].shape[1]
    for key in TOKEN_KEYS:
        if key in enc:
            fill = ans_ids if key == "input_ids" else (torch.ones_like(ans_ids) if key == "attention_mask" else torch.zeros_like(ans_ids))
            enc[key] = torch.cat([enc[key], fill.to(enc[key].dtype)], dim=1)
    labels = enc["input_ids"].clone()
    labels[:, :prompt_len] = IGNORE_INDEX
    enc["labels"] = labels
    return enc


def for_causal_training(batch: dict) -> dict:
    """The batch without its attention mask when every row is padded on the right only.

    Why: in a causal decoder no real token attends to the pads after it, and pads carry no labels,
    so the loss and gradients are the same without the mask (checked for the six families by
    tests/train/test_answer_loss.py). Without it transformers passes no mask to SDPA, which then
    runs its causal kernel instead of reading a materialised [batch, 1, seq, seq] mask: 0.425 s
    against 0.455 s per step of the embedded default (median of 6 alternations in one process, AMD
    EPYC, 2 cores), and no mask in memory (b x s^2 per batch). Positions are
    unchanged for real tokens (the pads come after them). Generation pads on the left and keeps its
    mask; this is for training batches only."""
    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return batch
    if not bool(mask[:, 0].all()) or not bool((mask[:, 1:] <= mask[:, :-1]).all()):  # left or inner padding
        return batch
    return {k: v for k, v in batch.items() if k != "attention_mask"}


def collate(examples: list[dict], pad_id: int, padding_side: str = "right") -> dict:
    """Pad token keys (labels with IGNORE_INDEX, attention with 0) and concatenate the rest."""
    import torch

    batch = {}
    max_len = max(ex["input_ids"].shape[1] for ex in examples)
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        if key in TOKEN_KEYS:
            fill = {"input_ids": pad_id, "labels": IGNORE_INDEX}.get(key, 0)
            padded = []
            for v in values:
                pad = torch.full((1, max_len - v.shape[1]), fill, dtype=v.dtype)
                padded.append(torch.cat([v, pad] if padding_side == "right" else [pad, v], dim=1))
            batch[key] = torch.cat(padded, dim=0)
        elif isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape[1:]) for v in values if v.dim() > 1}
            if len(shapes) > 1:
                raise ValueError(f"cannot batch {key} of shapes {sorted(shapes)}: this family's processor keeps "
                                 "one tensor per clip, so clips with different frame counts (still images "
                                 "beside videos, or fps sampling) need batch_size 1")
            batch[key] = torch.cat([v if v.dim() else v.view(1) for v in values], dim=0)
        elif isinstance(values[0], list):
            batch[key] = [x for v in values for x in v]
        else:
            batch[key] = values[0]
    return batch
