"""Pre-launch estimate of a training run: tokens per clip, sequence length, parameters, memory, time.

Nothing is trained; no weights are loaded except for the expected duration, which times a few
real steps of the configured model on one real batch (core.train.timing; `time_steps=0` skips it).
Token counts are exact: one clip (or a sample) is sampled and encoded by the trainer's own `encode_split`, so the numbers are what training will
feed. Parameters are counted on the model built from its config on the `meta` device with the run's
LoRA / freezing applied (`core.train.setup.apply_trainable`), grouped by `core.models.families.module_group`.

Memory (bytes, for the chosen device) is the steady-state peak of a training step, from the second
step on, when every term below is alive at once:

  weights      every parameter at its dtype: a frozen LoRA base at the run's precision (bf16/fp16, bf16
               also on CPU when asked for; fp32 under fp32, what auto is on CPU: core.models.device.weight_dtype),
               4-bit NF4 (~0.52 B/param) for QLoRA's quantised language linears,
               fp32 for everything that trains (including PEFT's modules_to_save copies, which sit
               beside the frozen originals)
  gradients    4 B per trainable parameter
  optimizer    AdamW: 8 B per trainable parameter (exp_avg + exp_avg_sq, fp32). Adafactor
               (transformers' defaults in the Trainer, no first moment): factored second moment,
               4 B x (rows + cols) for a matrix (for N-d weights rows = prod(shape[:-1]),
               cols = prod(shape[:-2]) x shape[-1]), 4 B x n for vectors
  activations  what autograd keeps for the backward pass of one micro-batch of b clips padded to
               the longest sequence s (act = 4 B in fp32, 2 B under bf16/fp16 autocast):
                 language decoder layer, per token: 6h + 2kv + 4I (gated MLP; 2I plain) + r per
                   LoRA-adapted linear (+ 3h + kv when the RMSNorm weights train, as in a full
                   fine-tune), where h hidden, kv = key/value width, I intermediate; x L layers x b*s
                   x act. Measured, not derived: the live tensor bytes of a real training step (torch
                   profiler, profile_memory) at real widths with 2 and 8 decoder layers grow by
                   25,208 x 4 B per token per layer for InternVL3-1B (Qwen2: h 896, kv 128, I 4864)
                   and 49,170 x 4 B for SmolVLM2-2.2B (Llama: h 2048, kv 2048, I 8192), both within
                   0.2% of 6h + 2kv + 4I + 7r (the 9h + 2kv + 2 head_dim counted before was 11% and
                   13% high: q/k before RoPE and a GQA copy of k/v are not kept under SDPA);
                   eager attention adds 2 x heads x s per token (probabilities and softmax)
                 the shared 4-D padding mask, b x s^2 x act, only for a model with remote code:
                   the trainer drops the mask of its right-padded batches (core.models.inputs.
                   for_causal_training), so SDPA builds none
                 logits for the loss: 3 x b x a x vocab x 4 B (the fp32 log-softmax kept for the
                   backward, then its gradient and the logits' gradient at the start of backward),
                   a = positions the trainer projects onto the vocabulary (core.train.sft.workbench_trainer:
                   the union of supervised positions over the batch, not all s): the span from the
                   earliest answer start to the latest answer end over the sampled clips, at most
                   b x the longest answer (prompts of different lengths shift answers apart)
                 vision tower, only when it trains (or LoRA reaches it): per patch token 10 hv + 2 Iv
                   (4 Iv gated) x depth; projector when it (or the tower) trains: 5 x merge^2 x hv
                   per visual token. Patch tokens are counted from the clip's encoded pixel values
                   (values / (channels x temporal patch x patch area)); without a clip they are visual
                   tokens x merge^2, merge being each family's spatial reduction per side: Qwen's
                   spatial_merge_size, InternVL's pixel shuffle (1 / downsample_ratio), SmolVLM's
                   pixel shuffle (scale_factor), the LLaVA video pooling stride (2)
                 inputs: pixel values (fp32) and token tensors (4 x int64 per token) of the batch in
                   use and of the one the data loader fetched ahead, and 2 x b*s*h for the embeddings
               Gradient checkpointing keeps only each layer's input (h per token, per layer; hv per
               patch per vision block) plus one layer's full activations during its recomputation.

  runtime      on CPU only, CPU_RUNTIME (880 MiB): what a training process holds beside its tensors
               and the encoded-clip cache (interpreter, torch, transformers, processor, trainer),
               measured as RSS before step 1 minus weights minus cache: 690-740 MiB at real widths
               (InternVL3-1B and SmolVLM2-2.2B with 2 and 8 layers) and 785 MiB on the tiny model on
               a 2-core AMD EPYC, 973 MiB on the tiny model on the CI machine (most of it is
               imports: torch alone holds ~500 MiB, peft adds ~200); 880 is the middle, within
               ±12% of each. 0 on CUDA, where the host's RAM is not the device's
On CPU the training process (and the estimate's timing) sets glibc's mmap threshold to 1 MiB
(core.train.runtime.return_freed_tensors): with glibc's default a step raised the RSS 1.5-2.5x as
much as its live tensors, and the RSS grew from step to step (freed heap holes stay resident), and with it the
peak RSS is weights + runtime + the live tensor peak, which is what this estimate adds up. A model
under 100M parameters (the tiny builds) goes back to a 32 MiB threshold once loaded, which is faster
for its many small tensors (core.train.runtime.SMALL_MODEL_PARAMS).

Not counted: the CUDA runtime (context and library workspaces, ~0.5-1 GB per GPU process), the
data path (host RAM, reported separately: `data_bytes`, the encoded-clip cache up to
`encoded_cache_mb` plus the batches loader workers queue, core.train.stream; it does not grow with
the clip count beyond the cache), the CUDA caching allocator's reserve beyond what it hands out,
transient peaks that are over before the decoder's activations build up (a frozen vision tower's
forward: ~0.3-0.4 GB at these sizes, measured), and DeepSpeed/FSDP
sharding (the estimate is per process, unsharded). On CPU the device memory is the host's RAM, on
CUDA the GPU's total. tests/train/test_estimate.py compares gradients + optimizer + activations with the
peak RSS increase of a real training loop on the tiny model, and the runtime with its RSS before
the loop (and explains how it measures). bench/real_size.py measures the whole at real sizes
(BENCHMARKS.md section 11).
"""

