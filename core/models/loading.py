"""Turning what a user typed into a model source, and loading it.

`resolve_model` maps `tiny:NAME` (built offline on first use), a run directory (its final adapter
or model, with the spec it was trained with), a local folder or a hub id to a `ModelSource`;
`load_model` / `load_base_model` / `load_processor` load it with `from_pretrained`: safetensors only,
remote-code checkpoints refused unless `trust_remote_code` is given. `pick_device`/`pick_dtype`
choose where. Training-specific loading (4-bit bases) is core.train.setup's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelError
from core.layout import FINAL_DIR, SPEC_FILE
from core.models.device import pick_dtype
from core.models.families import REMOTE_CODE_MODEL_TYPES, TINY_PREFIX, family_for_model_type
from core.models.tiny.registry import ensure_tiny
from core.spec import PreprocessSpec, is_run_dir


@dataclass
class ModelSource:
    """Where weights come from. `adapter` is set when the name was a run directory with a LoRA adapter."""

    base: str  # local folder or hub id for from_pretrained
    adapter: Path | None = None
    run_dir: Path | None = None
    display: str = ""


def resolve_model(name: str, tiny_spec: dict | None = None) -> ModelSource:
    """`tiny:NAME` | run directory | local HF folder | hub id. `tiny_spec` pins a tiny build."""
    name = str(name).strip()
    if not name:
        raise ModelError("no model given")
    if name.startswith(TINY_PREFIX):
        return ModelSource(base=str(ensure_tiny(name[len(TINY_PREFIX):], tiny_spec)), display=name)
    path = Path(name).expanduser()
    if path.exists():
        if is_run_dir(path):
            return _resolve_run_dir(path)
        if (path / "config.json").is_file():
            return ModelSource(base=str(path), display=name)
        raise ModelError(f"{path}: not a model folder (no config.json) and not a run directory (no {SPEC_FILE})")
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return ModelSource(base=name, display=name)  # a hub id; from_pretrained reports if unreachable
    raise ModelError(f"{name}: no such folder, and not a hub id (owner/name) or tiny:NAME")


def _resolve_run_dir(run_dir: Path) -> ModelSource:
    """A run directory points at its final model: a merged model folder, or base + adapter."""
    spec = PreprocessSpec.load(run_dir)
    final = run_dir / (spec.final_dir or FINAL_DIR)
    if (final / "adapter_config.json").is_file():
        base = resolve_model(spec.base_model, spec.extra.get("tiny_spec")).base
        return ModelSource(base=base, adapter=final, run_dir=run_dir, display=str(run_dir))
    if (final / "config.json").is_file():
        return ModelSource(base=str(final), run_dir=run_dir, display=str(run_dir))
    raise ModelError(f"{run_dir}: run has no final model yet (no {final.name}/adapter_config.json or config.json)")


def _load_error(source: ModelSource, what: str, exc: Exception) -> ModelError:
    if "trust_remote_code" in str(exc):
        return ModelError(f"{source.base}: this checkpoint needs code from its own repository to load; it is "
                          "loaded only with --trust-remote-code (trust_remote_code: true), which runs that code: "
                          "pass it only for a repository you trust")
    return ModelError(f"{source.base}: cannot load {what} ({exc})")


def _refuse_remote_code(source: ModelSource, trust_remote_code: bool) -> None:
    """A local folder whose config maps to its own code is refused without the opt-in (hub ids are
    refused by transformers itself, which `_load_error` words the same way)."""
    config = Path(source.base) / "config.json"
    if trust_remote_code or not config.is_file():
        return
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return
    if data.get("auto_map") or data.get("model_type") in REMOTE_CODE_MODEL_TYPES:
        raise _load_error(source, "model", ValueError("trust_remote_code"))


def load_processor(source: ModelSource, trust_remote_code: bool = False):
    from transformers import AutoProcessor

    _refuse_remote_code(source, trust_remote_code)
    try:
        return AutoProcessor.from_pretrained(source.base, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(source, "processor", exc) from exc


def load_base_model(source: ModelSource, device: str = "cpu", dtype=None, trust_remote_code: bool = False):
    """Load weights with the same call for tiny, local and hub models (safetensors only)."""
    from transformers import AutoModelForImageTextToText

    _refuse_remote_code(source, trust_remote_code)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source.base, dtype=dtype or pick_dtype(device), use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise _load_error(source, "model", exc) from exc
    return model.to(device)


def load_model(source: ModelSource, device: str = "cpu", dtype=None, trust_remote_code: bool = False):
    """(model, processor, family) with the run's adapter attached when there is one."""
    model = load_base_model(source, device, dtype, trust_remote_code)
    processor = load_processor(source, trust_remote_code)
    family = family_for_model_type(model.config.model_type)
    if source.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(source.adapter))
        model.to(device)
    model.eval()
    return model, processor, family


def family_of(source, trust_remote_code: bool = False):
    """The model's family, from its config: the first read of a model, so the place where an id
    that names nothing (or a Hub out of reach) becomes a ModelError saying what to do."""
    from transformers import AutoConfig

    _refuse_unreachable_hub(source)
    try:
        config = AutoConfig.from_pretrained(source.base, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise config_error(source, exc) from None
    return family_for_model_type(config.model_type)


def _refuse_unreachable_hub(source, seconds: float = 3.0) -> None:
    """A hub id whose config is not cached, with the Hub on: one TCP connect to HF_ENDPOINT first.
    huggingface_hub retries a Hub it cannot reach for about 30 s before saying so, the whole wait of
    a user without a network; a refused or silent port is the same answer in at most `seconds`.
    Behind a proxy a direct connect proves nothing, so the check is left to huggingface_hub there."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    from huggingface_hub import constants, try_to_load_from_cache

    if Path(source.base).exists() or constants.HF_HUB_OFFLINE:
        return
    if any(scheme != "no" for scheme in getproxies()):  # a *_proxy variable (no_proxy alone is not one)
        return
    if isinstance(try_to_load_from_cache(source.base, "config.json"), str):
        return  # cached: transformers reads it without waiting on the Hub
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=seconds).close()
    except OSError as exc:
        raise config_error(source, exc) from None


def config_error(source, exc: Exception) -> ModelError:
    """A model's config could not be read: why, in words, and what to do (not transformers' paragraph)."""
    from huggingface_hub import constants

    name, text = source.display or source.base, str(exc)
    local = "or give a local model folder, a run directory or tiny:default"
    if "trust_remote_code" in text:
        return ModelError(f"{name}: this checkpoint needs code from its own repository to load; pass "
                          "--trust-remote-code (trust_remote_code: true) only for a repository you trust")
    if Path(source.base).exists():
        return ModelError(f"{name}: cannot read the model's config ({text.splitlines()[0] if text else exc!r})")
    if constants.HF_HUB_OFFLINE:
        return ModelError(f"{name}: not in the local Hugging Face cache, and Hub access is off (HF_HUB_OFFLINE=1): "
                          f"check the id, download the model once with Hub access, {local}")
    if "not a valid model identifier" in text or "Repository Not Found" in text or "404" in text:
        return ModelError(f"{name}: no such model on the Hugging Face Hub (or it is private or gated: log in with "
                          f"`hf auth login`): check the id (owner/name), {local}")
    return ModelError(f"{name}: could not reach the Hugging Face Hub and the model is not in the local cache: "
                      f"check the network or HF_ENDPOINT, {local}")
