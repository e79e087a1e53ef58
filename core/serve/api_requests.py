"""What a chat-completions request asks (`parse_request`), and the worker that answers them in batches.

`parse_request` reads a body into the clip's URL and an `Ask` (instruction, schema, constrained or
not, token budget), with the model's own instruction and schema as defaults, or raises `ApiError`
(an HTTP status and OpenAI's error type, parameter and code) saying what is wrong.

`Batcher` owns one worker thread, the only thread that runs the model (generation is serialised:
a ModelManager's adapters are global model state, and one forward pass at a time is what a GPU
serves best). Request handlers sample their clip's frames themselves, in parallel, and `submit`
them; the worker takes the first waiting request, waits up to `wait_s` for more (up to
`batch_size`), and answers each group of requests that ask the same thing (instruction, schema,
constrained or not, token budget) with one `Predictor.generate` call. While a batch generates,
new requests queue up, so under load the next batch is full at once and the wait costs nothing.

The predictor is taken for each batch from `hold()` (core.serve.loaded.loaded_predictor over a
ModelManager, held locked for the batch), never kept between batches: the app's other tabs may
switch or unload models in between, and a training run unloads them all.

A request that asks for its own instruction or schema is answered by a shallow copy of the
predictor with that spec: same weights, same frames sampler, only the prompt text or the grammar
differ. This module reads no HTTP and no video files (core.serve.openai_api does).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from core.errors import SchemaError, WorkbenchError
from core.schema.base import check_schema, schema_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ask:
    """What one request asks of the model besides its frames."""

    instruction: str
    schema: dict  # the schema answers are constrained to (when `constrained`) and confidence is located by
    constrained: bool
    max_new_tokens: int

    @property
    def key(self) -> tuple:
        """Requests with equal keys can share one generate call."""
        return (self.instruction, json.dumps(self.schema, sort_keys=True), self.constrained, self.max_new_tokens)


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    new_tokens: int
    stopped: bool  # the model wrote its stop token (else the token budget ended the answer)
    confidence: dict
    spec_hash: str
    calibrated: bool = False
    review_fields: list | None = None


@dataclass
class _Job:
    frames: object  # core.video.frames.SampledFrames
    ask: Ask
    future: Future


class ApiError(WorkbenchError):
    """A request refused, in OpenAI's error vocabulary: HTTP status, error type, the parameter, a code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind


def _content_parts(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "messages")
    parts = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a role", "messages")
        if msg["role"] != "user":
            continue  # the model's prompt template frames the question; system/assistant turns are not used
        content = msg.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list) and all(isinstance(p, dict) for p in content):
            parts += content
        else:
            raise ApiError(400, f"messages[{i}].content must be a string or a list of content parts", "messages")
    return parts


