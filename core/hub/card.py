"""Model and dataset cards: the README.md a Hub repository shows, written from what we know.

The front matter is built with huggingface_hub's `ModelCardData`/`DatasetCardData` (the Hub's own
field names, valid YAML). The body says what the model answers (the schema as a table), the
preprocessing it expects (the run's spec: sampler, frames, size, prompt), its evaluation (given,
never computed here), how to run it (our CLI, and plain transformers code that samples frames the
way training did, generated from the spec so it cannot drift), the training config and its limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from core.layout import CONFIG_FILE
from core.spec import PreprocessSpec

PIPELINE_TAG = "video-text-to-text"
TAGS = ["video-vlm-workbench", "video", "structured-output", "json"]


def _type_text(prop: dict) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("type") == "array":
        items = prop.get("items", {})
        inner = ("any of " + ", ".join(f"`{v}`" for v in items["enum"])) if "enum" in items else items.get("type", "any")
        return f"list ({inner})"
    kind = prop.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def schema_table(schema: dict) -> str:
    """The schema's top-level fields as a Markdown table (field, type/values, required, description)."""
    required = set(schema.get("required", []))
    lines = ["| field | type / values | required | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        desc = str(prop.get("description", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_text(prop)} | {'yes' if name in required else 'no'} | {desc} |")
    return "\n".join(lines)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def evaluation_section(evaluation: dict[str, dict] | None, fine_tuned: str) -> str:
    """Validity and per-field accuracy per evaluated model (`core.serve.report` reports)."""
    if not evaluation:
        return "Not evaluated when this card was written (`cli.py eval --model THIS --dataset DIR --split test`)."
    first = next(iter(evaluation.values()))
    fields = list(first.get("per_field", {}))
    head = ["model", "clips", "JSON valid", "schema valid", "mean field accuracy"] + [f"`{f}`" for f in fields]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in evaluation.items():
        label = "fine-tuned (this model)" if name == fine_tuned else f"base `{name}`"
        cells = [label, str(r.get("count", "")), _pct(r.get("json_valid_rate")), _pct(r.get("schema_valid_rate")),
                 _pct(r.get("mean_field_accuracy"))] + [_pct(r.get("per_field", {}).get(f)) for f in fields]
        lines.append("| " + " | ".join(cells) + " |")
    split = first.get("split", "?")
    constrained = " with schema-constrained decoding" if first.get("constrained") else " (greedy, unconstrained)"
    return (f"Scored on the `{split}` split ({first.get('count', '?')} clips){constrained}: an answer is "
            "schema-valid when it parses as JSON and satisfies the schema; field accuracy is exact match per "
            "field (lists compared as sets).\n\n" + "\n".join(lines))


def calibration_section(cal) -> str:
    """Per field: how well the scores were calibrated on held-out labels, and the threshold that
    decides which answers need a person (core.schema.calibration)."""
    if cal is None:
        return ("Not calibrated: the per-field scores the workbench reports are the model's raw "
                "probabilities, which run high, and every answer is marked for review "
                "(`cli.py calibrate RUN --dataset DIR --split val`).")
    lines = ["| field | held-out rows | ECE raw | ECE calibrated | accept at or above | share accepted | precision |",
             "|---|---|---|---|---|---|---|"]
    for name, m in cal.fields.items():
        accept = ("– (free text)" if not m.decides_review else "never" if m.threshold is None
                  else f"{m.threshold:.4f}")
        lines.append(f"| `{name}` | {m.rows}{' (shared map)' if m.shared else ''} | {m.ece_raw} | {m.ece} | {accept} | "
                     f"{_pct(m.coverage) if m.decides_review else '–'} | {_pct(m.precision)} |")
    return (f"Per-field confidence is calibrated on {cal.clips} held-out `{cal.split}` clips (`calibration.json`): "
            f"an answer's field is accepted without a person when its calibrated score reaches the threshold that "
            f"kept precision at {cal.target_precision:g} on those clips (by a one-sided 95% lower bound); the workbench "
            "marks every other answer `needs_review`. Figures are on the clips the thresholds were chosen on.\n\n" + "\n".join(lines))


