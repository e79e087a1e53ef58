"""A run's calibration (issue #24): fitted at the end of training on the val split, served by every
predictor of the run (all four output formats carry calibrated scores and the review decision),
carried by export, merge and publish, and "not calibrated" said wherever a run has none."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3

import pytest

from core.config import TrainConfig
from core.data.dataset import load_dataset
from core.layout import CALIBRATION_FILE
from core.runs.files import RunFiles
from core.schema.calibration import Calibration, for_run
from core.serve.batch import predict_to_file
from core.serve.predictor import Predictor
from core.serve.report import evaluate_model
from core.serve.writers import read_rows
from core.train.entry import _calibrate_at_end
from core.train.merge import export_run
from tests.support import SAMPLES, make_dataset

CLIPS = ["clip_0003.mp4", "clip_0005.mp4", "clip_0011.mp4"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    for name in CLIPS:
        shutil.copy(SAMPLES / "videos" / name, folder / name)
    return folder


def test_training_with_a_val_split_ends_calibrated_on_it(short_run):
    cal = for_run(short_run)
    assert cal is not None and cal.split == "val" and cal.target_precision == 0.98
    assert cal.clips == len(load_dataset(SAMPLES).split("val"))
    choice = [n for n, m in cal.fields.items() if m.decides_review]
    assert set(choice) == {"event_type", "rule_violations", "intended_driving_action", "traffic_density", "visibility"}
    assert not cal.fields["caption"].decides_review
    assert f"calibrated on {cal.clips} val clips" in (short_run / "train.log").read_text()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".sqlite"])
def test_every_output_format_carries_calibrated_scores_and_the_review_decision(short_run, clips, tmp_path, suffix):
    cal = for_run(short_run)
    out = tmp_path / f"pred{suffix}"
    predict_to_file(str(short_run), clips, out, constrained=True)
    rows = read_rows(out)
    assert sorted(r["video"] for r in rows) == CLIPS
    raw = Predictor.load(str(short_run)).predict([clips / CLIPS[0]], constrained=True)[0]
    for row in rows:
        review = row["review_fields"]
        review = json.loads(review) if isinstance(review, str) else list(review)
        assert bool(row["calibrated"]) is True
        assert bool(row["needs_review"]) == (bool(review) or not row["schema_valid"])
        assert set(review) <= {n for n, m in cal.fields.items() if m.decides_review}
        scores = row["confidence"] if suffix == ".jsonl" else {
            n: row[f"{n}__confidence"] for n in cal.fields if row.get(f"{n}__confidence") is not None}
        for name, score in scores.items():
            fm = cal.fields[name]
            if fm.decides_review:  # under its threshold (or no threshold) exactly when listed
                assert (fm.threshold is None or score < fm.threshold) == (name in review)
    first = next(r for r in rows if r["video"] == CLIPS[0])
    scores = first["confidence"] if suffix == ".jsonl" else {n: first[f"{n}__confidence"] for n in raw.confidence}
    # predict_to_file batches clips, this pass decodes one: float noise of ~1e-5 between the two on some CPUs
    assert scores == pytest.approx(cal.apply(raw.confidence_raw), abs=1e-4)  # the map, applied to this pass
    if suffix == ".sqlite":
        db = sqlite3.connect(out)
        types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(predictions)")}
        assert (types["calibrated"], types["needs_review"], types["review_fields"]) == ("INTEGER", "INTEGER", "TEXT")
        db.close()


def test_the_calibration_travels_with_an_exported_adapter_and_a_merged_model(short_run, tmp_path):
    for what in ("adapter", "merged"):
        dest = export_run(short_run, what, tmp_path / what)
        assert (dest / CALIBRATION_FILE).read_bytes() == (short_run / CALIBRATION_FILE).read_bytes()
    reloaded = Predictor.load(str(tmp_path / "merged"))  # a merged folder is a run directory of its own
    assert reloaded.calibration is not None
    answer = reloaded.predict([SAMPLES / "videos" / CLIPS[0]], constrained=True)[0]
    assert answer.calibrated and answer.review_fields is not None


def test_a_published_folder_holds_the_calibration_and_its_card_says_so(short_run, tmp_path):
    from core.hub.publish import model_folder

    published = model_folder(short_run, tmp_path / "repo", "someone/dashcam")
    assert CALIBRATION_FILE in published.files
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "### Confidence and review" in card and "calibrated on 30 held-out `val` clips" in card
    assert "| `event_type` |" in card


def test_a_run_without_calibration_says_not_calibrated_everywhere(short_run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(short_run, bare, ignore=shutil.ignore_patterns("checkpoint-*"))
    (bare / CALIBRATION_FILE).unlink()
    answer = Predictor.load(str(bare)).predict([SAMPLES / "videos" / CLIPS[0]], constrained=True)[0]
    assert not answer.calibrated and answer.needs_review  # nothing measured: nothing accepted on its score
    assert answer.confidence == answer.confidence_raw
    assert set(answer.review_fields) == {"event_type", "rule_violations", "intended_driving_action",
                                         "traffic_density", "visibility"}
    report = evaluate_model(str(bare), SAMPLES, "val", max_new_tokens=160, constrained=True)
    assert report["calibrated"] is False and report["calibration_source"].startswith("not calibrated")
    ev = report["calibration"]["event_type"]
    assert ev["ece_raw"] == ev["ece"] and set(ev["coverage_at_precision"]) == {"0.95", "0.98", "0.99"}
    assert "selective" not in ev
    from core.hub.card import calibration_section

    assert calibration_section(for_run(bare)).startswith("Not calibrated")


def test_training_on_a_dataset_without_val_clips_leaves_the_run_uncalibrated_and_says_why(short_run, tmp_path):
    root = make_dataset(tmp_path / "d", n=3)  # no split column: no val clips
    bare = tmp_path / "run"
    shutil.copytree(short_run, bare, ignore=shutil.ignore_patterns("checkpoint-*", CALIBRATION_FILE))
    _calibrate_at_end(RunFiles(bare), load_dataset(root), root, TrainConfig())
    assert not (bare / CALIBRATION_FILE).exists()
    assert "not calibrated: the dataset has no labelled val clips" in (bare / "train.log").read_text()


def test_eval_with_a_calibrated_run_reports_raw_and_served_ece_and_what_the_thresholds_kept(short_run):
    report = evaluate_model(str(short_run), SAMPLES, "test", max_new_tokens=160, constrained=True)
    assert report["calibrated"] is True and "calibrated on 30 val clips" in report["calibration_source"]
    cal = Calibration.load(short_run / CALIBRATION_FILE)
    for name, fm in cal.fields.items():
        entry = report["calibration"][name]
        assert {"ece", "ece_raw", "coverage_at_precision"} <= set(entry)
        if fm.decides_review:
            assert entry["selective"]["threshold"] == fm.threshold
            assert 0.0 <= entry["selective"]["kept"] <= 1.0


def test_asked_with_another_prompt_the_run_answers_with_raw_scores(short_run):
    from core.serve.compare import side_view

    predictor = Predictor.load(str(short_run))
    assert side_view(predictor, predictor.spec).calibration is predictor.calibration is not None
    other = dataclasses.replace(predictor.spec, instruction="Describe the road.")
    view = side_view(predictor, other)
    answer = view.predict([SAMPLES / "videos" / CLIPS[0]])[0]
    assert view.calibration is None and not answer.calibrated and answer.confidence == answer.confidence_raw


def test_calibrating_on_clips_the_run_trained_on_is_refused(short_run):
    from core.errors import DatasetError
    from core.serve.calibrate import calibrate_run

    before = (short_run / CALIBRATION_FILE).read_bytes()
    with pytest.raises(DatasetError, match="were in this run's training data"):
        calibrate_run(short_run, SAMPLES, "train")
    assert (short_run / CALIBRATION_FILE).read_bytes() == before  # the previous calibration stands


def test_a_calibration_that_fails_at_the_end_of_training_leaves_the_run_finished(short_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(short_run, broken, ignore=shutil.ignore_patterns("checkpoint-*", CALIBRATION_FILE, "final"))
    run = RunFiles(broken)
    run.write_status(state="completed")
    status = _calibrate_at_end(run, load_dataset(SAMPLES), SAMPLES, TrainConfig())
    assert status["state"] == "completed" and "not calibrated (ModelError" in status["message"]
    assert status["message"].startswith("final model saved to final/")  # what training said stays
    assert "cli.py calibrate" in (broken / "train.log").read_text() and not (broken / CALIBRATION_FILE).exists()
