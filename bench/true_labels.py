"""A copy of a generated dataset whose labels are what its videos show, before the label noise of
``generate.py --difficulty D`` (10% per field at D = 1; with a level per part, only ``labels=``
adds noise) was applied; the videos are hard links.

    python bench/true_labels.py --from DIR --out DIR2 --seed S --count N --val V --test T --difficulty D

The arguments are the ones DIR was generated with: the plan (labels, splits, render seeds) is
rebuilt from them and checked line by line against DIR's metadata.jsonl before anything is written.
Issue 24 scores the review ranking against these labels: a person reviewing a draft sees the video,
so a "wrong field" is one that differs from what the video shows, and no model score can find a
flipped label.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"
sys.path.insert(0, str(SAMPLES))
from difficulty import Difficulty, parse_levels  # noqa: E402
from generate import metadata_record, plan_dataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--out", required=True)
    for name in ("seed", "count"):
        ap.add_argument(f"--{name}", type=int, required=True)
    ap.add_argument("--val", type=int)
    ap.add_argument("--test", type=int)
    ap.add_argument("--difficulty", default="1", help="as given to generate.py")
    args = ap.parse_args()
    try:
        args.difficulty = parse_levels(args.difficulty)
    except ValueError as exc:
        ap.error(f"--difficulty: {exc}")
    src, out = Path(args.src), Path(args.out)
    plan = plan_dataset(args.seed, args.count, args.val, args.test, Difficulty.from_level(args.difficulty).label_noise)
    given = [json.loads(line) for line in (src / "metadata.jsonl").read_text().splitlines() if line.strip()]
    if [metadata_record(e) for e in plan] != given:
        raise SystemExit(f"{src}: its metadata.jsonl is not what these arguments generate")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for e in plan:
        dst = out / e["video"]
        if not dst.exists():
            os.link(src / e["video"], dst)
    shutil.copy(src / "schema.json", out / "schema.json")
    rows = [metadata_record(dict(e, labels=e["true_labels"])) for e in plan]
    (out / "metadata.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    flipped = sum(e["labels"] != e["true_labels"] for e in plan)
    print(f"wrote {len(rows)} clips to {out}; {flipped} had a label that differs from the video")
    return 0


if __name__ == "__main__":
    sys.exit(main())