def _sampling_code(sampling: dict) -> str:
    if sampling.get("sampling") == "fps":  # qwen-vl-utils' smart_nframes, as core.video.sampling.fps_indices
        return (f"    # fps sampling: {sampling['fps']} frames per second of video, {sampling['min_frames']}-"
                f"{sampling['max_frames']} frames, an even count\n"
                f"    lo, hi = -(-{sampling['min_frames']} // 2) * 2, min({sampling['max_frames']}, len(frames)) // 2 * 2\n"
                f"    n = int(min(max(len(frames) / fps * {sampling['fps']}, lo), hi, len(frames)) // 2 * 2)\n"
                "    idx = torch.linspace(0, len(frames) - 1, n).round().long().tolist()\n")
    return (f"    # uniform sampling: the midpoints of {sampling['num_frames']} equal segments\n"
            f"    seg = (len(frames) - 1) / {sampling['num_frames']}\n"
            f"    idx = [int(seg / 2 + np.round(seg * i)) for i in range({sampling['num_frames']})]\n")


def usage_code(spec: PreprocessSpec, repo_id: str, adapter_base: str | None, suppress: list[int]) -> str:
    """Plain transformers (+ peft for an adapter) code that asks the model the way training did."""
    s = spec.sampling
    if adapter_base:
        load = (f"base = AutoModelForImageTextToText.from_pretrained({adapter_base!r})\n"
                f"model = PeftModel.from_pretrained(base, MODEL).eval()\n")
        imports = "from peft import PeftModel\n"
    else:
        load, imports = "model = AutoModelForImageTextToText.from_pretrained(MODEL).eval()\n", ""
    if spec.frames_as == "video":
        content = '[{"type": "video"}, {"type": "text", "text": INSTRUCTION}]'
        call = ("processor(text=[prompt], videos=[frames], video_metadata=[VideoMetadata(\n"
                "    total_num_frames=total, fps=fps, duration=total / fps, frames_indices=idx,\n"
                "    width=frames.shape[2], height=frames.shape[1])], do_sample_frames=False, return_tensors=\"pt\")")
    else:
        content = ('[part for i in range(len(frames)) for part in ({"type": "text", "text": f"Frame{i + 1}: "}, '
                   '{"type": "image"}, {"type": "text", "text": "\\n"})] + [{"type": "text", "text": INSTRUCTION}]')
        call = 'processor(text=[prompt], images=[list(frames)], return_tensors="pt")'
    return (
        "import av\nimport numpy as np\nimport torch\nfrom PIL import Image\n" + imports +
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
        "from transformers.video_utils import VideoMetadata\n\n"
        f"MODEL = {repo_id!r}\nVIDEO = \"clip.mp4\"\n"
        f"INSTRUCTION = {spec.instruction!r}\n"
        f"# special tokens the answer never contains (vision placeholders, chat markers)\nSUPPRESS = {suppress!r}\n\n"
        "def sample(path):\n"
        "    # decode every frame in order (count what decodes, do not trust the header), then pick\n"
        "    with av.open(path) as container:\n"
        "        stream = container.streams.video[0]\n"
        "        fps = float(stream.average_rate or 0) or 1.0\n"
        f"        frames = [np.asarray(f.to_image().resize(({s['width']}, {s['height']}), Image.Resampling.BILINEAR))\n"
        "                  for f in container.decode(stream)]\n"
        + _sampling_code(s) +
        "    return np.stack([frames[i] for i in idx]), idx, fps, len(frames)\n\n"
        "processor = AutoProcessor.from_pretrained(MODEL)\n" + load +
        "frames, idx, fps, total = sample(VIDEO)\n"
        f"messages = [{{\"role\": \"user\", \"content\": {content}}}]\n"
        "prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)\n"
        f"inputs = {call}\n"
        "tok = processor.tokenizer\n"
        "with torch.no_grad():\n"
        "    out = model.generate(**inputs, max_new_tokens=160, do_sample=False, suppress_tokens=SUPPRESS or None,\n"
        "                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)\n"
        "print(tok.decode(out[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))\n"
    )


def front_matter(data) -> str:
    return "---\n" + data.to_yaml() + "\n---\n"


def _card_data(method: str, merged: bool, hub_base: str | None, license: str | None, datasets: list[str] | None):
    """The card's front matter: what the Hub indexes (base model, library, tags)."""
    from huggingface_hub import ModelCardData

    return ModelCardData(base_model=hub_base, library_name="transformers" if merged or method == "full" else "peft",
                         pipeline_tag=PIPELINE_TAG, license=license, datasets=datasets or None,
                         tags=TAGS + ([method] if method in ("lora", "qlora", "grpo") else []))


