"""Builders of small datasets in each layout that core.importers reads, from the bundled sample clips.

Each builder returns the labels it wrote, keyed by clip file name, so tests can compare what comes
back after an import without re-deriving it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import SAMPLES

LABEL_KEYS = ("caption", "event_type", "rule_violations", "intended_driving_action", "traffic_density", "visibility")


def sample_rows(n: int) -> list[dict]:
    with (SAMPLES / "metadata.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def label_of(row: dict) -> dict:
    return {k: row[k] for k in LABEL_KEYS}


def clip(row: dict) -> Path:
    return SAMPLES / row["video"]


def name(row: dict) -> str:
    return Path(row["video"]).name


def write_jsonl(path: Path, objects, raw_lines: dict[int, str] | None = None) -> None:
    """`raw_lines` puts literal text at given 1-based line numbers (to plant malformed lines)."""
    lines = [json.dumps(o) for o in objects]
    for line_no, text in sorted((raw_lines or {}).items()):
        lines.insert(line_no - 1, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_seed(root: Path, rows: list[dict], schema: bool = True) -> dict[str, dict]:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copy(clip(row), root / row["video"])
    write_jsonl(root / "metadata.jsonl", rows)
    if schema:
        shutil.copy(SAMPLES / "schema.json", root / "schema.json")
    return {name(r): label_of(r) for r in rows}


def make_videofolder(root: Path, rows: list[dict], per_split: bool = False) -> dict[str, tuple]:
    """HF VideoFolder with no `split` column: the split comes from train/ validation/ test/ folders."""
    folder_of = {"train": "train", "val": "validation", "test": "test"}
    by_folder: dict[str, list[dict]] = {}
    for row in rows:
        folder = folder_of[row["split"]]
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip(row), root / folder / name(row))
        by_folder.setdefault(folder, []).append({"file_name": name(row), **label_of(row)})
    if per_split:
        for folder, objects in by_folder.items():
            write_jsonl(root / folder / "metadata.jsonl", objects)
    else:
        flat = [{**o, "file_name": f"{folder}/{o['file_name']}"} for folder, objs in by_folder.items() for o in objs]
        write_jsonl(root / "metadata.jsonl", flat)
    return {name(r): (r["split"], label_of(r)) for r in rows}


def make_conversations(path: Path, rows: list[dict], style: str = "llava") -> dict[str, dict]:
    """A conversation file beside a clips/ folder. style: "llava" (.json list) or "messages" (.jsonl)."""
    (path.parent / "clips").mkdir(parents=True, exist_ok=True)
    records = []
    for row in rows:
        shutil.copy(clip(row), path.parent / "clips" / name(row))
        answer = json.dumps(label_of(row))
        if style == "llava":
            records.append({"id": name(row), "video": f"clips/{name(row)}", "conversations": [
                {"from": "human", "value": "<video>\nDescribe the clip as JSON."},
                {"from": "gpt", "value": answer}]})
        else:
            records.append({"videos": [f"clips/{name(row)}"], "messages": [
                {"role": "system", "content": "You are a dashcam analyst."},
                {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the clip as JSON."}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"```json\n{answer}\n```"}]}]})
    if path.suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return {name(r): label_of(r) for r in rows}


def make_qevd(root: Path, rows: list[dict], extra_manifest: int = 0) -> dict[str, dict]:
    """The shape QEVD-FIT preparation scripts leave: manifest {path from the parent: exercise},
    ground truth a list of {video_path: "./name", labels, labels_descriptive}."""
    manifest, truth = {}, []
    for i, row in enumerate(rows):
        exercise = "squats" if i % 2 else "push_ups"
        (root / exercise).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip(row), root / exercise / name(row))
        manifest[f"{root.name}/{exercise}/{name(row)}"] = exercise
        if i < len(rows) - extra_manifest:
            truth.append({"video_path": f"./{name(row)}", "labels": [row["event_type"]],
                          "labels_descriptive": [row["caption"]]})
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (root / "ground_truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return {name(r): {"exercise": "squats" if i % 2 else "push_ups", "labels": [r["event_type"]],
                      "labels_descriptive": [r["caption"]]}
            for i, r in enumerate(rows[: len(rows) - extra_manifest])}
