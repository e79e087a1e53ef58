"""Writing a seed dataset out: as a seed copy, as Hugging Face VideoFolder, or as conversation JSONL.

`export_dataset(dataset, dest, fmt)` is the one entry the CLI and both tabs call. Conversation
answers are the `canonical_answer` text a model trains on; a dataset without a schema keeps a
plain-text `answer` as text when importing it back gives the same label. Videos are hard-linked
when possible, else copied; nothing is decoded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.data.dataset import METADATA, SCHEMA, Sample, load_dataset
from core.data.imports.layouts import ANSWER_KEY, VIDEO_TOKEN, answer_label, read_seed
from core.data.imports.rows import ImportReport
from core.data.imports.writing import place_video, run_import
from core.errors import DatasetError
from core.fileio import atomic_write_text
from core.schema.base import ANSWER_SEPARATORS, canonical_answer
from core.schema.prompt import build_instruction


def export_seed(dataset_dir, dest, keep: Callable[[dict], bool] | None = None) -> ImportReport:
    """Copy a seed dataset to `dest`; `keep(row)` (row: `video`, `split` and label fields) filters rows."""
    source = read_seed(Path(dataset_dir), None)
    if keep is not None:
        source.rows = [r for r in source.rows if keep({"video": r.rel, **r.fields})]
    return run_import(source, Path(dest), "seed", copy_videos=True, merge=False)


def export_conversations(dataset_dir, out_path, instruction: str | None = None) -> ImportReport:
    """Write one conversation record per sample to `out_path` (JSONL). The human turn is
    `instruction`, by default the one built from the dataset's schema (as training builds it).

    Video paths stay relative to `dataset_dir`: import the file back with `video_root=dataset_dir`
    unless it sits in that folder.
    """
    dataset = load_dataset(dataset_dir)
    if instruction is None:
        if dataset.schema is None:
            raise DatasetError(f"{dataset_dir}: no schema.json; the conversation prompt is built from it")
        instruction = build_instruction(dataset.schema)
    prompt = f"{VIDEO_TOKEN}\n{instruction}"
    lines = []
    for sample in dataset.samples:
        record: dict = {"video": sample.rel}
        if sample.split:
            record["split"] = sample.split
        record["conversations"] = [{"from": "human", "value": prompt},
                                   {"from": "gpt", "value": _answer_text(dataset.schema, sample.label)}]
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(out_path, "".join(lines))
    return ImportReport(len(lines), list(dataset.problems), "conversation", Path(out_path), instruction)


HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def export_videofolder(dataset_dir, dest, keep: Callable[[Sample], bool] | None = None) -> ImportReport:
    """Hugging Face VideoFolder layout: `dest/<train|validation|test>/` with the clips and a
    `metadata.jsonl` whose `file_name` is relative to that folder (`datasets.load_dataset("videofolder")`
    reads it). Clips without a split go to train, and are reported. `keep(sample)` filters samples."""
    dataset = load_dataset(dataset_dir)
    dest = Path(dest)
    problems = list(dataset.problems)
    per_split: dict[str, list[str]] = {}
    samples = [s for s in dataset.samples if keep is None or keep(s)]
    for sample in samples:
        split = HF_SPLITS.get(sample.split or "train")
        if sample.split is None:
            problems.append(f"{sample.rel}: no split; exported under train/")
        rel = Path(sample.rel)
        name = rel.relative_to("videos") if rel.parts[0] == "videos" else rel
        place_video(sample.video, dest / split / name)
        per_split.setdefault(split, []).append(json.dumps({"file_name": name.as_posix(), **sample.label},
                                                          ensure_ascii=False) + "\n")
    for split, lines in per_split.items():
        atomic_write_text(dest / split / METADATA, "".join(lines))
    if dataset.schema is not None:
        atomic_write_text(dest / SCHEMA, json.dumps(dataset.schema, indent=2, ensure_ascii=False) + "\n")
    return ImportReport(len(samples), problems, "videofolder", dest)


def _answer_text(schema: dict | None, label: dict) -> str:
    if schema is not None:
        return canonical_answer(schema, label)  # the exact text a model trains on
    text = label.get(ANSWER_KEY)
    # A plain-text answer goes out as text only when importing it gives this label back.
    if len(label) == 1 and isinstance(text, str) and answer_label(text) == label:
        return text
    return json.dumps(label, ensure_ascii=False, separators=ANSWER_SEPARATORS)


DATASET_FORMATS = ("seed", "videofolder", "conversation")


def export_dataset(dataset_dir, dest, fmt: str) -> ImportReport:
    """The one entry for every dataset export (CLI, Annotate and Export tabs): `seed` and
    `videofolder` write a folder at `dest`; `conversation` writes JSONL at `dest` (into
    `dest/conversations.jsonl` when `dest` is a folder), its prompt built from the dataset's schema."""
    if fmt == "seed":
        return export_seed(dataset_dir, dest)
    if fmt == "videofolder":
        return export_videofolder(dataset_dir, dest)
    if fmt != "conversation":
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(DATASET_FORMATS)}")
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / "conversations.jsonl"
    return export_conversations(dataset_dir, dest)