def model_card(spec: PreprocessSpec, repo_id: str, *, config: dict, merged: bool, hub_base: str | None,
               evaluation: dict[str, dict] | None, fine_tuned: str, clips: int, suppress: list[int],
               license: str | None = None, datasets: list[str] | None = None, calibration=None) -> str:
    """README.md for a published run. `hub_base`: the base model's Hub id (None for a local or tiny
    base, which then appears only in the text); `fine_tuned`: the name of this model in `evaluation`."""
    method = config.get("method", "lora")
    data = _card_data(method, merged, hub_base, license, datasets)
    s = spec.sampling
    frames = (f"{s['num_frames']} frames at the midpoints of equal segments" if s.get("sampling") == "uniform"
              else f"{s['fps']} frames per second, {s['min_frames']}-{s['max_frames']} frames")
    title = spec.schema.get("title") or "structured answers"
    weights = ("merged model (the LoRA adapter folded into the base: loads with transformers alone)" if merged
               else "LoRA adapter (load the base, then this adapter with peft)" if method != "full" else "full model")
    adapter_base = None if merged or method == "full" else (hub_base or spec.base_model)
    return front_matter(data) + f"""
# {repo_id.split('/')[-1]}: {title} from video

A vision-language model fine-tuned with Video VLM Workbench to watch a clip and answer with one JSON
object that follows the schema below. Base model: `{spec.base_model}`
({spec.family}); published as a {weights}.

## What it answers

{schema_table(spec.schema)}

The full JSON Schema is `schema.json` in this repository. Answers are compact JSON
(`{{"field":value,...}}`), fields in schema order.

## Preprocessing it expects

The model was trained on exactly this; ask it differently and accuracy drops. `preprocessing.json`
holds it in machine-readable form.

- Frames: {frames}, decoded in order with PyAV, resized to {s['width']}x{s['height']} (bilinear),
  passed as {'one video' if spec.frames_as == 'video' else 'one image per frame, labelled FrameN:'}.
- Prompt (the user turn after the {'video' if spec.frames_as == 'video' else 'frames'}):

```text
{spec.instruction}
```

## Evaluation

{evaluation_section(evaluation, fine_tuned)}

### Confidence and review

{calibration_section(calibration)}

## How to run it

With the workbench (it reads `preprocessing.json`, so sampling and prompt match):

```bash
hf download {repo_id} --local-dir models/{repo_id.split('/')[-1]}
python cli.py predict --model models/{repo_id.split('/')[-1]} --input clips/ --output predictions.sqlite
```

With plain transformers{' and peft' if adapter_base else ''}:

```python
{usage_code(spec, repo_id, adapter_base, suppress)}```

## Training

{clips} labelled clips; method `{method}`. The full config (`training_config.yaml` here):

```yaml
{yaml.safe_dump(config, sort_keys=False).strip()}
```

## Limits

- It answers only the fields above, with the values above; anything else in a clip is invisible to it.
- It saw {frames} per clip: events shorter than the gap between sampled frames can be missed, and
  long recordings should be predicted in windows (or cut into clips) of the length it was trained on.
- Rotation metadata (phone videos) is applied by the workbench's decoder, not by the snippet above.
- Accuracy above is on held-out clips of the same dataset; footage from other cameras, places or
  seasons can score lower. Check a sample before trusting it unattended.
"""


def dataset_card(schema: dict | None, repo_id: str, counts: dict[str, int], license: str | None = None) -> str:
    """README.md for a dataset pushed as Hugging Face VideoFolder with its schema."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(license=license, tags=TAGS, task_categories=[PIPELINE_TAG])
    splits = "\n".join(f"| {split} | {n} |" for split, n in counts.items())
    fields = schema_table(schema) if schema else "No schema.json: labels are free-form."
    return front_matter(data) + f"""
# {repo_id.split('/')[-1]}

Video clips with JSON labels, exported by Video VLM Workbench in the Hugging Face VideoFolder layout:
`<split>/` holds the clips and a `metadata.jsonl` whose `file_name` is relative to that folder.

| split | clips |
|---|---|
{splits}

## Label fields

{fields}

`schema.json` is the JSON Schema every label satisfies.

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}")
```
"""


def read_config(run_dir) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def dump_evaluation(evaluation: dict[str, dict] | None) -> str:
    return json.dumps(evaluation or {}, indent=2, ensure_ascii=False) + "\n"
