"""Importing other dataset layouts into the seed layout: detecting the layout and reading it.

The seed layout is what the rest of the workbench reads (see core.data.dataset): `videos/` +
`metadata.jsonl` (one object per line: `video`, optional `split`, label fields) + optional
`schema.json`. `detect_layout` names the layouts accepted here:

- "seed": a folder whose metadata.jsonl rows use `video`. Importing one copies it (to clean or merge).
- "videofolder": Hugging Face VideoFolder. Rows use `file_name`, relative to the metadata file's
  folder; either one metadata.jsonl at the top (`"file_name": "train/a.mp4"`) or one per split folder
  (`train/metadata.jsonl`). A row's own `split` wins; otherwise a top folder named train,
  validation/val/valid/dev or test sets it.
- "conversation": a .json list or a .jsonl file of InternVL/LLaVA records
  `{"video": "a.mp4", "conversations": [{"from": "human", "value": "<video>\\n..."},
  {"from": "gpt", "value": "..."}]}`, or the messages form `{"videos": ["a.mp4"], "messages":
  [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}` (content may be a
  string or a list of `{"type": "text", "text": ...}` parts). A folder holding exactly one such file
  counts too. Video paths are relative to `video_root` (default: the file's folder); an optional
  `split` and `id` on the record are kept. The label comes from the first answer turn: if the
  answer starts with `{` or a code fence and `extract_json` finds an object there, its fields are
  the label; any other answer becomes `{"answer": text}`. The human prompt is never a label; the
  most common one comes back as `ImportReport.instruction`. Records with several answers keep the
  first and say so; records with several videos are refused.
- "qevd": a folder with manifest.json + ground_truth.json as QEVD-FIT preparation scripts leave
  them, and a few variants (shapes in core.data.imports.qevd).

Per-row problems (malformed line with its line number, missing video, a path leaving the source root
by `..`, absolute path or symlink, a record without an answer, a duplicate video, an unknown split)
are reported as "FILE:LINE_OR_ID: reason" and that row is skipped (an unknown split only loses the
split); the rest still imports. This module detects the layout and reads it into a `Source`;
checking each row's video, placing the videos and writing metadata.jsonl is
`core.data.imports.writing` (`run_import`).

Not here: planning and writing the import (core.data.imports.writing), exports (core.data.exports),
schema inference (core.data.schema_infer), checking labels against a schema (core.schema.base),
making splits, decoding videos (they are copied as bytes, never opened).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from core.data.dataset import METADATA, RESERVED_KEYS, SCHEMA, settle
from core.data.imports.qevd import read_qevd
from core.data.imports.rows import (
    GROUND_TRUTH,
    MANIFEST,
    SPLIT_ALIASES,
    ImportReport,
    Row,
    Source,
    jsonl_objects,
    read_json,
    schema_in,
    without,
)
from core.data.imports.writing import run_import
from core.errors import DatasetError
from core.schema.base import extract_json
from core.video.container import file_problem

LAYOUTS = ("seed", "videofolder", "conversation", "qevd")
ANSWER_KEY = "answer"  # label field that holds a non-JSON conversation answer
VIDEO_TOKEN = "<video>"
_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant", "model", "bot"}
_DETECT_LINES = 20  # a few bad first lines must not hide the layout of an otherwise good file


# ---------------------------------------------------------------- detection


def detect_layout(src) -> str:
    src = Path(src)
    if src.is_file():
        if src.name == METADATA:
            return detect_layout(src.parent)
        if _is_conversation_file(src):
            return "conversation"
        raise DatasetError(f"{src}: not a conversation file (expected a JSON list or JSONL of records "
                           "with `conversations` or `messages`)")
    if not src.is_dir():  # missing, or a FIFO / device / socket: file_problem says which
        raise DatasetError(f"{src}: {file_problem(src, missing='no such file or folder')}")
    if (src / METADATA).is_file():
        return _metadata_layout(src / METADATA)
    if (src / MANIFEST).is_file() and (src / GROUND_TRUTH).is_file():
        return "qevd"
    if _split_metadata_files(src):
        return "videofolder"
    _conversation_file(src)  # raises when there is not exactly one
    return "conversation"


def _metadata_layout(meta: Path) -> str:
    for _, obj in jsonl_objects(meta, meta.name, [], limit=_DETECT_LINES):
        if "video" in obj:
            return "seed"
        if "file_name" in obj:
            return "videofolder"
    raise DatasetError(f"{meta}: no row with `video` (seed layout) or `file_name` (VideoFolder) "
                       f"in the first {_DETECT_LINES} lines")


def _split_metadata_files(folder: Path) -> list[Path]:
    return sorted(d / METADATA for d in folder.iterdir()
                  if d.is_dir() and d.name.lower() in SPLIT_ALIASES and (d / METADATA).is_file())


def _is_conversation_file(path: Path) -> bool:
    if path.suffix.lower() == ".jsonl":
        first = next(jsonl_objects(path, path.name, [], limit=_DETECT_LINES), None)
        record = first[1] if first else None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, json.JSONDecodeError):
            return False
        record = data[0] if isinstance(data, list) and data else None
    else:
        return False
    return isinstance(record, dict) and any(isinstance(record.get(k), list) for k in ("conversations", "messages"))


def _conversation_file(src: Path) -> Path:
    if src.is_file():
        return src
    skip = {METADATA, SCHEMA, MANIFEST, GROUND_TRUTH}
    found = [p for p in sorted(src.iterdir())
             if p.is_file() and p.name not in skip and _is_conversation_file(p)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DatasetError(f"{src}: several conversation files ({', '.join(p.name for p in found)}); "
                           "import one file at a time")
    raise DatasetError(f"{src}: unknown layout; expected {METADATA} (seed or VideoFolder), {MANIFEST} + "
                       f"{GROUND_TRUTH} (QEVD), or one conversation .json/.jsonl file")


# ---------------------------------------------------------------- seed and VideoFolder


def read_seed(src: Path, video_root: Path | None) -> Source:
    folder = src.parent if src.is_file() else src
    settle(folder)  # a dataset the app is editing: its pending edits are part of what is copied
    source = Source(video_root or folder, [], schema=schema_in(folder))
    for line_no, obj in jsonl_objects(folder / METADATA, METADATA, source.problems):
        rel = obj.get("video", obj.get("file_name"))
        source.rows.append(Row(f"{METADATA}:{line_no}", rel, without(obj, ("video", "file_name"))))
    return source


def _read_videofolder(src: Path, video_root: Path | None) -> Source:
    folder = src.parent if src.is_file() else src
    source = Source(video_root or folder, [], schema=schema_in(folder))
    metas = [folder / METADATA] if (folder / METADATA).is_file() else _split_metadata_files(folder)
    for meta in metas:
        label = meta.relative_to(folder).as_posix()
        base = meta.parent.relative_to(folder)
        for line_no, obj in jsonl_objects(meta, label, source.problems):
            name = obj.get("file_name")
            rel = (base / name).as_posix() if isinstance(name, str) and name.strip() else name
            fields = without(obj, ("file_name", "video"))
            split = _split_from_path(rel)
            if "split" not in fields and split:
                fields = {"split": split, **fields}
            source.rows.append(Row(f"{label}:{line_no}", rel, fields))
    return source


def _split_from_path(rel) -> str | None:
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    return SPLIT_ALIASES.get(parts[0].lower()) if len(parts) > 1 else None


# ---------------------------------------------------------------- conversations


def _read_conversation(src: Path, video_root: Path | None) -> Source:
    path = _conversation_file(src)
    source = Source(video_root or path.parent, [], schema=schema_in(path.parent))
    prompts: Counter = Counter()
    for where, record in _conversation_records(path, source.problems):
        row = _conversation_row(where, record, source.problems, prompts)
        if row is not None:
            source.rows.append(row)
    source.instruction = prompts.most_common(1)[0][0] if prompts else None
    return source


def _conversation_records(path: Path, problems: list[str]) -> Iterator[tuple[str, dict]]:
    if path.suffix.lower() == ".jsonl":
        for line_no, obj in jsonl_objects(path, path.name, problems):
            yield f"{path.name}:{line_no}", obj
        return
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of conversation records")
    for index, obj in enumerate(data, 1):  # "#N": a record index, since a .json list has no useful line
        if isinstance(obj, dict):
            yield f"{path.name}:#{index}", obj
        else:
            problems.append(f"{path.name}:#{index}: not a JSON object")


def _conversation_row(where: str, record: dict, problems: list[str], prompts: Counter) -> Row | None:
    try:
        rel = _record_video(record)
        turns = _turns(record)
    except DatasetError as exc:
        problems.append(f"{where}: {exc}")
        return None
    answers = [text for role, text in turns if role == "assistant"]
    if not answers:
        problems.append(f"{where}: no answer turn (from gpt / role assistant); skipped")
        return None
    if len(answers) > 1:
        problems.append(f"{where}: {len(answers)} answer turns; only the first is imported")
    prompt = next((text for role, text in turns if role == "user"), "")
    if prompt.strip():
        prompts[prompt.replace(VIDEO_TOKEN, "").strip()] += 1
    label = answer_label(answers[0])
    clashing = [k for k in label if k in RESERVED_KEYS]
    if clashing:
        problems.append(f"{where}: answer field(s) {', '.join(clashing)} are reserved; dropped")
    kept = {k: record[k] for k in ("split", "id") if k in record}
    return Row(where, rel, {**kept, **without(label, RESERVED_KEYS)})


def _record_video(record: dict) -> str:
    video = record.get("video", record.get("videos"))
    if isinstance(video, list):
        if len(video) != 1:
            raise DatasetError(f"{len(video)} videos in one record; only single-video records are supported")
        video = video[0]
    if not isinstance(video, str) or not video.strip():
        raise DatasetError("no video path (`video` or `videos`)")
    return video


def _turns(record: dict) -> list[tuple[str, str]]:
    items = record.get("conversations", record.get("messages"))
    if not isinstance(items, list):
        raise DatasetError("no `conversations` or `messages` list")
    turns = []
    for item in items:
        if not isinstance(item, dict):
            continue
        role = str(item.get("from", item.get("role", ""))).lower()
        kind = "user" if role in _USER_ROLES else "assistant" if role in _ASSISTANT_ROLES else None
        if kind:  # system turns and tool calls carry no label
            turns.append((kind, _text(item.get("value", item.get("content")))))
    return turns


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                       if isinstance(p, str) or (isinstance(p, dict) and p.get("type", "text") == "text"))
    return ""


def answer_label(text: str) -> dict:
    """JSON-object answers become their fields; prose stays prose (a `{` inside a sentence is not JSON)."""
    stripped = text.strip()
    if stripped.startswith(("{", "```")):
        obj, _ = extract_json(stripped)
        if obj is not None:
            return obj
    return {ANSWER_KEY: stripped}


# ---------------------------------------------------------------- QEVD


def _read_qevd(src: Path, video_root: Path | None) -> Source:
    return read_qevd(src, video_root)


_READERS: dict[str, Callable[[Path, Path | None], Source]] = {
    "seed": read_seed,
    "videofolder": _read_videofolder,
    "conversation": _read_conversation,
    "qevd": _read_qevd,
}


# ---------------------------------------------------------------- public entry points


def import_dataset(src, dest, layout: str = "auto", copy_videos: bool = True, video_root=None,
                   merge: bool = False) -> ImportReport:
    """Write the dataset at `src` into `dest` in the seed layout.

    `copy_videos=False` writes only metadata and requires every video to already lie under `dest`.
    `video_root` overrides the folder that video paths are relative to. `merge=True` appends to an
    existing metadata.jsonl the rows whose video it does not list yet.
    """
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or folder")
    layout = detect_layout(src) if layout == "auto" else layout
    if layout not in _READERS:
        raise DatasetError(f"unknown layout {layout!r}; use auto or one of {', '.join(LAYOUTS)}")
    source = _READERS[layout](src, Path(video_root) if video_root else None)
    return run_import(source, dest, layout, copy_videos, merge)
