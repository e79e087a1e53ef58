"""`train` and `estimate` refusing bad input with one `error:` line (no traceback), and a refused run
leaving no folder behind that would block the same `--output` (issue #28)."""

from __future__ import annotations

import json
import os

from core.runs.files import RunFiles
from core.runs.launch import free_port
from tests.support import make_dataset, run_cli


def one_error_line(out, *words) -> str:
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, out.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_estimate_with_an_unknown_hub_id_offline_names_it_and_what_to_do(tmp_path):
    root = make_dataset(tmp_path / "d", n=2)
    out = run_cli("estimate", "--dataset", root, "--model", "nobody/no-such-model", "--time-steps", "0", timeout=300,
                  env={"HF_HUB_OFFLINE": "1"})
    line = one_error_line(out, "nobody/no-such-model")
    assert "HF_HUB_OFFLINE" in line and "local model folder" in line  # why, and what to do instead


def test_estimate_with_a_hub_id_and_no_reachable_hub_says_so(tmp_path):
    # run.sh exports HF_HUB_OFFLINE=0, so this is what a user of `bash run.sh cli` without a network sees
    root = make_dataset(tmp_path / "d", n=2)
    out = run_cli("estimate", "--dataset", root, "--model", "nobody/no-such-model", "--time-steps", "0", timeout=300,
                  env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                       "HF_HOME": str(tmp_path / "hf-home")})
    line = one_error_line(out, "nobody/no-such-model")
    assert "could not reach the Hugging Face Hub" in line and "HF_ENDPOINT" in line and "local model folder" in line


def test_estimate_of_an_unreadable_clip_refuses_instead_of_reporting_another_clip(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    (root / "videos" / "clip_0001.mp4").write_bytes(b"not a video at all")
    out = run_cli("estimate", "--dataset", root, "--clip", "videos/clip_0001.mp4", "--time-steps", "0",
                  "--sample", "3", timeout=300)
    one_error_line(out, "videos/clip_0001.mp4", "not a readable video")
    assert "sequence length" not in out.stdout  # no numbers of clip_0000 or clip_0002 under its name


def test_a_config_file_that_is_not_utf8_or_not_a_mapping_is_one_error_naming_it(tmp_path):
    root = make_dataset(tmp_path / "d", n=1)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00 max_steps: 3\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- max_steps: 3\n- lora_r: 4\n")
    for config in (binary, listed):
        out = run_cli("train", "--dataset", root, "--output", tmp_path / "run", "--config", config)
        one_error_line(out, str(config))
        assert not (tmp_path / "run").exists()
    out = run_cli("estimate", "--dataset", root, "--config", binary, "--time-steps", "0")
    one_error_line(out, str(binary), "UTF-8")


def test_a_refused_run_leaves_no_folder_and_the_same_command_works_once_fixed(tmp_path):
    root = make_dataset(tmp_path / "d", n=2)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    (root / "metadata.jsonl").write_text("".join(json.dumps({**r, "split": "val"}) + "\n" for r in rows))
    run = tmp_path / "runs" / "first"
    args = ["train", "--dataset", root, "--output", run, "--max-steps", "1", "--save-steps", "1000",
            "--eval-steps", "0"]
    # refused once the model is loaded and the folder made: no train split (val rows are never trained on)
    one_error_line(run_cli(*args, timeout=600), "train split", "cli.py split")
    assert not run.exists()
    # refused for a model id that names nothing, found after the folder was made
    one_error_line(run_cli(*args, "--model", "nobody/no-such-model", timeout=600), "nobody/no-such-model")
    assert not run.exists()
    (root / "metadata.jsonl").write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    ok = run_cli(*args, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert RunFiles(run).read_status()["state"] == "completed"


def test_discard_refused_removes_only_what_the_attempt_added(tmp_path):
    made = RunFiles(tmp_path / "new")
    assert made.entries() is None
    made.prepare(resume=False)
    (made.dir / "config.yaml").write_text("x: 1\n")
    assert made.discard_refused(None) and not made.dir.exists()

    empty = RunFiles(tmp_path / "empty")
    empty.dir.mkdir()
    before = empty.entries()
    (empty.dir / "checkpoint-1").mkdir()
    (empty.dir / "status.json").write_text("{}")
    assert empty.discard_refused(before) and empty.dir.is_dir() and not os.listdir(empty.dir)

    launched = RunFiles(tmp_path / "launched")  # the app's manager wrote launch files first: keep all
    launched.dir.mkdir()
    (launched.dir / "launch.yaml").write_text("max_steps: 1\n")
    before = launched.entries()
    (launched.dir / "status.json").write_text("{}")
    assert not launched.discard_refused(before) and (launched.dir / "status.json").exists()


def test_a_dataset_with_a_train_split_gets_no_note_about_rows_without_one():
    """The bundled dataset (train/val/test on every row): the pool is its train split, and start-up
    says nothing about rows without a split (it once said "no clip is in the train split" here)."""
    from core.data.dataset import load_dataset
    from core.train.stream import training_pool
    from tests.support import SAMPLES

    data = load_dataset(SAMPLES)
    pool, notes = training_pool(data)
    assert len(pool) == len(data.split("train")) > 0 and notes == []
