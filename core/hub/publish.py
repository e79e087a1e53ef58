"""Build the folder a Hub repository gets, then create the repository and upload that folder.

`model_folder` writes exactly what `publish_run` uploads (so `--dry-run DIR` is the same code minus
the upload): the adapter or the merged model, safetensors weights only (a run's `training_args.bin`
and any pickled weights stay home), `preprocessing.json`, `schema.json`, `training_config.yaml`,
`evaluation.json` and the model card. An adapter whose base is not on the Hub (the tiny default, a
local folder) would load for nobody else, so such a run is published merged, and the result says so.
The evaluation is run here through core.serve.report when a dataset is at hand (the run's own by
default), base and fine-tuned on the same split. Token: huggingface_hub's usual lookup (HF_TOKEN,
then `hf auth login`'s file); the endpoint: HF_ENDPOINT, as for every huggingface_hub call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError, DatasetError, WorkbenchError
from core.fileio import atomic_write_text
from core.hub.card import dataset_card, dump_evaluation, model_card, read_config
from core.hub.checks import ClipCheck, check_run
from core.hub.staging import DATASET_PREFIX, RUN_PREFIX, interrupted, interruptible, staging_dir
from core.hub.transfer import UploadState, hub_token, upload
from core.layout import CONFIG_FILE, DATA_FILE, FINAL_DIR, HUB_CONFIG_FILE, METADATA_FILE, SCHEMA_FILE
from core.schema.calibration import for_run
from core.spec import PreprocessSpec, copy_calibration

log = logging.getLogger(__name__)

# Files of a run's final/ folder that never leave the machine: pickles (safetensors only) and the
# card peft writes (ours replaces it).
_LEFT_OUT = {"training_args.bin", "README.md"}
_PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass
class Published:
    """What `publish_run`/`publish_dataset` did: the folder built, its files, where it went."""

    folder: Path
    files: list[str]
    repo_id: str
    url: str | None = None  # None for a dry run
    merged: bool = False
    notes: list[str] = field(default_factory=list)


def is_hub_id(name: str) -> bool:
    """`owner/name` that is not a local path: what from_pretrained would fetch from the Hub."""
    name = str(name)
    return (name.count("/") == 1 and not name.startswith((".", "/", "~")) and ":" not in name
            and not Path(name).exists())


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--repo-id {repo_id!r}: give it as owner/name (your user or organisation, a repository name)")
    try:  # the Hub's own rules (characters, length), here rather than after minutes of evaluation
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ConfigError(f"--repo-id {repo_id!r}: {str(exc).splitlines()[0]}") from exc
    return repo_id


def _copy_model_files(src: Path, dest: Path) -> None:
    for item in sorted(src.iterdir()):
        if item.name in _LEFT_OUT or item.suffix in _PICKLED or item.is_dir():
            continue
        shutil.copy2(item, dest / item.name)


def _suppressed(folder: Path, frames_as: str) -> list[int]:
    from core.models.inputs import suppressed_token_ids
    from core.models.loading import ModelSource, load_processor

    return suppressed_token_ids(load_processor(ModelSource(base=str(folder))), frames_as)


def run_evaluation(run_dir: Path, spec: PreprocessSpec, dataset, split: str, constrained: bool = False) -> dict:
    """Base and fine-tuned scored on `split` of `dataset` (core.serve.report.evaluate_models)."""
    from core.serve.report import evaluate_models

    return evaluate_models(None, dataset, split, [spec.base_model, str(run_dir)], constrained=constrained)


def _train_clips(snapshot: Path) -> int:
    """Clips of the run's data snapshot that training used (the train split; all when none has a split)."""
    if not snapshot.is_file():
        return 0
    rows = []
    for line in snapshot.read_text(encoding="utf-8", errors="replace").splitlines():
        try:  # only a count for the card: a damaged line is not a clip, and no reason to refuse
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    with_split = [r for r in rows if r.get("split")]
    return sum(1 for r in with_split if r["split"] == "train") if with_split else len(rows)


def _run_dataset(run_dir: Path) -> Path | None:
    from core.layout import DATASET_FILE

    path = run_dir / DATASET_FILE
    folder = Path(path.read_text(encoding="utf-8", errors="replace").strip()) if path.is_file() else None
    return folder if folder is not None and folder.is_dir() else None


def model_folder(run_dir, dest, repo_id: str, merged: bool = False, evaluation: dict | None = None,
                 license: str | None = None, datasets: list[str] | None = None) -> Published:
    """Write the repository folder of a finished run at `dest` (missing or empty)."""
    from core.train.merge import merge_run

    run_dir, dest, repo_id = Path(run_dir), Path(dest), check_repo_id(repo_id)
    spec = check_run(run_dir)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest}: already exists and is not empty; choose another folder")
    config = read_config(run_dir)
    final = run_dir / FINAL_DIR
    is_adapter = (final / "adapter_config.json").is_file()
    hub_base = spec.base_model if is_hub_id(spec.base_model) else None
    notes = []
    if is_adapter and not merged and hub_base is None:
        merged = True
        notes.append(f"the base `{spec.base_model}` is not on the Hub, so an adapter would load for nobody else: "
                     "publishing the merged model instead")
    merged = merged and is_adapter  # a full fine-tune is already a whole model
    if merged:
        if dest.exists():
            dest.rmdir()
        merge_run(run_dir, dest)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        _copy_model_files(final, dest)
        dataclasses.replace(spec, final_dir=".").save(dest)
        copy_calibration(run_dir, dest)  # (a merge copies it itself)
        if is_adapter and hub_base:  # the run recorded where it loaded the base from; others need the id
            cfg_path = dest / "adapter_config.json"
            adapter_cfg = json.loads(cfg_path.read_text())
            adapter_cfg["base_model_name_or_path"] = hub_base
            atomic_write_text(cfg_path, json.dumps(adapter_cfg, indent=2) + "\n")
    clips = _train_clips(run_dir / DATA_FILE)
    atomic_write_text(dest / SCHEMA_FILE, json.dumps(spec.schema, indent=2, ensure_ascii=False) + "\n")
    shutil.copy2(run_dir / CONFIG_FILE, dest / HUB_CONFIG_FILE)
    if evaluation:
        atomic_write_text(dest / "evaluation.json", dump_evaluation(evaluation))
    card = model_card(spec, repo_id, config=config, merged=merged, hub_base=hub_base, evaluation=evaluation,
                      fine_tuned=str(run_dir), clips=clips, suppress=_suppressed(dest, spec.frames_as),
                      license=license, datasets=datasets, calibration=for_run(run_dir))
    atomic_write_text(dest / "README.md", card)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    return Published(dest, files, repo_id, merged=merged, notes=notes)


