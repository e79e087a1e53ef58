"""An OpenAI-compatible chat-completions API for a run or model: `create_api(model, ...)` is a FastAPI app.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`. Behind them is the same
Predictor `cli.py predict` uses (core.serve.api_requests batches it), so a clip's frames are
sampled with the model's spec and, unless a request says otherwise, the answer is exactly the
`raw` text predict writes: the model's own instruction, decoding constrained to its schema.

A request: one user message content part `{"type": "video_url", "video_url": {"url": U}}`, where U
is a local path or file:// URL inside the allowed folders (the run's dataset folder and each
`allow_dirs` folder; a relative path is looked up in them) or a `data:video/...;base64,` URL (at
most `max_video_bytes` decoded; a temp file removed once its frames are sampled); optional
`{"type": "text"}` parts replace the instruction. `response_format`: none → the model's schema,
constrained (with text parts of its own: free decoding); `{"type": "json_schema", "json_schema":
{"schema": S}}` → constrained to S; `{"type": "text"}` → free decoding. The reply is a standard
`chat.completion` (content: the raw text) plus an extension field `vvw`: per-field confidence,
its minimum, `calibrated` (the run's calibration applied), `needs_review`, `review_fields`, whether the answer is valid in the schema, the
parsed JSON and the spec hash. Decoding is greedy: temperature and top_p are ignored; `stream`
and `n` > 1 are refused.

Every bad request is answered in OpenAI's error shape (`{"error": {"message", "type", "param",
"code"}}`) with a 4xx and logged as one warning line; the server keeps answering. With `api_key`,
every /v1 route needs `Authorization: Bearer KEY` (401 otherwise). `check_bind` refuses a
non-loopback host without a key before anything loads. This module does not run a server
(commands/api.py runs uvicorn; app.py mounts `api_router` on the Gradio app).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import mimetypes
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.data.dataset import SCHEMA
from core.errors import ConfigError, SchemaError, VideoError, WorkbenchError
from core.schema.base import extract_json, label_errors, load_schema
from core.schema.calibration import needs_review
from core.serve.api_requests import Answer, ApiError, Ask, Batcher, parse_request
from core.serve.confidence import min_confidence
from core.serve.loaded import check_at_least, loaded_predictor
from core.spec import is_run_dir
from core.video.frames import sample_frames

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 50 * 2**20  # a data: URL's video, decoded
LOOPBACK_NAMES = ("localhost",)


def error_response(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


# --- before anything loads -------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int | None, api_key: str | None,
               key_hint: str = "give --api-key KEY (or set VVW_API_KEY)") -> None:
    """Refuse (ConfigError) a host other programs can reach without a key, or a port already taken."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(f"--host {host} lets other machines connect: {key_hint}, and clients send it as their "
                          "API key")
    if port is None:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            s.bind((host, port))
        except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot listen on {host}:{port} ({reason}); pick another --port") from None


