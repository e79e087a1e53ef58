"""In-process model manager shared by the tabs: lazy loading, at most N resident, one lock.

This first version keeps whole predictors (model + processor + spec) by name with LRU eviction.
Attaching several adapters to one resident base lives here too once compare needs it.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(self, max_resident: int = 2, device: str = "auto"):
        self.max_resident = max_resident
        self.device = device
        self.lock = threading.RLock()  # serialises load / generate / unload
        self._resident: OrderedDict[tuple, object] = OrderedDict()

    def get(self, name: str, schema: dict | None = None):
        """The Predictor for `name`, loading it (and evicting the least recently used) if needed."""
        from core.inference import Predictor
        from core.schema import schema_hash

        key = (name, schema_hash(schema) if schema else None)
        with self.lock:
            if key in self._resident:
                self._resident.move_to_end(key)
                return self._resident[key]
            while len(self._resident) >= self.max_resident:
                old, _ = self._resident.popitem(last=False)
                log.info("unloading %s", old[0])
                gc.collect()
            predictor = Predictor.load(name, schema=schema, device=self.device)
            self._resident[key] = predictor
            return predictor

    def unload_all(self) -> None:
        with self.lock:
            self._resident.clear()
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass

    def loaded(self) -> list[str]:
        with self.lock:
            return [k[0] for k in self._resident]
