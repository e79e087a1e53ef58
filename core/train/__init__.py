"""Training a model on a dataset into a run directory (one process per rank, started by core.runs).

`entry.train` checks the config against the machine and dispatches to supervised fine-tuning
(`sft`, Hugging Face Trainer with an answer-only loss) or GRPO with schema rewards (`grpo`,
`rewards`); `runtime` holds what depends on the device (precision, qlora, ranks), `setup` what both
loops share (encoding clips, LoRA and freezing, loading for training, the val evaluator),
`callbacks` keeps the run directory current; `estimate` predicts memory before a run, `merge` folds
an adapter into its base. Never launches processes or watches runs (core.runs), and builds the
preprocessing spec only through core.spec.
"""

from core.train.entry import train
from core.train.estimate import format_estimate
from core.train.merge import export_run, merge_run
from core.train.runtime import check_runtime, dist_info, resolve_precision

__all__ = ["check_runtime", "dist_info", "export_run", "format_estimate", "merge_run", "resolve_precision", "train"]
