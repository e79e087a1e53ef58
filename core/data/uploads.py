"""Uploads into a dataset folder: video and image files, or zips of them, copied into `videos/`.

`add_videos(root, files, chunk_seconds)` (what `AnnotationStore.add_videos` runs) probes every
file first, so one that is not a readable video or image is reported and skipped; zips are
unpacked to a temporary folder, refusing members whose path would escape the archive; with
`chunk_seconds` a video is cut into N-second pieces (`core.video.frames.chunk_video`). Existing
clips are never overwritten: a numeric suffix is added.

It does not touch metadata.jsonl, drafts or the schema (the store does; so it takes no store
lock), and does not decode a video beyond probing and chunking it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import VideoError
from core.video.frames import chunk_video, is_image_path, is_media_path, probe

VIDEOS = "videos"


def add_videos(root: Path, files, chunk_seconds: float | None = None) -> tuple[list[str], list[str]]:
    """Copy uploaded videos (or the videos inside zips) into videos/, optionally cut into pieces.

    Returns (added relative paths, problems). A file that is not a readable video is reported and
    skipped; existing clips are never overwritten (a numeric suffix is added).
    """
    added, problems = [], []
    dest = root / VIDEOS
    dest.mkdir(parents=True, exist_ok=True)
    for src in _expand_uploads([Path(f) for f in files], problems):
        try:
            probe(src)
            if chunk_seconds and not is_image_path(src):  # an image is one frame: nothing to cut
                pieces = chunk_video(src, chunk_seconds, dest / "_incoming")
                for piece in pieces:
                    added.append(_move_unique(piece, dest))
                shutil.rmtree(dest / "_incoming", ignore_errors=True)
            else:
                target = _unique(dest / src.name)
                shutil.copy2(src, target)
                added.append(target.relative_to(root).as_posix())
        except VideoError as exc:
            # the name the person chose, not the upload's temporary path (/tmp/gradio/<hash>/...)
            problems.append(f"{src.name}: {exc.reason}")
    return [a if isinstance(a, str) else a.relative_to(root).as_posix() for a in added], problems


def _unique(target: Path) -> Path:
    n, candidate = 1, target
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
        n += 1
    return candidate


def _move_unique(piece: Path, dest: Path) -> Path:
    target = _unique(dest / piece.name)
    piece.replace(target)
    return target


def _expand_uploads(paths: list[Path], problems: list[str]) -> list[Path]:
    """Videos among the uploads; zips are unpacked (members that would escape are refused)."""
    import tempfile
    import zipfile

    out = []
    for p in paths:
        if p.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(p) as zf:
                    tmp = Path(tempfile.mkdtemp(prefix="vvw-zip-"))
                    for info in zf.infolist():
                        name = Path(info.filename)
                        if info.is_dir() or not is_media_path(name):
                            continue
                        if name.is_absolute() or ".." in name.parts:
                            problems.append(f"{p.name}: {info.filename}: path escapes the archive; skipped")
                            continue
                        target = tmp / name.name
                        with zf.open(info) as fin, open(_unique(target), "wb") as fout:
                            shutil.copyfileobj(fin, fout)
                    out.extend(sorted(f for f in tmp.iterdir() if f.is_file()))
            except zipfile.BadZipFile:
                problems.append(f"{p.name}: not a valid zip file")
        elif is_media_path(p):
            out.append(p)
        else:
            problems.append(f"{p.name}: not a video or image file (expected .mp4, .mov, .avi, .mkv, .webm, .jpg, .png "
                            "or a .zip of them)")
    return out
