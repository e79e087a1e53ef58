"""Every family in the table, end to end on its tiny build (the real transformers class, random
weights, a local tokenizer, the real processor class): build, label mask, two LoRA steps through
the trainer, save, reload, generate, merge; LoRA only on the language model; freeze toggles per
module group; training and inference feed identical tensors; README token counts."""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.models.families import FAMILIES, module_group
from core.models.inputs import IGNORE_INDEX, TOKEN_KEYS, collate, encode_example, vision_placeholder_ids
from core.models.loading import load_base_model, load_model, resolve_model
from core.models.tiny.registry import TINY_MODELS, ensure_tiny
from core.schema.base import canonical_answer
from core.schema.prompt import build_instruction
from core.spec import resolve_defaults, sampling_spec
from core.train.setup import apply_trainable, encode_split, trainable_counts
from tests.support import REPO, SAMPLES

NAMES = list(FAMILIES)
# Vision placeholders of one 8-frame 96x64 clip in each tiny build: Qwen 12x8 patches merged 2x2,
# two frames a temporal patch -> 4 x 24; the others see 64x64 frames as 8x8 patches pooled to 4x4
# (LLaVA-OneVision adds one newline token per video).
TINY_CLIP_TOKENS = {"qwen2_5_vl": 96, "qwen3_vl": 96, "internvl": 128, "smolvlm": 128,
                    "llava_onevision": 129, "llava_next_video": 128}
PROCESSOR_CLASS = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor",
                   "internvl": "InternVLProcessor", "smolvlm": "SmolVLMProcessor",
                   "llava_onevision": "LlavaOnevisionProcessor", "llava_next_video": "LlavaNextVideoProcessor"}
LM_PATH = re.compile(r"\.(language_model|text_model)\.layers\.\d+\.")
CONFIG = dict(max_steps=2, batch_size=2, logging_steps=1, save_steps=1000, warmup_steps=0, eval_steps=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four bundled clips (train split) with the bundled schema, as a dataset folder."""
    out = tmp_path_factory.mktemp("four_clips")
    (out / "videos").mkdir()
    shutil.copy(SAMPLES / "schema.json", out / "schema.json")
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()[:4]]
    for row in rows:
        shutil.copy(SAMPLES / row["video"], out / row["video"])
        row["split"] = "train"
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.fixture(scope="module", params=NAMES)
def trained(request, clips, tmp_path_factory):
    """A two-step LoRA run of tiny:<family> through core.train.entry.train."""
    from core.train.entry import train

    name = request.param
    run = tmp_path_factory.mktemp(f"run_{name}") / "run"
    status = train(clips, run, TrainConfig(model=f"tiny:{name}", **CONFIG))
    return name, run, status


def _encoded(name, answer=True, idx=(0, 1)):
    from core.video.frames import sample_frames

    model, processor, family = load_model(resolve_model(f"tiny:{name}"))
    data = load_dataset(SAMPLES)
    cfg = resolve_defaults(TrainConfig(model=f"tiny:{name}"), family, random_init=True)
    instruction = build_instruction(data.schema)
    out = []
    for i in idx:
        s = data.samples[i]
        text = canonical_answer(data.schema, s.label) if answer else None
        out.append((encode_example(processor, instruction, sample_frames(s.video, sampling_spec(cfg)),
                                   family.frames_as, text), text))
    return model, processor, family, out


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_tiny_build_is_the_real_class_built_offline_and_deterministically(name, tmp_path, monkeypatch):
    path = ensure_tiny(name)
    assert ensure_tiny(name) == path  # cached
    config = json.loads((path / "config.json").read_text())
    family = FAMILIES[name]
    assert config["model_type"] in family.model_types and family.tiny == name and name in TINY_MODELS
    processor_config = json.loads((path / "processor_config.json").read_text())
    assert processor_config["processor_class"] == PROCESSOR_CLASS[name]
    # a second build in another cache folder writes the same bytes
    monkeypatch.setenv("VVW_CACHE_DIR", str(tmp_path))
    again = ensure_tiny(name)
    assert again != path
    for file in ("model.safetensors", "tokenizer.json"):
        assert _digest(again / file) == _digest(path / file), file


@pytest.mark.parametrize("name", NAMES)
def test_label_mask_keeps_only_the_answer(name):
    model, processor, family, examples = _encoded(name)
    tok = processor.tokenizer
    placeholders = vision_placeholder_ids(processor)
    specials = {int(i) for i in tok.added_tokens_decoder} - {tok.eos_token_id}
    n = sum(p.numel() for p in model.parameters())
    assert 200_000 < n < 5_000_000
    for ex, answer in examples:
        ids, labels = ex["input_ids"][0], ex["labels"][0]
        labelled = labels != IGNORE_INDEX
        first = int(labelled.nonzero()[0])
        assert labelled[first:].all() and not labelled[:first].any()  # one block at the end
        assert (labels[labelled] == ids[labelled]).all()
        target = labels[labelled]
        assert tok.decode(target).strip().startswith(answer)  # the answer, nothing of the prompt
        # the token generation stops on is learned; after it at most the template's newline
        eos_at = (target == tok.eos_token_id).nonzero()
        assert len(eos_at) == 1 and tok.decode(target[int(eos_at[0]) + 1:]).strip() == ""
        assert not any(int(t) in specials | placeholders for t in labels[labelled])
        n_vision = sum(int((ids[:first] == p).sum()) for p in placeholders)
        assert n_vision == TINY_CLIP_TOKENS[name]
    batch = collate([ex for ex, _ in examples], tok.pad_token_id)
    short = int(batch["attention_mask"].sum(1).argmin())
    assert (batch["labels"][short][batch["attention_mask"][short] == 0] == IGNORE_INDEX).all()
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss > 0


def test_two_step_lora_run_reloads_generates_and_merges(trained):
    name, run, status = trained
    family = FAMILIES[name]
    assert status["state"] == "completed" and status["global_step"] == 2
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["target_modules"] == family.lora_target_regex
    model, processor, fam = load_model(resolve_model(str(run)))
    assert fam is family and type(model).__name__.startswith("Peft")
    lora = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert lora and all(LM_PATH.search(n) for n in lora), lora[:3]
    assert {module_group(n, family) for n in lora} == {"language"}

    from core.models.loading import ModelSource
    from core.serve.predictor import Predictor
    from core.spec import PreprocessSpec
    from core.train.merge import merge_run
    from core.video.frames import sample_frames

    spec = PreprocessSpec.load(run)
    clip = load_dataset(SAMPLES).samples[5].video
    frames = sample_frames(clip, spec.sampling_spec)
    adapter_pred = Predictor(model, processor, family, spec, "cpu")
    inputs = adapter_pred.encode(frames)
    with torch.no_grad():
        adapter_ids = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        adapter_logits = model(**inputs).logits
    (text, n_new), = adapter_pred.generate([frames], max_new_tokens=8)
    assert isinstance(text, str) and 0 < n_new <= 8

    merged_dir = merge_run(run)
    merged, merged_processor, _ = load_model(ModelSource(base=str(merged_dir)))
    assert type(merged).__name__ == type(model.get_base_model()).__name__
    merged_inputs = Predictor(merged, merged_processor, family, spec, "cpu").encode(frames)
    with torch.no_grad():
        merged_ids = merged.generate(**merged_inputs, max_new_tokens=8, do_sample=False)
        merged_logits = merged(**merged_inputs).logits
    assert torch.equal(adapter_ids, merged_ids)
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-4)
    # the trained (modules_to_save) vision tower and projector are in the merged weights, not the base's
    base = load_base_model(resolve_model(f"tiny:{name}"))
    for prefix in (family.vision_modules[0], family.projector_modules[0]):
        key = next(k for k in merged.state_dict() if k.startswith(prefix) and k.endswith("weight"))
        assert not torch.equal(merged.state_dict()[key], base.state_dict()[key]), key


def test_training_and_inference_feed_identical_tensors(trained):
    from core.models.families import family_for_model_type
    from core.serve.predictor import Predictor
    from core.video.frames import sample_frames

    name, run, _ = trained
    predictor = Predictor.load(str(run))
    family = family_for_model_type(predictor.model.config.model_type)
    data = load_dataset(SAMPLES)
    samples = data.samples[6:8]
    # what the trainer encodes: its own sampling spec from the resolved config
    cfg = resolve_defaults(TrainConfig(model=f"tiny:{name}", **CONFIG), family, random_init=True)
    train_ex, skipped = encode_split(samples, data.schema, predictor.processor, sampling_spec(cfg),
                                     build_instruction(data.schema), family.frames_as)
    assert not skipped and len(train_ex) == 2
    for s, tex in zip(samples, train_ex):
        iex = predictor.encode(sample_frames(s.video, predictor.spec.sampling_spec))
        pixel_keys = [k for k in iex if k.startswith("pixel_values")]
        assert pixel_keys
        for k in iex:
            if k in TOKEN_KEYS:  # per-token: the inference prompt is the training sequence's prefix
                n = iex[k].shape[1]
                assert torch.equal(tex[k][:, :n], iex[k]), k
            else:
                assert torch.equal(tex[k], iex[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_freeze_toggles_and_lora_placement_per_module_group(name):
    family = FAMILIES[name]

    def counts(cfg, random_init):
        model = load_base_model(resolve_model(f"tiny:{name}"))
        model = apply_trainable(model, resolve_defaults(cfg, family, random_init), family)
        return model, trainable_counts(model, family)

    # every parameter belongs to a group, and the vision/projector groups are not empty
    model = load_base_model(resolve_model(f"tiny:{name}"))
    groups = {}
    for n, p in model.named_parameters():
        groups[module_group(n, family)] = groups.get(module_group(n, family), 0) + p.numel()
    assert groups.get("vision", 0) > 0 and groups.get("projector", 0) > 0 and groups.get("language", 0) > 0

    lora_model, pretrained = counts(TrainConfig(method="lora"), random_init=False)
    assert pretrained["vision"] == 0 and pretrained["projector"] == 0 and pretrained["language"] > 0
    lora = [n for n, _ in lora_model.named_modules() if n.endswith("lora_A")]
    assert lora and all(LM_PATH.search(n) for n in lora)
    _, scratch = counts(TrainConfig(method="lora"), random_init=True)  # random base: train tower + projector
    assert scratch["vision"] > 0 and scratch["projector"] > 0 and scratch["language"] > 0
    _, projector_only = counts(TrainConfig(method="lora", freeze_vision=True, freeze_projector=False), False)
    assert projector_only["vision"] == 0 and projector_only["projector"] > 0
    for vision, projector, language in [(True, True, False), (False, True, True), (True, False, True)]:
        _, c = counts(TrainConfig(method="full", freeze_vision=vision, freeze_projector=projector,
                                  freeze_language=language, train_embeddings=False), False)
        assert (c["vision"] == 0) == vision and (c["projector"] == 0) == projector
        assert (c["language"] == 0) == language


def test_readme_token_table_matches_the_real_processors():
    """README's tokens per 5 s clip are what each family's processor class gives at the reference
    checkpoint's settings and the family's default frames and size."""
    from core.models.tiny.reference import vision_tokens_per_clip

    readme = (REPO / "README.md").read_text()
    for name, family in FAMILIES.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row, f"README has no table row for {name}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[4]) == family.default_frames
        assert cells[5] == f"{family.default_size[0]}x{family.default_size[1]}"
        assert int(cells[6].replace(",", "")) == vision_tokens_per_clip(family), name


def test_cli_models_lists_every_family_with_its_tiny_build():
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "models", "--json"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rows = {r["family"]: r for r in json.loads(out.stdout)}
    assert set(rows) == set(FAMILIES)
    for name, row in rows.items():
        assert row["tiny"] == f"tiny:{name}" and row["tiny_offline"] is True and row["hub_examples"]


def test_remote_code_checkpoints_need_the_explicit_opt_in(tmp_path):
    """An original InternVL / InternVideo2.5 folder (config with auto_map to its own code) is refused
    without trust_remote_code, before any of its code could run; the family lookup names the -hf way."""
    from core.errors import ModelError
    from core.models.families import family_for_model_type
    from core.models.loading import ModelSource, load_processor

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "internvl_chat", "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"}}))
    source = resolve_model(str(tmp_path))
    for load in (load_base_model, load_processor):
        with pytest.raises(ModelError, match="--trust-remote-code"):
            load(source)
    with pytest.raises(ModelError, match="cannot load model"):  # opted in, but the code file is missing
        load_base_model(ModelSource(base=str(tmp_path)), trust_remote_code=True)
    with pytest.raises(ModelError, match="InternVL3-8B-hf"):
        family_for_model_type("internvl_chat")


@pytest.mark.parametrize("name,batches", [("smolvlm", False), ("llava_next_video", False), ("internvl", True),
                                          ("qwen3_vl", True)])
def test_clips_of_different_frame_counts_batch_or_fail_clearly(name, batches, tmp_path):
    """A still image (one frame) beside an 8-frame clip: families with flattened frames batch them;
    families with one pixel tensor per clip refuse with a message that says what to do."""
    from PIL import Image

    from core.video.frames import sample_frames

    model, processor, family = load_model(resolve_model(f"tiny:{name}"))
    spec = sampling_spec(resolve_defaults(TrainConfig(model=f"tiny:{name}"), family, random_init=True))
    Image.new("RGB", (120, 80), (200, 90, 20)).save(tmp_path / "still.png")
    exs = [encode_example(processor, "Q?", sample_frames(p, spec), family.frames_as, '{"a":"b"}')
           for p in (load_dataset(SAMPLES).samples[0].video, tmp_path / "still.png")]
    if batches:
        batch = collate(exs, processor.tokenizer.pad_token_id)
        model.train()
        assert torch.isfinite(model(**batch).loss)
    else:
        with pytest.raises(ValueError, match="batch_size 1"):
            collate(exs, processor.tokenizer.pad_token_id)
