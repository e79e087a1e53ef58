"""The one place where (schema, frames) become chat messages.

Training, evaluation, compare and export all call `build_messages` with the instruction stored in
the run's preprocessing spec, so the model is always asked the same question it was trained on.
How frames enter the prompt (one video item, or one image item per frame) is the family's choice,
passed in as `frames_as`.
"""

from __future__ import annotations

from core.schema.base import describe_fields

DEFAULT_TEMPLATE = (
    "Watch the video and answer with one JSON object with these fields:\n{fields}\n"
    "Answer with the JSON object only."
)


def build_instruction(schema: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill the template's `{fields}` slot from the schema; a template without it is used verbatim."""
    return template.replace("{fields}", describe_fields(schema))


def build_messages(instruction: str, num_frames: int, frames_as: str = "video", answer: str | None = None) -> list[dict]:
    """Chat messages for one clip. `frames_as`: "video" (one video item) or "images" (one per frame,
    labelled `Frame{i}:` as InternVL does for video)."""
    if frames_as == "video":
        content = [{"type": "video"}]
    elif frames_as == "images":
        content = []
        for i in range(num_frames):
            content += [{"type": "text", "text": f"Frame{i + 1}: "}, {"type": "image"}, {"type": "text", "text": "\n"}]
    else:
        raise ValueError(f"unknown frames_as {frames_as!r}")
    content.append({"type": "text", "text": instruction})
    messages = [{"role": "user", "content": content}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages
