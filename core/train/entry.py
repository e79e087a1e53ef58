"""`train`: the one entry a training process calls (`cli.py train`, under accelerate on every rank).

It checks the config against the machine before the run folder is touched, prepares the folder,
loads the dataset and dispatches to supervised fine-tuning (core.train.sft) or GRPO
(core.train.grpo); a crash or Ctrl-C is written to status.json before it propagates, except that a
run refused before its first step removes the folder it created (RunFiles.discard_refused).
"""

from __future__ import annotations

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.errors import WorkbenchError
from core.models.device import check_runtime, pick_device
from core.runs.files import RunFiles
from core.train.grpo import train_grpo
from core.train.runtime import dist_info, finish_distributed
from core.train.sft import train_sft


def train(dataset_dir, run_dir, cfg: TrainConfig, resume: bool = False, schema_path=None, echo=None) -> dict:
    """Fine-tune and write `run_dir`. Returns the final status dict. `echo(step, max_steps, loss)`
    is called at each logging step (the CLI draws a progress bar with it).

    Under torch.distributed (launched by `accelerate launch`/torchrun) every rank trains; only global
    rank 0 (the first process of machine 0 when several machines train) writes the run directory
    (status, log, metrics, final model); HF Trainer saves checkpoints from the same process
    (`save_on_each_node` stays False), each rank adding only its own RNG state file to them."""
    rank, _, _ = dist_info()
    check_runtime(cfg, pick_device(cfg.device))  # refuse what this machine cannot do before touching run_dir
    run = RunFiles(run_dir, writer=rank == 0)  # global rank: not each machine's local rank 0
    before = run.entries()
    run.prepare(resume=resume)
    try:
        loop = train_grpo if cfg.method == "grpo" else train_sft  # GRPO: reinforcement learning, its own loop
        status = loop(load_dataset(dataset_dir, schema_path), run, cfg, resume, echo)
        finish_distributed()
        return status
    except (KeyboardInterrupt, WorkbenchError) as exc:
        # refused (or interrupted) before the first step: nothing worth keeping, and a `crashed`
        # folder would block the same --output once the cause is fixed
        if not run.began() and run.discard_refused(before):
            raise
        if isinstance(exc, KeyboardInterrupt):
            run.write_status(state="stopped", message="interrupted (Ctrl-C)")
        else:
            run.write_status(state="crashed", message=f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        run.write_status(state="crashed", message=f"{type(exc).__name__}: {exc}")
        raise
