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
