"""The annotation store at 1k / 20k / 100k rows: listing, first gallery page, one save, Save & next,
search and status filter, with the code of this checkout and (optionally) an older checkout.

    python bench/store_scale.py [--sizes 1000,20000,100000] [--before /tmp/store-old] [--workdir DIR]

Each size gets a dataset of hard links to the bundled clips (`videos/cNNNNNN.mp4`, so no video
bytes are copied) with a metadata row for 9 clips in 10 (the tenth is unlabelled); the "before"
side gets its own copy. Every measurement runs in a fresh worker process that imports the code
under test from its checkout (`--before` is such a checkout, e.g. `git worktree add /tmp/store-old
242be91`), in this order: list clips (cold: the first store of the process), first gallery page
(a second, new store: what opening the app costs), then on that store one save, Save & next
(save + find the next clip to do, the tab's own `save`), search and status filter, each the median
of `--repeats`, and last `store.fold()`: writing the saves a big dataset keeps in
metadata.pending.jsonl into metadata.jsonl, the cost one save in 256 pays (core.data.journal). The new code's index cache (a SQLite file under the worker's cache folder) is
removed before its run and made by the listing, so the first build of the index is the first
column; the gallery page is then a new store with that cache present. Operations the old code
needs minutes for (probing every video at 100k) are skipped and shown as "-". After the runs the
datasets are re-read and checked: row count, every edit present, no malformed line. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REPO_ROOT, machine_line  # noqa: E402

SAMPLES = REPO_ROOT / "sample_videos"
LABEL = {"caption": "bench edit", "event_type": "near_miss", "rule_violations": [],
         "intended_driving_action": "turn_left", "traffic_density": "low", "visibility": "good"}
SLOW_OLD = 50_000  # at or above this many rows the old code's probe-every-video steps are skipped


def build(root: Path, n: int) -> int:
    """A dataset of `n` clips (hard links); returns its metadata row count."""
    if root.exists():
        shutil.rmtree(root)
    (root / "videos").mkdir(parents=True)
    shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    src = [json.loads(x) for x in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    lines = []
    for i in range(n):
        row = src[i % len(src)]
        rel = f"videos/c{i:06d}.mp4"
        os.link(SAMPLES / row["video"], root / rel)
        if i % 10 != 9:
            lines.append(json.dumps({**row, "video": rel}) + "\n")
    (root / "metadata.jsonl").write_text("".join(lines))
    return len(lines)


def worker(code: str, root: str, repeats: int, slow: bool) -> dict:
    """Runs in its own process with `code` first on sys.path."""
    sys.path.insert(0, code)
    from core.data.store import AnnotationStore
    from tabs.annotate import gallery_items, save

    out, saved = {}, {}
    t = time.perf_counter()
    clips = AnnotationStore(root).clips(check_video=False)
    out["list"] = time.perf_counter() - t
    out["clips"] = len(clips)
    todo = [c.rel for c in clips if not c.label]
    done = [c.rel for c in clips if c.label]
    t = time.perf_counter()
    AnnotationStore(root).clips(check_video=False)
    out["list_again"] = time.perf_counter() - t
    if slow:
        _saves(AnnotationStore(root), done, repeats, saved, out)
        return {**out, "edits": saved}
    store = AnnotationStore(root)
    t = time.perf_counter()
    _, rels, _, _ = gallery_items(store)
    out["page"] = time.perf_counter() - t
    _saves(store, done, repeats, saved, out)
    times = []
    for k in range(repeats):
        rel = todo[k]
        current = {"rel": rel, "revision": store.clip_revision(rel)}
        label = dict(LABEL, caption=f"save-next {k}")
        t = time.perf_counter()
        save(store, current, label, "train", rels)
        times.append(time.perf_counter() - t)
        saved[rel] = label["caption"]
    out["save_next"] = statistics.median(times)
    for name, args in (("search", ("all", "c000123")), ("filter", ("unlabelled", ""))):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            _, found, _, _ = gallery_items(store, *args)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
        out[name + "_found"] = len(found)
    out["edits"] = saved
    if hasattr(store, "fold"):  # the whole-file write a big dataset's saves defer (every 256 saves, or on demand)
        t = time.perf_counter()
        store.fold()
        out["fold"] = time.perf_counter() - t
    return out


def _saves(store, done: list[str], repeats: int, saved: dict, out: dict) -> None:
    times = []
    for k in range(repeats):
        rel = done[len(done) // 2 + k]  # rows in the middle: everything after them moves
        rev = store.clip_revision(rel)
        label = dict(LABEL, caption=f"save {k}")
        t = time.perf_counter()
        store.save_label(rel, label, rev)
        times.append(time.perf_counter() - t)
        saved[rel] = label["caption"]
    out["save"] = statistics.median(times)


def run_worker(code: Path, root: Path, repeats: int, slow: bool, cache: Path) -> dict:
    env = {**os.environ, "VVW_CACHE_DIR": str(cache), "PYTHONPATH": str(code)}
    cmd = [sys.executable, __file__, "--worker", str(code), str(root), str(repeats), str(int(slow))]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({code}, {root}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(root: Path, rows: int, result: dict) -> str:
    """Nothing lost: every line parses, one row per clip that had one or was saved, every edit there.
    Read as any script would, after folding what the store still holds as pending edits."""
    sys.path.insert(0, str(REPO_ROOT))
    from core.data.dataset import settle

    settle(root)
    lines = [json.loads(x) for x in (root / "metadata.jsonl").read_text().splitlines() if x.strip()]
    by_video = {r["video"]: r for r in lines}
    added = sum(1 for rel in result["edits"] if int(rel[-10:-4]) % 10 == 9)
    lost = [rel for rel, cap in result["edits"].items() if by_video.get(rel, {}).get("caption") != cap]
    ok = len(lines) == len(by_video) == rows + added and not lost
    return f"{'ok' if ok else 'LOST'}: {len(lines)} rows (expected {rows + added}), {len(result['edits'])} edits " \
           f"{'all present' if not lost else 'missing: ' + ', '.join(lost[:5])}"


def fmt(x) -> str:
    return "-" if x is None else (f"{x:.3f} s" if x < 1 else f"{x:.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,20000,100000")
    p.add_argument("--before", type=Path, help="an older checkout to measure the same way (git worktree)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/store_scale"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(machine_line())
    sides = [("after", REPO_ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    table = []
    for n in map(int, args.sizes.split(",")):
        for side, code in sides:
            root = args.workdir / f"{side}-{n}"
            rows = build(root, n)
            cache = args.workdir / f"cache-{side}"
            shutil.rmtree(cache / "store", ignore_errors=True)  # the store's index cache: a first build
            slow = side == "before" and n >= SLOW_OLD
            result = run_worker(code, root, args.repeats, slow, cache)
            table.append((n, side, result, check(root, rows, result)))
            print(f"{n:>7,} {side:<6} " + " ".join(f"{k}={fmt(result.get(k))}" for k in
                  ("list", "list_again", "page", "save", "save_next", "search", "filter", "fold"))
                  + f"  [{table[-1][3]}]",
                  flush=True)
    print("\n| rows | code | list clips (first store) | list clips (new store) | first gallery page (new store) "
          "| save one label | Save & next | search | status filter | fold | nothing lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, side, r, verdict in table:
        print(f"| {n:,} | {side} | {fmt(r.get('list'))} | {fmt(r.get('list_again'))} | {fmt(r.get('page'))} | "
              f"{fmt(r.get('save'))} | "
              f"{fmt(r.get('save_next'))} | {fmt(r.get('search'))} | {fmt(r.get('filter'))} | {fmt(r.get('fold'))} | "
              f"{verdict} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        code, root, repeats, slow = sys.argv[2:6]
        print(json.dumps(worker(code, root, int(repeats), slow == "1")))
    else:
        main()
