"""Annotate tab: gallery with status, player, the frames the model sees, a schema-generated form,
drafts from a model, uploads, splits and imports. All state lives on disk in the annotation store;
the page only remembers which clip is open and the revision it was opened at.
"""

from __future__ import annotations

import json
import math

import gradio as gr

from core.data.store import DRAFT, STATUSES, UNLABELLED, UNREADABLE
from core.errors import WorkbenchError
from core.schema import form
from tabs.widgets import render_fields

STATUS_ICON = {"unlabelled": "○", "draft": "✎", "labelled": "●", "invalid": "⚠", "unreadable": "✖"}
NO_SPLIT = "(none)"


def placeholder_image():
    from PIL import Image

    from core.paths import cache_dir

    path = cache_dir() / "thumbs" / "unreadable.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (160, 96), (90, 30, 30)).save(path)
    return path


PAGE_SIZE = 120  # thumbnails per gallery page: a 2,000-clip folder must not render (or decode) all at once


def gallery_items(store, status_filter: str = "all", query: str = "", page: int = 0,
                  focus: str | None = None) -> tuple[list, list[str], str, int]:
    """(gallery items of one page, every matching clip path in order, a summary line, the page).
    `focus`: a clip whose page to show instead of `page` (the clip just opened), when it matches."""
    from core.video.thumbs import thumbnail

    clips = store.clips()
    counts = {s: sum(1 for c in clips if c.status == s) for s in STATUSES}
    q = (query or "").strip().lower()
    shown = [c for c in clips if (status_filter in (None, "", "all") or c.status == status_filter)
             and (not q or q in c.rel.lower() or q in json.dumps(c.label).lower())]
    rels = [c.rel for c in shown]
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = rels.index(focus) // PAGE_SIZE if focus in rels else int(page or 0)
    page = min(max(page, 0), pages - 1)
    window = shown[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    items = [(str(thumbnail(c.path) or placeholder_image()), f"{STATUS_ICON[c.status]} {c.rel.split('/')[-1]}")
             for c in window]
    summary = f"{len(clips)} clips · " + " · ".join(f"{STATUS_ICON[s]} {s} {n}" for s, n in counts.items())
    if pages > 1:
        summary += (f"\n\npage {page + 1} of {pages}: clips {page * PAGE_SIZE + 1}-{page * PAGE_SIZE + len(window)}"
                    f" of {len(shown)} shown")
    problems = store.problems()
    if problems:
        summary += f"\n\n⚠️ {len(problems)} unreadable metadata lines kept as they are: " + "; ".join(problems[:3])
    return items, rels, summary, page


def clip_at(rels: list[str], page: int, index: int | None) -> str | None:
    """The clip under a click on gallery tile `index` of `page`."""
    if index is None:
        return None
    pos = int(page or 0) * PAGE_SIZE + index
    return rels[pos] if 0 <= pos < len(rels) else None


def open_clip(store, rel: str | None, sampling) -> dict:
    """What the editor shows for one clip. The form starts from the label, else from the draft."""
    if not rel:
        return {"current": {}, "video": None, "frames": [], "title": "Pick a clip in the gallery.",
                "split": NO_SPLIT, "raw": ""}
    clip = store.clip(rel)
    start = clip.label or ((clip.draft or {}).get("label") if clip.status == DRAFT else None) or {}
    title = f"**{clip.rel}** · {STATUS_ICON[clip.status]} {clip.status}"
    if clip.problems:
        title += "\n\n" + "\n".join(f"- {p}" for p in clip.problems)
    if clip.status == DRAFT:
        title += f"\n\nDraft by `{clip.draft.get('model')}` — review, edit and save to accept it."
    frames = []
    if clip.status != UNREADABLE:
        from core.video.frames import sample_frames

        try:
            sampled = sample_frames(clip.path, sampling)
            frames = [(f, f"#{i} · {t:.1f}s") for f, i, t in zip(sampled.frames, sampled.indices, sampled.timestamps)]
        except WorkbenchError as exc:
            title += f"\n\n✖ {exc}"
    return {"current": {"rel": clip.rel, "revision": clip.revision, "start": start},
            "video": str(clip.path) if clip.status != UNREADABLE else None, "frames": frames, "title": title,
            "split": clip.split or NO_SPLIT, "raw": json.dumps(start, indent=2, ensure_ascii=False)}


def save(store, current: dict, label: dict, split, rels: list[str]) -> tuple[str, str | None]:
    """Save the open clip; returns (message, the clip to open next). `split` ... keeps the stored one."""
    if not current.get("rel"):
        raise gr.Error("no clip is open")
    rel = current["rel"]
    try:
        store.save_label(rel, label, current.get("revision"), split=None if split == NO_SPLIT else split)
    except WorkbenchError as exc:
        raise gr.Error(str(exc)) from exc
    return f"saved {rel}", next_clip(store, rels, rel)


def next_clip(store, rels: list[str], rel: str) -> str | None:
    """The next clip in the gallery order that still needs work, else simply the next one."""
    if rel not in rels:
        return rels[0] if rels else None
    after = rels[rels.index(rel) + 1:] + rels[: rels.index(rel)]
    todo = {c.rel for c in store.clips() if c.status in (UNLABELLED, DRAFT, "invalid")}
    return next((r for r in after if r in todo), after[0] if after else rel)


def page_load():
    """The Blocks' load event (gr.render needs it named when other triggers are given)."""
    from gradio.context import get_blocks_context

    return get_blocks_context().root_block.load


def build(ws, schema_state: gr.State) -> None:
    store = ws.store
    items0, rels0, summary0, _ = gallery_items(store)
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                status_filter = gr.Dropdown(["all", *STATUSES], value="all", label="Status", scale=1)
                query = gr.Textbox(label="Search", placeholder="file name or label text", scale=2)
            summary = gr.Markdown(summary0, elem_id="annotate-summary")
            with gr.Row():
                prev_page = gr.Button("◀ Previous page", size="sm", elem_id="annotate-prev-page")
                next_page = gr.Button("Next page ▶", size="sm", elem_id="annotate-next-page")
            gallery = gr.Gallery(items0, columns=3, height=520, allow_preview=False, label="Clips",
                                 elem_id="annotate-gallery")
        with gr.Column(scale=3):
            title = gr.Markdown("Pick a clip in the gallery.", elem_id="annotate-title")
            video = gr.Video(label="Clip", interactive=False, height=260)
            frames = gr.Gallery(label="Frames the model sees", columns=4, height=220, allow_preview=False,
                                elem_id="annotate-frames")
        with gr.Column(scale=3):
            split = gr.Radio([NO_SPLIT, "train", "val", "test"], value=NO_SPLIT, label="Split")
            form_box = gr.Column()
            with gr.Row():
                save_next = gr.Button("Save & next (Ctrl+Enter)", variant="primary", elem_id="annotate-save-next")
                skip = gr.Button("Skip")
            message = gr.Markdown(elem_id="annotate-message")
            with gr.Accordion("Raw JSON", open=False):
                raw = gr.Code(language="json", label="Label as JSON", elem_id="annotate-raw")
                save_raw = gr.Button("Save raw JSON")
    rels = gr.State(rels0)
    page = gr.State(0)
    current = gr.State({})
    picked = gr.Textbox(visible=False, elem_id="annotate-picked")  # the clip to open (API + gallery)

    def refresh(status_, query_, page_, focus=None):
        return gallery_items(store, status_, query_, page_, focus)

    def show(rel):
        try:
            view = open_clip(store, rel, ws.preview_sampling())
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        return view["current"], view["video"], view["frames"], view["title"], view["split"], view["raw"]

    def on_select(rels_, page_, evt: gr.SelectData):
        return clip_at(rels_, page_, evt.index)

    def on_save_raw(cur_, split_, rels_, text):
        try:
            label = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise gr.Error(f"raw JSON line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        msg, nxt = save(store, cur_, label, split_, rels_)
        return msg, nxt or cur_.get("rel")

    view_outputs = [current, video, frames, title, split, raw]
    listing = ([status_filter, query, page], [gallery, rels, summary, page])

    def then_show(event):
        # every way of moving to a clip ends here, so the form, player and gallery (on the open
        # clip's page) stay in step
        event.then(show, picked, view_outputs).then(refresh, [status_filter, query, page, picked], listing[1])

    with form_box:
        # Redrawn only when the schema changes. Opening a clip fills the same widgets through an
        # event: redrawing per clip would swap the Save handler while a fast user presses it.
        @gr.render(inputs=[schema_state, current], triggers=[schema_state.change, page_load()])
        def draw_form(schema, cur):
            if not schema:
                gr.Markdown("Save a schema in the Schema tab to get a form.")
                return
            fields = form.form_fields(schema)
            comps = render_fields(fields, form.label_to_values(fields, (cur or {}).get("start")))
            current.change(lambda c: form.label_to_values(fields, (c or {}).get("start")), current, comps)

            def on_save(cur_, split_, rels_, *values):
                label, problems = form.values_to_label(fields, list(values))
                if problems:
                    raise gr.Error("; ".join(problems))
                msg, nxt = save(store, cur_, label, split_, rels_)
                return msg, nxt or cur_.get("rel")

            then_show(save_next.click(on_save, [current, split, rels, *comps], [message, picked]))

    then_show(gallery.select(on_select, [rels, page], picked))
    then_show(skip.click(lambda cur_, rels_: next_clip(store, rels_, cur_.get("rel")), [current, rels], picked))
    then_show(save_raw.click(on_save_raw, [current, split, rels, raw], [message, picked]))
    first_page = ([status_filter, query], listing[1])  # a new filter or search starts at page 1
    status_filter.change(lambda s_, q_: gallery_items(store, s_, q_), *first_page)
    query.submit(lambda s_, q_: gallery_items(store, s_, q_), *first_page)
    schema_state.change(refresh, *listing)
    prev_page.click(lambda s_, q_, p_: gallery_items(store, s_, q_, p_ - 1), *listing)
    next_page.click(lambda s_, q_, p_: gallery_items(store, s_, q_, p_ + 1), *listing)

    def api_open(rel: str) -> dict:
        """API: what the editor shows for a clip (its revision is needed to save)."""
        clip = store.clip(rel)
        return {"rel": clip.rel, "status": clip.status, "revision": clip.revision, "label": clip.label,
                "split": clip.split, "problems": list(clip.problems), "draft": clip.draft}

    def api_save(rel: str, label_json: str, revision: str, split_name: str) -> dict:
        """API twin of the form: save a label (JSON text) for a clip opened at `revision`."""
        try:
            label = json.loads(label_json)
        except json.JSONDecodeError as exc:
            raise gr.Error(f"label is not JSON: {exc.msg}") from exc
        msg, _ = save(store, {"rel": rel, "revision": revision or None}, label, split_name or ..., [rel])
        return {"message": msg, "revision": store.clip_revision(rel)}

    gr.api(api_open, api_name="open_clip")
    gr.api(api_save, api_name="save_label")
    build_tools(ws, store, listing)


def build_tools(ws, store, listing) -> None:
    """Pre-label, upload, split and import panels under the editor."""
    from tabs import annotate_tools

    annotate_tools.build(ws, store, *listing, lambda s, q, p: gallery_items(store, s, q, p))
