"""Video VLM Workbench core: all the logic, no UI (never imports gradio).

Packages as floors, each importing only from floors below it (tests/test_boundaries.py checks the
direction of every import, function-local ones included):
  leaves     `errors` (user-worded exceptions), `paths`, `fileio` (atomic writes), `layout` (every file
             name on disk: the run folder and the dataset folder)
  `video`    frames in
  `schema`   what an answer is: the JSON schema, prompts, scoring, calibration
  `config`   TrainConfig: each setting declared once, with its doc, form label and methods
  `spec`     what a model saw (the contract train/serve parity rests on)
  `data`     the dataset folder
  `models`   families, loading, inputs
  `runs`     training as processes, watched through the run folder
  `serve`    asking models, batch prediction, reports, calibration
  `train`    SFT, GRPO, the estimate, one start-up (core.train.prepare)
  `hub`      publishing to the Hugging Face Hub
  `workspace` the app's one object: the dataset, the runs and the loaded models
"""
