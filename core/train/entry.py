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
from core.layout import CALIBRATION_FILE, MERGED_DIR
from core.models.device import check_runtime, pick_device
from core.runs.files import RunFiles
from core.spec import copy_calibration
from core.train.grpo import train_grpo
from core.train.runtime import dist_info, finish_distributed
from core.train.sft import train_sft


def _calibrate_at_end(run: RunFiles, data, dataset_dir, cfg: TrainConfig) -> dict:
    """Fit the run's calibration on the val split (core.serve.calibrate). A dataset without one, a
    calibration that fails or is interrupted, leaves the run finished and says so: scores stay raw."""
    from core.serve.calibrate import calibrate_run

    if not data.split("val"):
        run.log("not calibrated: the dataset has no labelled val clips (scores stay raw; every answer "
                "is marked for review)")
        return run.read_status()
    done = run.read_status().get("message") or "finished"  # what training said (e.g. the merge): kept
    run.write_status(message=f"{done}; calibrating per-field confidence on the val split")
    try:
        cal = calibrate_run(run.dir, dataset_dir, "val", device=cfg.device, trust_remote_code=cfg.trust_remote_code,
                            max_new_tokens=cfg.max_new_tokens)
    except (Exception, KeyboardInterrupt) as exc:  # the model is trained and saved: that stands either way
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        run.log(f"not calibrated ({why}); `cli.py calibrate {run.dir} --dataset {dataset_dir}` fits it later")
        return run.write_status(message=f"{done}; not calibrated ({why})")
    run.log(f"calibrated on {cal.clips} val clips: " + ", ".join(
        f"{k} ECE {m.ece_raw}->{m.ece}" for k, m in cal.fields.items()))
    if (run.dir / MERGED_DIR).is_dir():  # merged before calibrating: it answers as the run does
        copy_calibration(run.dir, run.dir / MERGED_DIR)
    return run.write_status(message=f"{done}; confidence calibrated on {cal.clips} val clips")


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
    (run.dir / CALIBRATION_FILE).unlink(missing_ok=True)  # it described the weights training now changes
    try:
        loop = train_grpo if cfg.method == "grpo" else train_sft  # GRPO: reinforcement learning, its own loop
        data = load_dataset(dataset_dir, schema_path)
        status = loop(data, run, cfg, resume, echo)
        finish_distributed()
        if run.writer and cfg.calibrate_at_end and status.get("state") == "completed":
            status = _calibrate_at_end(run, data, dataset_dir, cfg)
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
