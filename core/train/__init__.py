"""Training a model on a dataset into a run directory (one process per rank, started by core.runs).

`entry.train` checks the config against the machine and dispatches to supervised fine-tuning
(`sft`, Hugging Face Trainer with an answer-only loss) or GRPO with schema rewards (`grpo`,
`rewards`), both started by `prepare` (as the estimate is); `runtime` holds the process-level pieces (ranks, gathering, HF names for our choices), `stream` the data
both loops read (clips checked cheaply at start-up, then sampled and encoded by the data loader as
batches need them), `setup` what else they share (LoRA and freezing, loading for training, the val
evaluator),
`callbacks` keeps the run directory current; `estimate` predicts memory before a run and `timing`
its duration from a few measured steps, `merge` folds
an adapter into its base. Never launches processes or watches runs (core.runs), and builds the
preprocessing spec only through core.spec.
"""

from core.train.entry import train
from core.train.estimate import format_estimate
from core.train.merge import export_run, merge_run
from core.train.runtime import dist_info

__all__ = ["dist_info", "export_run", "format_estimate", "merge_run", "train"]
