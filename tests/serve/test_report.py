"""Evaluation reports: `cli.py eval` and the Export tab's table build a model's report with the same
function, so the same model on the same split scores the same (real tiny model, greedy decoding)."""

from __future__ import annotations

import json

from core.data.store import AnnotationStore
from core.serve.manager import ModelManager
from core.serve.report import comparison_rows, evaluate_models
from tests.support import make_dataset, run_cli

TIMING = ("seconds", "seconds_per_clip")


def test_cli_eval_and_the_export_tabs_evaluation_give_the_same_report(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=4)
    AnnotationStore(root).set_splits({c.rel: "val" for c in AnnotationStore(root).clips()})
    out = run_cli("eval", "--model", "tiny:default", "--dataset", root, "--split", "val", "--constrained",
                  "--show", "2", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    by_cli = json.loads(out.stdout)
    by_tab = evaluate_models(ModelManager(), root, "val", ["tiny:default"], constrained=True)["tiny:default"]
    assert by_cli["count"] == 4 and by_cli["schema_valid_rate"] == 1.0  # constrained: valid even untrained
    assert by_cli["warnings"] == []  # a base model is asked with the dataset's own schema
    assert [e["video"] for e in by_cli["examples"]] == ["videos/clip_0000.mp4", "videos/clip_0001.mp4"]
    same = {k: v for k, v in by_cli.items() if k not in (*TIMING, "examples")}
    assert same == {k: v for k, v in by_tab.items() if k not in TIMING}  # warnings included
    assert comparison_rows({"tiny:default": by_cli})[0]["schema_valid"] == 1.0


def test_an_empty_split_is_one_error_line(tmp_path):
    root = make_dataset(tmp_path / "d", n=2)
    out = run_cli("eval", "--model", "tiny:default", "--dataset", root, "--split", "test")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: {root}: split 'test' has no clips"]
