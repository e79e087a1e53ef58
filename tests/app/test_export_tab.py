"""Export tab handlers on the real tiny model: predictions file, base-vs-fine-tuned report, model export."""

from __future__ import annotations

import json
import sqlite3
import zipfile

from core.data.store import AnnotationStore
from core.workspace import Workspace
from tests.support import make_dataset


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

    table, plots, files, shown = do_evaluate(ws, ["tiny:default", str(short_run)], "val", True)
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
