"""File writes that readers may race with.

`atomic_write_text` writes a temp file in the target's folder, fsyncs it and renames it over the
target, so a reader (the UI, another process) sees the old or the new text, never half of it, and
a crash leaves the old file intact. Used by the store, run directories, specs and exports.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path, text: str) -> None:
    """Write via a temp file in the same folder then os.replace: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
