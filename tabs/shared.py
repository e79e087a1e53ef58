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


def render(**kwargs):
    """gr.render, with every render of the app in one queue. A page load triggers several at once
    (the Annotate form, the Schema preview, the Export plots), and Gradio's renders write the
    session's shared block table without a lock: two in parallel threads failed with "dictionary
    changed size during iteration" and the Annotate form never appeared (gradio#9991; seen once in
    the browser test). One at a time costs a few milliseconds at load."""
    return gr.render(concurrency_id="render", concurrency_limit=1, **kwargs)


def page_load():
    """The Blocks' load event (gr.render needs it named when other triggers are given)."""
    from gradio.context import get_blocks_context

    return get_blocks_context().root_block.load
