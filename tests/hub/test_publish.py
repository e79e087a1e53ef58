"""`cli.py push` / `push-dataset`: the folder a Hub repository gets, its model card, and the upload.

Uploads go through huggingface_hub unchanged to tests.hub.fake_hub, a local HTTP server speaking
the Hub's API (HF_ENDPOINT points at it): the network is replaced only at the HTTP boundary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.hub.fake_hub import TOKEN, FakeHub
from tests.support import REPO, SAMPLES

CLIP = SAMPLES / "videos" / "clip_0003.mp4"


def push_cli(*args, env_extra=None, timeout=900):  # a guard: evaluating on 2 busy cores takes minutes
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT")}
    env.update({"HF_HUB_OFFLINE": "0", **(env_extra or {})})
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def card_code(readme: str, model: str, base: str | None = None) -> str:
    """The card's plain-transformers snippet, pointed at local folders instead of Hub ids."""
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = re.sub(r"^MODEL = .*$", f"MODEL = {model!r}", code, flags=re.M)
    code = re.sub(r'^VIDEO = .*$', f"VIDEO = {str(CLIP)!r}", code, flags=re.M)
    if base:
        code = re.sub(r"from_pretrained\('[^']+'\)", f"from_pretrained({base!r})", code)
    return code


def run_card_code(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.rstrip("\n")


def predictor_text(model: str) -> str:
    from core.serve.predictor import Predictor

    return Predictor.load(model).predict([CLIP])[0].text


@pytest.mark.slow
def test_dry_run_of_a_tiny_run_is_a_merged_model_with_a_card_that_runs(short_run, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "repo"
    res = push_cli("push", short_run, "--repo-id", "me/tiny-dashcam", "--dry-run", out, "--dataset-repo", "me/clips")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "not on the Hub" in res.stdout and "publishing the merged model" in res.stdout
    assert "nothing uploaded" in res.stdout
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]  # safetensors only
    assert {"README.md", "preprocessing.json", "schema.json", "training_config.yaml", "evaluation.json"} <= set(files)

    card = ModelCard.load(out / "README.md")  # parses the front matter as the Hub does
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "video-text-to-text"
    assert card.data.datasets == ["me/clips"]
    assert card.data.base_model is None  # tiny:default is not a Hub id
    schema = json.loads((out / "schema.json").read_text())
    for name, prop in schema["properties"].items():
        row = next(line for line in card.text.splitlines() if line.startswith(f"| `{name}` |"))
        for value in prop.get("enum", []):
            assert f"`{value}`" in row
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation) == {"tiny:default", str(short_run)}
    tuned = evaluation[str(short_run)]
    row = next(line for line in card.text.splitlines() if line.startswith("| fine-tuned (this model) |"))
    assert f"| {tuned['count']} | {100 * tuned['json_valid_rate']:.1f}% |" in row

    # loads with plain transformers, and the card's snippet asks it exactly as our predictor does
    AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    assert run_card_code(card_code(card.content, str(out))) == predictor_text(str(short_run))


@pytest.mark.slow
def test_adapter_of_a_hub_base_loads_with_peft_and_its_snippet_matches(short_run, tiny_path, tmp_path):
    """A run whose base is a Hub id is published as the adapter, pointing at that id."""
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from core.hub import model_folder

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    spec = json.loads((run / "preprocessing.json").read_text())
    spec["base_model"] = "acme/video-base"  # as if trained from the Hub; the weights are the tiny base's
    (run / "preprocessing.json").write_text(json.dumps(spec))
    published = model_folder(run, tmp_path / "repo", "me/tiny-adapter")
    out = published.folder
    assert not published.merged and not published.notes
    assert (out / "adapter_model.safetensors").is_file() and not (out / "training_args.bin").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "acme/video-base"
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "acme/video-base" and card.data.library_name == "peft"
    assert "Not evaluated" in card.text

    PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_path), str(out))
    code = card_code(card.content, str(out), base=str(tiny_path))
    assert "PeftModel.from_pretrained(base, MODEL)" in code
    assert run_card_code(code) == predictor_text(str(short_run))


@pytest.mark.slow
def test_push_uploads_the_dry_run_folder_through_the_hub_api(short_run, tmp_path):
    with FakeHub() as hub:
        res = push_cli("push", short_run, "--repo-id", "me/tiny-dashcam", "--private", "--no-eval",
                       env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"-> {hub.url}/me/tiny-dashcam/commit/" in res.stdout
        assert hub.repos == {"model:me/tiny-dashcam": {"private": True}}
        uploaded = hub.files["model:me/tiny-dashcam"]
    dry = tmp_path / "dry"
    res = push_cli("push", short_run, "--repo-id", "me/tiny-dashcam", "--no-eval", "--dry-run", dry)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(uploaded) == sorted(p.relative_to(dry).as_posix() for p in dry.rglob("*") if p.is_file())
    assert uploaded["model.safetensors"] == (dry / "model.safetensors").read_bytes()
    assert uploaded["README.md"] == (dry / "README.md").read_bytes()
    assert "Not evaluated" in uploaded["README.md"].decode()


def test_missing_or_rejected_token_is_one_clear_line(tmp_path):
    with FakeHub() as hub:
        res = push_cli("push", tmp_path / "any-run", "--repo-id", "me/x", "--no-eval",
                       env_extra={"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home")})
        assert res.returncode == 1
        assert res.stderr.strip().splitlines() == [
            "error: no Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens)"]
        assert hub.requests == []  # refused before any network call

        res = push_cli("push-dataset", SAMPLES, "--repo-id", "me/x",
                       env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_wrong"})
        assert res.returncode == 1
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "the token was rejected" in lines[0], res.stderr
        assert hub.repos == {}


def test_push_dataset_is_a_videofolder_with_schema_and_card(tmp_path):
    from huggingface_hub import DatasetCard

    out = tmp_path / "ds"
    res = push_cli("push-dataset", SAMPLES, "--repo-id", "me/dashcam-clips", "--dry-run", out, "--license", "cc-by-4.0")
    assert res.returncode == 0, res.stderr[-3000:]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "cc-by-4.0"
    rows = {split: [json.loads(line) for line in (out / split / "metadata.jsonl").read_text().splitlines()]
            for split in ("train", "validation", "test")}
    assert sum(len(r) for r in rows.values()) == sum(1 for _ in (SAMPLES / "metadata.jsonl").open())
    for split, split_rows in rows.items():
        assert f"| {split} | {len(split_rows)} |" in card.text
        assert all((out / split / r["file_name"]).is_file() for r in split_rows)
    assert json.loads((out / "schema.json").read_text()) == json.loads((SAMPLES / "schema.json").read_text())

    with FakeHub() as hub:
        res = push_cli("push-dataset", SAMPLES, "--repo-id", "me/dashcam-clips",
                       env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
        assert res.returncode == 0, res.stderr[-3000:]
        uploaded = hub.files["dataset:me/dashcam-clips"]
    assert sorted(uploaded) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "/name"])
def test_repo_id_must_be_owner_slash_name(repo_id, tmp_path):
    from core.errors import ConfigError
    from core.hub import dataset_folder

    with pytest.raises(ConfigError, match="owner/name"):
        dataset_folder(SAMPLES, tmp_path / "x", repo_id)
