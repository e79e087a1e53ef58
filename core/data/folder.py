"""The dataset folder's video files and whether each can be decoded, without asking twice.

`VideoFiles` lists videos/ again only when one of its folders changed (a folder's mtime moves
when an entry is added, removed or renamed). `Probes` answers "why can this clip not be used"
once per file size and mtime and keeps the answer in the index cache, so a new process knows
which clips were unreadable without probing 100,000 videos again.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.data.dataset import safe_video_path
from core.data.lines import fingerprint
from core.data.uploads import VIDEOS
from core.errors import DatasetError, VideoError
from core.video.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, probe

MEDIA = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS  # what core.video.frames.is_media_path accepts, by name


class VideoFiles:
    def __init__(self, root: Path):
        self.root = root
        self._dirs: dict | None = None
        self.rels: list[str] = []
        self.known: frozenset = frozenset()

    def current(self) -> list[str]:
        """Video and image files under videos/ (relative paths, sorted); a new list object when they changed."""
        if self._dirs is not None and all(fingerprint(d) == fp for d, fp in self._dirs.items()):
            return self.rels
        # plain strings, not Path objects: at 100,000 files pathlib alone costs about a second
        dirs, found, cut = {}, [], len(str(self.root)) + 1
        todo = [str(self.root / VIDEOS)]
        while todo:
            folder = todo.pop()
            try:
                dirs[folder] = fingerprint(folder)  # before listing: a change meanwhile is seen next time
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                elif os.path.splitext(e.name)[1].lower() in MEDIA and e.is_file():
                    found.append(e.path[cut:])
        found.sort()
        self._dirs, self.rels, self.known = dirs, found, frozenset(found)
        return self.rels


class Probes:
    def __init__(self, root: Path, cache):
        self.root = root
        self._cache = cache
        self.version = 0  # moves when a clip's answer changes, so listings derived from it are redone

    def known(self, rel: str) -> str | None:
        """The last answer for `rel` (None: readable or never probed), without touching the file."""
        found = self._cache.probes().get(rel)
        return found[2] if found else None

    def reason(self, rel: str, path: Path | None = None) -> str | None:
        """Why the clip's video cannot be used (unsafe path, missing, not decodable), or None."""
        if path is None:
            try:
                path = safe_video_path(self.root, rel)
            except DatasetError as exc:
                return str(exc)
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        known = self._cache.probes().get(rel)
        if known and tuple(known[:2]) == (size, mtime):
            return known[2]
        reason = "file not found"
        if size >= 0:
            try:
                probe(path)
                reason = None
            except VideoError as exc:
                reason = exc.reason
        if (known[2] if known else None) != reason:
            self.version += 1
        self._cache.put_probes({rel: (size, mtime, reason)})
        return reason
