"""Training runs as processes, watched through their run directories.

Owns building the launch command (`launch`: plain python or `accelerate launch`, DeepSpeed/FSDP
configs), starting, stopping, resuming and listing runs (`manager`), reading and writing a run
directory's status, log and metrics (`files`) and the Space-mode policy of what may be trained
here (`policy`). Imports no torch and no model library: the app reads runs without loading them.
"""

from core.runs.files import CheckpointError, MetricsWriter, RunFiles, guarded_save
from core.runs.launch import plan_launch, visible_gpus
from core.runs.manager import RunError, RunManager
from core.runs.policy import TrainingPolicy, training_policy

__all__ = ["CheckpointError", "MetricsWriter", "RunError", "RunFiles", "RunManager", "TrainingPolicy",
    "guarded_save", "plan_launch", "training_policy", "visible_gpus"]