from __future__ import annotations

import math
import os

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.errors import ConfigError, DatasetError
from core.models.device import weight_dtype
from core.models.families import module_group
from core.models.inputs import IGNORE_INDEX, vision_placeholder_ids
from core.schema.base import label_errors
from core.train.estimate_parts import (
    Dims,
    activation_bytes,
    lora_linears_per_layer,
    model_dims,
    optimizer_bytes,
    patch_area,
    vision_merge,
)
from core.train.prepare import prepare
from core.train.setup import apply_trainable, encode_split
from core.train.stream import LOADER_PREFETCH, cache_budget, loader_workers, training_pool
from core.train.timing import TIMED_STEPS, calibrate, expected_duration, format_duration

QLORA_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)  # NF4 + double-quantised absmax per 64-block
GiB = 1024 ** 3
# RSS of a CPU training process beside its tensors and the encoded-clip cache: interpreter, torch,
# transformers, processor, trainer (measured 690-973 MiB before step 1 across models and machines,
# module docstring); the middle, so no machine measured so far is more than 12% away
CPU_RUNTIME = 880 * 2 ** 20
__all__ = ["Dims", "activation_bytes", "data_path_bytes", "estimate", "format_estimate", "model_dims",
           "optimizer_bytes", "patch_area", "vision_merge"]


def device_memory(device: str) -> tuple[int, str]:
    """(bytes, what) of the memory a run on `device` has: GPU total, or host RAM on CPU."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        return props.total_memory, f"{props.name} memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM"


def meta_model(source, cfg: TrainConfig, family):
    """The run's model (LoRA/freezing applied) with no storage: shapes, dtypes and names only."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText


    config = AutoConfig.from_pretrained(source.base, trust_remote_code=cfg.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, trust_remote_code=cfg.trust_remote_code)
        model = apply_trainable(model, cfg, family)
    return model, config


