"""The CLI as a user runs it: subprocesses, exit codes, one-line errors, help on every flag."""

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from core.config import TrainConfig, field_docs
from core.video.sampling import fps_indices, uniform_indices
from tests.support import REPO, SAMPLES, make_bad_files, run_cli

CLIP = SAMPLES / "videos" / "clip_0000.mp4"


def test_inspect_video_json_reports_probe_and_uniform_indices():
    out = run_cli("inspect-video", CLIP, "--frames", "8", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["frame_count"] == 30 and report["width"] == 160 and report["height"] == 96
    assert report["keyframe_count"] >= 1 and report["fps"] == 10.0
    assert report["indices"] == uniform_indices(30, 8)


def test_inspect_video_fps_sampling():
    out = run_cli("inspect-video", CLIP, "--sampling", "fps", "--fps", "4", "--json")
    assert json.loads(out.stdout)["indices"] == fps_indices(30, 10.0, fps=4.0)


def test_inspect_video_text_output():
    out = run_cli("inspect-video", CLIP)
    assert out.returncode == 0 and "keyframe_count" in out.stdout and "indices" in out.stdout


@pytest.mark.parametrize("kind", ["empty", "text", "png", "moov_missing", "garbage", "folder", "fifo"])
def test_inspect_bad_video_is_one_line_error(tmp_path, kind):
    bad = make_bad_files(tmp_path)
    if kind not in bad:
        raise AssertionError(f"fixture lacks {kind}: {sorted(bad)}")
    out = run_cli("inspect-video", bad[kind], timeout=10)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {bad[kind]}")
    assert "Traceback" not in out.stderr


def test_models_lists_the_default_family():
    out = run_cli("models", "--json")
    rows = json.loads(out.stdout)
    assert any(r["tiny"] == "tiny:qwen2_5_vl" for r in rows)


def test_train_refuses_non_empty_run_dir(tmp_path):
    (tmp_path / "something").write_text("x")
    out = run_cli("train", "--dataset", SAMPLES, "--output", tmp_path, "--max-steps", "1")
    assert out.returncode == 1 and "not empty" in out.stderr


def _help_entries(text: str) -> dict[str, str]:
    """{--flag: its help text} parsed from argparse's options listing (entries start at two spaces
    and a dash; the help follows on the same line after a gap, or on indented lines below)."""
    entries, current = {}, None
    for line in text.split("options:", 1)[1].splitlines():
        if re.match(r"^  -", line):
            invocation, _, rest = line.strip().partition("  ")
            current = [rest.strip()]
            for flag in re.findall(r"--[\w-]+", invocation):
                entries[flag] = current
        elif current is not None and line.startswith("   "):
            current.append(line.strip())
    return {flag: " ".join(x for x in parts if x) for flag, parts in entries.items()}


def test_train_help_documents_every_flag_with_the_field_docs():
    env = dict(os.environ, COLUMNS="100")
    out = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    helps = _help_entries(out.stdout)
    config_flags = {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)}
    expected = config_flags | {"--frames", "--dataset", "--output", "--config", "--resume", "--help", "--print-config"}
    expected |= {"--no-" + f.name.replace("_", "-") for f in fields(TrainConfig) if str(f.type).startswith("bool")}
    assert set(helps) == expected
    assert [flag for flag, text in helps.items() if not text] == []
    docs = field_docs()
    # the field's doc is what the user reads (argparse re-wraps it; compare without spaces)
    for name in ("num_frames", "frame_width", "max_grad_norm", "save_total_limit", "lora_dropout", "temperature"):
        flag = "--" + name.replace("_", "-")
        assert docs[name].replace(" ", "") in helps[flag].replace(" ", ""), flag
    assert helps["--frames"] == helps["--num-frames"]
    assert "(default: 16)" in helps["--lora-r"]


def test_every_subcommand_flag_has_help():
    import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, p in sub.choices.items() for action in p._actions
               if not action.help]  # SUPPRESS-ed internal flags have the SUPPRESS string
    assert missing == []
    assert set(sub.choices) == {"inspect-video", "import", "export-dataset", "split", "validate", "prelabel", "review",
                                "add-clips", "train",
                                "estimate", "merge", "eval", "calibrate", "models", "predict", "push", "push-dataset", "serve"}


REFUSED = [
    ("--frames", "0", "error: command line: num_frames must be >= 1, not 0 (leave it unset for the model's default)"),
    ("--frame-width", "7", "error: command line: frame_width must be 28 to 4096 pixels, not 7 "
                           "(a side under 28 px is less than one vision patch)"),
]


@pytest.mark.parametrize("flag,value,line", REFUSED)
def test_bad_frame_settings_are_refused_in_one_line_before_anything_is_created(tmp_path, flag, value, line):
    run_dir = tmp_path / "run"
    out = run_cli("train", "--dataset", SAMPLES, "--output", run_dir, flag, value)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [line]
    assert out.stdout == ""
    assert not run_dir.exists()


@pytest.mark.parametrize("flag,value,line", REFUSED)
def test_bad_frame_settings_are_refused_before_any_ml_library_is_imported(tmp_path, flag, value, line):
    argv = ["train", "--dataset", str(SAMPLES), "--output", str(tmp_path / "run"), flag, value]
    code = ("import sys, cli\n"
            f"rc = cli.main({argv!r})\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules)\n"
            "print(rc, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 []"
    assert out.stderr.strip() == line
