"""In-process model manager shared by the tabs: lazy loading, LRU of base models, adapters by name.

A fine-tuned LoRA run is not loaded as a second model: its adapter is attached to the resident
base under the run's name, and the base's own answers come from the same weights with the adapter
disabled. So comparing base and fine-tuned holds one copy of the weights. Merged or fully
fine-tuned runs are bases of their own. One re-entrant lock serialises load / generate / unload
(callers hold `lock` around a whole generate, since switching adapters is global model state).

This module does not decide prompts or sampling (each run's preprocessing spec does) and does not
train; `unload_all` is called before a training run starts.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from core.models.device import pick_device, pick_dtype
from core.models.loading import ModelSource, load_model, resolve_model
from core.schema.calibration import for_run
from core.serve.predictor import Predictor
from core.spec import spec_for

log = logging.getLogger(__name__)


@dataclass
class _Base:
    model: object  # a transformers model, or a PeftModel once an adapter is attached
    processor: object
    family: object
    device: str
    adapters: dict = field(default_factory=dict)  # adapter name → adapter folder


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def adapter_name(run_dir) -> str:
    # PEFT keeps adapters in ModuleDicts, whose keys may not contain "." or "/": name by path hash
    import hashlib
    from pathlib import Path

    return "run_" + hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]


def _predictor_class():
    class SharedPredictor(Predictor):
        """A Predictor over a shared base that switches to its adapter (or none) for each generate."""

        adapter: str | None = None

        def generate(self, frames_list, *args, **kwargs):
            with self._active():
                return super().generate(frames_list, *args, **kwargs)

        def _active(self):
            from peft import PeftModel

            if not isinstance(self.model, PeftModel):
                return contextlib.nullcontext()
            if self.adapter is None:
                return self.model.disable_adapter()
            self.model.set_adapter(self.adapter)
            return contextlib.nullcontext()

    return SharedPredictor


class ModelManager:
    def __init__(self, max_resident: int = 2, device: str = "auto"):
        self.max_resident = max_resident
        self.device = device
        self.lock = threading.RLock()
        self._bases: OrderedDict[str, _Base] = OrderedDict()

    def get(self, name: str, schema: dict | None = None, trust_remote_code: bool = False):
        """A predictor for `name` (tiny:…, hub id, folder or run dir); base weights shared across runs."""
        with self.lock:
            source = resolve_model(name)
            base = self._base(source.base, trust_remote_code)
            adapter = None
            if source.adapter is not None:
                adapter = self._attach(base, adapter_name(source.run_dir), source.adapter)
            spec = spec_for(source, base.family, schema)
            predictor = _predictor_class()(base.model, base.processor, base.family, spec, base.device,
                                           name=source.display, calibration=for_run(source.run_dir))
            predictor.adapter = adapter
            return predictor

    def _base(self, path: str, trust_remote_code: bool) -> _Base:
        if path in self._bases:
            self._bases.move_to_end(path)
            return self._bases[path]
        while len(self._bases) >= self.max_resident:
            old, _ = self._bases.popitem(last=False)
            log.info("unloading %s (least recently used)", old)
            self._free()
        device = pick_device(self.device)
        model, processor, family = load_model(ModelSource(base=path), device, pick_dtype(device), trust_remote_code)
        self._bases[path] = _Base(model, processor, family, device)
        return self._bases[path]

    def _attach(self, base: _Base, name: str, folder) -> str:
        from peft import PeftModel

        if name in base.adapters:
            return name
        if isinstance(base.model, PeftModel):
            base.model.load_adapter(str(folder), adapter_name=name)
        else:
            base.model = PeftModel.from_pretrained(base.model, str(folder), adapter_name=name)
        base.model.to(base.device)
        base.model.eval()
        base.adapters[name] = str(folder)
        return name

    def unload_all(self) -> None:
        with self.lock:
            self._bases.clear()
            self._free()

    @staticmethod
    def _free() -> None:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def loaded(self) -> list[str]:
        with self.lock:
            return list(self._bases)

    def status(self) -> list[dict]:
        """What is resident: base path, device, parameter bytes, attached adapters.

        Read without the lock (a snapshot of the dict, read-only walks of the weights): a status line
        must never wait for a generate that another thread is running."""
        out = []
        for path, b in list(self._bases.items()):
            size = sum(p.numel() * p.element_size() for p in b.model.parameters())
            out.append({"base": path, "device": b.device, "param_bytes": size, "adapters": list(b.adapters)})
        return out

    def status_line(self) -> str:
        items = self.status()
        if not items:
            return "No model loaded."
        parts = [f"{s['base'].split('/')[-1]} on {s['device']} ({s['param_bytes'] / 2**20:.0f} MiB"
                 + (f", {len(s['adapters'])} adapter(s)" if s["adapters"] else "")
                 + ")" for s in items]
        extra = ""
        try:
            import torch

            if torch.cuda.is_available():
                extra = f" · CUDA {torch.cuda.memory_allocated() / 2**30:.1f} GiB allocated"
        except ImportError:
            pass
        return "Loaded: " + "; ".join(parts) + f" · process RSS {rss_bytes() / 2**30:.2f} GiB" + extra
