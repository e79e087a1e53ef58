"""The one start-up of SFT, GRPO and the estimate: from a config and a dataset to what a run trains on.

`prepare` takes the same steps in the same order for every caller (as a torchtune recipe's `setup`):
the schema → the device and precision → the model source (for GRPO, the SFT adapter it starts from)
→ its family (the first read of the model, where an id that names nothing becomes one clear error)
→ the processor → every blank of the config filled (core.spec.resolve_defaults) → the preprocessing
spec. Loading weights stays with each caller: SFT, GRPO and the estimate load them differently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.config import TrainConfig
from core.errors import ConfigError, DatasetError
from core.layout import FINAL_DIR
from core.models.device import check_runtime, pick_device
from core.models.loading import ModelSource, family_of, load_processor, resolve_model
from core.schema.base import schema_hash
from core.spec import PreprocessSpec, build_spec, is_random_init, resolve_defaults


@dataclass
class RunInputs:
    cfg: TrainConfig  # every blank filled
    source: ModelSource  # the model trained: the base, or for GRPO from an SFT run, that run
    device: str
    precision: str
    family: object  # core.models.Family
    processor: object
    spec: PreprocessSpec  # what the model is fed, saved beside every checkpoint
    random_init: bool  # a tiny random base: from-scratch defaults
    init_spec: PreprocessSpec | None = None  # GRPO from an SFT run: that run's spec (its frames and prompt)


def prepare(cfg: TrainConfig, data, why_schema: str, local_rank: int = 0, world: int = 1) -> RunInputs:
    """RunInputs for training `cfg` on `data` (a core.data.Dataset). `why_schema` ends the error for a
    dataset without a schema; `local_rank`/`world` place this process on its GPU."""
    if data.schema is None:
        raise DatasetError(f"{data.root}: no schema.json; {why_schema}")
    device = pick_device(cfg.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    precision = check_runtime(cfg, device)
    cfg, source, init_spec = _source(cfg, data)
    family = family_of(source, cfg.trust_remote_code)
    processor = load_processor(source, cfg.trust_remote_code)
    random_init = is_random_init(source.base)
    cfg = resolve_defaults(cfg, family, random_init)
    spec = (replace(init_spec, final_dir=FINAL_DIR) if init_spec is not None
            else build_spec(cfg, family, source.base, data.schema))
    return RunInputs(cfg, source, device, precision, family, processor, spec, random_init, init_spec)


def _source(cfg: TrainConfig, data) -> tuple[TrainConfig, ModelSource, PreprocessSpec | None]:
    """The model to train. GRPO given a run directory as the model means to continue from its adapter,
    as init_adapter says (training a new adapter on its base would drop what SFT learned); that run
    must have an adapter and the dataset's schema."""
    source = resolve_model(cfg.model)
    if cfg.method != "grpo":
        return cfg, source, None
    if not cfg.init_adapter and source.adapter is not None:
        cfg = replace(cfg, init_adapter=cfg.model)
    if not cfg.init_adapter:
        return cfg, source, None
    source = resolve_model(cfg.init_adapter)
    if source.adapter is None:
        raise ConfigError(f"init_adapter {cfg.init_adapter}: not a run directory with a LoRA adapter in {FINAL_DIR}/")
    init_spec = PreprocessSpec.load(source.run_dir)
    if init_spec.schema_hash != schema_hash(data.schema):
        raise ConfigError(f"init_adapter {cfg.init_adapter} was trained on another schema than {data.root}")
    return cfg, source, init_spec
