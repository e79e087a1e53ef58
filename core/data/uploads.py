"""Uploads into a dataset folder: video and image files, or zips of them, copied into `videos/`.

`add_videos(root, files, chunk_seconds)` (what `AnnotationStore.add_videos` runs) probes every
file first, so one that is not a readable video or image is reported and skipped; zips are
unpacked to a temporary folder that is always removed afterwards, refusing members whose path would
escape the archive, an archive that declares more uncompressed bytes than `MAX_UNPACKED_BYTES` (or
than the free space), and a member that yields more bytes than it declares (a zip bomb); with
`chunk_seconds` a video is cut into N-second pieces (`core.video.frames.chunk_video`). Existing
clips are never overwritten: a numeric suffix is added.

It does not touch metadata.jsonl, drafts or the schema (the store does; so it takes no store
lock), and does not decode a video beyond probing and chunking it. An added clip therefore has no
metadata row, so no split (`AddedClips.no_split`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from core.errors import VideoError
from core.video.frames import chunk_video, is_image_path, is_media_path, probe

VIDEOS = "videos"
GiB = 1 << 30
# What one zip may unpack to; VVW_MAX_UNPACKED_GB overrides it (the free space is checked as well).
MAX_UNPACKED_BYTES = 20 * GiB
COPY_CHUNK = 1 << 20


@dataclass
class AddedClips:
    """What an upload added. Unpacks as `added, problems = ...` (the older tuple); `no_split` counts the
    added clips that have no split (all of them: a new clip has no metadata row yet) and `note` says
    what that means for training, for the caller to show."""

    added: list[str]
    problems: list[str]
    no_split: int = 0
    note: str = ""

    def __iter__(self):
        return iter((self.added, self.problems))


def max_unpacked_bytes() -> int:
    env = os.environ.get("VVW_MAX_UNPACKED_GB")
    try:
        return int(float(env) * GiB) if env else MAX_UNPACKED_BYTES
    except ValueError:
        return MAX_UNPACKED_BYTES


def add_videos(root: Path, files, chunk_seconds: float | None = None) -> AddedClips:
    """Copy uploaded videos (or the videos inside zips) into videos/, optionally cut into pieces.

    Returns the added relative paths and the problems (AddedClips). A file that is not a readable
    video is reported and skipped; existing clips are never overwritten (a numeric suffix is added).
    """
    added, problems = [], []
    dest = root / VIDEOS
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vvw-upload-") as tmp:  # removed whatever happens
        for src in _expand_uploads([Path(f) for f in files], Path(tmp), problems):
            try:
                probe(src)
                if chunk_seconds and not is_image_path(src):  # an image is one frame: nothing to cut
                    for piece in chunk_video(src, chunk_seconds, Path(tmp) / "_pieces"):
                        added.append(_move_unique(piece, dest).relative_to(root).as_posix())
                else:
                    target = _unique(dest / src.name)
                    shutil.copy2(src, target)
                    added.append(target.relative_to(root).as_posix())
            except VideoError as exc:
                # the name the person chose, not the upload's temporary path (/tmp/gradio/<hash>/...)
                problems.append(f"{src.name}: {exc.reason}")
    return AddedClips(added, problems, no_split=len(added))


def split_note(n: int, has_train: bool) -> str:
    """What `n` clips added without a split mean for training (AddedClips.note); `has_train`: some
    row is in the train split (training then takes only those)."""
    clips = f"{n} clip{'s' if n != 1 else ''} added without a split"
    if not has_train:
        return f"{clips} (no clip is in the train split: training takes the labelled clips without a split)"
    return (f"{clips}: training uses the train split, so label them and assign splits (Annotate → Splits with "
            "'Keep existing splits', or `cli.py split --keep-existing`), or training leaves them out")


def _unique(target: Path) -> Path:
    n, candidate = 1, target
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
        n += 1
    return candidate


def _move_unique(piece: Path, dest: Path) -> Path:
    target = _unique(dest / piece.name)
    shutil.move(piece, target)  # the pieces are cut in the temp folder, maybe on another filesystem
    return target


def _expand_uploads(paths: list[Path], tmp: Path, problems: list[str]) -> list[Path]:
    """Videos among the uploads; zips are unpacked into `tmp` (see _unzip)."""
    out = []
    for n, p in enumerate(paths):
        if p.suffix.lower() == ".zip":
            out.extend(_unzip(p, tmp / f"zip{n}", problems))
        elif is_media_path(p):
            out.append(p)
        else:
            problems.append(f"{p.name}: not a video or image file (expected .mp4, .mov, .avi, .mkv, .webm, .jpg, .png "
                            "or a .zip of them)")
    return out


def _unzip(p: Path, folder: Path, problems: list[str]) -> list[Path]:
    """The media members of zip `p`, unpacked (flat) into `folder`. Refused whole when it declares more
    than the limit or the free space; a member whose path escapes, that is damaged, or that yields
    more bytes than declared is skipped."""
    try:
        with zipfile.ZipFile(p) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and is_media_path(Path(i.filename))]
            declared = sum(i.file_size for i in members)
            folder.mkdir(parents=True)
            limit = max_unpacked_bytes()
            free = shutil.disk_usage(folder).free
            if declared > limit or declared > free:
                why = (f"more than the {limit / GiB:g} GiB limit (VVW_MAX_UNPACKED_GB)" if declared > limit
                       else f"more than the {free / GiB:.1f} GiB free for unpacking")
                problems.append(f"{p.name}: the archive declares {declared / GiB:.1f} GiB of videos, {why}; not "
                                "unpacked (upload the videos in smaller zips)")
                return []
            for info in members:
                name = Path(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    problems.append(f"{p.name}: {info.filename}: path escapes the archive; skipped")
                    continue
                target = _unique(folder / name.name)
                try:
                    _copy_member(zf, info, target)
                except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
                    target.unlink(missing_ok=True)
                    # zipfile says "Bad CRC-32 for file ..." for a member that yields more or other bytes
                    # than it declares: say what that means for the person
                    problems.append(f"{p.name}: {info.filename}: damaged or not what the archive declares ({exc}); "
                                    "skipped")
            return sorted(f for f in folder.iterdir() if f.is_file())
    except zipfile.BadZipFile:
        problems.append(f"{p.name}: not a valid zip file")
    except OSError as exc:
        problems.append(f"{p.name}: cannot unpack ({exc.strerror or exc})")
    return []


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Copy one member, stopping as soon as it yields more than its declared size."""
    written = 0
    with zf.open(info) as fin, open(target, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:  # zipfile itself stops at the declared size (a CRC error): a second guard
                raise ValueError(f"expands beyond its declared {info.file_size} bytes (a damaged or hostile archive)")
            fout.write(chunk)
