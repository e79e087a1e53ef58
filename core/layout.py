"""Every file and folder name on disk that more than one module reads: a run folder and a dataset folder.

A leaf module (it imports nothing), so the training process, the watcher (core.runs), the models,
serving, the Hub and the tabs name the same files without importing each other. Who writes each
file is said beside it.

Run folder `checkpoints/<run>/`:
"""

# written by core.runs.manager before the training process starts
CONFIG_FILE = "config.yaml"  # the resolved TrainConfig of the run (what actually ran; resume reads it)
DATASET_FILE = "dataset.txt"  # the dataset folder the run trained on (resume and merge find it here)
LAUNCH_CONFIG = "launch.yaml"  # the config as the app asked for it, before the training process resolved it
LAUNCH_LOG = "launch.log"  # the launched process's stdout and stderr (core.runs.manager)
LAUNCH_INFO = "launch.json"  # the launched command, pid and start time (core.runs.manager)
ACCELERATE_CONFIG = "accelerate.yaml"  # multi-process runs with deepspeed/fsdp: the generated accelerate config
# written by the training process (core.runs.files.RunFiles)
STATUS_FILE = "status.json"  # {state, global_step, max_steps, pid, message, updated}; atomic rewrites
LOG_FILE = "train.log"  # human-readable log, appended
METRICS_FILE = "metrics.jsonl"  # one JSON object per logging step, flushed per line
STOP_FILE = "STOP"  # created by a watcher to ask the run to save and stop
DATA_FILE = "data.jsonl"  # snapshot of the metadata lines the run trained on (calibration refuses them)
CHECKPOINT_PREFIX = "checkpoint-"  # Hugging Face Trainer's name for resumable checkpoints
FINAL_DIR = "final"  # the final adapter or model (+ its processor and spec)
MERGED_DIR = "merged"  # optional: the adapter merged into the base, a plain Hugging Face folder
SPEC_FILE = "preprocessing.json"  # beside every checkpoint and at the top: what training saw (core.spec)
CALIBRATION_FILE = "calibration.json"  # beside SPEC_FILE: per-field confidence maps (core.schema.calibration)
HUB_CONFIG_FILE = "training_config.yaml"  # CONFIG_FILE as a published model folder names it (core.hub)
# a run folder made by hand for the checkpoints folder to exist in git
KEEP_FILE = ".gitkeep"

# Dataset folder (core.data): videos/, this metadata (one JSON line per clip) and the schema labels follow;
# a run folder keeps its own copy of the schema under the same name.
METADATA_FILE = "metadata.jsonl"
SCHEMA_FILE = "schema.json"
# Beside a tiny model build (core.models.tiny): its sizes, which also mark a randomly initialised base.
TINY_SPEC_FILE = "tiny_spec.json"
# What a run hands out (core.train.merge.export_run): its adapter folder, or the merged model folder.
EXPORT_KINDS = ("adapter", MERGED_DIR)