def encoded_lengths(data, pspec, processor, clip: str | None, sample: int) -> dict:
    """Exact token counts from the trainer's encoder on real clips (fed as `pspec` says): the sample,
    plus `clip`."""
    pool = training_pool(data)[0]  # what training would draw from
    chosen = [s for s in pool if not label_errors(data.schema, s.label)][:sample]
    if clip is not None:
        match = [s for s in data.samples if s.rel == clip or str(s.video) == str(clip)]
        if not match:
            raise DatasetError(f"{data.root}: no clip {clip!r} in metadata.jsonl")
        chosen = [match[0]] + [s for s in chosen if s.rel != match[0].rel]
    placeholders = vision_placeholder_ids(processor)
    lengths, visual, pixels, answers, spans, example_bytes = {}, {}, {}, {}, [], []
    for s in chosen:
        examples, why = encode_split([s], data.schema, processor, pspec.sampling_spec, pspec.instruction, pspec.frames_as)
        if not examples:
            if clip is not None and s is chosen[0]:  # never another clip's numbers under this one's name
                raise DatasetError(f"--clip {clip}: cannot be estimated: {why[0] if why else 'not encoded'}")
            continue
        ids = examples[0]["input_ids"][0]
        lengths[s.rel] = int(ids.shape[0])
        visual[s.rel] = sum(int((ids == t).sum()) for t in placeholders)
        supervised = (examples[0]["labels"][0] != IGNORE_INDEX).nonzero().flatten()
        answers[s.rel] = int(supervised.numel())
        spans.append((int(supervised.min()), int(supervised.max()) + 1) if supervised.numel() else (0, 0))
        pixels[s.rel] = sum(v.numel() for k, v in examples[0].items() if k.startswith("pixel_values"))
        example_bytes.append(sum(v.numel() * v.element_size() for v in examples[0].values() if hasattr(v, "numel")))
    if not lengths:
        raise DatasetError(f"{data.root}: none of the sampled clips could be encoded")
    first = next(iter(lengths))
    return {"clip": first, "clip_seq_len": lengths[first], "visual_tokens": visual[first], "pixel_values": pixels[first],
            "max_seq_len": max(lengths.values()), "max_answer_tokens": max(answers.values()),
            # right padding: answers of clips with different prompt lengths sit at different positions
            "answer_span": max(e for _, e in spans) - min(b for b, _ in spans), "mean_seq_len": round(sum(lengths.values()) / len(lengths), 1),
            "sampled_clips": len(lengths), "train_clips": len(pool),
            "example_bytes": int(sum(example_bytes) / len(example_bytes))}


