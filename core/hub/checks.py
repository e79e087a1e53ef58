"""What a push checks before it builds or sends anything: the run's files, and each clip of a dataset.

`check_run` reads every file of a run that publishing uses (the spec, the training config, the
adapter or model config, the safetensors headers) and refuses a damaged run with one line naming
the file and what is wrong, before the evaluation or any network call (after the token check,
which is as cheap and reads nothing of the run). Weights are
checked by their header and size (safetensors says when a file does not cover what its header
lists), not loaded. `ClipCheck` is the dataset side: the header check training does on every clip
(core.video.frames.check_readable), remembering why each unreadable clip was left out.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import yaml

from core.errors import ModelError, VideoError
from core.layout import CONFIG_FILE, FINAL_DIR, SPEC_FILE
from core.spec import PreprocessSpec, is_run_dir

_DAMAGED = "the run is damaged: train it again, or publish another run"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_MODEL_WEIGHTS = "model.safetensors"
_SHARD_INDEX = "model.safetensors.index.json"


def _json_object(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing ({what}); {_DAMAGED}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not readable JSON ({exc}); {_DAMAGED}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a JSON object (a {type(data).__name__}; {what}); {_DAMAGED}")
    return data


def _check_spec(run_dir: Path) -> PreprocessSpec:
    path = run_dir / SPEC_FILE
    data = _json_object(path, "the preprocessing spec")
    known = {f.name for f in fields(PreprocessSpec)}
    try:
        spec = PreprocessSpec(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:  # a required field is missing
        raise ModelError(f"{path}: incomplete preprocessing spec ({exc}); {_DAMAGED}") from exc
    for name in ("schema", "sampling"):
        if not isinstance(getattr(spec, name), dict):
            raise ModelError(f"{path}: `{name}` is not a JSON object; {_DAMAGED}")
    return spec


def _check_config(run_dir: Path) -> None:
    path = run_dir / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (the training config); {_DAMAGED}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: not readable YAML ({str(exc).splitlines()[0]}); {_DAMAGED}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a YAML mapping of training settings; {_DAMAGED}")


def _check_safetensors(path: Path, what: str) -> None:
    from safetensors import safe_open

    if not path.is_file():
        pickled = sorted(p.name for p in path.parent.glob("*.bin") if p.name != "training_args.bin")
        extra = f"; only pickled {', '.join(pickled)}, which is never published" if pickled else ""
        raise ModelError(f"{path}: missing ({what}){extra}; {_DAMAGED}")
    try:
        with safe_open(str(path), framework="numpy") as weights:
            weights.keys()
    except Exception as exc:  # SafetensorError is not an OSError; any failure here is a bad file
        raise ModelError(f"{path}: not readable safetensors weights ({exc}); {_DAMAGED}") from exc


def _check_weights(final: Path) -> None:
    if (final / "adapter_config.json").exists():
        _json_object(final / "adapter_config.json", "the adapter's config")
        _check_safetensors(final / _ADAPTER_WEIGHTS, "the adapter's weights")
        return
    if (final / _SHARD_INDEX).exists():
        index = _json_object(final / _SHARD_INDEX, "the index of the model's weight files")
        shards = index.get("weight_map")
        if not isinstance(shards, dict) or not shards:
            raise ModelError(f"{final / _SHARD_INDEX}: no `weight_map` of weight files; {_DAMAGED}")
        for shard in sorted(set(map(str, shards.values()))):
            _check_safetensors(final / shard, f"a weight file that {_SHARD_INDEX} lists")
        return
    _check_safetensors(final / _MODEL_WEIGHTS, "the model's weights")


def check_run(run_dir) -> PreprocessSpec:
    """The run's spec, once every file publishing reads from the run is there and readable;
    otherwise ModelError naming the file and what is wrong with it."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir) or not (run_dir / FINAL_DIR).is_dir():
        raise ModelError(f"{run_dir}: not a finished run (no {SPEC_FILE} and {FINAL_DIR}/); train it first")
    spec = _check_spec(run_dir)
    _check_config(run_dir)
    _check_weights(run_dir / FINAL_DIR)
    return spec


class ClipCheck:
    """`keep(sample)` for an export: True for a clip that opens as a video (or image); the others are
    listed in `left_out` as `left out REL: reason`."""

    def __init__(self):
        self.left_out: list[str] = []

    def __call__(self, sample) -> bool:
        from core.video.frames import check_readable

        try:
            check_readable(sample.video)
        except VideoError as exc:
            self.left_out.append(f"left out {sample.rel}: {exc.reason}")
            return False
        return True
