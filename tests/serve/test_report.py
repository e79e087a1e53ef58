"""Evaluation reports: `cli.py eval` and the Export tab's table build a model's report with the same
function, so the same model on the same split scores the same (real tiny model, greedy decoding)."""

from __future__ import annotations

import json

import pytest

from core.data.store import AnnotationStore
from core.serve.manager import ModelManager
from core.serve.report import comparison_rows, evaluate_models, reliability_rows, write_report
from tests.support import make_dataset, run_cli

TIMING = ("seconds", "seconds_per_clip")


def test_cli_eval_and_the_export_tabs_evaluation_give_the_same_report(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=4)
    AnnotationStore(root).set_splits({c.rel: "val" for c in AnnotationStore(root).clips()})
    # no decoding flag: eval constrains as predict and the tabs do (one default everywhere)
    out = run_cli("eval", "--model", "tiny:default", "--dataset", root, "--split", "val",
                  "--show", "2", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    by_cli = json.loads(out.stdout)
    assert by_cli["constrained"] is True
    by_tab = evaluate_models(ModelManager(), root, "val", ["tiny:default"], constrained=True)["tiny:default"]
    assert by_cli["count"] == 4 and by_cli["schema_valid_rate"] == 1.0  # constrained: valid even untrained
    assert by_cli["warnings"] == []  # a base model is asked with the dataset's own schema
    assert [e["video"] for e in by_cli["examples"]] == ["videos/clip_0000.mp4", "videos/clip_0001.mp4"]
    same = {k: v for k, v in by_cli.items() if k not in (*TIMING, "examples")}
    assert same == {k: v for k, v in by_tab.items() if k not in TIMING}  # warnings included
    assert comparison_rows({"tiny:default": by_cli})[0]["schema_valid"] == 1.0
    check_calibration(by_cli, clips=4)
    check_written_report(by_cli, tmp_path / "reports")


def check_calibration(report: dict, clips: int) -> None:
    """Constrained answers have every field, so every labelled field has a calibration over all clips."""
    cal = report["calibration"]
    assert set(cal) == {"caption", "event_type", "rule_violations", "intended_driving_action", "traffic_density",
                        "visibility"}
    for field, c in cal.items():
        assert c["rows"] == clips and c["unscored"] == 0 and sum(b["count"] for b in c["bins"]) == clips
        assert 0.0 <= c["ece"] <= 1.0
        full = [b for b in c["bins"] if b["count"]]
        assert all(b["lo"] <= b["mean_confidence"] <= b["hi"] and 0.0 <= b["accuracy"] <= 1.0 for b in full)
        kept_all = c["coverage"][0]
        assert kept_all["threshold"] == 0.0 and kept_all["kept"] == 1.0
        per_clip = report["per_field"].get(field, report["text_scores"].get(field, {}).get("token_f1"))
        assert kept_all["accuracy"] == per_clip  # keeping every row: the field's plain accuracy
        ece = sum(b["count"] * abs(b["accuracy"] - b["mean_confidence"]) for b in full) / clips
        assert c["ece"] == pytest.approx(ece, abs=2e-4)
        assert [r["rows"] for r in reliability_rows(report, field)] == [b["count"] for b in full]


def check_written_report(report: dict, out) -> None:
    from xml.etree import ElementTree

    js, md = write_report({"tiny:default": report}, out)
    text = md.read_text()
    assert "### Calibration: tiny:default" in text and text.count("#### ") == len(report["calibration"])
    assert "| accept if confidence >= | share of rows kept | accuracy of kept rows |" in text
    plots = sorted(out.glob(f"{md.stem}-*.svg"))
    assert len(plots) == len(report["calibration"]) and all(f"]({p.name})" in text for p in plots)
    for p in plots:
        assert ElementTree.parse(p).getroot().tag.endswith("svg")
    assert json.loads(js.read_text())["tiny:default"]["calibration"] == report["calibration"]


def test_an_empty_split_is_one_error_line(tmp_path):
    root = make_dataset(tmp_path / "d", n=2)
    out = run_cli("eval", "--model", "tiny:default", "--dataset", root, "--split", "test")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: {root}: split 'test' has no clips"]


def test_eval_says_how_it_decoded(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=2)
    AnnotationStore(root).set_splits({c.rel: "val" for c in AnnotationStore(root).clips()})
    free = run_cli("eval", "--model", "tiny:default", "--dataset", root, "--split", "val", "--unconstrained",
                   "--max-new-tokens", "8", timeout=300)
    assert free.returncode == 0, free.stderr
    assert free.stdout.splitlines()[0].endswith("(2 clips scored), decoding unconstrained")
