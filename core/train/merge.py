"""Merge a run's LoRA adapter into its base and save a plain Hugging Face model folder.

The output (default `RUN/merged/`) loads with `AutoModelForImageTextToText.from_pretrained` and
`AutoProcessor.from_pretrained` alone — no PEFT — and carries a `preprocessing.json` (the run's
spec, `final_dir: "."`), so it is also a valid `--model` everywhere, asked exactly as it was taught.

The base is loaded fresh from disk in its checkpoint dtype (never the 4-bit QLoRA base), the
adapter is attached and `merge_and_unload` folds the LoRA deltas into the linear weights and
replaces every `modules_to_save` wrapper (the tiny default's trained vision tower, projector,
embeddings and head) by its trained copy, so those weights are the ones the adapter model used.
`export_run` writes what the Export tab offers for download: the adapter (with its spec) or the
merged model. This module does not train or evaluate.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from core.errors import ConfigError, ModelError
from core.layout import EXPORT_KINDS, FINAL_DIR, MERGED_DIR, SPEC_FILE
from core.models.loading import ModelSource, load_processor, resolve_model
from core.spec import PreprocessSpec, copy_calibration


def merge_run(run_dir, output=None) -> Path:
    """Write the merged model of `run_dir` to `output` (default RUN_DIR/merged) and return its path."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    run_dir = Path(run_dir)
    source = resolve_model(str(run_dir))
    if source.run_dir is None:
        raise ModelError(f"{run_dir}: not a run directory (no {SPEC_FILE})")
    if source.adapter is None:
        raise ModelError(f"{run_dir}: the final model is not a LoRA adapter (a full fine-tune is already a whole "
                         "model: use the run directory or its final/ folder as is)")
    out = Path(output) if output else run_dir / MERGED_DIR
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty; remove it or choose another --output")
    try:
        base = AutoModelForImageTextToText.from_pretrained(source.base, dtype="auto", use_safetensors=True)
    except OSError as exc:
        raise ModelError(f"{source.base}: cannot load the base model to merge into ({exc})") from exc
    with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = PeftModel.from_pretrained(base, str(source.adapter)).merge_and_unload()
    model.eval()
    processor = load_processor(ModelSource(base=str(source.adapter)))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        spec = PreprocessSpec.load(run_dir)
        spec.final_dir = "."
        spec.extra = {**spec.extra, "merged_from": str(run_dir.resolve()),
                      "adapter_config": json.loads((source.adapter / "adapter_config.json").read_text())}
        spec.save(tmp)
        copy_calibration(run_dir, tmp)  # the merged weights answer as the run's did
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


EXPORTS = EXPORT_KINDS


def export_run(run_dir, what: str, dest) -> Path:
    """Write a run's model to the new folder `dest`: `adapter` copies the LoRA adapter folder with
    the run's spec beside it; `merged` writes the merged model (as `merge_run`)."""
    run_dir, dest = Path(run_dir), Path(dest)
    if what == MERGED_DIR:
        return merge_run(run_dir, dest)
    if what != "adapter":
        raise ConfigError(f"export {what!r}: choose one of {', '.join(EXPORTS)}")
    final = run_dir / FINAL_DIR
    if not (final / "adapter_config.json").is_file():
        raise ModelError(f"{run_dir}: no LoRA adapter in {FINAL_DIR}/ (a full fine-tune is already a merged model)")
    if dest.exists():
        raise ConfigError(f"{dest}: already exists; choose another destination")
    shutil.copytree(final, dest)
    shutil.copy2(run_dir / SPEC_FILE, dest / SPEC_FILE)
    copy_calibration(run_dir, dest)
    return dest