def estimate(cfg: TrainConfig, dataset_dir, clip: str | None = None, sample: int = 16, schema_path=None,
             time_steps: int = TIMED_STEPS) -> dict:
    """The estimate for training `cfg` on `dataset_dir` (sizes in bytes; see the module docstring).
    With `time_steps` > 0 it also loads the model and times that many real training steps for the
    expected duration (core.train.timing); 0 skips that and loads no weights."""
    if cfg.method not in ("lora", "qlora", "full"):
        raise ConfigError(f"the estimate covers supervised fine-tuning (lora, qlora, full), not method {cfg.method}")
    data = load_dataset(dataset_dir, schema_path)
    inputs = prepare(cfg, data, "the prompt and answers are built from it")
    cfg, source, device, precision, family, processor = (inputs.cfg, inputs.source, inputs.device, inputs.precision,
                                                         inputs.family, inputs.processor)
    tokens = encoded_lengths(data, inputs.spec, processor, clip, sample)
    pixel_values = tokens.pop("pixel_values")

    model, config = meta_model(source, cfg, family)
    names = [n for n, _ in model.named_parameters()]
    dims = model_dims(config, names)
    patches = pixel_values // dims.patch_values if pixel_values else None
    frozen_bytes = weight_dtype(cfg, precision).itemsize
    groups = {g: {"total": 0, "trainable": 0} for g in ("vision", "projector", "language")}
    weights, trainable_shapes = 0, []
    quantised = _qlora_quantised(model, family) if cfg.method == "qlora" else set()
    for name, p in model.named_parameters():
        g = groups[module_group(name, family)]
        g["total"] += p.numel()
        if p.requires_grad:
            g["trainable"] += p.numel()
            trainable_shapes.append(tuple(p.shape))
            weights += 4 * p.numel()
        elif name in quantised:
            weights += QLORA_BYTES_PER_PARAM * p.numel()
        else:
            weights += frozen_bytes * p.numel()
    trainable = sum(math.prod(s) for s in trainable_shapes)
    vision_trains = any(p.requires_grad for n, p in model.named_parameters() if module_group(n, family) == "vision")
    projector_trains = any(p.requires_grad for n, p in model.named_parameters()
                           if module_group(n, family) == "projector")
    lora_width = cfg.lora_r * lora_linears_per_layer(model) if cfg.method in ("lora", "qlora") else 0
    act = 4 if precision == "fp32" else 2
    norms_train = any(p.requires_grad for n, p in model.named_parameters() if "layers.0.input_layernorm" in n)
    acts = activation_bytes(dims, cfg.batch_size, tokens["max_seq_len"], tokens["visual_tokens"], act,
                            cfg.gradient_checkpointing, vision_trains, projector_trains, lora_width, norms_train,
                            patches, min(tokens["answer_span"], cfg.batch_size * tokens["max_answer_tokens"]),
                            padding_mask=cfg.trust_remote_code)
    memory = {"weights": int(weights), "gradients": 4 * trainable,
              "optimizer": optimizer_bytes(cfg.optimizer, trainable_shapes), "activations": sum(acts.values()),
              "runtime": CPU_RUNTIME if device == "cpu" else 0}
    memory["total"] = sum(memory.values())
    capacity, what = device_memory(device)
    path = data_path_bytes(cfg, tokens["example_bytes"], tokens["train_clips"], device)
    need = memory["total"] + (path["total"] if device == "cpu" else 0)
    duration, warnings = None, []
    # timing loads the model and trains: only for a run the memory estimate says fits
    if time_steps and need <= capacity:
        measured = calibrate(cfg, data, source, processor, family, inputs.spec, device,
                             precision, steps=time_steps)
        duration = expected_duration(cfg, measured, tokens["train_clips"], path["workers"])
    elif time_steps:
        warnings.append("expected duration not measured: timing loads the model and trains a few steps, and this "
                        "run does not fit (below)")
    data = path
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device != "cpu" and data["total"] > host / 2:
        warnings.append(f"the data path holds {data['total'] / GiB:.1f} GiB of host RAM ({data['processes']} processes), "
                        f"more than half of the {host / GiB:.1f} GiB here: lower encoded_cache_mb or dataloader_workers")
    if need > capacity:
        warnings.append(f"estimated {need / GiB:.1f} GiB exceeds the {capacity / GiB:.1f} GiB of {what}: lower "
                        "batch_size (raise grad_accum), turn on gradient_checkpointing, use adafactor, fewer or "
                        "smaller frames, or qlora on a GPU")
    return {
        "model": cfg.model, "family": family.name, "method": cfg.method, "device": device, "precision": precision,
        "frames": cfg.num_frames if cfg.sampling == "uniform" else None,
        "frame_size": [cfg.frame_width, cfg.frame_height], "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
        "optimizer": cfg.optimizer, "gradient_checkpointing": cfg.gradient_checkpointing, **tokens,
        "vision_patches": patches,
        "parameters": {"total": sum(g["total"] for g in groups.values()), "trainable": trainable, **groups},
        "memory": memory, "activation_parts": acts, "data_path": data,
        "device_memory": capacity, "device_memory_what": what, "warnings": warnings, "duration": duration,
    }