def _evaluate(run_dir: Path, dataset, split: str | None) -> tuple[list[str], dict | None]:
    if not split:
        return [], None
    data = Path(dataset) if dataset else _run_dataset(run_dir)
    if data is None:
        return ["not evaluated: the run's dataset folder is gone (give --dataset DIR)"], None
    try:
        return [], run_evaluation(run_dir, PreprocessSpec.load(run_dir), data, split)
    except WorkbenchError as exc:
        if dataset:
            raise
        return [f"not evaluated: {exc}"], None


def publish_run(run_dir, repo_id: str, merged: bool = False, private: bool = False, dry_run=None,
                dataset=None, split: str | None = "test", license: str | None = None,
                datasets: list[str] | None = None, token: str | None = None) -> Published:
    """Publish a run (`cli.py push`, the Export tab). `dry_run`: write the folder there and upload
    nothing. `split=None`: no evaluation; otherwise base and fine-tuned are scored on it (on `dataset`,
    default the run's own; without one at hand the card says it was not evaluated). Ctrl-C or SIGTERM:
    PublishInterrupted, saying what was kept; the upload copy in RUN/hub-* is removed either way."""
    run_dir, repo_id = Path(run_dir), check_repo_id(repo_id)
    if dry_run is None:
        token = hub_token(token)
    check_run(run_dir)  # a damaged run: one line now, not after minutes of evaluation and merging
    state = UploadState()
    try:
        with interruptible():
            notes, evaluation = _evaluate(run_dir, dataset, split)
            if dry_run is not None:
                result = model_folder(run_dir, dry_run, repo_id, merged, evaluation, license, datasets)
            else:
                with staging_dir(run_dir, RUN_PREFIX) as tmp:
                    result = model_folder(run_dir, tmp / "repo", repo_id, merged, evaluation, license, datasets)
                    kind = "merged model" if result.merged else "model"
                    result.url = upload(result.folder, repo_id, "model", private, token,
                                        f"Upload {kind} from Video VLM Workbench", state)
    except KeyboardInterrupt:
        raise interrupted(repo_id, run_dir, state.committing, dry_run) from None
    result.notes[:0] = notes
    return result


def dataset_folder(dataset_dir, dest, repo_id: str, license: str | None = None) -> Published:
    """Write a dataset as Hugging Face VideoFolder (core.data.exports) plus schema.json and a card.
    Clips that do not open as videos are left out (each listed in the notes with its reason); a
    dataset with no readable clip is refused."""
    from core.data.exports import export_videofolder

    dest, repo_id = Path(dest), check_repo_id(repo_id)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest}: already exists and is not empty; choose another folder")
    created, clips = not dest.exists(), ClipCheck()
    report = export_videofolder(dataset_dir, dest, keep=clips)
    if report.rows == 0:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        why = "; ".join(clips.left_out[:5]) + (" ..." if len(clips.left_out) > 5 else "")
        raise DatasetError(f"{dataset_dir}: no readable clip to publish" + (f" ({why})" if why else ""))
    counts = {d.name: sum(1 for line in (d / METADATA_FILE).open() if line.strip())
              for d in sorted(dest.iterdir()) if (d / METADATA_FILE).is_file()}
    schema_path = dest / SCHEMA_FILE
    schema = json.loads(schema_path.read_text()) if schema_path.is_file() else None
    atomic_write_text(dest / "README.md", dataset_card(schema, repo_id, counts, license))
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    return Published(dest, files, repo_id, notes=clips.left_out + list(report.problems))


def publish_dataset(dataset_dir, repo_id: str, private: bool = False, dry_run=None, license: str | None = None,
                    token: str | None = None) -> Published:
    """Publish a dataset folder (`cli.py push-dataset`). `dry_run`: write the folder there, upload nothing.
    Ctrl-C or SIGTERM: PublishInterrupted, saying what was kept; the upload copy is removed."""
    repo_id = check_repo_id(repo_id)
    if dry_run is None:
        token = hub_token(token)
    state = UploadState()
    try:
        with interruptible():
            if dry_run is not None:
                return dataset_folder(dataset_dir, dry_run, repo_id, license)
            with staging_dir(tempfile.gettempdir(), DATASET_PREFIX) as tmp:
                result = dataset_folder(dataset_dir, tmp / "repo", repo_id, license)
                result.url = upload(result.folder, repo_id, "dataset", private, token,
                                    "Upload dataset from Video VLM Workbench", state)
    except KeyboardInterrupt:
        raise interrupted(repo_id, Path(dataset_dir), state.committing, dry_run) from None
    return result
