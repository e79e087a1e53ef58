"""Real-size model folders with random weights, built from the published configs (bench/real_size_configs.py).

`ensure_model(name, work)` writes a normal Hugging Face folder (config.json, bf16 safetensors,
processor with tokenizer and chat template) under WORK/models/, keyed by a hash of the config, and
returns it; the product loads it through the same `--model DIR` path a downloaded checkpoint takes
(core.models.loading.resolve_model: a folder with config.json, no tiny_spec.json, so the
pretrained-base defaults apply: frozen vision tower and projector, no trained embeddings).

The processor is the family's real processor class with the reference checkpoint's frame geometry
(core.models.tiny.reference.reference_processor) and a locally built tokenizer of 2,048 tokens; the
config keeps the checkpoint's vocab_size, so the embedding and head are allocated (and trained
through) at full size: memory is the real model's. Special-token ids in config.json are the local
tokenizer's (real_size_configs.with_token_ids).

The model is constructed without initialisation (transformers.initialization.no_init_weights) in
bf16 and filled once: norms 1, biases 0, InternVL's layer scales 0.1, every other weight N(0, 0.02)
from a seeded generator, so a forward is numerically sane (finite loss) at any depth. About 30 s
per billion parameters on one core; the folder is built once and reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from real_size_configs import MODELS, hf_config, published_config, with_token_ids

BUILD_VERSION = 1  # bump when what is written changes
INFO_FILE = "real_size.json"  # what the folder is: hub id, published and built parameter counts


def model_config(name: str, layers: int | None = None) -> tuple[dict, object]:
    """(config dict with the local tokenizer's ids, the processor) of `name`."""
    from core.models.tiny.reference import reference_processor

    family = MODELS[name]["family"]
    processor = reference_processor(family)
    return with_token_ids(published_config(name, layers), family, processor.tokenizer), processor


def folder_for(work: Path, name: str, config: dict, layers: int | None) -> Path:
    key = hashlib.sha256(json.dumps({"v": BUILD_VERSION, "config": config}, sort_keys=True).encode()).hexdigest()[:12]
    return Path(work) / "models" / f"{name}{f'-L{layers}' if layers else ''}-{key}"


def ensure_model(name: str, work: Path, layers: int | None = None, log=print) -> Path:
    """The folder of `name` (built on first use); `layers`: only that many text and vision layers."""
    config, processor = model_config(name, layers)
    out = folder_for(work, name, config, layers)
    if (out / INFO_FILE).is_file():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    t0 = time.perf_counter()
    model = random_model(config)
    count = sum(p.numel() for p in model.parameters())
    log(f"{name}: built {count:,} random parameters in {time.perf_counter() - t0:.0f}s; writing {out}")
    tok = processor.tokenizer
    model.generation_config.update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                   bos_token_id=tok.bos_token_id)
    model.save_pretrained(partial)
    del model
    processor.save_pretrained(partial)
    info = {"name": name, "hub_id": MODELS[name]["hub_id"], "family": MODELS[name]["family"], "layers": layers,
            "parameters": count, "published_parameters": None if layers else MODELS[name]["published_params"],
            "tokenizer_size": len(tok), "build_version": BUILD_VERSION}
    (partial / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    partial.rename(out)
    return out


def random_model(config: dict):
    """The model `config` describes in bf16, with the fill described in the module docstring."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = AutoModelForImageTextToText.from_config(hf_config(config), dtype=torch.bfloat16)
    model.tie_weights()  # skipped with the initialisation; Qwen2.5-VL-3B shares embedding and head
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():  # a tied weight is listed once
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                param.zero_()
            elif leaf.startswith("lambda_"):  # InternViT layer scale
                param.fill_(0.1)
            elif param.ndim == 1 and "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model


def main(argv=None) -> int:
    """`python bench/real_size_build.py NAME --work DIR [--layers N]`: build (or find) the folder and
    print its path. bench/real_size.py runs it as its own process, so the parent that measures the
    training runs never holds the model."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("name", choices=list(MODELS))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--layers", type=int, default=0)
    args = p.parse_args(argv)
    print(ensure_model(args.name, args.work, args.layers or None, log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for core
    sys.exit(main())
