"""predict and eval with bad input: flag values, an output file predict did not write (or rows of the
other kind), a Ray address where no cluster answers, clips that cannot be read. Each is one
`error:` line (exit 1) before a model loads, or a result that says what it left out."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import sqlite3
import threading

import pandas as pd
import pytest

from core.errors import ConfigError
from core.serve.batch import predict_to_file
from core.serve.writers import make_row, open_writer, read_rows
from tests.support import LABEL, SAMPLES, make_dataset, run_cli

SCHEMA = json.loads((SAMPLES / "schema.json").read_text())


def clips(root, n: int):
    """`n` real sample clips and the sample schema in a folder."""
    root.mkdir(parents=True)
    for i in range(n):
        shutil.copy(SAMPLES / "videos" / f"clip_{i:04d}.mp4", root / f"clip_{i:04d}.mp4")
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    return root


def one_error_line(out) -> str:
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    return lines[0]


def predict(*args, timeout=120):
    # the timeout only guards against a hang; every refusal here comes before a model loads
    return run_cli("predict", "--model", "tiny:default", *args, timeout=timeout)


# --- flag values ------------------------------------------------------------------------------------

def _no_such_gpu() -> str:
    import torch

    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.mark.parametrize("flags, words", [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "-4"], "--batch-size -4: must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be at least 1"),
    (["--device", None], "no CUDA GPU is visible|CUDA GPU\\(s\\), cuda:0 to"),
    (["--window-seconds", "5", "--stride-seconds", "0.001"], "--stride-seconds 0.001: must be at least 0.01 seconds"),
    (["--window-seconds", "0"], "--window-seconds 0: must be at least 0.01 seconds"),
    (["--window-seconds", "-5"], "--window-seconds -5: must be at least 0.01 seconds"),
])
def test_bad_flag_values_are_one_error_line_naming_the_flag(tmp_path, flags, words):
    flags = [_no_such_gpu() if f is None else f for f in flags]
    folder = clips(tmp_path / "in", 1)
    out = predict("--input", folder, "--output", tmp_path / "p.jsonl", *flags)
    assert re.search(words, one_error_line(out))
    assert not list(tmp_path.glob("p.jsonl*"))  # refused before anything was written


def test_eval_refuses_a_batch_of_no_clips(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=2)
    out = run_cli("eval", "--model", "tiny:default", "--dataset", ds, "--split", "all", "--batch-size", "0",
                  timeout=120)
    assert "--batch-size 0: must be at least 1" in one_error_line(out)


def test_windows_per_video_are_bounded():
    from core.video.windows import MAX_WINDOWS, window_bounds

    assert len(window_bounds(3600.0, 5.0, 0.05)) < MAX_WINDOWS  # an hour at a 50 ms stride is fine
    with pytest.raises(ConfigError, match="use a longer stride"):
        window_bounds(10 * 3600.0, 5.0, 0.01)  # ten hours at 10 ms: 3.6 million windows


# --- output files predict did not write, and rows of the other kind ---------------------------------

def _foreign_files(tmp_path, ds) -> list:
    csv = tmp_path / "numbers.csv"
    csv.write_text("a,b\n1,2\n")
    parquet = tmp_path / "table.parquet"
    pd.DataFrame({"video": ["x.mp4"], "score": [1.0]}).to_parquet(parquet)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE predictions (id INTEGER, guess TEXT)")
    con.commit()
    con.close()
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\xff\xfe not json\n")
    return [ds / "metadata.jsonl", csv, parquet, text, other, junk]


def test_an_output_predict_did_not_write_is_refused_first_and_left_as_it_is(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=2)
    for path in _foreign_files(tmp_path, ds):
        before = path.read_bytes()
        with pytest.raises(ConfigError, match="is not a prediction file written by predict"):
            predict_to_file("tiny:default", ds, path, "all")
        assert path.read_bytes() == before, path
        assert not path.with_name(path.name + ".partial.jsonl").exists()
    out = predict("--input", ds, "--split", "all", "--output", ds / "metadata.jsonl")
    line = one_error_line(out)
    assert "metadata.jsonl exists and is not a prediction file written by predict" in line
    assert "give --output a new file" in line


def _write(path, windows: bool, videos=("clip_0000.mp4",)) -> None:
    writer = open_writer(path, SCHEMA, windows=windows)
    writer.write([make_row(SCHEMA, v, "tiny:default", "0" * 16, json.dumps(LABEL), None,
                           window=(0.0, 5.0) if windows else None) for v in videos])
    writer.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".sqlite"])
def test_files_predict_wrote_are_accepted_for_the_same_kind_of_rows_only(tmp_path, suffix):
    from core.serve.outfile import check_output

    win, whole = tmp_path / f"windows{suffix}", tmp_path / f"clips{suffix}"
    _write(win, windows=True)
    _write(whole, windows=False)
    check_output(win, windows=True)  # ours, the same kind: a re-run resumes it
    check_output(whole, windows=False)
    with pytest.raises(ConfigError, match="holds window rows; write whole-clip predictions to another file"):
        check_output(win, windows=False)
    with pytest.raises(ConfigError, match="holds whole-clip rows; write window predictions to another file"):
        check_output(whole, windows=True)


def test_whole_clip_predict_into_window_rows_is_refused_not_called_done(tmp_path):
    folder = clips(tmp_path / "in", 2)
    out = tmp_path / "w.jsonl"
    _write(out, windows=True, videos=("clip_0000.mp4", "clip_0001.mp4"))
    before = out.read_bytes()
    res = predict("--input", folder, "--output", out)
    assert "holds window rows; write whole-clip predictions to another file" in one_error_line(res)
    assert out.read_bytes() == before
    whole = tmp_path / "c.jsonl"
    _write(whole, windows=False, videos=("clip_0000.mp4", "clip_0001.mp4"))
    with pytest.raises(ConfigError, match="holds whole-clip rows"):
        predict_to_file("tiny:default", folder, whole, window_seconds=5)
    assert [r.get("start") for r in read_rows(whole)] == [None, None]


# --- a Ray address where no cluster answers ----------------------------------------------------------

@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # the listener was closed: the test is over
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    with contextlib.suppress(OSError):  # a listener may say "not connected"; close still ends it
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not on Linux
    server.close()
    for conn in held:
        conn.close()
    thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


def test_a_ray_address_where_no_cluster_answers_is_one_error_line(tmp_path, silent_port):
    folder = clips(tmp_path / "in", 1)
    for port, words in ((_closed_port(), "could not connect"), (silent_port, "no answer within")):
        out = predict("--input", folder, "--output", tmp_path / "p.jsonl", "--engine", "ray",
                      "--ray-address", f"127.0.0.1:{port}")
        line = one_error_line(out)
        assert f"--ray-address 127.0.0.1:{port}: {words}" in line and "leave --ray-address out" in line
        assert not list(tmp_path.glob("p.jsonl*"))


# --- eval with clips that cannot be read ---------------------------------------------------------------

def test_eval_leaves_unreadable_clips_out_of_every_score_and_says_so(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=2)
    (ds / "videos" / "broken.mp4").write_bytes(b"this is not a video")
    with (ds / "metadata.jsonl").open("a") as fh:
        fh.write(json.dumps({"video": "videos/broken.mp4", "split": "test", **LABEL}) + "\n")
    args = ("eval", "--model", "tiny:default", "--dataset", ds, "--split", "all", "--constrained",
            "--max-new-tokens", "64")
    out = run_cli(*args, "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["count"] == 2 and report["json_valid_rate"] == 1.0  # constrained: every read clip parses
    assert [x["video"] for x in report["left_out"]] == ["videos/broken.mp4"]
    assert "1 clip left out of every score: unreadable (" in " ".join(report["warnings"])
    text = run_cli(*args, timeout=600)
    assert text.returncode == 0, text.stderr[-3000:]
    assert "(2 clips scored; 1 left out: unreadable" in text.stdout
    assert "json_valid_rate        1.000" in text.stdout
    assert "broken.mp4" in text.stderr and "left out of every score: unreadable" in text.stderr
