"""Video VLM Workbench core: all the logic, no UI (never imports gradio).

Packages in the product's order — `video` (frames in), `schema` (what an answer is), `data` (the
dataset folder), `models` (families, loading, inputs), `train` (SFT, GRPO), `runs` (training as
processes), `serve` (asking models, batch prediction, reports) — over a few shared leaves:
`spec` (what a model saw and the run-folder layout: the contract train/serve parity rests on),
`config` (TrainConfig), `fileio` (atomic writes), `errors` (user-worded exceptions), `paths`, and
`workspace` (the one object the app and the CLI pass around). tests/test_boundaries.py checks the
direction of imports between them.
"""
