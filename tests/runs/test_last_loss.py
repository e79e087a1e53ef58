"""A stopped or finished run keeps its last logged loss in the runs table: the trainer's closing log
line (train_runtime, no loss) rewrites status.json without one, so the watcher falls back to
metrics.jsonl."""

import json
import os

from core.runs.files import RunFiles
from core.runs.manager import RunManager


def _stopped_run(runs_dir, name="stopped", metrics=None):
    run = RunFiles(runs_dir / name)
    run.dir.mkdir(parents=True)
    rows = metrics if metrics is not None else [
        {"step": 2, "loss": 2.5}, {"step": 4, "loss": 1.25},
        {"step": 4, "eval_schema_valid_rate": 0.5},  # evaluations carry no loss
        {"step": 4, "train_runtime": 3.2, "train_loss": 1.9},  # what the trainer logs when the loop ends
    ]
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the status as the last on_log left it: loss cleared; no live process (pid of this test, not running)
    run.status_path.write_text(json.dumps({"state": "stopped", "global_step": 4, "max_steps": 10, "loss": None,
                                           "pid": os.getpid()}))
    return run


def test_runs_table_shows_the_last_logged_loss_of_a_stopped_run(tmp_path):
    from types import SimpleNamespace

    from tabs.train import runs_table

    _stopped_run(tmp_path)
    manager = RunManager(tmp_path)
    assert manager.state(tmp_path / "stopped")["loss"] == 1.25
    table = runs_table(SimpleNamespace(runs=manager))
    assert table.loc[0, "run"] == "stopped" and table.loc[0, "loss"] == 1.25


def test_status_loss_wins_and_no_metrics_means_no_loss(tmp_path):
    run = _stopped_run(tmp_path, metrics=[])
    assert RunManager(tmp_path).state(run.dir)["loss"] is None
    status = json.loads(run.status_path.read_text())
    run.status_path.write_text(json.dumps(dict(status, loss=0.75)))
    assert RunManager(tmp_path).state(run.dir)["loss"] == 0.75


def test_last_logged_finds_a_loss_logged_before_a_long_tail(tmp_path):
    rows = [{"step": 1, "loss": 3.0}] + [{"step": 1, "eval_per_field": {"x": "y" * 100}} for _ in range(2000)]
    run = _stopped_run(tmp_path, metrics=rows)
    assert run.metrics_path.stat().st_size > 65536  # beyond the tail the reader looks at first
    assert run.last_logged("loss") == 3.0 and run.last_logged("nothing") is None


def test_the_log_tail_is_the_last_lines_whatever_the_log_holds(tmp_path):
    run = RunFiles(tmp_path)
    assert run.log_tail(12) == ""  # no log yet
    (tmp_path / "train.log").write_text("a\nb\n")
    assert run.log_tail(12) == "a\nb"
    # a long log (one line per skipped clip of a large dataset): only its end is read, never a cut line
    (tmp_path / "train.log").write_text("".join(f"skipped clip_{i:06d}.mp4: {'x' * (i % 90)}\n" for i in range(50_000)))
    tail = run.log_tail(12).splitlines()
    assert tail == (tmp_path / "train.log").read_text().splitlines()[-12:]
