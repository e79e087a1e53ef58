"""What tests share: repository paths, small datasets and CLI runs, generated videos that show their
own frame index, bad files that must be refused, and datasets in every layout the importers read.

Fixtures live in conftest.py; plain helpers live here, imported as `from tests.support import ...`."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.warm_cli import import_time_env

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_videos"

LABEL = {"caption": "A drive.", "event_type": "no_incident", "rule_violations": [],
         "intended_driving_action": "turn_left", "traffic_density": "low", "visibility": "good"}


def make_dataset(root: Path, n: int = 4, rows: int | None = None) -> Path:
    """A small seed-layout dataset of real sample clips; the first `rows` clips have metadata rows."""
    (root / "videos").mkdir(parents=True)
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    src = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()[:n]]
    for row in src:
        shutil.copy(SAMPLES / row["video"], root / row["video"])
    keep = src if rows is None else src[:rows]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    return root


# Per call that went to a fresh interpreter: the import-time variables that differed from the warm
# server's (conftest prints a count at the end, so a session that lost its warm path says so).
COLD_CALLS: list[tuple[str, ...]] = []


def run_cli(*args, timeout=60, env=None):
    """`python cli.py ARGS` in a process of its own: a child forked by the warm server (tests/warm_cli.py)
    when this call's import-time environment is the server's, else a fresh interpreter. The timeout only
    guards against a hang; the assertion is on the output and exit code."""
    argv, full_env = [str(a) for a in args], {**os.environ, **(env or {})}
    wanted = import_time_env(full_env)
    with WarmCli.lock:  # held from choosing the server to its answer: no other thread replaces it between
        warm = WarmCli.shared()
        if warm is not None and wanted == warm.env:
            return warm.run(argv, full_env, timeout)
        ref = warm.env if warm is not None else WarmCli.latest_env()
    COLD_CALLS.append(tuple(sorted(k for k in wanted.keys() | ref.keys() if wanted.get(k) != ref.get(k))))
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=full_env)


class WarmCli:
    """The client of one tests/warm_cli.py server, started on first use and stopped at exit."""

    _servers: dict = {}  # import-time environment (items) -> server, least recently used first
    _calls: dict = {}  # import-time environment (items) -> calls made in it
    KEEP = 2
    lock = threading.RLock()  # one call at a time per process

    @classmethod
    def shared(cls) -> WarmCli | None:
        """The server of this process's current import-time environment, or None for the first call
        in a new one. Tests change it: importing app.py sets Gradio's and the Hub's defaults for the
        rest of the session, a Ray session marks the driver's environment. A single server of the
        first environment had sent every later call to a fresh interpreter (~5 s each), so an
        environment that is called in twice gets a server of its own (the last two used are kept).
        The first call in it runs in a fresh interpreter: many tests set a folder of their own
        (VVW_CACHE_DIR=tmp_path) for one call, and a server, which imports more than one command
        needs, would cost more than that call. A call that passes import-time variables of its own
        (`run_cli(..., env=...)`) also gets a fresh interpreter."""
        key = tuple(sorted(import_time_env(os.environ).items()))
        with cls.lock:
            cls._calls[key] = cls._calls.get(key, 0) + 1
            server = cls._servers.pop(key, None)
            if server is None:
                if cls._servers and cls._calls[key] < 2:
                    return None
                server = cls()
            cls._servers[key] = server
            while len(cls._servers) > cls.KEEP:
                cls._servers.pop(next(iter(cls._servers))).close()
            return server

    @classmethod
    def latest_env(cls) -> dict:
        return next(reversed(cls._servers.values())).env if cls._servers else {}

    def __init__(self):
        self.log = Path(tempfile.mkstemp(prefix="warm-cli-", suffix=".log")[1])
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "warm_cli.py")], cwd=REPO,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self._buffer = b""
        self.env = self._answer(300)["env"]
        atexit.register(self.close)

    def run(self, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(REPO / "cli.py"), *argv]
        with WarmCli.lock, tempfile.TemporaryDirectory(prefix="warm-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            request = {"argv": argv, "env": env, "cwd": str(REPO), "stdout": str(out), "stderr": str(err)}
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                pid = self._answer(60)["pid"]
            except (OSError, RuntimeError, TimeoutError):
                self.forget()  # a dead server is not kept for the next call
                raise
            try:
                code = self._answer(timeout)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._answer(60)
                raise subprocess.TimeoutExpired(cmd, timeout, out.read_text(errors="replace"),
                                                err.read_text(errors="replace")) from None
            return subprocess.CompletedProcess(cmd, code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def _answer(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the warm CLI server exited: {self.log.read_text()[-3000:]}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def forget(self) -> None:
        for key, server in list(WarmCli._servers.items()):
            if server is self:
                del WarmCli._servers[key]
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.unlink(missing_ok=True)


# --- videos that show their own frame index, and files that must be refused ----------------------

GRID_ROWS, GRID_COLS = 3, 4  # 12 bits: indices 0..4095


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame whose block (r, c) is white when bit r*GRID_COLS+c of ``index`` is set."""
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(GRID_ROWS * GRID_COLS):
        if index >> bit & 1:
            r, c = divmod(bit, GRID_COLS)
            ys = slice(r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS)
            xs = slice(c * width // GRID_COLS, (c + 1) * width // GRID_COLS)
            frame[ys, xs] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """Inverse of ``index_pattern``: average the middle of each block, threshold at mid-grey."""
    height, width = frame.shape[:2]
    gray = frame.astype(np.float32).mean(axis=2)
    index = 0
    for bit in range(GRID_ROWS * GRID_COLS):
        r, c = divmod(bit, GRID_COLS)
        y0, y1 = r * height // GRID_ROWS, (r + 1) * height // GRID_ROWS
        x0, x1 = c * width // GRID_COLS, (c + 1) * width // GRID_COLS
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        if gray[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean() > 127:
            index |= 1 << bit
    return index


def _codec_options(codec: str, gop: int, bframes: int) -> dict:
    if codec == "libx264":
        return {"x264-params": f"scenecut=0:keyint={gop}:min-keyint={gop}:bframes={bframes}", "crf": "10"}
    if codec == "libvpx-vp9":
        return {"g": str(gop), "keyint_min": str(gop), "crf": "10", "b": "0", "deadline": "realtime"}
    return {"g": str(gop), "bf": str(bframes), "q": "2"}


def write_test_video(
    path,
    n_frames: int = 30,
    fps=10,
    size: tuple[int, int] = (64, 48),
    gop: int = 10,
    codec: str = "libx264",
    moov_at_end: bool = False,
    rotation: int | None = None,
    bframes: int = 2,
) -> Path:
    """Encode ``n_frames`` index-pattern frames; the container follows the file extension.
    ``rotation`` stores a display matrix (counter-clockwise degrees) without turning pixels."""
    path = Path(path)
    width, height = size
    options = {}
    if path.suffix.lower() in (".mp4", ".mov") and not moov_at_end:
        options["movflags"] = "+faststart"
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate, options=_codec_options(codec, gop, bframes))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path) -> Path:
    """A valid mp4 with one AAC stream and no video."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_bad_files(directory) -> dict[str, Path]:
    """Files named like videos that probe/sample_frames must refuse with a VideoError."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bad = {"missing": d / "missing.mp4", "folder": d / "folder.mp4"}
    bad["folder"].mkdir(exist_ok=True)
    if hasattr(os, "mkfifo"):
        bad["fifo"] = d / "pipe.mp4"
        os.mkfifo(bad["fifo"])
    bad["empty"] = d / "empty.mp4"
    bad["empty"].write_bytes(b"")
    bad["text"] = d / "notes.mp4"
    bad["text"].write_text("this is not a video, just some text\n" * 20)
    bad["png"] = d / "picture.mp4"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(bad["png"], format="PNG")
    bad["garbage"] = d / "noise.mp4"
    bad["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    bad["audio_only"] = write_audio_only(d / "audio.mp4")
    full = write_test_video(d / "moov_end_full.mp4", n_frames=20, moov_at_end=True)
    bad["moov_missing"] = d / "moov_end_cut.mp4"
    bad["moov_missing"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return bad


# --- datasets in the layouts core.data.imports reads -----------------------------------------------

LABEL_KEYS = ("caption", "event_type", "rule_violations", "intended_driving_action", "traffic_density", "visibility")


def sample_rows(n: int) -> list[dict]:
    with (SAMPLES / "metadata.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def label_of(row: dict) -> dict:
    return {k: row[k] for k in LABEL_KEYS}


def clip(row: dict) -> Path:
    return SAMPLES / row["video"]


def name(row: dict) -> str:
    return Path(row["video"]).name


def write_jsonl(path: Path, objects, raw_lines: dict[int, str] | None = None) -> None:
    """`raw_lines` puts literal text at given 1-based line numbers (to plant malformed lines)."""
    lines = [json.dumps(o) for o in objects]
    for line_no, text in sorted((raw_lines or {}).items()):
        lines.insert(line_no - 1, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_seed(root: Path, rows: list[dict], schema: bool = True) -> dict[str, dict]:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copy(clip(row), root / row["video"])
    write_jsonl(root / "metadata.jsonl", rows)
    if schema:
        shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    return {name(r): label_of(r) for r in rows}


def make_videofolder(root: Path, rows: list[dict], per_split: bool = False) -> dict[str, tuple]:
    """HF VideoFolder with no `split` column: the split comes from train/ validation/ test/ folders."""
    folder_of = {"train": "train", "val": "validation", "test": "test"}
    by_folder: dict[str, list[dict]] = {}
    for row in rows:
        folder = folder_of[row["split"]]
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip(row), root / folder / name(row))
        by_folder.setdefault(folder, []).append({"file_name": name(row), **label_of(row)})
    if per_split:
        for folder, objects in by_folder.items():
            write_jsonl(root / folder / "metadata.jsonl", objects)
    else:
        flat = [{**o, "file_name": f"{folder}/{o['file_name']}"} for folder, objs in by_folder.items() for o in objs]
        write_jsonl(root / "metadata.jsonl", flat)
    return {name(r): (r["split"], label_of(r)) for r in rows}


def make_conversations(path: Path, rows: list[dict], style: str = "llava") -> dict[str, dict]:
    """A conversation file beside a clips/ folder. style: "llava" (.json list) or "messages" (.jsonl)."""
    (path.parent / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for row in rows:
        shutil.copy(clip(row), path.parent / "clips" / name(row))
        answer = json.dumps(label_of(row))
        if style == "llava":
            records.append({"id": name(row), "video": f"clips/{name(row)}", "conversations": [
                {"from": "human", "value": "<video>\nDescribe the clip as JSON."},
                {"from": "gpt", "value": answer}]})
        else:
            records.append({"videos": [f"clips/{name(row)}"], "messages": [
                {"role": "system", "content": "You are a dashcam analyst."},
                {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the clip as JSON."}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"```json\n{answer}\n```"}]}]})
    if path.suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return {name(r): label_of(r) for r in rows}


def make_qevd(root: Path, rows: list[dict], extra_manifest: int = 0) -> dict[str, dict]:
    """The shape QEVD-FIT preparation scripts leave: manifest {path from the parent: exercise},
    ground truth a list of {video_path: "./name", labels, labels_descriptive}."""
    manifest, truth = {}, []
    for i, row in enumerate(rows):
        exercise = "squats" if i % 2 else "push_ups"
        (root / exercise).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip(row), root / exercise / name(row))
        manifest[f"{root.name}/{exercise}/{name(row)}"] = exercise
        if i < len(rows) - extra_manifest:
            truth.append({"video_path": f"./{name(row)}", "labels": [row["event_type"]],
                          "labels_descriptive": [row["caption"]]})
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (root / "ground_truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return {name(r): {"exercise": "squats" if i % 2 else "push_ups", "labels": [r["event_type"]],
                      "labels_descriptive": [r["caption"]]}
            for i, r in enumerate(rows[: len(rows) - extra_manifest])}


# --- still images: a wildfire-from-satellite style yes/no task -----------------------------------

IMAGE_SCHEMA = {"type": "object", "properties": {"wildfire": {"type": "string", "enum": ["yes", "no"]}},
                "required": ["wildfire"], "additionalProperties": False}


def terrain(seed: int, fire: bool, size=(120, 80)) -> Image.Image:
    """Green-brown noise; a fire is a red/orange blob of random place and radius."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = rng.integers(60, 110, (h, w))
    img[..., 1] = rng.integers(90, 150, (h, w))
    img[..., 2] = rng.integers(30, 70, (h, w))
    if fire:
        cx, cy, r = rng.integers(20, w - 20), rng.integers(15, h - 15), rng.integers(8, 14)
        yy, xx = np.mgrid[:h, :w]
        blob = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[blob] = (235, int(rng.integers(60, 140)), 20)
    return Image.fromarray(img)


# --- the app as a process -------------------------------------------------------------------------

def start_app(args, log_path: Path, env: dict | None = None, wait_s: float = 240):
    """`python app.py ARGS --port P` in a subprocess, its output in `log_path` (a file: a pipe nobody
    reads would block it), returned once it answers HTTP 200: (process, base URL). Stop it with
    `stop_app`."""
    import time
    import urllib.request

    from core.runs.launch import free_port

    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), *map(str, args), "--port", str(port)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log = log
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + wait_s
    while True:
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            why = "exited early" if proc.poll() is not None else f"did not answer within {wait_s:.0f} s"
            stop_app(proc)
            raise AssertionError(f"app {why}; see {log_path}:\n" + Path(log_path).read_text()[-3000:])
        time.sleep(1)


def stop_app(proc) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    finally:
        proc.log.close()
