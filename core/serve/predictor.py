"""Greedy generation over clips with the preprocessing spec a model was trained with.

`Predictor` holds a loaded model, its processor, family and spec; `predict` samples frames with the
spec's sampler (the frame cache makes this cheap), builds the same prompt training used, and
decodes in batches with left padding, optionally masked to the spec's schema (`constrained=True`,
see core.serve.constrained). With `confidence=True` (what `predict` asks for) the same greedy pass
records each step's log-probability (core.serve.stepscores) and every answer gets a per-field
confidence (core.serve.confidence). It does not score answers against labels (core.schema.scoring
does), and does not manage several resident models (the model manager does).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import SchemaError, VideoError
from core.models.device import pick_device, pick_dtype
from core.models.inputs import collate, encode_example, suppressed_token_ids
from core.models.loading import load_model, resolve_model
from core.schema.base import extract_json, label_errors
from core.schema.calibration import Calibration, choice_fields, for_run, needs_review, review_without_calibration
from core.schema.scoring import score_row
from core.serve.confidence import answer_confidence, field_confidence, field_margins, min_confidence
from core.serve.constrained import schema_logits_processor
from core.serve.embedding import prefill_embeddings
from core.serve.stepscores import StepRecorder, token_ranges
from core.spec import PreprocessSpec, spec_for
from core.video.frames import SampledFrames, sample_frames


@dataclass
class Prediction:
    video: str
    text: str | None
    error: str | None = None
    seconds: float = 0.0
    new_tokens: int = 0
    confidence: dict | None = None  # top-level field -> score in [0, 1], calibrated when `calibrated`
    confidence_parts: dict | None = None  # array field -> {"items": [scores], "stop": score} (raw)
    calibrated: bool = False  # `confidence` went through the run's calibration (core.schema.calibration)
    confidence_raw: dict | None = None  # the scores before calibration
    review_fields: list | None = None  # choice fields a person should check; None for an unread clip
    embedding: object = None  # numpy vector of the clip (core.serve.embedding), when asked (embeddings=True)
    answer_confidence: float | None = None  # the whole answer's geometric-mean token probability (raw)

    @property
    def min_confidence(self) -> float | None:
        return min_confidence(self.confidence)

    @property
    def needs_review(self) -> bool:
        return needs_review(self.error is None and self.text is not None, self.calibrated, self.review_fields)


@dataclass
class Generated:
    """One answer of `Predictor.generate(..., confidence=True)`."""

    text: str
    new_tokens: int
    confidence: dict  # top-level field -> score in [0, 1]; empty when the answer does not parse
    confidence_parts: dict  # array field -> {"items": [scores], "stop": score}
    token_ids: list[int] | None = None  # the generated tokens through the stop token
    token_logprobs: list[float] | None = None  # their step log-probabilities (core.serve.stepscores)
    confidence_raw: dict | None = None  # before calibration (equal to `confidence` when not calibrated)
    calibrated: bool = False
    review_fields: list = field(default_factory=list)  # choice fields under their threshold (or all)
    margins: dict | None = None  # choice field -> p(taken) - p(runner-up) at its deciding tokens (raw)
    embedding: object = None  # numpy vector of the clip from the same pass, when asked (core.serve.embedding)

    @property
    def needs_review(self) -> bool:
        return needs_review(True, self.calibrated, self.review_fields)

    @property
    def answer_confidence(self) -> float | None:
        return answer_confidence(self.token_logprobs)


PREFETCH_BATCHES = 2  # batches a loader thread samples ahead while the model generates


@dataclass
class PredictStats:
    """Where a prediction loop's time went: `wait_s` is time the model loop spent waiting for frames
    (decoding not hidden behind generation), out of `total_s`."""

    clips: int = 0
    wait_s: float = 0.0
    total_s: float = 0.0

    @property
    def wait_share(self) -> float:
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0


class Predictor:
    def __init__(self, model, processor, family, spec: PreprocessSpec, device: str, name: str = "",
                 calibration: Calibration | None = None):
        self.model, self.processor, self.family, self.spec = model, processor, family, spec
        self.device, self.name = device, name
        self.calibration = calibration  # the run's, fitted on held-out labels; None: scores are raw
        self.suppressed = suppressed_token_ids(processor, spec.frames_as) or None
        self.stats = PredictStats()

    @classmethod
    def load(cls, model_name: str, schema: dict | None = None, device: str = "auto",
             trust_remote_code: bool = False) -> Predictor:
        source = resolve_model(model_name)
        device = pick_device(device)
        model, processor, family = load_model(source, device, pick_dtype(device), trust_remote_code)
        spec = spec_for(source, family, schema)
        return cls(model, processor, family, spec, device, name=source.display, calibration=for_run(source.run_dir))

    def encode(self, frames: SampledFrames) -> dict:
        return encode_example(self.processor, self.spec.instruction, frames, self.spec.frames_as)

    @torch.no_grad()
    def generate(self, frames_list: list[SampledFrames], max_new_tokens: int = 160,
                 constrained: bool = False, confidence: bool = False, embeddings: bool = False) -> list:
        """Greedy outputs (text, new token count) for a batch of already-sampled clips.

        `constrained` masks decoding to the spec's schema, so every answer is complete JSON in it.
        `confidence`: a `Generated` per clip instead, with per-field confidence from the same pass;
        with `embeddings` also each clip's vector (core.serve.embedding). Only "Label next" groups by
        the vectors, so nothing else pays for the hook or holds a vector per clip."""
        tok = self.processor.tokenizer
        batch = collate([self.encode(f) for f in frames_list], tok.pad_token_id, padding_side="left")
        batch = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        recorder = self._recorder(constrained, max_new_tokens) if confidence else None
        if recorder is not None:
            # the recorder reads the scores before the grammar's mask and its mask after
            processors = [recorder] + ([recorder.grammar] if recorder.grammar is not None else [])
        elif constrained:
            processors = [schema_logits_processor(
                self.model, tok, self.spec.schema, eos_token_id=tok.eos_token_id, max_new_tokens=max_new_tokens)]
        else:
            processors = []
        extra = {"logits_processor": processors} if processors else {}
        hook = confidence and embeddings
        with prefill_embeddings(self.model, batch["attention_mask"]) if hook else nullcontext({}) as seen:
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                      suppress_tokens=self.suppressed, **extra)
        new = out[:, batch["input_ids"].shape[1]:]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        counts = [int((row != tok.pad_token_id).sum()) for row in new]
        if not confidence:
            return list(zip(texts, counts))
        logprobs = recorder.finish(new[:, -1]) if recorder is not None else None
        second = recorder.runner_up() if recorder is not None else None
        answers = [self._scored(text, n, row, None if logprobs is None else logprobs[i],
                                None if second is None or not len(second) else second[i])
                   for i, (text, n, row) in enumerate(zip(texts, counts, new.tolist()))]
        for i, g in enumerate(answers):
            g.embedding = seen["vectors"][i] if "vectors" in seen else None
        return answers

    def _recorder(self, constrained: bool, max_new_tokens: int) -> StepRecorder | None:
        """None when the spec has no schema to locate fields in. Its grammar processor masks when
        `constrained`, else follows in shadow mode (no grammar if xgrammar cannot compile the schema)."""
        schema = self.spec.schema
        if not isinstance(schema, dict) or not schema.get("properties"):
            return None
        tok = self.processor.tokenizer
        try:
            grammar = schema_logits_processor(self.model, tok, schema, eos_token_id=tok.eos_token_id,
                                              max_new_tokens=max_new_tokens, shadow=not constrained)
        except SchemaError:
            if constrained:
                raise
            grammar = None  # a schema xgrammar cannot compile: the model's own distribution
        return StepRecorder(grammar)

    def _scored(self, text: str, n: int, ids: list[int], logprobs, runner_up=None) -> Generated:
        tok = self.processor.tokenizer
        stop = next((k for k, t in enumerate(ids) if t == tok.eos_token_id), len(ids) - 1)
        if logprobs is None:
            return self.served(Generated(text, n, {}, {}, ids[:stop + 1]))
        answer, ranges = token_ranges(tok, ids[:stop + 1])
        steps = logprobs[:stop + 1].tolist()
        scores, parts = field_confidence(self.spec.schema, answer, ranges, steps)
        g = Generated(text, n, scores, parts, ids[:stop + 1], steps)
        if runner_up is not None:
            g.margins = field_margins(self.spec.schema, answer, ranges, steps, runner_up[:stop + 1].tolist())
        return self.served(g)

    def served(self, g: Generated) -> Generated:
        """The answer as every output shows it: scores calibrated when the run has a calibration, and
        the choice fields a person should check (all of them when nothing was calibrated: no
        threshold was measured, so nothing is accepted on its score)."""
        g.confidence_raw = dict(g.confidence)
        cal = self.calibration
        parsed = extract_json(g.text)[0] is not None
        if cal is not None:
            g.confidence, g.calibrated = cal.apply(g.confidence_raw), True
            g.review_fields = cal.review(g.confidence, self.spec.schema) if parsed else choice_fields(self.spec.schema)
        else:
            g.review_fields = review_without_calibration(self.spec.schema)
        return g

    def iter_predict(self, videos: list, batch_size: int = 8, max_new_tokens: int = 160, constrained: bool = False,
                     confidence: bool = True, prefetch: int = PREFETCH_BATCHES,
                     embeddings: bool = False) -> Iterator[list[tuple[int, Prediction]]]:
        """Batches of (index into `videos`, Prediction), in order; a clip that fails to decode becomes
        an error Prediction in the batch it falls in. A loader thread samples the next `prefetch`
        batches' frames while the model generates (decoding releases the GIL, so it runs beside the
        forward passes); `prefetch=0` samples each clip in this thread first (the serial order).
        `self.stats` (PredictStats) says afterwards how long the model loop waited for frames."""
        sampling = self.spec.sampling_spec
        stats = self.stats = PredictStats()
        began = time.perf_counter()

        def sample(i: int):
            try:
                return sample_frames(Path(videos[i]), sampling)
            except VideoError as exc:
                return exc

        loader = ThreadPoolExecutor(1, thread_name_prefix="predict-frames") if prefetch > 0 else None
        queued: deque = deque()
        out: list[tuple[int, Prediction]] = []
        pending: list[tuple[int, SampledFrames]] = []
        try:
            for i in range(len(videos)):
                while loader is not None and len(queued) < prefetch * batch_size and i + len(queued) < len(videos):
                    queued.append(loader.submit(sample, i + len(queued)))
                t0 = time.perf_counter()
                got = queued.popleft().result() if loader is not None else sample(i)
                stats.wait_s += time.perf_counter() - t0
                if isinstance(got, VideoError):
                    out.append((i, Prediction(video=str(videos[i]), text=None, error=str(got))))
                else:
                    pending.append((i, got))
                if len(pending) >= batch_size or (i == len(videos) - 1 and (pending or out)):
                    out += self._generate_batch(videos, pending, max_new_tokens, constrained, confidence, embeddings)
                    pending = []
                    stats.clips = i + 1
                    stats.total_s = time.perf_counter() - began
                    yield sorted(out, key=lambda pair: pair[0])
                    out = []
        finally:
            if loader is not None:
                for future in queued:
                    future.cancel()
                loader.shutdown(wait=True)
        stats.total_s = time.perf_counter() - began

    def _generate_batch(self, videos, pending, max_new_tokens, constrained, confidence,
                        embeddings=False) -> list[tuple[int, Prediction]]:
        if not pending:
            return []
        t0 = time.time()
        outs = self.generate([f for _, f in pending], max_new_tokens, constrained=constrained, confidence=confidence,
                             embeddings=embeddings)
        dt = (time.time() - t0) / len(pending)
        results = []
        for (i, _), g in zip(pending, outs):
            g = g if confidence else self.served(Generated(g[0], g[1], {}, {}))
            results.append((i, Prediction(video=str(videos[i]), text=g.text, seconds=dt, new_tokens=g.new_tokens,
                                          confidence=g.confidence if confidence else None,
                                          confidence_parts=g.confidence_parts if confidence else None,
                                          calibrated=g.calibrated, review_fields=g.review_fields,
                                          confidence_raw=g.confidence_raw if confidence else None,
                                          embedding=g.embedding,
                                          answer_confidence=g.answer_confidence if confidence else None)))
        return results

    def predict(self, videos: list, batch_size: int = 8, max_new_tokens: int = 160, progress=None,
                constrained: bool = False, confidence: bool = True, prefetch: int = PREFETCH_BATCHES,
                embeddings: bool = False) -> list[Prediction]:
        """One Prediction per video, in order (`iter_predict` collected); `progress(done, total)` per batch.
        `confidence`: per-field confidence from the same pass; `embeddings`: each clip's vector too
        (see `generate`)."""
        results: list[Prediction | None] = [None] * len(videos)
        for batch in self.iter_predict(videos, batch_size, max_new_tokens, constrained, confidence, prefetch,
                                       embeddings):
            for i, pred in batch:
                results[i] = pred
            if progress:
                progress(self.stats.clips, len(videos))
        return results


def analyse_frames(predictor: Predictor, frames: SampledFrames, label: dict | None = None,
                   max_new_tokens: int = 160, constrained: bool = False) -> dict:
    """Everything a UI shows for one answer: raw output, parsed JSON, validity, per-field confidence,
    per-field agreement with the label, latency and tokens/s (Inference and Compare both show this)."""
    t0 = time.time()
    answer, = predictor.generate([frames], max_new_tokens, constrained=constrained, confidence=True)
    text, n_tokens = answer.text, answer.new_tokens
    seconds = time.time() - t0
    parsed, parse_error = extract_json(text)
    schema = predictor.spec.schema
    result = {
        "frames": frames, "text": text, "parsed": parsed, "parse_error": parse_error,
        "schema_errors": label_errors(schema, parsed) if parsed is not None else [],
        "seconds": round(seconds, 3), "new_tokens": n_tokens,
        "tokens_per_s": round(n_tokens / seconds, 1) if seconds > 0 else 0.0, "model": predictor.name,
    }
    result["schema_valid"] = parsed is not None and not result["schema_errors"]
    result.update(confidence=answer.confidence, confidence_parts=answer.confidence_parts,
                  min_confidence=min_confidence(answer.confidence), calibrated=answer.calibrated,
                  review_fields=answer.review_fields)
    if label:
        result["agreement"] = score_row(schema, text, label).fields
    return result


def analyse_clip(predictor: Predictor, video, label: dict | None = None, max_new_tokens: int = 160,
                 constrained: bool = False) -> dict:
    """`analyse_frames` on a clip sampled with the predictor's spec. Raises VideoError if unreadable."""
    return analyse_frames(predictor, sample_frames(Path(video), predictor.spec.sampling_spec), label, max_new_tokens,
                          constrained)
