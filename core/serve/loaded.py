"""A predictor for one job (a prediction file, pre-labels, an evaluation), however the caller holds models.

The app passes its core.serve.ModelManager: the predictor shares resident weights and the job runs
under the manager's lock (switching adapters is global model state). The CLI passes none: the model
is loaded on its own for the job with `Predictor.load`. Either way a base model is asked with the
schema given, a run with the schema it was trained with. This module decides no schema.
`check_at_least` refuses the counts a job cannot run with (a batch of 0 clips, 0 new tokens).
"""

from __future__ import annotations

import contextlib

from core.errors import ConfigError
from core.serve.predictor import Predictor


@contextlib.contextmanager
def loaded_predictor(name: str, schema: dict | None = None, models=None, device: str = "auto",
                     trust_remote_code: bool = False):
    """Yield a predictor for `name`: through `models` (held locked until the block ends), else loaded here."""
    if models is not None:
        with models.lock:
            yield models.get(name, schema=schema, trust_remote_code=trust_remote_code)
        return
    yield Predictor.load(name, schema=schema, device=device, trust_remote_code=trust_remote_code)


def check_at_least(minimum: int, **flags) -> None:
    """Refuse a count below `minimum` (ConfigError), named by the flag a person typed: batch_size -> --batch-size."""
    for name, value in flags.items():
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")
