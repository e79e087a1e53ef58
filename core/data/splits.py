"""Train/val/test assignment: seeded, stratified by one field where possible, grouped by source video.

Chunks cut from one long video (`<stem>_chunkNNN.mp4`) form one group and always land in the same
split, so a model is never tested on seconds of a video it trained on. Stratification orders groups
by the chosen field's value, then hands out splits by "largest deficit" (the split furthest below
its share so far), which spreads every stratum over the splits in the requested ratios.
`assign_splits` only computes the assignment; `split_dataset` (what `cli.py split` and the Annotate
tab's Splits panel both call) reads a dataset's clips, assigns them and has the annotation store
write the result.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass

from core.data.dataset import SPLITS
from core.data.store import AnnotationStore
from core.errors import DatasetError

_CHUNK = re.compile(r"^(?P<stem>.+)_chunk\d{3,}$")


def source_group(rel: str) -> str:
    """The source video a clip came from: chunks of one video share a group."""
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    m = _CHUNK.match(stem)
    return f"{head}/{m.group('stem')}" if m else rel


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in str(text).replace(":", ",").split(",")]
    except ValueError:
        raise DatasetError(f"ratios {text!r}: give three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise DatasetError(f"ratios {text!r}: give three non-negative numbers like 0.8,0.1,0.1")
    total = sum(parts)
    return tuple(p / total for p in parts)


def _stratum(label: dict, field: str | None) -> str:
    if not field:
        return ""
    value = label.get(field)
    if isinstance(value, list):  # lists stratify by their sorted contents
        value = sorted(map(str, value))
    return repr(value)


def assign_splits(clips: list[tuple[str, dict]], ratios=(0.8, 0.1, 0.1), seed: int = 0,
                  stratify: str | None = None) -> dict[str, str]:
    """Map each clip path to train/val/test. `clips` are (relative path, label) pairs."""
    if len(ratios) != 3:
        raise DatasetError("ratios must be three numbers for train, val, test")
    groups: dict[str, list[str]] = defaultdict(list)
    group_label: dict[str, dict] = {}
    for rel, label in clips:
        g = source_group(rel)
        groups[g].append(rel)
        group_label.setdefault(g, label or {})
    rng = random.Random(seed)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for g in sorted(groups):
        by_stratum[_stratum(group_label[g], stratify)].append(g)
    ordered = []
    for key in sorted(by_stratum):
        members = by_stratum[key]
        rng.shuffle(members)
        ordered.extend(members)
    counts = dict.fromkeys(SPLITS, 0)
    total = 0
    out = {}
    for g in ordered:
        size = len(groups[g])
        total += size
        split = max(SPLITS, key=lambda s: ratios[SPLITS.index(s)] * total - counts[s])
        counts[split] += size
        for rel in groups[g]:
            out[rel] = split
    return out


@dataclass
class SplitSummary:
    assignment: dict[str, str]  # clip path -> train | val | test, for the clips assigned this time
    changed: int  # metadata rows whose split changed (or that were created)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.assignment.values() if v == s) for s in SPLITS}


def split_dataset(store_or_dir, ratios="0.8,0.1,0.1", seed: int = 0, stratify: str | None = None,
                  keep_existing: bool = False) -> SplitSummary:
    """Assign splits to a dataset's clips and write them. `ratios`: three numbers or text such as
    "0.8,0.1,0.1" (normalised); `keep_existing`: only clips without a split are assigned."""
    store = store_or_dir if isinstance(store_or_dir, AnnotationStore) else AnnotationStore(store_or_dir)
    if isinstance(ratios, str):
        ratios = parse_ratios(ratios)
    clips = [c for c in store.clips(check_video=False) if not keep_existing or c.split is None]
    assignment = assign_splits([(c.rel, c.label) for c in clips], ratios, seed, stratify or None)
    return SplitSummary(assignment, store.set_splits(assignment))
