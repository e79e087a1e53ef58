"""core.spec, the contract of train/serve parity: one builder for training and serving, the saved
file read back whole, a digest that follows what shapes an answer, and the run-folder names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.config import TrainConfig
from core.errors import ConfigError
from core.layout import FINAL_DIR, SPEC_FILE
from core.models import FAMILIES, resolve_model
from core.schema.prompt import build_instruction
from core.spec import (
    TINY_FRAME_SIZE,
    PreprocessSpec,
    build_spec,
    checkpoint_name,
    checkpoint_step,
    default_spec,
    has_final_model,
    resolve_defaults,
)
from tests.support import SAMPLES

SCHEMA = json.loads((SAMPLES / "schema.json").read_text())
QWEN = FAMILIES["qwen2_5_vl"]


def test_defaults_follow_the_base_and_the_family():
    random_base = resolve_defaults(TrainConfig(), QWEN, random_init=True)
    pretrained = resolve_defaults(TrainConfig(), QWEN, random_init=False)
    assert (random_base.frame_width, random_base.frame_height) == TINY_FRAME_SIZE
    assert (pretrained.frame_width, pretrained.frame_height) == QWEN.default_size
    assert random_base.num_frames == pretrained.num_frames == QWEN.default_frames
    assert random_base.train_embeddings and not random_base.freeze_vision
    assert not pretrained.train_embeddings and pretrained.freeze_vision and pretrained.freeze_projector
    assert (random_base.learning_rate, pretrained.learning_rate) == (2e-3, 1e-4)
    given = resolve_defaults(TrainConfig(num_frames=4, frame_width=128, freeze_vision=False), QWEN, False)
    assert (given.num_frames, given.frame_width, given.freeze_vision) == (4, 128, False)


def test_a_base_model_is_asked_exactly_as_a_default_run_is_trained(tiny_path):
    """Serving a base (default_spec) and training it with a default config (build_spec) agree on
    everything that shapes an answer, so a base-vs-fine-tuned comparison is fair."""
    source = resolve_model("tiny:default")
    family = FAMILIES["qwen3_vl"]
    served = default_spec(source, family, SCHEMA)
    cfg = resolve_defaults(TrainConfig(model="tiny:default"), family, random_init=True)
    trained = build_spec(cfg, family, source.base, SCHEMA)
    assert served.digest == trained.digest
    assert served.sampling == trained.sampling and served.instruction == build_instruction(SCHEMA)
    assert trained.extra["tiny_spec"]["name"] == "default"  # a random base records its build
    custom = default_spec(source, family, SCHEMA, template="Describe: {fields}")
    assert custom.instruction.startswith("Describe: ") and custom.digest != served.digest


def test_saved_spec_reads_back_whole_and_digest_tracks_what_the_model_sees(tmp_path):
    cfg = resolve_defaults(TrainConfig(model="some/base"), QWEN, random_init=False)
    spec = build_spec(cfg, QWEN, tmp_path, SCHEMA)
    assert spec.base_model == "some/base" and spec.extra == {}  # no tiny build under this folder
    assert spec.save(tmp_path) == tmp_path / SPEC_FILE
    again = PreprocessSpec.load(tmp_path)
    assert again == spec and again.sampling_spec == spec.sampling_spec
    assert replace(spec, base_model="other").digest == spec.digest  # weights' name is not preprocessing
    for changed in (replace(spec, instruction=spec.instruction + "!"),
                    replace(spec, sampling={**spec.sampling, "num_frames": 3}),
                    replace(spec, schema_hash="0" * 16), replace(spec, frames_as="images")):
        assert changed.digest != spec.digest
    (tmp_path / SPEC_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match=SPEC_FILE):
        PreprocessSpec.load(tmp_path)


def test_resolved_config_is_validated():
    with pytest.raises(ConfigError):
        resolve_defaults(TrainConfig(batch_size=0), QWEN, random_init=False)


def test_run_folder_names(tmp_path):
    assert checkpoint_step(checkpoint_name(40)) == 40
    assert checkpoint_step("checkpoint-4x") is None and checkpoint_step(FINAL_DIR) is None
    run = tmp_path / "run"
    run.mkdir()
    assert not has_final_model(run)
    (run / SPEC_FILE).write_text("{}")
    assert not has_final_model(run)  # a spec is saved at the first checkpoint, before the final model
    (run / FINAL_DIR).mkdir()
    assert has_final_model(run)
