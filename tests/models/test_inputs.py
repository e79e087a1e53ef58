"""Label mask and batching on the real tiny model's processor and real sample clips."""

import torch

from core.data.dataset import load_dataset
from core.models.inputs import IGNORE_INDEX, collate, encode_example, render_prompt
from core.schema.base import canonical_answer
from core.schema.prompt import build_instruction
from core.video.frames import sample_frames
from core.video.sampling import SamplingSpec
from tests.support import SAMPLES

SPEC = SamplingSpec(num_frames=8, width=96, height=64)


def _example(tiny, idx=0, answer=True):
    _, processor, family = tiny
    data = load_dataset(SAMPLES)
    sample = data.samples[idx]
    frames = sample_frames(sample.video, SPEC)
    instruction = build_instruction(data.schema)
    text = canonical_answer(data.schema, sample.label) if answer else None
    return processor, encode_example(processor, instruction, frames, family.frames_as, text), text


def test_only_answer_tokens_carry_labels(tiny):
    processor, ex, answer = _example(tiny)
    tok = processor.tokenizer
    labels, ids = ex["labels"][0], ex["input_ids"][0]
    labelled = labels != IGNORE_INDEX
    # the labelled span is one contiguous block at the end: the answer and the end-of-turn marker
    first = int(labelled.nonzero()[0])
    assert labelled[first:].all() and not labelled[:first].any()
    assert tok.decode(labels[labelled]) == answer + "<|im_end|>\n"
    # no vision placeholder, vision marker, prompt or padding token carries a label
    special = {tok.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|image_pad|>", "<|vision_start|>",
                                                          "<|vision_end|>", "<|im_start|>", "<|endoftext|>")}
    assert not any(int(t) in special for t in labels[labelled])
    assert (ids[:first] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum() > 0
    assert (labels[labelled] == ids[labelled]).all()


def test_training_prompt_is_exactly_the_inference_prompt(tiny):
    _, train_ex, _ = _example(tiny, answer=True)
    _, infer_ex, _ = _example(tiny, answer=False)
    n = infer_ex["input_ids"].shape[1]
    assert torch.equal(train_ex["input_ids"][0, :n], infer_ex["input_ids"][0])
    assert torch.equal(train_ex["pixel_values_videos"], infer_ex["pixel_values_videos"])
    assert (train_ex["labels"][0, :n] == IGNORE_INDEX).all()


def test_visual_tokens_match_frames_and_size(tiny):
    processor, ex, _ = _example(tiny, answer=False)
    # 8 frames at 96x64, patch 8, temporal patch 2, merge 2x2 -> 4 * (12*8) / 4 = 96 tokens
    n_video = int((ex["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert n_video == 96
    assert ex["video_grid_thw"].tolist() == [[4, 8, 12]]


def test_collate_pads_with_ignore_and_zero_attention(tiny):
    processor, a, _ = _example(tiny, 0)
    _, b, _ = _example(tiny, 1)
    pad = processor.tokenizer.pad_token_id
    batch = collate([a, b], pad)
    la, lb = a["input_ids"].shape[1], b["input_ids"].shape[1]
    short = 0 if la < lb else 1
    n = min(la, lb)
    assert batch["input_ids"].shape == (2, max(la, lb))
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][short, n:] == 0).all()
    assert batch["pixel_values_videos"].shape[0] == a["pixel_values_videos"].shape[0] * 2
    left = collate([a, b], pad, padding_side="left")
    assert (left["attention_mask"][short, : max(la, lb) - n] == 0).all()


def test_prompt_renders_video_placeholder_once(tiny):
    _, processor, family = tiny
    prompt = render_prompt(processor, "Q?", 8, family.frames_as)
    assert prompt.count("<|video_pad|>") == 1 and prompt.endswith("<|im_start|>assistant\n")