def run_dataset(model: str) -> Path | None:
    """The dataset folder a run was trained on (its dataset.txt), if the run says and it still exists."""
    from core.layout import DATASET_FILE

    path = Path(model) / DATASET_FILE
    try:
        folder = Path(path.read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return folder if folder.is_dir() else None


# --- one request ---------------------------------------------------------------------------------

@dataclass
class Service:
    """What every request of one server shares: the model, its defaults, the folders it may read."""

    model: str
    ids: list[str]  # names a request may give as `model` (the first is the one listed)
    spec: object  # the model's PreprocessSpec: sampler, instruction, schema
    batcher: Batcher
    allow_dirs: list[Path] = field(default_factory=list)
    api_key: str | None = None
    max_video_bytes: int = MAX_VIDEO_BYTES
    max_new_tokens: int = 160
    created: int = field(default_factory=lambda: int(time.time()))


# --- the video -----------------------------------------------------------------------------------

def _data_url(url: str, limit: int) -> Path:
    """A data: URL's video as a temp file (the caller removes it)."""
    head, sep, payload = url.partition(",")
    mime = head[len("data:"):].split(";")[0].strip().lower()
    if not sep or ";base64" not in head:
        raise ApiError(400, "a data: URL must be base64: data:video/mp4;base64,...", "messages")
    if not mime.startswith("video/"):
        raise ApiError(400, f"a data: URL of type {mime or 'none'!r}: send video/... (e.g. video/mp4)", "messages")
    if len(payload) * 3 // 4 > limit + 3:
        raise ApiError(413, f"the video is over {limit / 2**20:.3g} MB; send a path inside the allowed folders "
                       "instead", "messages", "video_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the data: URL's base64 does not decode", "messages") from None
    fd, name = tempfile.mkstemp(prefix="vvw-api-", suffix=mimetypes.guess_extension(mime) or ".mp4")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:  # a full disk: the request fails, the half-written file goes
        Path(name).unlink(missing_ok=True)
        raise ApiError(507, f"the video cannot be stored for decoding ({exc.strerror or exc})", "messages",
                       kind="server_error") from None
    return Path(name)


def _local_path(url: str, allowed: list[Path]) -> Path:
    if url.startswith("file:"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ApiError(400, f"{url}: a file:// URL names a file on this machine (no host)", "messages")
        url = unquote(parsed.path)
    elif "://" in url:
        raise ApiError(400, f"{url.split('://')[0]}:// URLs are not fetched: send a local path inside the allowed "
                       "folders or a data:video/...;base64 URL", "messages")
    if not allowed:
        raise ApiError(403, "this server reads no local folders (start it with --allow-dir DIR); send the video "
                       "as a data:video/...;base64 URL", "messages", "path_not_allowed", "permission_error")
    path = Path(url).expanduser()
    if not path.is_absolute():  # a relative path is looked up in the allowed folders, in order
        path = next((d / path for d in allowed if (d / path).exists()), allowed[0] / path)
    resolved = path.resolve()  # symlinks and .. followed first, so neither leads outside
    if not any(resolved.is_relative_to(d) for d in allowed):
        raise ApiError(403, f"{url}: outside the folders this server may read", "messages", "path_not_allowed",
                       "permission_error")
    return resolved


async def sampled_frames(service: Service, url: str):
    """The clip's frames, sampled with the model's spec (in a worker thread: decoding runs beside the model)."""
    spec = service.spec.sampling_spec
    if url.startswith("data:"):
        path = await run_in_threadpool(_data_url, url, service.max_video_bytes)
        try:  # an upload is not kept in the frame cache: a client's clips are not ours to store
            return await run_in_threadpool(sample_frames, path, spec, False)
        except VideoError as exc:
            raise ApiError(400, f"the data: URL video cannot be read: {exc.reason}", "messages",
                           "unreadable_video") from None
        finally:
            path.unlink(missing_ok=True)
    path = _local_path(url, service.allow_dirs)
    try:
        return await run_in_threadpool(sample_frames, path, spec)
    except VideoError as exc:
        raise ApiError(400, f"{url}: {exc.reason}", "messages", "unreadable_video") from None


# --- the reply ------------------------------------------------------------------------------------

def completion(service: Service, ask: Ask, answer: Answer) -> dict:
    parsed, _ = extract_json(answer.text)
    problems = label_errors(ask.schema, parsed) if isinstance(parsed, dict) else None
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": service.ids[0],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": "stop" if answer.stopped else "length", "logprobs": None}],
        "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.new_tokens,
                  "total_tokens": answer.prompt_tokens + answer.new_tokens},
        "vvw": {"confidence": answer.confidence, "min_confidence": min_confidence(answer.confidence),
                "calibrated": answer.calibrated,
                "needs_review": needs_review(problems == [], answer.calibrated, answer.review_fields or []),
                "review_fields": answer.review_fields or [], "schema_valid": problems == [], "problems": problems or [],
                "parsed": parsed, "constrained": ask.constrained, "spec_hash": answer.spec_hash},
    }


def _authorised(service: Service, request: Request) -> bool:
    if not service.api_key:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), service.api_key.encode())


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it is longer than `limit` bytes, before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request is over {limit / 2**20:.3g} MB", None, "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request is over {limit / 2**20:.3g} MB", None, "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def refused(request: Request, exc: ApiError) -> JSONResponse:
    log.warning("%s %s -> %d %s", request.method, request.url.path, exc.status, exc)
    return error_response(exc.status, str(exc), exc.kind, exc.param, exc.code)


