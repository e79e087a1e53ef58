"""A dataset folder: clips, their labels and their splits.

Owns the seed layout (`videos/`, `metadata.jsonl`, `schema.json`, `drafts.jsonl`) read as a
`Dataset` (`dataset`), the annotation store that writes it one locked, atomic change at a time with
revisions and conflicts (`store`) over an index of the rows that is reused while the file is
unchanged (`lines`, `checks`, `statuses`, `folder`, `drafts`, with what it learnt kept between
processes by `index_cache`), big datasets' saves kept in a journal of pending edits until folded
into metadata.jsonl (`journal`, `pending`; `settle` folds it for whole-file readers), the gallery's pages, search, Save & next and background video scan
(`listing`), copying uploaded files and zips into `videos/` (`uploads`), adding clips from files,
folders and globs on this machine in worker processes, resumable (`ingest`),
seeded stratified splits (`splits`), importing other layouts (`imports`), exporting seed /
VideoFolder / conversation JSONL (`exports`), schema inference from existing labels
(`schema_infer`) and pre-label drafts from a predictor the caller passes in (`prelabel`).
Never loads a model or imports torch: pre-labels come from a predictor handed in.
"""

from core.data.dataset import Dataset, load_dataset, settle
from core.data.exports import DATASET_FORMATS, export_conversations, export_dataset, export_seed, export_videofolder
from core.data.imports import LAYOUTS, ImportReport, detect_layout, import_dataset
from core.data.ingest import IngestReport, allowed_roots_for, ingest
from core.data.listing import Page, gallery_page, next_clip, start_video_scan
from core.data.prelabel import clips_to_prelabel, review_queue, write_drafts
from core.data.schema_infer import infer_schema, infer_schema_from_file
from core.data.splits import SplitSummary, assign_splits, parse_ratios, source_group, split_dataset
from core.data.store import STATUSES, AnnotationStore, ConflictError

__all__ = ["AnnotationStore", "ConflictError", "DATASET_FORMATS", "Dataset", "ImportReport", "IngestReport", "LAYOUTS", "Page",
    "STATUSES", "SplitSummary", "gallery_page", "next_clip", "start_video_scan", "assign_splits", "clips_to_prelabel", "detect_layout", "export_conversations", "export_dataset",
    "export_seed", "export_videofolder", "import_dataset", "infer_schema", "ingest", "allowed_roots_for", "infer_schema_from_file", "load_dataset",
    "parse_ratios", "review_queue", "settle", "source_group", "split_dataset", "write_drafts"]
