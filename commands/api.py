"""`serve`: an OpenAI-compatible chat-completions server for a run or model (core.serve.openai_api, run by uvicorn).

Clients point any OpenAI library at http://HOST:PORT/v1 and send a clip as a `video_url` content part
(a path inside the allowed folders, or a data:video/...;base64 URL). The answer is the text `predict`
writes for the same clip and model. Binds 127.0.0.1 unless --host says otherwise; any other host
needs --api-key (or VVW_API_KEY).
"""

from __future__ import annotations

import logging
import os
import sys

from commands.common import add_model_flags


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a run or model behind an OpenAI-compatible API (/v1/chat/completions)",
                       description="An OpenAI-compatible server: POST /v1/chat/completions, GET /v1/models, "
                                   "GET /health. A request's clip is a video_url part: a local path or file:// URL "
                                   "inside the allowed folders (the run's dataset folder and each --allow-dir), or "
                                   "a data:video/...;base64 URL. By default answers are constrained to the model's "
                                   "schema, as predict's are; response_format chooses otherwise.")
    p.add_argument("model", metavar="RUN_OR_MODEL", help="a run directory, tiny:NAME, a hub id or a local model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY (default: env VVW_API_KEY; required "
                   "when --host is not a loopback address)")
    p.add_argument("--allow-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose videos clients may name by path (repeatable; the run's dataset folder "
                        "is allowed already)")
    p.add_argument("--schema", dest="schema_from", help="schema for a base model (default: the first --allow-dir's "
                   "schema.json); a run answers with its own")
    p.add_argument("--max-new-tokens", type=int, default=160, help="default token budget of an answer (a request's "
                   "max_tokens overrides it)")
    p.add_argument("--max-video-mb", type=float, default=50, help="largest video a data: URL may carry (default 50)")
    add_model_flags(p, batch_size=8)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from core.serve.openai_api import check_bind, create_api

    key = args.api_key or os.environ.get("VVW_API_KEY") or None
    check_bind(args.host, args.port, key)  # before the model loads: a refusal costs nothing
    app = create_api(args.model, allow_dirs=args.allow_dir, api_key=key, schema=args.schema_from,
                     max_video_bytes=int(args.max_video_mb * 2**20), batch_size=args.batch_size,
                     max_new_tokens=args.max_new_tokens, device=args.device,
                     trust_remote_code=args.trust_remote_code)
    service = app.state.service
    host = f"[{args.host}]" if ":" in args.host else args.host
    folders = ", ".join(map(str, service.allow_dirs)) or "none (data: URLs only)"
    print(f"serving {service.ids[0]} at http://{host}:{args.port}/v1 (model name {service.ids[0]!r}; "
          f"folders clients may name: {folders}){'; API key required' if key else ''}", file=sys.stderr, flush=True)
    # our refusals are one warning line each; uvicorn's access log only with -v
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if verbose else "warning",
                access_log=verbose)
    return 0
