"""One object that the app and the CLI build and pass around: paths plus the shared model manager.

No module-level globals: tests build their own Workspace on temp folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.model_manager import ModelManager
from core.models import SPEC_FILE, TINY_DEFAULT
from core.paths import REPO_ROOT
from core.runs import RunManager


@dataclass
class Workspace:
    dataset_dir: Path = REPO_ROOT / "sample_videos"
    runs_dir: Path = REPO_ROOT / "checkpoints"
    default_model: str = TINY_DEFAULT
    models: ModelManager = field(default_factory=ModelManager)

    def __post_init__(self):
        self.dataset_dir = Path(self.dataset_dir)
        self.runs_dir = Path(self.runs_dir)
        self.runs = RunManager(self.runs_dir)

    def finished_runs(self) -> list[Path]:
        """Run directories that hold a final model, newest first."""
        if not self.runs_dir.is_dir():
            return []
        runs = [p for p in self.runs_dir.iterdir() if (p / SPEC_FILE).is_file() and (p / "final").is_dir()]
        return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)

    def model_choices(self) -> list[str]:
        return [self.default_model] + [str(p) for p in self.finished_runs()]
