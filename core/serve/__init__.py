"""Asking models: single clips, side by side, and whole folders into files and databases.

Owns greedy generation with a model's preprocessing spec (`predictor`), schema-constrained
decoding (the schema compiled to an xgrammar grammar: `grammar`; the token mask and budget
closer: `constrained`), the in-process model manager shared by the app's tabs (`manager`), a
predictor for one job through that manager or loaded on its own (`loaded`), batch prediction with
resume and sharding (`batch`) into JSONL/CSV/Parquet/SQLite (`writers`), the fair side-by-side
comparison (`compare`), evaluation reports (`report`, their calibration plots and tables:
`reliability`) and pre-labelling a dataset (`prelabel`). Per-field confidence comes from the same
greedy pass: the step log-probabilities recorded inside generate() (`stepscores`) combined per
field by where each value sits in the answer (`confidence`). Other programs ask a model through an
OpenAI-compatible API (`openai_api`: `create_api`, the FastAPI app `cli.py serve` runs; what a
request asks and the batching worker: `api_requests`), answered by the same Predictor and spec.
Each job the CLI and a tab share is one function here: predict_to_file, evaluate_models
(evaluate_model for one), prelabel_dataset.
Never imports core.train: what a model expects comes from core.spec.
"""

from core.serve.batch import input_schema, list_inputs, predict_to_file, run_predict
from core.serve.compare import compare_clip
from core.serve.confidence import field_confidence, json_spans, min_confidence
from core.serve.loaded import loaded_predictor
from core.serve.manager import ModelManager
from core.serve.predictor import Generated, Prediction, Predictor, analyse_clip, analyse_frames
from core.serve.prelabel import prelabel_dataset
from core.serve.reliability import calibration_markdown, reliability_svg
from core.serve.report import (
    evaluate_model,
    evaluate_models,
    reliability_rows,
    schema_warnings,
    score_predictor,
    write_report,
)
from core.serve.stepscores import StepRecorder, token_ranges
from core.serve.writers import open_writer, read_rows


def __getattr__(name: str):
    # the API module imports FastAPI: loaded when asked for, not by every `predict`
    if name == "create_api":
        from core.serve.openai_api import create_api

        return create_api
    raise AttributeError(f"module 'core.serve' has no attribute {name!r}")


__all__ = ["Generated", "ModelManager", "Prediction", "Predictor", "StepRecorder", "analyse_clip", "analyse_frames",
    "calibration_markdown", "compare_clip", "create_api", "evaluate_model", "evaluate_models", "field_confidence", "input_schema",
    "json_spans", "list_inputs", "loaded_predictor", "min_confidence", "open_writer", "predict_to_file",
    "prelabel_dataset", "read_rows", "reliability_rows", "reliability_svg", "run_predict", "schema_warnings",
    "score_predictor", "token_ranges", "write_report"]