def _video_url(parts: list[dict]) -> str:
    videos = [p for p in parts if p.get("type") == "video_url"]
    if not videos:
        raise ApiError(400, "no video: add a user content part {\"type\": \"video_url\", \"video_url\": "
                       "{\"url\": PATH_OR_DATA_URL}}", "messages", "no_video")
    if len(videos) > 1:
        raise ApiError(400, f"{len(videos)} videos in one request: send one clip per request", "messages")
    ref = videos[0].get("video_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url.strip():
        raise ApiError(400, "video_url.url must be a non-empty string", "messages")
    return url.strip()


def _ask(body: dict, parts: list[dict], spec, max_new_tokens: int) -> Ask:
    texts = [p.get("text") for p in parts if p.get("type") == "text"]
    if any(not isinstance(t, str) for t in texts):
        raise ApiError(400, "a text content part needs a string `text`", "messages")
    instruction = "\n\n".join(t for t in texts if t.strip())
    fmt = body.get("response_format")
    schema, constrained = spec.schema, not instruction  # the model's own question: its schema
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            constrained = False
        elif kind == "json_schema":
            wrapper = fmt.get("json_schema")
            schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
            if not isinstance(schema, dict):
                raise ApiError(400, "response_format json_schema needs {\"json_schema\": {\"schema\": {...}}}",
                               "response_format")
            try:
                check_schema(schema, "response_format schema")
            except SchemaError as exc:
                raise ApiError(400, str(exc), "response_format") from None
            constrained = True
        else:
            raise ApiError(400, "response_format type must be \"text\" or \"json_schema\"", "response_format")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = max_new_tokens
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ApiError(400, "max_tokens must be a whole number of at least 1", "max_tokens")
    return Ask(instruction or spec.instruction, schema, constrained, limit)


def parse_request(raw: bytes, ids: list[str], spec, max_new_tokens: int) -> tuple[str, Ask]:
    """(video URL, what to ask) from a chat-completions body, or ApiError saying what is wrong. `ids`:
    the model names served; `spec`: the model's PreprocessSpec (its instruction and schema are the
    defaults); `max_new_tokens`: the budget when the request gives none."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "the body needs \"model\" (GET /v1/models lists it)", "model")
    if body["model"] not in ids:
        raise ApiError(404, f"model {body.get('model')!r} is not served here; this server serves "
                       f"{ids[0]!r} (GET /v1/models)", "model", "model_not_found")
    if body.get("stream"):
        raise ApiError(400, "stream: true is not supported: answers come whole (set stream to false)", "stream")
    if body.get("n", 1) != 1:
        raise ApiError(400, "n must be 1: decoding is greedy, every choice would be the same", "n")
    parts = _content_parts(body.get("messages"))
    return _video_url(parts), _ask(body, parts, spec, max_new_tokens)


# --- the worker ------------------------------------------------------------------------------------

class Batcher:
    """One worker thread answering batches of submitted jobs; `close()` stops it."""

    def __init__(self, hold: Callable, batch_size: int = 8, wait_s: float = 0.005):
        self.hold, self.batch_size, self.wait_s = hold, batch_size, wait_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="openai-api-model", daemon=True)
        self.batches = 0  # generate calls made (the bench and the tests read how requests were grouped)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, frames, ask: Ask) -> Future:
        future: Future = Future()
        self._queue.put(_Job(frames, ask, future))
        return future

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            try:
                self._answer(jobs)
            except Exception as exc:  # the worker must outlive any one batch
                if isinstance(exc, WorkbenchError):  # e.g. the model cannot be loaded again: its words suffice
                    log.warning("openai api: a batch failed: %s", exc)
                else:
                    log.exception("openai api: a batch failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job and those that arrive within `wait_s` of it (at most `batch_size`)."""
        jobs, deadline = [first], time.monotonic() + self.wait_s
        while len(jobs) < self.batch_size:
            try:
                # what already waits is taken at once; only an empty queue is waited on
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _answer(self, jobs: list[_Job]) -> None:
        # a client that went away (its handler cancelled the future) is not generated for
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.ask.key, []).append(job)
        if not groups:
            return
        with self.hold() as predictor:
            for group in groups.values():
                try:
                    answers = generate(predictor, group[0].ask, [j.frames for j in group])
                except WorkbenchError as exc:  # e.g. a schema xgrammar cannot compile: that group's 400
                    for job in group:
                        job.future.set_exception(exc)
                    continue
                self.batches += 1
                for job, answer in zip(group, answers):
                    job.future.set_result(answer)


def generate(predictor, ask: Ask, frames_list: list) -> list[Answer]:
    """One greedy, confidence-scored generate call for clips that ask the same thing."""
    variant = copy.copy(predictor)
    variant.spec = dataclasses.replace(predictor.spec, instruction=ask.instruction, schema=ask.schema,
                                       schema_hash=schema_hash(ask.schema))
    if (ask.instruction, variant.spec.schema_hash) != (predictor.spec.instruction, predictor.spec.schema_hash):
        variant.calibration = None  # measured for the run's own prompt and schema, not this request's
    prompt_lengths: list[int] = []
    encode = type(predictor).encode

    def counted(frames):
        # the prompt's token count for `usage`, read from the encoding generate() makes anyway
        encoded = encode(variant, frames)
        prompt_lengths.append(int(encoded["input_ids"].shape[-1]))
        return encoded

    variant.encode = counted
    outs = variant.generate(frames_list, ask.max_new_tokens, constrained=ask.constrained, confidence=True)
    eos = predictor.processor.tokenizer.eos_token_id
    return [Answer(text=g.text, prompt_tokens=n, new_tokens=g.new_tokens,
                   stopped=bool(g.token_ids) and g.token_ids[-1] == eos, confidence=g.confidence or {},
                   spec_hash=variant.spec.digest, calibrated=g.calibrated, review_fields=g.review_fields)
            for g, n in zip(outs, prompt_lengths)]
