"""The app's one object, built by app.py and handed to every tab: paths plus the shared model manager.
(The CLI's commands call core functions directly and build none.)

`start_training` is how the app starts a run: it refuses what this machine or deployment cannot do
before anything is unloaded or launched, frees the app's models, then launches through the run
manager. No module-level globals: tests build their own Workspace on temp folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.data.dataset import METADATA, SCHEMA
from core.data.store import AnnotationStore
from core.errors import DatasetError
from core.layout import FINAL_DIR
from core.models import family_for_model_type, resolve_model
from core.models.device import check_runtime, pick_device
from core.models.families import TINY_DEFAULT
from core.paths import REPO_ROOT, default_dataset
from core.runs.manager import RunManager
from core.serve.manager import ModelManager
from core.spec import default_sampling, has_final_model


@dataclass
class Workspace:
    dataset_dir: Path | None = None  # None: a copy of the bundled sample_videos (core.paths.default_dataset)
    runs_dir: Path = REPO_ROOT / "checkpoints"
    default_model: str = TINY_DEFAULT
    models: ModelManager = field(default_factory=ModelManager)

    _sampling: object = field(default=None, repr=False)
    _stores: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.dataset_dir = Path(self.dataset_dir) if self.dataset_dir is not None else default_dataset()
        self.runs_dir = Path(self.runs_dir)
        self.runs = RunManager(self.runs_dir)

    @property
    def store(self) -> AnnotationStore:
        """One store per dataset folder for the Workspace's life, shared by the tabs: its index (rows,
        label checks, statuses) is built once and kept current by its own writes and the file's
        fingerprint, where a new store per call rebuilt it (seconds at 100,000 clips, per Compare
        refresh). The store is thread-safe (the app's request threads share it)."""
        key = str(self.dataset_dir)
        if key not in self._stores:
            self._stores[key] = AnnotationStore(self.dataset_dir)
        return self._stores[key]

    def open_note(self) -> str | None:
        """Checked before the app is built: a dataset folder that does not exist is refused (a typo
        used to open an empty app that said "0 clips"); one with no clips and no schema yet is a
        new dataset, and the returned note says how to start it. None for an existing dataset."""
        root = self.dataset_dir
        if not root.exists():
            raise DatasetError(f"dataset folder {root} does not exist (check the path; to start a new dataset, "
                               f"create the empty folder first)")
        if not root.is_dir():
            raise DatasetError(f"dataset folder {root} is not a folder")
        has_clips = (root / METADATA).is_file() or any((root / "videos").glob("*"))
        if has_clips or (root / SCHEMA).is_file():
            return None
        return (f"**New dataset** in `{root}`: no clips and no schema yet. Start in the **Schema** tab (pick a preset "
                f"or write your own, then Save), then add clips in **Annotate → Add clips**.")

    def fold_pending(self) -> None:
        """Write every open store's pending saves (metadata.pending.jsonl) into its metadata.jsonl, so
        scripts reading the file see them: the app calls this when idle and when it closes."""
        for store in list(self._stores.values()):
            store.fold()

    def preview_sampling(self):
        """The frames the default model is trained on: what the Annotate tab shows under the player."""
        if self._sampling is None:
            import json


            source = resolve_model(self.default_model)
            family = family_for_model_type(json.loads((Path(source.base) / "config.json").read_text())["model_type"])
            self._sampling = default_sampling(source, family)
        return self._sampling

    def start_training(self, dataset, name: str, config) -> Path:
        """Start a training run `name` on `dataset` with the validated TrainConfig `config`.

        Refused with a typed error, before the app's models are unloaded: what this machine cannot
        do (qlora without bitsandbytes or CUDA, a precision the device lacks: the same check the
        training process makes), what the deployment's policy forbids, a bad or taken run name, a
        run still going. The models are unloaded only once the launch is certain."""
        check_runtime(config, pick_device(config.device))
        # the run manager checks busy, policy and name, then calls before_launch just before starting
        return self.runs.start(dataset, name, config, before_launch=self.models.unload_all)

    def finished_runs(self) -> list[Path]:
        """Run directories that hold a final model, newest first: by when the final model was written,
        not the run folder's time, which moves whenever a run is merged, published or evaluated
        (that made an old run the "newest" and moved every picker to it)."""
        if not self.runs_dir.is_dir():
            return []
        runs = [p for p in self.runs_dir.iterdir() if has_final_model(p)]
        return sorted(runs, key=lambda p: (p / FINAL_DIR).stat().st_mtime, reverse=True)

    def model_choices(self) -> list[str]:
        return [self.default_model] + [str(p) for p in self.finished_runs()]
