"""A clip's embedding comes from the pass that answers it: the mean of the final hidden state over
the prompt, the same alone and in a left-padded batch."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch

from core.serve.predictor import Predictor
from core.video.frames import sample_frames
from tests.support import SAMPLES


def test_the_embedding_is_the_prompts_mean_final_state_and_padding_does_not_move_it(tiny_path):
    predictor = Predictor.load("tiny:default", json.loads((SAMPLES / "schema.json").read_text()), device="cpu")
    clips = [SAMPLES / "videos" / f"clip_{i:04d}.mp4" for i in (1, 2)]
    spec = predictor.spec.sampling_spec
    # the second clip with half the frames: fewer visual tokens, so a batch of both is left-padded
    frames = [sample_frames(clips[0], spec),
              sample_frames(clips[1], dataclasses.replace(spec, num_frames=spec.num_frames // 2))]
    alone = [predictor.generate([f], 8, confidence=True, embeddings=True)[0].embedding for f in frames]
    enc = predictor.encode(frames[0])
    with torch.no_grad():
        out = predictor.model(**{k: v for k, v in enc.items() if isinstance(v, torch.Tensor)},
                              output_hidden_states=True)
    direct = out.hidden_states[-1][0].mean(0).numpy()  # the last entry is after the final norm
    assert alone[0].shape == direct.shape and np.allclose(alone[0], direct, atol=1e-5)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)  # two clips, two vectors
    lengths = [predictor.encode(f)["input_ids"].shape[-1] for f in frames]
    assert lengths[0] > lengths[1]
    batch = predictor.generate(frames, 8, confidence=True, embeddings=True)
    for one, both in zip(alone, batch):
        assert np.allclose(one, both.embedding, atol=1e-4)
    assert predictor.generate(frames[:1], 8, confidence=False)[0] == (batch[0].text, batch[0].new_tokens)
    # not asked: the same answer and scores, and no vector held (batch predict, eval, the API)
    plain = predictor.generate(frames, 8, confidence=True)
    assert [g.text for g in plain] == [g.text for g in batch] and all(g.embedding is None for g in plain)