def data_path_bytes(cfg: TrainConfig, example: int, clips: int, device: str) -> dict:
    """Host memory of the streaming data path (core.train.stream), for all training processes on
    this machine: per process, encoded clips cached after first use (at most encoded_cache_mb, and
    only with 0 or 1 loader workers) and the batches each worker queues ahead. The batch in use and
    the one fetched ahead are in the activations term."""
    processes = max(cfg.num_processes, 1)
    # the workers training will use, /dev/shm check included (what it would drop is not queued)
    workers = loader_workers(cfg.dataloader_workers, device, processes, example * cfg.batch_size, lambda _: None)
    cached = min(cache_budget(cfg.encoded_cache_mb, workers), example * clips)
    queued = workers * LOADER_PREFETCH * cfg.batch_size * example
    return {"cached": cached * processes, "queued": queued * processes, "total": (cached + queued) * processes,
            "workers": workers, "processes": processes, "clips": clips, "example": example,
            "cache_mb": cfg.encoded_cache_mb}


def _qlora_quantised(model, family) -> set[str]:
    """Weights bitsandbytes would store in 4 bits: linear layers outside vision, projector and head."""
    import torch

    skip = tuple(m for m in (family.vision_tower_module, family.projector_module, "lm_head") if m)
    out = set()
    for mname, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(s in mname for s in skip) and "lora_" not in mname:
            out.add(f"{mname}.weight")
    return out


def format_estimate(e: dict) -> str:
    """Human-readable summary (CLI text output and the Train tab)."""
    m, p = e["memory"], e["parameters"]

    def gib(x):
        return f"{x / GiB:.2f} GiB" if x >= GiB / 10 else f"{x / 2 ** 20:.1f} MiB"

    lines = [
        f"model {e['model']} ({e['family']}), {e['method']}, {e['device']} {e['precision']}, "
        f"batch {e['batch_size']} x accum {e['grad_accum']}, {e['optimizer']}"
        + (", gradient checkpointing" if e["gradient_checkpointing"] else ""),
        f"visual tokens per clip: {e['visual_tokens']} ({e['frames'] or 'fps-sampled'} frames at "
        f"{e['frame_size'][0]}x{e['frame_size'][1]})",
        f"sequence length: {e['clip_seq_len']} for {e['clip']}; max {e['max_seq_len']}, mean {e['mean_seq_len']} "
        f"over {e['sampled_clips']} clips",
        f"parameters: {p['total']:,} total, {p['trainable']:,} trainable ("
        + ", ".join(f"{g} {p[g]['trainable']:,}/{p[g]['total']:,}" for g in ("vision", "projector", "language")) + ")",
        f"memory: weights {gib(m['weights'])} + gradients {gib(m['gradients'])} + optimizer {gib(m['optimizer'])} "
        f"+ activations {gib(m['activations'])}" + (f" + runtime {gib(m['runtime'])}" if m.get("runtime") else "")
        + f" = {gib(m['total'])} of {gib(e['device_memory'])} "
        f"{e['device_memory_what']}",
        _data_line(e["data_path"], gib),
        format_duration(e["duration"]) if e.get("duration") else "expected duration: not measured (timing skipped)",
    ]
    if e["device"] == "cpu":
        # bench/real_size.py (BENCHMARKS.md section 11), fp32, 2-core AMD EPYC
        lines.append("note: on CPU the total includes ~0.9 GiB of runtime, and training returns freed tensors to the "
                     "system, so its peak RSS follows this total plus the data path: at real sizes within 1% "
                     "(InternVL3-1B, SmolVLM2-2.2B)")
    lines += [f"warning: {w}" for w in e["warnings"]]
    return "\n".join(lines)


def _data_line(d: dict, gib) -> str:
    full = d["example"] * d["clips"] * d["processes"]
    if d["cached"] >= full:
        cache = f"all {d['clips']} encoded clips cached ({gib(d['cached'])})"
    elif d["cached"]:
        cache = (f"encoded clips cached up to encoded_cache_mb {d['cache_mb']} ({gib(d['cached'])} of the {gib(full)} "
                 f"all {d['clips']} would take; the rest are re-encoded from the frame cache)")
    else:
        cache = "no encoded-clip cache (several loader workers, or encoded_cache_mb 0)"
    per = f" in each of {d['processes']} processes" if d["processes"] > 1 else ""
    return (f"data path in host RAM: {gib(d['total'])}: {cache}, + {d['workers']} loader worker(s){per} x "
            f"{LOADER_PREFETCH} batches queued ({gib(d['queued'])}); {gib(d['example'])} per encoded clip")
