"""Prediction files: typed SQLite table, upsert by (video, model), journal-based resume, all formats."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.errors import ConfigError
from core.schema.presets import DASHCAM_SCHEMA
from core.serve.writers import FileWriter, make_row, open_writer, read_rows

GOOD = {"caption": "A drive.", "event_type": "near_miss", "rule_violations": ["speeding"],
        "intended_driving_action": "turn_left", "traffic_density": "low", "visibility": "good"}
SCHEMA = {**DASHCAM_SCHEMA, "properties": {**DASHCAM_SCHEMA["properties"],
                                           "speed_kmh": {"type": "number"}, "lanes": {"type": "integer"},
                                           "night": {"type": "boolean"}, "video": {"type": "string"}}}


def rows(model="m", n=3):
    out = [make_row(SCHEMA, f"v{i}.mp4", model, "h", json.dumps({**GOOD, "speed_kmh": 41.5, "lanes": 2,
                                                                  "night": True, "video": "cam"}), None, 0.1)
           for i in range(n)]
    out.append(make_row(SCHEMA, "bad.mp4", model, "h", None, "bad.mp4: moov atom not found"))
    out.append(make_row(SCHEMA, "prose.mp4", model, "h", "I think it is a near miss", None))
    return out


def test_make_row_validity_and_errors():
    r = rows()
    assert r[0].schema_valid and r[0].error is None and r[0].fields["event_type"] == "near_miss"
    assert not r[-2].schema_valid and "moov" in r[-2].error and r[-2].fields == {}
    assert not r[-1].schema_valid and r[-1].error == "no JSON object in the output"
    invalid = make_row(SCHEMA, "x.mp4", "m", "h", json.dumps({**GOOD, "event_type": "boom"}), None)
    assert not invalid.schema_valid and "event_type" in invalid.error and invalid.fields["event_type"] == "boom"


def test_sqlite_typed_columns_upsert_and_rerun(tmp_path):
    db = tmp_path / "out.sqlite"
    w = open_writer(db, SCHEMA)
    w.write(rows())
    w.close()
    con = sqlite3.connect(db)
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(predictions)")}
    assert types["speed_kmh"] == "REAL" and types["lanes"] == "INTEGER" and types["night"] == "INTEGER"
    assert types["event_type"] == "TEXT" and types["rule_violations"] == "TEXT" and types["schema_valid"] == "INTEGER"
    assert types["field_video"] == "TEXT" and types["video"] == "TEXT"  # a field named like a key column
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 5
    row = con.execute("SELECT speed_kmh, lanes, night, rule_violations, field_video, typeof(speed_kmh) "
                      "FROM predictions WHERE video='v0.mp4'").fetchone()
    assert row == (41.5, 2, 1, '["speeding"]', "cam", "real")
    assert con.execute("SELECT count(*) FROM predictions WHERE error IS NOT NULL").fetchone()[0] == 2
    con.close()
    w = open_writer(db, SCHEMA)
    assert w.done("m") == {"v0.mp4", "v1.mp4", "v2.mp4", "bad.mp4", "prose.mp4"} and w.done("other") == set()
    w.write(rows())  # same keys again: replaced, not duplicated
    w.write(rows(model="other", n=1))
    w.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 5 + 3
    con.close()


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".parquet"])
def test_file_formats_upsert_and_read_back(tmp_path, ext):
    out = tmp_path / f"p{ext}"
    for _ in range(2):
        w = open_writer(out, SCHEMA)
        w.write(rows())
        w.close()
    back = read_rows(out)
    assert len(back) == 5 and not (tmp_path / f"p{ext}.partial.jsonl").exists()
    first = next(r for r in back if r["video"] == "v0.mp4")
    assert first["event_type"] == "near_miss" and first["lanes"] == 2 and first["field_video"] == "cam"
    violations = first["rule_violations"]
    assert list(json.loads(violations) if isinstance(violations, str) else violations) == ["speeding"]


def test_journal_resumes_an_interrupted_export(tmp_path):
    out = tmp_path / "p.parquet"
    w = open_writer(out, SCHEMA)
    w.write(rows()[:2])
    w._fh.close()  # the process dies here: no final file, the journal survives
    assert not out.exists()
    resumed = FileWriter(out, SCHEMA)
    assert resumed.done("m") == {"v0.mp4", "v1.mp4"}
    resumed.write(rows()[2:])
    resumed.close()
    assert sorted(r["video"] for r in read_rows(out)) == ["bad.mp4", "prose.mp4", "v0.mp4", "v1.mp4", "v2.mp4"]


def test_unknown_output_type():
    with pytest.raises(ConfigError, match="unknown output type"):
        open_writer("x.xlsx", SCHEMA)


# ------------------------------------------------------------------------------ confidence columns

CONF = {"caption": 0.31, "event_type": 0.9, "rule_violations": 0.42, "intended_driving_action": 0.77,
        "traffic_density": 0.6, "visibility": 0.95, "speed_kmh": 0.5, "lanes": 0.25, "night": 0.99, "video": 0.8}


def scored_rows(model="m"):
    text = json.dumps({**GOOD, "speed_kmh": 41.5, "lanes": 2, "night": True, "video": "cam"})
    return [make_row(SCHEMA, "v0.mp4", model, "h", text, None, 0.1, CONF),
            make_row(SCHEMA, "bad.mp4", model, "h", None, "bad.mp4: moov atom not found", 0.0, CONF)]


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".parquet", ".sqlite"])
def test_every_format_carries_per_field_confidence_and_the_minimum(tmp_path, ext):
    out = tmp_path / f"p{ext}"
    w = open_writer(out, SCHEMA)
    w.write(scored_rows())
    w.close()
    back = {r["video"]: r for r in read_rows(out)}
    good, bad = back["v0.mp4"], back["bad.mp4"]
    if ext == ".jsonl":  # one object, field -> score
        assert good["confidence"] == CONF and bad["confidence"] == {}
        assert not any(k.endswith("__confidence") for k in good)
    else:  # one column per top-level field
        assert {k: good[f"{k}__confidence"] for k in CONF} == CONF
        assert all(bad[f"{k}__confidence"] is None for k in CONF)
    assert good["min_confidence"] == min(CONF.values()) and bad["min_confidence"] is None
    assert good["event_type"] == "near_miss"  # the fields themselves are untouched


def test_confidence_only_for_fields_the_answer_has(tmp_path):
    row = make_row(SCHEMA, "x.mp4", "m", "h", json.dumps({"event_type": "collision", "extra": 1}), None, 0.0,
                   {"event_type": 0.4, "extra": 0.1, "caption": 0.2})
    assert row.confidence == {"event_type": 0.4}
    assert row.flat()["min_confidence"] == 0.4 and "caption__confidence" not in row.flat()


def test_an_older_sqlite_table_gains_the_confidence_columns(tmp_path):
    """A table written before confidence existed: reopened, it gets the columns; old rows keep NULL,
    new rows fill them, resume still sees the old rows."""
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE predictions (video TEXT NOT NULL, model TEXT NOT NULL, spec_hash TEXT, created TEXT, "
                "schema_valid INTEGER, error TEXT, raw TEXT, seconds REAL, event_type TEXT, "
                "PRIMARY KEY (video, model))")
    con.execute("INSERT INTO predictions (video, model, event_type) VALUES ('old.mp4', 'm', 'collision')")
    con.commit()
    con.close()
    w = open_writer(db, SCHEMA)
    assert w.done("m") == {"old.mp4"}
    w.write(scored_rows())
    w.close()
    con = sqlite3.connect(db)
    cols = {r[1]: r[2] for r in con.execute("PRAGMA table_info(predictions)")}
    assert cols["event_type__confidence"] == "REAL" and cols["min_confidence"] == "REAL"
    got = dict(con.execute("SELECT video, min_confidence FROM predictions").fetchall())
    con.close()
    assert got == {"old.mp4": None, "v0.mp4": min(CONF.values()), "bad.mp4": None}


def test_jsonl_rows_without_confidence_merge_with_new_ones(tmp_path):
    """An export from before confidence, resumed: old rows stay, new rows carry their scores."""
    out = tmp_path / "p.jsonl"
    old = {"video": "old.mp4", "model": "m", "schema_valid": True, "event_type": "collision"}
    out.write_text(json.dumps(old) + "\n")
    w = open_writer(out, SCHEMA)
    w.write(scored_rows())
    w.close()
    back = {r["video"]: r for r in read_rows(out)}
    assert back["old.mp4"]["event_type"] == "collision" and back["old.mp4"]["confidence"] == {}
    assert back["v0.mp4"]["confidence"] == CONF
