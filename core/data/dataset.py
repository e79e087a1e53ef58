"""Reading a dataset folder in the seed layout: `videos/` + `metadata.jsonl` (+ `schema.json`).

Each metadata line is one JSON object with `video` (a path relative to the folder), an optional
`split`, and the label fields. The path may name a still image (jpg, png, ...) as well as a video:
core.video.frames samples an image as a one-frame clip, so image datasets need nothing else. Bad lines and unsafe paths are reported per line and skipped; they
never stop the rest from loading. Writing, importing other layouts and splitting belong to the
annotation store, not here.
"""

from __future__ import annotations

import fcntl
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.data import journal
from core.errors import DatasetError
from core.layout import METADATA_FILE, SCHEMA_FILE
from core.schema.base import load_schema

log = logging.getLogger(__name__)

METADATA = METADATA_FILE
SCHEMA = SCHEMA_FILE
RESERVED_KEYS = ("video", "split", "file_name", "id")
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    video: Path  # absolute path, checked to stay inside the dataset root
    rel: str  # as written in metadata
    label: dict
    split: str | None
    line: int


@dataclass
class Dataset:
    root: Path
    schema: dict | None
    samples: list[Sample]
    problems: list[str] = field(default_factory=list)  # "metadata.jsonl:LINE: reason"

    def split(self, name: str) -> list[Sample]:
        if name == "all":
            return list(self.samples)
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; use one of {', '.join(SPLITS)} or all")
        return [s for s in self.samples if s.split == name]


LOCK = ".store.lock"


@contextmanager
def dataset_lock(root):
    """The dataset folder's write lock (an exclusive flock on `.store.lock`): whoever rewrites
    metadata.jsonl (the store's saves, an import merging into the folder) holds it from reading the
    file to replacing it, so neither loses the other's rows."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def settle(root) -> int:
    """Fold the store's pending edits (metadata.pending.jsonl, see core.data.journal) into
    metadata.jsonl, under the lock, so that whoever reads the file next sees them; returns how many
    there were. Every whole-file reader and writer outside the store calls this first (loading a
    dataset for training, prediction or export, an import, a split). A folder that cannot be
    written keeps its edits pending: logged, and the file is read as it is."""
    root = Path(root)
    if not journal.pending_path(root / METADATA).exists():
        return 0  # the common case costs one stat
    try:
        with dataset_lock(root):
            return journal.fold_file(root / METADATA)
    except OSError as exc:
        log.warning("%s: could not fold %s into %s (%s); its edits are not in what is read now",
                    root, journal.pending_path(root / METADATA).name, METADATA, exc)
        return 0


def safe_video_path(root: Path, rel: str) -> Path:
    """Resolve `rel` under `root`, refusing absolute paths, `..` and symlinks that leave the root."""
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetError("empty video path")
    candidate = Path(rel)
    if candidate.is_absolute():
        raise DatasetError(f"{rel}: absolute paths are not allowed (use a path relative to the dataset)")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DatasetError(f"{rel}: path escapes the dataset folder")
    return resolved


def load_dataset(root, schema_path=None) -> Dataset:
    root = Path(root)
    meta = root / METADATA
    settle(root)
    if not meta.is_file():
        raise DatasetError(f"{root}: no {METADATA} (expected the seed layout: videos/ + {METADATA})")
    schema_file = Path(schema_path) if schema_path else root / SCHEMA
    schema = load_schema(schema_file) if schema_file.is_file() else None
    samples, problems = [], []
    with meta.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                samples.append(_parse_line(root, line, line_no))
            except DatasetError as exc:
                problems.append(f"{METADATA}:{line_no}: {exc}")
    for p in problems:
        log.warning("%s: %s", root, p)
    return Dataset(root=root, schema=schema, samples=samples, problems=problems)


def _parse_line(root: Path, line: str, line_no: int) -> Sample:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"malformed JSON at column {exc.colno}: {exc.msg}") from exc
    if not isinstance(row, dict):
        raise DatasetError("line is not a JSON object")
    rel = row.get("video", row.get("file_name"))
    video = safe_video_path(root, rel)
    label = {k: v for k, v in row.items() if k not in RESERVED_KEYS}
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}")
    return Sample(video=video, rel=rel, label=label, split=split, line=line_no)
