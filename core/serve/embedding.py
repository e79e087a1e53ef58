"""A clip's embedding, taken from the pass that answers it: the language model's last hidden state
(after its final norm) averaged over the prompt's positions in the prefill, the clip's visual tokens
and the instruction. "Label next" spreads its picks over the pool with it (core.data.picking).

No extra forward pass: a hook reads the prefill's output, the first call whose sequence is the
whole prompt (the decoding steps that follow see one position each and are left alone). The
instruction is the same for every clip, so what differs between two clips' vectors is what the
model made of their frames."""

from __future__ import annotations

from contextlib import contextmanager


def final_norm(model):
    """The language model's last norm (every family here: `get_decoder().norm`), or None."""
    try:
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError):
        return None
    return getattr(decoder, "norm", None)


@contextmanager
def prefill_embeddings(model, attention_mask):
    """Yields a dict that holds, after generation, "vectors": one float32 row per clip of the batch
    (numpy, batch x hidden), the mean over the positions `attention_mask` keeps; empty when the model
    has no norm to read."""
    got: dict = {}
    norm = final_norm(model)
    if norm is None:
        yield got
        return
    length = attention_mask.shape[1]

    def read(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if "vectors" in got or hidden.dim() != 3 or hidden.shape[1] != length:
            return
        keep = attention_mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
        mean = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)
        got["vectors"] = mean.float().cpu().numpy()

    handle = norm.register_forward_hook(read)
    try:
        yield got
    finally:
        handle.remove()
