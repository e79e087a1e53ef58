"""Asking models: single clips, side by side, and whole folders into files and databases.

Owns greedy generation with a model's preprocessing spec (`predictor`), schema-constrained
decoding (the schema compiled to an xgrammar grammar: `grammar`; the token mask and budget
closer: `constrained`), the in-process model manager shared by the app's tabs (`manager`), batch
prediction with resume and sharding (`batch`) into JSONL/CSV/Parquet/SQLite (`writers`), the
fair side-by-side comparison (`compare`) and evaluation reports (`report`).
Never imports core.train: what a model expects comes from core.spec.
"""

from core.serve.batch import list_inputs, run_predict
from core.serve.compare import compare_clip
from core.serve.manager import ModelManager
from core.serve.predictor import Prediction, Predictor, analyse_clip, analyse_frames
from core.serve.report import evaluate_model, evaluate_models, score_predictor, write_report
from core.serve.writers import open_writer, read_rows

__all__ = ["ModelManager", "Prediction", "Predictor", "analyse_clip", "analyse_frames", "compare_clip",
    "evaluate_model", "evaluate_models", "list_inputs", "open_writer", "read_rows", "run_predict", "score_predictor",
    "write_report"]