async def answer_request(service: Service, request: Request) -> dict:
    if not _authorised(service, request):
        raise ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY", None, "invalid_api_key",
                       "authentication_error")
    # the base64 of the largest video allowed, plus room for the rest of the JSON
    raw = await _body(request, service.max_video_bytes * 4 // 3 + 2**20)
    url, ask = parse_request(raw, service.ids, service.spec, service.max_new_tokens)
    frames = await sampled_frames(service, url)
    try:
        answer = await asyncio.wrap_future(service.batcher.submit(frames, ask))
    except SchemaError as exc:
        raise ApiError(400, str(exc), "response_format") from None
    return completion(service, ask, answer)


def api_router(service: Service) -> APIRouter:
    """The three routes, to include in a FastAPI app (ours, or the Gradio app's)."""
    router = APIRouter()

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            return await answer_request(service, request)
        except ApiError as exc:
            return refused(request, exc)
        except WorkbenchError as exc:  # the model could not answer (e.g. it failed to load again)
            log.warning("%s %s -> 500 %s", request.method, request.url.path, exc)
            return error_response(500, str(exc), "server_error")
        except Exception:  # noqa: BLE001 - a bug must not end the server; the log keeps its traceback
            log.exception("%s %s -> 500", request.method, request.url.path)
            return error_response(500, "the server failed to answer this request (see its log)", "server_error")

    @router.get("/v1/models")
    async def list_models(request: Request):
        if not _authorised(service, request):
            return refused(request, ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY", None,
                                             "invalid_api_key", "authentication_error"))
        return {"object": "list", "data": [{"id": service.ids[0], "object": "model", "created": service.created,
                                            "owned_by": "vvw"}]}

    @router.get("/health")
    async def health():
        if not service.batcher.alive:
            return error_response(503, "the model worker has stopped", "server_error")
        return {"status": "ok", "model": service.ids[0], "waiting": service.batcher.waiting}

    return router


# --- building it ---------------------------------------------------------------------------------

def model_ids(model: str) -> list[str]:
    """The name listed (a run's folder name, else the name given) and the other names accepted."""
    path = Path(model)
    if path.is_dir():
        return list(dict.fromkeys([path.resolve().name, model, str(path.resolve())]))
    return [model]


def served_schema(model: str, schema, allow_dirs=()) -> dict | None:
    """The schema a base model is asked with: `schema` (a dict or a file), else the first allowed folder's
    schema.json; None for a run (it answers with the schema it was trained with)."""
    if is_run_dir(model):
        return None
    if isinstance(schema, dict):
        return schema
    if schema:
        return load_schema(schema)
    own = next((Path(d) / SCHEMA for d in allow_dirs if (Path(d) / SCHEMA).is_file()), None)
    if own is None:
        raise ConfigError(f"{model} is a base model: give --schema FILE (or an --allow-dir holding schema.json)")
    return load_schema(own)


def build_service(model: str, models=None, allow_dirs=(), api_key: str | None = None, *, schema: dict | None = None,
                  max_video_bytes: int = MAX_VIDEO_BYTES, batch_size: int = 8, max_new_tokens: int = 160,
                  device: str = "auto", trust_remote_code: bool = False, wait_s: float = 0.005) -> Service:
    """Load the model (errors surface here, not at the first request) and start the batch worker.

    `models`: a ModelManager to share (the app's); else one of our own. `schema`: a base model's
    schema, a dict or a file (see `served_schema`; a run always answers with its own). `allow_dirs`: folders local paths may be read from,
    besides the run's dataset folder."""
    check_at_least(1, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if max_video_bytes < 1:
        raise ConfigError("--max-video-mb must be more than 0")
    if models is None:
        from core.serve.manager import ModelManager

        models = ModelManager(max_resident=1, device=device)

    def hold():  # the predictor for one batch, the manager held locked for it
        return loaded_predictor(model, schema, models, trust_remote_code=trust_remote_code)

    for d in map(Path, allow_dirs):  # refused before the model loads
        if not d.is_dir():
            raise ConfigError(f"--allow-dir {d}: no such folder")
    schema = served_schema(model, schema, allow_dirs)
    with hold() as predictor:  # loaded now: a model that cannot load is refused at start, not per request
        spec = predictor.spec
    folders = [run_dataset(model)] + [Path(d) for d in allow_dirs]
    allowed = list(dict.fromkeys(d.resolve() for d in folders if d is not None))
    return Service(model, model_ids(model), spec, Batcher(hold, batch_size, wait_s), allowed, api_key,
                   max_video_bytes, max_new_tokens)


def create_api(model: str, models=None, allow_dirs=(), api_key: str | None = None, **options) -> FastAPI:
    """A FastAPI app serving `model` (see the module docstring); `options`: build_service's keywords."""
    service = build_service(model, models, allow_dirs, api_key, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.batcher.close()

    app = FastAPI(title="Video VLM Workbench API", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.service = service
    app.include_router(api_router(service))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # unknown routes and methods in the same shape as every other refusal
        return refused(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}"))

    return app
