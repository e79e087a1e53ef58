"""The embedded default: tiny models of real architectures, built offline and deterministically.

`ensure_tiny(name)` builds the model once into the cache (a normal Hugging Face folder: config,
safetensors weights, tokenizer, processor with chat template) and returns its path, so everything
downstream loads it with the same `from_pretrained` code a hub model takes. The weights are random:
the base emits noise, which is the point of the demo. This module builds the Qwen ones (`default`,
`qwen3_vl`, `qwen2_5_vl`) and the shared tokenizer; `core.models.tiny.families` builds one per other family
in the table (`tiny:internvl`, `tiny:smolvlm`, `tiny:llava_onevision`, `tiny:llava_next_video`).
It does not train or run models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from core.errors import ModelError
from core.layout import TINY_SPEC_FILE
from core.models.tiny.families import BUILDERS_BY_ARCH, TinyVLMSpec
from core.models.tiny.qwen import TinyQwen3Spec, TinyQwenSpec, build_qwen, build_qwen3
from core.models.tiny.tokenizer import tokenizer_corpus
from core.paths import cache_dir

# Bump when the builder changes what it writes, so old cached builds are not reused.
BUILDER_VERSION = 1


def _family_spec(arch: str):
    return TinyVLMSpec(arch=arch)


# name -> spec; the spec's `arch` picks the builder (`_builder`).
TINY_MODELS = {
    "default": TinyQwen3Spec(), "qwen3_vl": TinyQwen3Spec(), "qwen2_5_vl": TinyQwenSpec(),
    **{arch: _family_spec(arch) for arch in ("internvl", "smolvlm", "llava_onevision", "llava_next_video")},
}


def spec_from_dict(recorded: dict):
    """The spec dataclass of a recorded `tiny_spec.json` (its `arch` picks the class)."""
    fields = {k: v for k, v in recorded.items() if k != "name"}
    arch = fields.get("arch", "qwen2_5_vl")
    cls = {"qwen3_vl": TinyQwen3Spec, "qwen2_5_vl": TinyQwenSpec}.get(arch, TinyVLMSpec)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _builder(arch: str):
    if arch == "qwen3_vl":
        return build_qwen3
    if arch == "qwen2_5_vl":
        return build_qwen

    if arch not in BUILDERS_BY_ARCH:
        raise ModelError(f"no tiny builder for architecture {arch!r}")
    return BUILDERS_BY_ARCH[arch]


def _spec_key(name: str, spec) -> str:
    # The tokenizer corpus is part of what is built: a changed preset must not reuse an old build.
    corpus = hashlib.sha256("\n".join(tokenizer_corpus()).encode()).hexdigest()
    blob = json.dumps({"name": name, "v": BUILDER_VERSION, "spec": asdict(spec), "corpus": corpus}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_tiny(name: str = "default", spec: dict | None = None) -> Path:
    """Path of the built tiny model `name`, building it on first use (< 1 s).

    `spec` (a recorded `tiny_spec.json`) rebuilds exactly the model a run was trained on, even
    after the built-in sizes change: the build is deterministic, so the adapter fits again.
    """
    if name not in TINY_MODELS:
        raise ModelError(f"unknown tiny model 'tiny:{name}'; available: {', '.join('tiny:' + k for k in TINY_MODELS)}")
    spec = spec_from_dict(spec) if spec is not None else TINY_MODELS[name]
    out = cache_dir() / "models" / f"tiny-{name}-{_spec_key(name, spec)}"
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        _builder(spec.arch)(spec, tmp)
        (tmp / TINY_SPEC_FILE).write_text(json.dumps({"name": name, **asdict(spec)}, indent=2))
        try:
            os.replace(tmp, out)  # atomic: a concurrent builder either wins or finds ours
        except OSError:
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
