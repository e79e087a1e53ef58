"""Uploads into a dataset folder: video and image files, or zips of them, copied into `videos/`.

`add_videos(root, files, chunk_seconds)` (what `AnnotationStore.add_videos` runs) probes every
file first, so one that is not a readable video or image is reported and skipped; zips are
unpacked to a temporary folder that is always removed afterwards, refusing members whose path would
escape the archive, an archive that declares more uncompressed bytes than `MAX_UNPACKED_BYTES` (or
than the free space), and a member that yields more bytes than it declares (a zip bomb); with
`chunk_seconds` a video is cut into N-second pieces (`core.video.frames.chunk_video`). Existing
clips are never overwritten: a numeric suffix is added, and a clip appears under its name only when
complete (`place_unique`). `prepare_clip` and `place_unique` are shared with core.data.ingest (adding
clips from folders on this machine), which runs the first in worker processes.

It does not touch metadata.jsonl, drafts or the schema (the store does; so it takes no store
lock), and does not decode a video beyond probing and chunking it. An added clip therefore has no
metadata row, so no split (`AddedClips.no_split`).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
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
PART = ".part"  # staged copies (`.NAME.xxxxxxxx.part`): not a media extension, so no listing shows them


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
                for piece in prepare_clip(src, Path(tmp) / "_pieces", chunk_seconds):
                    # a piece is ours to move; the upload itself is copied (Gradio keeps its own file)
                    target = place_unique(piece, dest / piece.name, move=piece != src)
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


def prepare_clip(src: Path, work: Path, chunk_seconds: float | None = None) -> list[Path]:
    """What `src` adds to a dataset: `[src]` itself, or with `chunk_seconds` its N-second pieces cut
    into `work` (`<stem>_chunk000.mp4`, ...; an image is one frame, so it is never cut). Probes first:
    VideoError (with its reason) when `src` is not a readable video or image."""
    probe(src)
    if chunk_seconds and not is_image_path(src):
        return chunk_video(src, chunk_seconds, work)
    return [src]


def place_unique(piece: Path, target: Path, move: bool = False) -> Path:
    """Put `piece` at `target`, or at `<stem>_1<suffix>`, `_2`, ... when a clip has that name; returns
    where it went. Never overwrites and never shows a half-written clip: the bytes are first staged
    under a hidden `.part` name in the target's folder (unless `piece` can be moved there as is),
    then hard-linked in, which fails rather than replace a file that appeared meanwhile."""
    target.parent.mkdir(parents=True, exist_ok=True)
    same_disk = move and os.stat(piece).st_dev == os.stat(target.parent).st_dev
    staged = piece if same_disk else target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{PART}")
    try:
        if staged != piece:
            shutil.copy2(piece, staged)
        while True:
            candidate = _unique(target)
            try:
                _link_new(staged, candidate)
                return candidate
            except FileExistsError:
                continue  # another writer took that name between the check and the link: the next one
    finally:
        if staged != piece:
            staged.unlink(missing_ok=True)
        if move:
            piece.unlink(missing_ok=True)


def _link_new(src: Path, dst: Path) -> None:
    """`dst` becomes `src`'s bytes, or FileExistsError. A filesystem without hard links gets a
    checked rename (a race there can only lose to a writer in the same instant)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from exc
        os.replace(src, dst)


def _unique(target: Path) -> Path:
    n, candidate = 1, target
    while os.path.lexists(candidate):
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
        n += 1
    return candidate


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
