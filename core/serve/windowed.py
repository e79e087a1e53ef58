"""Batch prediction over consecutive windows of long videos (`predict --window-seconds S`).

Each video is read once (core.video.windows: one sequential decode, windows yielded as they
complete, memory bounded by the open windows) and every window is asked as the model was trained:
frames sampled with the run's spec inside the window, as if the window were its own clip. One row
per window with its `start` and `end` seconds; rows are keyed by (video, start, model), so an
interrupted run resumes per window. A file that cannot be read gets one error row (start 0).
Windows of several videos share batches. The local engine only: the Ray engine predicts clips.
"""

from __future__ import annotations

import time
from pathlib import Path

from core.errors import ConfigError, VideoError
from core.serve.predictor import Prediction
from core.serve.writers import open_writer, read_rows
from core.video.windows import iter_windows

# a window or stride shorter than a frame of any real video (100 fps) gives the same frames again
MIN_SECONDS = 0.01


def check_window(window: float | None, stride: float | None) -> None:
    """Refuse window flags no run can use (core.video.windows also bounds the windows per video)."""
    if window is None:
        if stride is not None:
            raise ConfigError("--stride-seconds needs --window-seconds")
        return
    for flag, value in (("--window-seconds", window), ("--stride-seconds", stride)):
        if value is not None and not value >= MIN_SECONDS:  # `not >=`: NaN is refused too
            raise ConfigError(f"{flag} {value:g}: must be at least {MIN_SECONDS:g} seconds (a frame of a 100 fps "
                              "video); e.g. --window-seconds 5 --stride-seconds 2.5 for half-overlapping windows")


def run_predict_windows(predictor, items: list[tuple[str, Path]], out_path, window: float, stride: float | None = None,
                        batch_size: int = 8, overwrite: bool = False, progress=None, max_new_tokens: int = 160,
                        constrained: bool = False, write_rows=None) -> dict:
    """Predict every window of every item; `write_rows(writer, keys, windows, preds, counts)` is
    core.serve.batch's row writer (passed in: that module imports this one)."""
    check_window(window, stride)
    model = predictor.name
    writer = open_writer(out_path, predictor.spec.schema, overwrite, windows=True)
    done = set() if overwrite else writer.done_windows(model)
    counts = {"total": 0, "skipped": 0, "written": 0, "errors": 0, "valid": 0, "videos": len(items)}
    pending: list[tuple[str, tuple, object]] = []  # (key, (start, end), frames)

    def flush():
        if not pending:
            return
        t0 = time.time()
        outs = predictor.generate([f for *_, f in pending], max_new_tokens, constrained=constrained, confidence=True)
        dt = (time.time() - t0) / len(pending)
        preds = [Prediction(video=k, text=g.text, seconds=dt, new_tokens=g.new_tokens, confidence=g.confidence,
                            calibrated=g.calibrated, review_fields=g.review_fields)
                 for (k, _, _), g in zip(pending, outs)]
        write_rows(writer, [k for k, _, _ in pending], [w for _, w, _ in pending], preds, counts)
        pending.clear()

    try:
        for n, (key, path) in enumerate(items):
            try:
                for win in iter_windows(path, predictor.spec.sampling_spec, window, stride):
                    counts["total"] += 1
                    if (key, float(win.start)) in done:
                        counts["skipped"] += 1
                        continue
                    if win.frames is None:
                        write_rows(writer, [key], [(win.start, win.end)],
                                   [Prediction(video=key, text=None, error=f"{path}: {win.error}")], counts)
                        continue
                    pending.append((key, (win.start, win.end), win.frames))
                    if len(pending) >= batch_size:
                        flush()
            except VideoError as exc:
                counts["total"] += 1
                if (key, 0.0) not in done:
                    write_rows(writer, [key], [(0.0, 0.0)], [Prediction(video=key, text=None, error=str(exc))], counts)
                else:
                    counts["skipped"] += 1
            if progress:
                progress(n + 1, len(items))
        flush()
    finally:
        writer.close()
    return counts


def window_rows(path) -> list[dict]:
    """Rows of a window prediction file, ordered by video and start (for reading results back)."""
    return sorted(read_rows(path), key=lambda r: (r["video"], float(r.get("start") or 0.0)))
