"""Video VLM Workbench: the Gradio app. `python app.py [--host H] [--port P] [--share --auth U:P] [--api]`.

Binds 127.0.0.1 unless --host says otherwise; a share link is only created with authentication.
`--api` also serves the OpenAI-compatible routes of `cli.py serve` (core.serve.openai_api) on the
same port, so a Space answers both; off loopback they need VVW_API_KEY.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from core.workspace import Workspace  # noqa: E402
from tabs import annotate, compare, export, inference, schema, train  # noqa: E402
from tabs.pickers import Pickers  # noqa: E402


def build_app(ws: Workspace, note: str | None = None) -> gr.Blocks:
    """`note`: Workspace.open_note(), shown on top (a new dataset says how to start it)."""
    with gr.Blocks(title="Video VLM Workbench") as demo:
        gr.Markdown("# Video VLM Workbench\nClips → schema → labels → fine-tune → JSON you can put in a database.")
        if note:
            gr.Markdown(note, elem_id="app-note")
        saved_schema = gr.State(_schema_or_none(ws))
        pickers = Pickers(ws)  # every run/model picker, refreshed together (tabs.pickers)
        with gr.Tabs():
            with gr.Tab("Annotate", id="annotate"):
                annotate.build(ws, saved_schema, pickers)
            with gr.Tab("Schema", id="schema"):
                schema.build(ws, saved_schema)
            with gr.Tab("Train", id="train"):
                train.build(ws)
            with gr.Tab("Compare", id="compare"):
                compare.build(ws, pickers)
            with gr.Tab("Export", id="export"):
                export.build(ws, pickers)
            with gr.Tab("Inference", id="inference"):
                inference.build(ws, pickers)
        pickers.wire()
    return demo


# Ctrl/Cmd+Enter = "Save & next" in the Annotate tab: labelling hundreds of clips is a keyboard job
KEYBOARD_JS = """<script>
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    const b = document.querySelector('#annotate-save-next');
    if (b && b.offsetParent !== null) { e.preventDefault(); b.click(); }
  }
});
</script>"""


# Score tables' headers broke inside words ("confi denc e") in a narrow column: headers stay whole.
# Gallery captions are one ellipsised line over 80% of a tile, which cut "● clip_0012.mp4" to
# "● clip_00…": file names are what a person scans the Annotate gallery for, so they wrap in full.
APP_CSS = """
#annotate-gallery .caption-label { white-space: normal; overflow-wrap: anywhere; text-overflow: clip;
  max-width: 100%; opacity: 0.9; }
.vvw-scores th { white-space: nowrap; word-break: keep-all; overflow-wrap: normal; }
"""


def _schema_or_none(ws):
    from core.errors import WorkbenchError

    try:
        return ws.store.schema()
    except WorkbenchError:
        return None  # the Schema tab shows what is wrong with it


def parse_auth(value: str | None):
    value = value or os.environ.get("VVW_AUTH")
    if not value:
        return None
    if ":" not in value:
        raise SystemExit("error: --auth must be USER:PASSWORD")
    user, password = value.split(":", 1)
    return [(user, password)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Video VLM Workbench")
    # loopback unless asked: --host, or GRADIO_SERVER_NAME as set by a platform (HF Spaces, our Dockerfile)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("VVW_PORT", os.environ.get("GRADIO_SERVER_PORT", 7860))))
    parser.add_argument("--share", action="store_true", help="create a public Gradio link (requires --auth)")
    parser.add_argument("--auth", help="USER:PASSWORD (or env VVW_AUTH)")
    parser.add_argument("--dataset", help="dataset folder (default: a copy of the bundled sample_videos in data/, "
                                          "or VVW_DATA_DIR, made on first start)")
    parser.add_argument("--runs", help="folder of training runs (default: checkpoints/)")
    parser.add_argument("--api", action="store_true", help="also serve /v1/chat/completions, /v1/models and /health "
                        "(an OpenAI-compatible API; clients send VVW_API_KEY when it is set, required off loopback)")
    parser.add_argument("--api-model", help="run or model the API serves (default: the newest finished run, "
                                            "else the default model with the dataset's schema)")
    args = parser.parse_args(argv)
    auth = parse_auth(args.auth)
    if args.share and not auth:
        raise SystemExit("error: --share exposes the app publicly; give --auth USER:PASSWORD (or VVW_AUTH)")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not auth and not os.environ.get("SPACE_ID"):
        print(f"warning: listening on {args.host} without --auth: anyone who can reach this port can use the app",
              file=sys.stderr)
    from core.errors import WorkbenchError

    ws = Workspace(**{k: v for k, v in {"dataset_dir": args.dataset, "runs_dir": args.runs}.items() if v})
    try:
        note = ws.open_note()
    except WorkbenchError as exc:
        raise SystemExit(f"error: {exc}") from None
    if note:
        print(note.replace("**", "").replace("`", ""), file=sys.stderr)
    demo = build_app(ws, note)
    atexit.register(ws.fold_pending)  # a closed app leaves metadata.jsonl complete for scripts
    api = _api_service(ws, args) if args.api else None
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                allowed_paths=[str(ws.dataset_dir), str(ws.runs_dir)], head=KEYBOARD_JS, css=APP_CSS,
                show_error=True, prevent_thread_lock=api is not None)
    if api is not None:
        from core.serve.openai_api import api_router

        # Gradio's FastAPI app exists once launched; routes added now are matched from the next request
        demo.app.include_router(api_router(api))
        print(f"API: {api.ids[0]} at /v1 (OpenAI-compatible)", file=sys.stderr)
        demo.block_thread()
    return 0


def _api_service(ws, args):
    """The OpenAI-compatible API's model, sharing the tabs' model manager (refusals: one error line)."""
    from core.errors import WorkbenchError
    from core.serve.openai_api import build_service, check_bind

    key = os.environ.get("VVW_API_KEY") or None
    runs = ws.finished_runs()
    model = args.api_model or (str(runs[0]) if runs else ws.default_model)
    try:
        check_bind(args.host, None, key, key_hint="--api needs an API key: set VVW_API_KEY")
        schema = _schema_or_none(ws)
        if schema is None and not runs and not args.api_model:
            raise SystemExit("error: --api: no finished run and no saved schema to ask the default model with; "
                             "save a schema or give --api-model RUN")
        return build_service(model, ws.models, [ws.dataset_dir], key, schema=schema)
    except WorkbenchError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
