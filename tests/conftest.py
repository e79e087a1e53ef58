"""Shared fixtures. Every test session gets its own cache folder (tiny model build, frame cache),
so tests never read or pollute the repository's .cache/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_videos"

if "VVW_CACHE_DIR" not in os.environ:
    os.environ["VVW_CACHE_DIR"] = tempfile.mkdtemp(prefix="vvw-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_path():
    from core.tiny import ensure_tiny

    return ensure_tiny("default")


@pytest.fixture(scope="session")
def tiny(tiny_path):
    """(model, processor, family) of the untrained embedded default."""
    from core.models import load_model, resolve_model

    return load_model(resolve_model("tiny:default"))
