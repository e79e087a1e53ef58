"""Where the workbench keeps derived files (frame cache, built tiny models)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of derived, re-creatable files. Override with VVW_CACHE_DIR (tests use a temp dir)."""
    root = Path(os.environ.get("VVW_CACHE_DIR", REPO_ROOT / ".cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


BUNDLED_DATASET = REPO_ROOT / "sample_videos"


def data_dir() -> Path:
    """Where the app keeps the datasets it made itself: VVW_DATA_DIR, else `data/` beside the code
    (git-ignored, like checkpoints/)."""
    return Path(os.environ.get("VVW_DATA_DIR", REPO_ROOT / "data"))


def default_dataset() -> Path:
    """The dataset the app opens when none is given: a copy of the bundled sample_videos/, made on
    first start. Labelling, drafts, uploads and the store's lock then land in the copy, never in the
    git-tracked bundle (a first session used to rewrite its metadata.jsonl). Videos are hard-linked
    where the file system allows (the app never writes into a video), else copied; the copy is
    built beside its final name and renamed, so an interrupted first start leaves no half dataset."""
    import shutil

    target = data_dir() / BUNDLED_DATASET.name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)

    def link_or_copy(src, dst):
        if Path(src).parent.name != "videos":  # text files a person may edit in place: real copies
            return shutil.copy2(src, dst)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(BUNDLED_DATASET, partial, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__", ".*"))
    try:
        partial.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(partial, ignore_errors=True)
    return target
