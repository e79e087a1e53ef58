"""Each family's real processor with a reference checkpoint's settings, to count vision tokens.

`reference_processor(family)` assembles the family's processor classes with the frame geometry of
`REFERENCE_CHECKPOINT` (core.models.tiny.families), and `vision_tokens_per_clip` counts the
placeholder tokens one clip becomes at the family's default frames and size: the README's column,
and a figure that holds for the real checkpoint because it depends only on those settings.
"""

from __future__ import annotations

from core.models.inputs import encode_example, vision_placeholder_ids
from core.models.tiny.families import PROCESSOR_BUILDERS, REFERENCE_GEOMETRY, TOKENIZERS
from core.models.tiny.tokenizer import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, build_tokenizer
from core.video.frames import SampledFrames, VideoInfo
from core.video.sampling import uniform_indices

# --- vision tokens of a clip under a real checkpoint's processor settings --------------------------


def _qwen_reference(family: str, tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor


    # The classes' defaults are the checkpoints' settings (patch 14 / 16, merge 2, temporal patch 2).
    if family == "qwen2_5_vl":
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(),
            video_processor=Qwen2VLVideoProcessor(cap_pixels_per_frame=True, do_sample_frames=False),
            tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16),
        video_processor=Qwen3VLVideoProcessor(cap_pixels_per_frame=True, do_sample_frames=False),
        tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)


def reference_processor(family: str):
    """The family's real processor class with `REFERENCE_CHECKPOINT[family]`'s frame geometry and a
    locally built tokenizer (the tokenizer changes no vision token count)."""
    if family in ("qwen2_5_vl", "qwen3_vl"):
        tok = build_tokenizer(2048, QWEN_SPECIAL_TOKENS, QWEN_CHAT_TEMPLATE, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>")
        return _qwen_reference(family, tok)
    tok = build_tokenizer(2048, **TOKENIZERS[family])
    return PROCESSOR_BUILDERS[family](tok, **REFERENCE_GEOMETRY[family])


def vision_tokens_per_clip(family, processor=None, seconds: float = 5.0, fps: float = 30.0) -> int:
    """Vision placeholder tokens one clip of `seconds` becomes at the family's default frame count
    and size (uniform sampling), under `processor` (default: `reference_processor`)."""
    import numpy as np


    processor = processor or reference_processor(family.name)
    width, height = family.default_size
    total = round(seconds * fps)
    indices = uniform_indices(total, family.default_frames)
    info = VideoInfo(path="reference.mp4", frame_count=total, fps=fps, duration=seconds, width=width, height=height,
                     keyframe_count=1, codec="h264", rotation=0, frame_count_exact=True)
    frames = np.random.default_rng(0).integers(0, 256, (len(indices), height, width, 3), dtype=np.uint8)
    sampled = SampledFrames(frames, indices, [i / fps for i in indices], info)
    ids = encode_example(processor, "Describe.", sampled, family.frames_as)["input_ids"][0]
    placeholders = vision_placeholder_ids(processor)
    return int(sum(int((ids == t).sum()) for t in placeholders))
