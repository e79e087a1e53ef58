"""The OpenAI-compatible server under load: requests/s and p50/p95 latency for 1, 4 and 8 concurrent
clients, beside `predict`'s clips/s on the same clips, in one run.

    python bench/serve_api.py [--clips 16] [--model tiny:default] [--repeats 2] [--max-new-tokens 64]
                              [--concurrency 1,4,8] [--batch-size 8]

`cli.py serve` runs as its own process (what a user starts), called by the official `openai` client
from one thread per concurrent client, each sending the next clip by path until all are answered.
predict's figure is the same engine `cli.py predict` runs (Predictor.predict, batch --batch-size,
frames decoded ahead), in this process, after its model loaded. Frames are sampled (and cached)
before timing, for both. The settings run round-robin in a rotating order within each repeat (only
one at a time: the idle one waits), and each setting's figure is its best repeat. With batching,
8 concurrent clients should come close to predict's clips/s; 1 client is one clip per forward pass.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, machine, machine_line, save_result, setup_path, table  # noqa: E402

setup_path()


def start_server(args, folder: Path, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO_ROOT / "cli.py"), "serve", args.model, "--port", str(port), "--allow-dir",
           str(folder), "--schema", str(folder / "schema.json"), "--max-new-tokens", str(args.max_new_tokens),
           "--batch-size", str(args.batch_size)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the server did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def clients_run(base: str, model: str, clips: list[Path], concurrency: int) -> list[float]:
    """Send every clip once from `concurrency` threads; the latency of each request, in seconds."""
    import openai

    todo, lock, latencies, failures = list(clips), threading.Lock(), [], []

    def worker():
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=600)
        while True:
            with lock:
                if not todo:
                    return
                clip = todo.pop()
            t0 = time.perf_counter()
            try:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": str(clip)}}]}])
            except openai.APIError as exc:
                failures.append(f"{clip.name}: {exc}")
            latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit("requests failed:\n" + "\n".join(failures[:5]))
    return latencies


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--model", default="tiny:default")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]

    import openai

    from core.runs.launch import free_port
    from core.schema.base import load_schema
    from core.serve.predictor import Predictor
    from core.video.frames import sample_frames

    info = machine()
    print(f"machine: {machine_line(info)}")
    samples = REPO_ROOT / "sample_videos"
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    folder = work / "clips"
    folder.mkdir()
    clips = []
    for src in sorted((samples / "videos").glob("*.mp4"))[: args.clips]:
        clips.append(Path(shutil.copy(src, folder)))
    shutil.copy(samples / "schema.json", folder / "schema.json")
    port = free_port()
    server = start_server(args, folder, port, work / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        model = openai.OpenAI(base_url=f"{base}/v1", api_key="bench").models.list().data[0].id
        predictor = Predictor.load(args.model, schema=load_schema(folder / "schema.json"))
        for clip in clips:  # frames cached for both (the server reads the same cache)
            sample_frames(clip, predictor.spec.sampling_spec)
        predictor.predict(clips[:2], batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, constrained=True)
        clients_run(base, model, clips[:2], 2)  # warm-up: the server's grammar compiled, its threads started

        def run_predict():
            predictor.predict(clips, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, constrained=True)

        settings = ["predict"] + [f"api x{c}" for c in levels]
        times = {s: [] for s in settings}
        latencies = {s: [] for s in settings}
        for r in range(args.repeats):
            for s in settings[r % len(settings):] + settings[:r % len(settings)]:
                t0 = time.perf_counter()
                if s == "predict":
                    run_predict()
                else:
                    latencies[s].append(clients_run(base, model, clips, int(s.split("x")[1])))
                times[s].append(time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(timeout=60)
    rows, out = [], {}
    predict_rate = len(clips) / min(times["predict"])
    for s in settings:
        best_i = min(range(len(times[s])), key=times[s].__getitem__)
        rate = len(clips) / times[s][best_i]
        entry = {"best_s": round(times[s][best_i], 3), "per_s": round(rate, 3),
                 "vs_predict": round(rate / predict_rate, 3), "repeats_s": [round(t, 3) for t in times[s]]}
        if s != "predict":
            lat = latencies[s][best_i]
            entry.update(p50_s=round(statistics.median(lat), 3), p95_s=round(percentile(lat, 0.95), 3))
        out[s] = entry
        rows.append([s, f"{entry['best_s']:.2f}", f"{rate:.2f}", f"{entry.get('p50_s', '-')}",
                     f"{entry.get('p95_s', '-')}", f"{entry['vs_predict']:.2f}x"])
    print(f"\n### serving vs predict ({len(clips)} clips, max_new_tokens {args.max_new_tokens}, batch "
          f"{args.batch_size}, best of {args.repeats})")
    print(table(rows, ["setting", "best s", "clips or requests /s", "p50 s", "p95 s", "vs predict"]))
    result = {"machine": info, "args": vars(args), "settings": out}
    save_result("serve_api", result)
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
