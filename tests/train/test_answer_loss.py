"""The trainer's loss projects only answer positions onto the vocabulary (logits_to_keep), and its
collator drops the attention mask of right-padded batches (core.models.inputs.for_causal_training):
together they must equal transformers' own loss over all positions of the masked batch, with the
same gradients, for padded batches of different answer lengths, with and without
num_items_in_batch (gradient accumulation), in every family."""

import pytest
import torch

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.models.inputs import IGNORE_INDEX, collate
from core.models.loading import load_model, resolve_model
from core.runs.files import RunFiles
from core.schema.prompt import build_instruction
from core.spec import resolve_defaults, sampling_spec
from core.train.setup import apply_trainable, encode_split
from core.train.sft import Collator
from tests.support import SAMPLES


@pytest.mark.parametrize("name", ["qwen3_vl", "qwen2_5_vl", "internvl", "smolvlm", "llava_onevision",
                                  "llava_next_video"])
def test_answer_only_loss_equals_the_full_loss_with_the_same_gradients(name, tmp_path):
    from transformers import Trainer, TrainingArguments

    from core.train.sft import workbench_trainer

    model, processor, family = load_model(resolve_model(f"tiny:{name}"))
    cfg = resolve_defaults(TrainConfig(model=f"tiny:{name}"), family, random_init=True)
    model = apply_trainable(model, cfg, family)
    model.eval()  # no dropout: the two computations must see the same network
    data = load_dataset(SAMPLES)
    examples, skipped = encode_split(data.samples[:3], data.schema, processor, sampling_spec(cfg),
                                     build_instruction(data.schema), family.frames_as)
    assert not skipped
    batch = Collator(processor.tokenizer.pad_token_id)(examples)
    masked = collate(examples, processor.tokenizer.pad_token_id)  # what transformers is given
    assert (masked["attention_mask"] == 0).any()  # really padded
    assert "attention_mask" not in batch and all(torch.equal(batch[k], masked[k]) for k in batch if k in masked
                                                 and isinstance(batch[k], torch.Tensor))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = workbench_trainer(Trainer, RunFiles(tmp_path))(model=model, args=args)
    assert trainer._takes_logits_to_keep(model)  # the answer-only path is the one compared below
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(compute, inputs, n):
        model.zero_grad(set_to_none=True)
        loss = compute(trainer, model, dict(inputs), num_items_in_batch=n)
        loss.backward()
        return loss.detach(), [None if p.grad is None else p.grad.detach().clone() for p in params]

    n_items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    for n in (n_items, None):
        ours, ours_grads = loss_and_grads(type(trainer).compute_loss, batch, n)
        ref, ref_grads = loss_and_grads(Trainer.compute_loss, masked, n)
        assert torch.isfinite(ours) and ours > 0
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        assert [g is None for g in ours_grads] == [g is None for g in ref_grads]
        assert sum(g is not None for g in ours_grads) > len(params) // 2
        for a, b in zip(ours_grads, ref_grads):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # the point of it: far fewer positions projected than the sequence holds
    keep = (batch["labels"][:, 1:] != IGNORE_INDEX).any(dim=0).sum()
    assert keep < batch["input_ids"].shape[1] / 2
