"""Export tab handlers: predictions file, base-vs-fine-tuned report (real tiny model), model and dataset export."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zipfile

import pytest

from core.data.store import AnnotationStore
from core.errors import ConfigError, ModelError
from core.serve.writers import META_COLUMNS, REVIEW_COLUMNS, read_rows
from core.workspace import Workspace
from tests.support import LABEL, make_dataset, run_cli


def test_predict_evaluate_and_export_adapter(short_run, tmp_path):
    from tabs.export import do_evaluate, do_predict, export_model

    root = make_dataset(tmp_path / "d", n=6)
    store = AnnotationStore(root)
    store.set_splits({c.rel: "val" for c in store.clips()})
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    text, path = do_predict(ws, str(short_run), "dataset", "", "val", ".sqlite", True, 8)
    con = sqlite3.connect(path)
    n_val = 6
    assert con.execute("SELECT count(*), sum(schema_valid) FROM predictions").fetchone() == (n_val, n_val)
    con.close()
    assert f"{n_val} rows written" in text

    table, plots, files, shown, warnings = do_evaluate(ws, ["tiny:default", str(short_run)], "val", True)
    assert warnings == []  # the run was trained on the samples' schema, the dataset's own
    assert list(table["model"]) == ["tiny:default", str(short_run)] and shown == str(short_run)
    assert {"schema_valid", "mean_field_acc", "acc:event_type"} <= set(table.columns)
    assert list(table["schema_valid"]) == [1.0, 1.0]  # constrained: valid even for the untrained base
    assert set(plots) == {"event_type", "intended_driving_action", "traffic_density", "visibility"}
    assert plots["event_type"]["count"].sum() == n_val
    saved = json.loads(open(files[0]).read())[str(short_run)]
    assert saved["count"] == n_val and saved["constrained"] is True

    archive = export_model(ws, str(short_run), "adapter")
    names = zipfile.ZipFile(archive).namelist()
    assert {"adapter_config.json", "adapter_model.safetensors", "preprocessing.json"} <= set(names)


def _export_tab_handler(ws, api_name):
    import gradio as gr

    from tabs import export
    from tabs.pickers import Pickers

    with gr.Blocks() as demo:
        export.build(ws, Pickers(ws))
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


def test_export_dataset_gives_a_zip_of_each_layout(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    AnnotationStore(root).set_splits({f"videos/clip_000{i}.mp4": s for i, s in enumerate(["train", "train", "val",
                                                                                           "test"])})
    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    export_dataset = _export_tab_handler(ws, "export_dataset")
    expected = {"seed": {"metadata.jsonl", "schema.json", "videos/clip_0000.mp4"},
                "videofolder": {"schema.json", "train/metadata.jsonl", "validation/clip_0002.mp4",
                                "test/metadata.jsonl"},
                "conversation": {"conversations.jsonl"}}
    for layout, names in expected.items():
        message, archive = export_dataset(layout)
        assert message == "" and archive.endswith(".zip") and f"dataset-{layout}-" in archive
        assert names <= set(zipfile.ZipFile(archive).namelist()), layout
    lines = zipfile.ZipFile(archive).read("conversations.jsonl").decode().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["conversations"][1]["from"] == "gpt"


def _fake_run(run_dir, final_files):
    (run_dir / "final").mkdir(parents=True)
    for name, text in final_files.items():
        (run_dir / "final" / name).write_text(text)
    (run_dir / "preprocessing.json").write_text('{"base_model": "tiny:default"}')
    return run_dir


def test_export_model_zips_the_adapter_with_the_runs_spec_and_refuses_a_full_fine_tune(tmp_path):
    from core.train.merge import export_run
    from tabs.export import export_model

    ws = Workspace(dataset_dir=tmp_path, runs_dir=tmp_path / "runs")
    lora = _fake_run(tmp_path / "runs" / "lora", {"adapter_config.json": "{}", "adapter_model.safetensors": "w"})
    archive = export_model(ws, str(lora), "adapter")
    zipped = zipfile.ZipFile(archive)
    assert set(zipped.namelist()) == {"adapter_config.json", "adapter_model.safetensors", "preprocessing.json"}
    assert zipped.read("preprocessing.json") == (lora / "preprocessing.json").read_bytes()
    full = _fake_run(tmp_path / "runs" / "full", {"config.json": "{}"})
    with pytest.raises(ModelError, match="no LoRA adapter in final/"):
        export_run(full, "adapter", tmp_path / "out")
    with pytest.raises(ConfigError, match="choose one of adapter, merged"):
        export_run(lora, "weights", tmp_path / "out")
    export_run(lora, "adapter", tmp_path / "out")
    with pytest.raises(ConfigError, match="already exists"):
        export_run(lora, "adapter", tmp_path / "out")


# --- the tab and its CLI twin make the same core call ----------------------------------------------

def _clips(folder, n, schema=None):
    from tests.support import SAMPLES

    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", folder / f"c{i}.mp4")
    if schema is not None:
        (folder / "schema.json").write_text(json.dumps(schema))
    return folder


def _comparable(path):
    return sorted(({k: v for k, v in r.items() if k not in ("created", "seconds")} for r in read_rows(path)),
                  key=lambda r: r["video"])


def test_cli_predict_and_the_tabs_predict_choose_the_same_schema_and_write_the_same_rows(tmp_path, tiny_path):
    from tabs.export import do_predict

    ws_root = make_dataset(tmp_path / "ws", n=2)  # the workspace dataset: the samples' six-field schema
    narrow = json.loads((ws_root / "schema.json").read_text())
    narrow["properties"] = {k: narrow["properties"][k] for k in ("event_type", "visibility")}
    narrow["required"] = ["event_type", "visibility"]
    own, bare = _clips(tmp_path / "own", 3, schema=narrow), _clips(tmp_path / "bare", 3)

    refused = run_cli("predict", "--model", "tiny:default", "--input", bare, "--output", tmp_path / "x.jsonl")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: tiny:default is a base model: give --schema FILE (or an input with schema.json)"]

    # a folder with its own schema.json is asked with it (not the workspace's); a bare folder is asked
    # with the workspace's schema in the tab, as the CLI with --schema WORKSPACE/schema.json
    for folder, extra, columns in ((own, [], {"event_type", "visibility"}),
                                   (bare, ["--schema", ws_root / "schema.json"], set(LABEL))):
        by_cli = tmp_path / f"cli-{folder.name}.jsonl"
        out = run_cli("predict", "--model", "tiny:default", "--input", folder, "--output", by_cli, "--batch-size", "4",
                      *extra, timeout=600)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"3 rows written (3 schema-valid, 0 errors), 0 already done -> {by_cli}"
        ws = Workspace(dataset_dir=ws_root, runs_dir=tmp_path / f"runs-{folder.name}")
        text, by_tab = do_predict(ws, "tiny:default", "folder", str(folder), "test", ".jsonl", True, 4)
        assert text.startswith("3 rows written (3 schema-valid, 0 errors), 0 already in the file")
        rows = _comparable(by_cli)
        assert rows == _comparable(by_tab) and len(rows) == 3
        assert set(rows[0]) - set(META_COLUMNS) - {"confidence", "min_confidence", *REVIEW_COLUMNS} == columns, folder.name
        assert set(rows[0]["confidence"]) == columns  # JSONL: one score per field, in one object
        assert len({r["spec_hash"] for r in rows}) == 1


def _full_run(run_dir, schema):
    """A run as the loader sees a full fine-tune (final/ is a model folder) whose spec says it was
    trained with `schema`: the untrained tiny model, no training steps."""
    from core.models import family_for_model_type, resolve_model
    from core.spec import default_spec

    source = resolve_model("tiny:default")
    shutil.copytree(source.base, run_dir / "final")
    family = family_for_model_type(json.loads((run_dir / "final" / "config.json").read_text())["model_type"])
    default_spec(source, family, schema).save(run_dir)
    return run_dir


def test_the_tabs_evaluation_shows_the_schema_warning_cli_eval_prints(tmp_path, tiny_path):
    root = make_dataset(tmp_path / "d", n=2)
    AnnotationStore(root).set_splits({c.rel: "val" for c in AnnotationStore(root).clips()})
    trained = json.loads((root / "schema.json").read_text())
    trained["properties"]["visibility"]["enum"].append("foggy")  # the dataset's schema changed since
    run = _full_run(tmp_path / "runs" / "full", trained)
    expected = (f"{root}/schema.json differs from the schema {run} was trained with; "
                "scoring against the training schema")

    out = run_cli("eval", "--model", run, "--dataset", root, "--split", "val", "--max-new-tokens", "24",
                  "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"warning: {expected}" in out.stderr.splitlines() and json.loads(out.stdout)["warnings"] == [expected]

    ws = Workspace(dataset_dir=root, runs_dir=tmp_path / "runs")
    _, _, title, files, message = _export_tab_handler(ws, "evaluate")(["tiny:default", str(run)], "val", False)
    assert message.endswith("decoding unconstrained")
    assert title.splitlines()[0] == f"**Warning:** {expected}"  # once: the base is asked with the dataset's schema
    assert title.count("**Warning:**") == 1 and title.endswith(f"Confusion matrices of `{run}`")
    saved = json.loads(open(files[0]).read())
    assert saved[str(run)]["warnings"] == [expected] and saved["tiny:default"]["warnings"] == []


def test_pickers_list_the_runs_that_exist_now_and_move_to_a_new_one(tmp_path, short_run):
    """Every run/model picker (tabs.pickers) lists finished runs at refresh time and starts on the
    newest; a picker the person set to another run keeps it when a new run finishes."""
    import os

    from tabs.pickers import MODEL, MODELS, RUN, Pickers

    ws = Workspace(dataset_dir=make_dataset(tmp_path / "d", n=2), runs_dir=tmp_path / "runs")
    pickers = Pickers(ws)
    assert pickers.default(RUN) is None and pickers.default(MODEL) == ws.default_model  # no run yet: the base
    assert pickers.default(MODELS) == [ws.default_model]
    (tmp_path / "runs").mkdir()
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    shutil.copytree(short_run, first)
    before = pickers._runs()
    assert before == [str(first)] and pickers.default(MODEL) == str(first)
    assert pickers.default(MODELS) == [ws.default_model, str(first)]
    assert [v for _, v in pickers.choices(MODEL)] == [ws.default_model, str(first)]
    shutil.copytree(short_run, second)
    os.utime(second / "final", ((first / "final").stat().st_mtime + 10,) * 2)  # finished after the first
    os.utime(first, (first.stat().st_mtime + 100,) * 2)  # the old run's folder touched (merged, published...)
    pickers._items = [(None, RUN), (None, RUN), (None, MODELS)]
    on_default, chosen, several = pickers.updates(before, [str(first), str(first) + "-other", [ws.default_model,
                                                                                                str(first)]])
    assert on_default["value"] == str(second)  # was on the newest: moves to the new newest
    assert "value" not in chosen  # picked on purpose: kept
    assert several["value"] == [ws.default_model, str(second)]
    assert [v for _, v in on_default["choices"]] == [str(second), str(first)]


def test_the_empty_scores_table_names_the_columns_an_evaluation_fills():
    from core.serve.report import comparison_rows
    from tabs.export import SCORE_COLUMNS, score_table

    report = {"count": 3, "json_valid_rate": 1.0, "schema_valid_rate": 1.0, "mean_field_accuracy": 0.5,
              "per_field": {"a": 0.5}, "text_scores": {}}
    table = score_table(comparison_rows({"m": report}), constrained=True)
    assert list(table.columns)[:len(SCORE_COLUMNS)] == SCORE_COLUMNS
    assert list(table["decoding"]) == ["constrained to the schema"]


def test_publish_preview_writes_the_folder_and_shows_the_card(tmp_path, short_run):
    from tabs.export import publish

    ws = Workspace(dataset_dir=make_dataset(tmp_path / "d", n=2), runs_dir=tmp_path / "runs")
    message, card = publish(ws, str(short_run), "me/tiny-dashcam", False, True, False, "", dry_run=True)
    assert message.startswith("Dry run: the ") and "nothing uploaded" in message
    assert "publishing the merged model" in message  # the tiny base is not on the Hub
    folder = next((tmp_path / "runs" / "exports").glob("hub-short-*"))
    assert (folder / "README.md").read_text() == card
    assert "## What it answers" in card and "| `event_type` |" in card
    with pytest.raises(ConfigError, match="owner/name"):
        publish(ws, str(short_run), "no-slash", False, True, False, "", dry_run=True)
