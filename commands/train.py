"""`train`, `estimate`, `merge`: fine-tune a model into a run directory, predict a run's cost, fold
a run's adapter into its base.

Every TrainConfig field is a flag (`--field-name`; num_frames also `--frames`) whose help is the
field's doc (core.config.field_docs). The config is built and validated before any ML import, so
a bad value is one error line and no run folder. `cli.py train` is also the command the run manager
launches (core.runs.launch); typed by a user with several processes, it re-launches itself that way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields

from commands.common import LineThrottle, print_json
from core.layout import CONFIG_FILE, DATASET_FILE

CONFIG_HELP = "YAML file with any TrainConfig field (as written to a run's config.yaml); flags override it"


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model on a dataset folder",
                       description="Fine-tune a model on a dataset folder into a run directory.")
    p.add_argument("--dataset", help="dataset folder in the seed layout (videos/, metadata.jsonl, schema.json); "
                                     "with --resume the run's own dataset is the default")
    p.add_argument("--output", metavar="RUN_DIR", help="run directory to create (missing or empty): checkpoints, "
                                                       "logs, metrics and the final model are written there")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint with its "
                                                       "config.yaml (flags given override it)")
    p.add_argument("--print-config", action="store_true", help="print a YAML config of every field at its default, "
                                                               "each under its doc, by group, and exit")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("estimate", help="tokens, parameters, memory and expected duration of a training run")
    p.add_argument("--dataset", required=True, help="dataset folder in the seed layout")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--clip", help="report this clip's exact sequence length (path as in metadata.jsonl)")
    p.add_argument("--sample", type=int, default=16, help="clips encoded for the maximum sequence length")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--time-steps", type=int, default=2,
                   help="real training steps timed (after a warm-up) for the expected duration; loads the model. "
                        "0: skip (no weights loaded, no duration)")
    add_config_flags(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("merge", help="merge a run's LoRA adapter into its base (a plain HF model folder)")
    p.add_argument("run_dir", help="a finished LoRA/QLoRA run directory")
    p.add_argument("--output", help="folder to write (default RUN_DIR/merged)")
    p.set_defaults(func=cmd_merge)


def add_config_flags(p) -> None:
    """Every TrainConfig field as --field-name (num_frames also as --frames), helped by its doc."""
    from core.config import TrainConfig, described, flag_help

    for info in described(TrainConfig):
        flags = ["--" + info.name.replace("_", "-")] + (["--frames"] if info.name == "num_frames" else [])
        base = info.kind.removeprefix("optional ")
        if base in ("bool", "tristate"):
            p.add_argument(*flags, dest=info.name, action=argparse.BooleanOptionalAction, default=None,
                           help=flag_help(info))
        else:
            typ = {"int": int, "float": float}.get(base, str)
            p.add_argument(*flags, dest=info.name, type=typ, default=None, help=flag_help(info))


def train_config(args):
    """TrainConfig from the run's config.yaml (--resume) or --config FILE, then every --flag given;
    validated (core.errors.ConfigError names the bad field)."""
    from core.config import TrainConfig

    if getattr(args, "resume", None):
        cfg = TrainConfig.from_yaml(os.path.join(args.resume, CONFIG_FILE))
    else:
        cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(cfg, f.name, value)
    cfg.validate("command line")
    return cfg


_steps = LineThrottle()


def progress_echo(step: int, max_steps: int, loss: float) -> None:
    """A progress bar redrawn in place on a terminal; elsewhere `step N/M loss L` lines (LineThrottle)."""
    out = sys.stderr
    if out.isatty():
        width = 30
        done = int(width * step / max(max_steps, 1))
        out.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{max_steps} loss {loss:.4f}"
                  + ("\n" if step >= max_steps else ""))
    elif _steps.due(step, max_steps):
        out.write(f"step {step}/{max_steps} loss {loss:.4f}\n")
    out.flush()


def cmd_train(args) -> int:
    if args.print_config:
        from core.config import yaml_docs

        print(yaml_docs(), end="")
        return 0
    if args.resume:
        run_dir = args.resume
        dataset = args.dataset or _dataset_of_run(run_dir)
    else:
        if not args.dataset or not args.output:
            raise SystemExit("error: train needs --dataset DIR and --output RUN_DIR (or --resume RUN_DIR)")
        run_dir, dataset = args.output, args.dataset
    cfg = train_config(args)  # before any ML import: a bad value costs one line, not a model load
    try:
        return _train(args, cfg, run_dir, dataset)
    except KeyboardInterrupt:
        from core.runs.files import interrupted_text

        # Ctrl-C: what was kept and how to go on, not a traceback; 130 is a shell's code for SIGINT
        print(("\n" if sys.stderr.isatty() else "") + interrupted_text(run_dir), file=sys.stderr)
        return 130


def _train(args, cfg, run_dir: str, dataset: str) -> int:
    if "LOCAL_RANK" not in os.environ and "train" in sys.argv:  # typed by a user, not started by a launcher
        from core.runs.launch import plan_launch

        if args.resume and cfg.num_machines > 1 and args.machine_rank is None:
            # config.yaml was written by machine 0 and records its rank: the others must say theirs
            raise SystemExit(f"error: {run_dir} trains on {cfg.num_machines} machines; resume it on each with "
                             "the same command and that machine's --machine-rank (0 on the first)")
        plan = plan_launch(sys.argv[sys.argv.index("train") + 1:], cfg, run_dir)
        if plan.launcher:
            plan.write_config()  # machine 0: RUN/accelerate.yaml; the others write nothing into RUN
            where = f" on machine {cfg.machine_rank} of {cfg.num_machines}" if cfg.num_machines > 1 else ""
            print(f"starting {plan.processes} processes{where}: {' '.join(plan.cmd)}", file=sys.stderr)
            return _launch(plan.cmd)
    from core.train.entry import train
    from core.train.runtime import dist_info

    t0 = time.time()
    status = train(dataset, run_dir, cfg, resume=bool(args.resume), echo=progress_echo)
    if dist_info()[0] == 0:
        print(f"{status['state']}: step {status.get('global_step')} in {time.time() - t0:.0f}s -> {run_dir}")
    return 0


def _launch(cmd: list[str]) -> int:
    """Run the launcher and wait for it. On Ctrl-C the launched processes got the signal too (one
    process group): wait for them to record it (subprocess.call would kill them after 0.25 s)."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # in case only this process was signalled
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _dataset_of_run(run_dir: str) -> str:
    try:
        return open(os.path.join(run_dir, DATASET_FILE)).read().strip()
    except OSError:
        raise SystemExit(f"error: {run_dir}: no dataset.txt; pass --dataset DIR") from None


def cmd_estimate(args) -> int:
    from core.train.estimate import estimate, format_estimate

    report = estimate(train_config(args), args.dataset, clip=args.clip, sample=args.sample, time_steps=args.time_steps)
    if args.json:
        print_json(report)
    else:
        print(format_estimate(report))
    return 0


def cmd_merge(args) -> int:
    from core.train.merge import merge_run

    out = merge_run(args.run_dir, args.output)
    print(f"merged model -> {out} (use it as --model {out})")
    return 0
