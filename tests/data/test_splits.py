"""Split assignment: ratios, seeds, stratification, and chunks of one source never split apart."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from core.data.splits import assign_splits, parse_ratios, source_group
from core.errors import DatasetError
from tests.support import SAMPLES


def sample_clips():
    rows = [json.loads(line) for line in (SAMPLES / "metadata.jsonl").read_text().splitlines()]
    return [(r["video"], {k: v for k, v in r.items() if k not in ("video", "split")}) for r in rows]


def test_ratios_and_stratification_on_the_samples():
    clips = sample_clips()
    out = assign_splits(clips, (0.8, 0.1, 0.1), seed=3, stratify="event_type")
    counts = Counter(out.values())
    assert counts == {"train": 240, "val": 30, "test": 30}
    overall = Counter(label["event_type"] for _, label in clips)
    for split, n in counts.items():
        in_split = Counter(label["event_type"] for rel, label in clips if out[rel] == split)
        for value, total in overall.items():
            # each stratum's share within a split is within one clip of its share overall
            assert abs(in_split[value] - total * n / len(clips)) <= 1.0 + 1e-9, (split, value)


def test_seed_changes_assignment_and_is_reproducible():
    clips = sample_clips()
    a = assign_splits(clips, seed=1, stratify="event_type")
    assert a == assign_splits(clips, seed=1, stratify="event_type")
    assert a != assign_splits(clips, seed=2, stratify="event_type")


def test_chunks_of_one_source_stay_together():
    clips = [(f"videos/long{v}_chunk{i:03d}.mp4", {"k": "a"}) for v in range(12) for i in range(5)]
    clips += [(f"videos/short{i}.mp4", {"k": "b"}) for i in range(40)]
    out = assign_splits(clips, (0.6, 0.2, 0.2), seed=0, stratify="k")
    for v in range(12):
        assert len({out[f"videos/long{v}_chunk{i:03d}.mp4"] for i in range(5)}) == 1
    assert set(out.values()) == {"train", "val", "test"}
    assert source_group("a/b/x_chunk007.mp4") == "a/b/x" and source_group("a/x.mp4") == "a/x.mp4"


def test_parse_ratios():
    assert parse_ratios("8,1,1") == (0.8, 0.1, 0.1)
    for bad in ("0.8,0.2", "a,b,c", "-1,1,1", "0,0,0"):
        with pytest.raises(DatasetError):
            parse_ratios(bad)
