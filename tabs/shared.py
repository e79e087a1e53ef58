"""What several tabs show the same way: the decoding choice, how an answer says its mode, and the
strip of frames a model gets."""

from __future__ import annotations

import gradio as gr

CONSTRAINED_DEFAULT = True  # what `predict` does: every tab starts where the batch answers will come from
DECODING_LABEL = "Constrain decoding to the schema (as `predict` does)"


def decoding_text(constrained: bool) -> str:
    """How an answer or a score was decoded: said beside every one, since the two differ a lot early on."""
    return "constrained to the schema" if constrained else "unconstrained"


def frame_strip(label: str, elem_id: str) -> gr.Gallery:
    """The frames a model gets, each whole at its own aspect ratio and all in view: a square crop
    hid the right edge of wide dashcam frames (where the nav arrow a label depends on sits)."""
    return gr.Gallery(label=label, columns=4, height="auto", object_fit="contain", allow_preview=False,
                      elem_id=elem_id)


def page_load():
    """The Blocks' load event (gr.render needs it named when other triggers are given)."""
    from gradio.context import get_blocks_context

    return get_blocks_context().root_block.load
