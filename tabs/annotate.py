"""Annotate tab: gallery with status, player, the frames the model sees, a schema-generated form,
drafts from a model, uploads, splits and imports. All state lives on disk in the annotation store;
the page only remembers which clip is open and the revision it was opened at.
"""

from __future__ import annotations

import json

import gradio as gr

from core.data.listing import PAGE_SIZE, REVIEW, gallery_page, matching, next_clip, start_video_scan  # noqa: F401
from core.data.store import DRAFT, STATUSES, UNREADABLE
from core.errors import WorkbenchError
from core.schema import form

# re-exported (noqa): tests and bench/ read gallery pages, tiles and PAGE_SIZE through this module
from tabs.annotate_view import (  # noqa: F401
    ANNOTATE_CSS,
    FRAME_COLUMNS,
    GALLERY_COLUMNS,
    SCROLL_TO_SELECTED_JS,
    SCROLL_TO_TOP_JS,
    STATUS_ICON,
    clip_at,
    confidence_text,
    field_marks,
    field_updates,
    focus_index,
    gallery_items,
    summary_text,
)
from tabs.shared import page_load, render
from tabs.widgets import render_fields

NO_SPLIT = "(none)"
# the status filter; REVIEW is the review queue (core.data.listing): drafts, least sure first
FILTERS = [("all", "all"), *((s, s) for s in STATUSES), ("review: drafts, least sure first", REVIEW)]


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
    confidence = None
    if clip.status == DRAFT:
        title += f"\n\nDraft by `{clip.draft.get('model')}` — review, edit and save to accept it."
        title += confidence_text(clip.draft)
        confidence = clip.draft.get("confidence")
    frames = []
    if clip.status != UNREADABLE:
        from core.video.frames import sample_frames

        try:
            sampled = sample_frames(clip.path, sampling)
            frames = [(f, f"#{i} · {t:.1f}s") for f, i, t in zip(sampled.frames, sampled.indices, sampled.timestamps)]
        except WorkbenchError as exc:
            title += f"\n\n✖ {exc}"
    return {"current": {"rel": clip.rel, "revision": clip.revision, "start": start, "confidence": confidence},
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


def save_inline(store, current: dict, label: dict | None, split, rels: list[str], problems=()) -> tuple:
    """Save & next as the editor runs it: (message, the clip to open, whether to move). A refusal is
    worded inline, where the person looks, and keeps the clip open with their edits; an error toast
    fades and leaves the message area saying only "Error"."""
    try:
        if problems:
            raise gr.Error("; ".join(problems))
        msg, nxt = save(store, current, label, split, rels)
    except gr.Error as exc:
        return f"✖ not saved: {exc.message}", gr.skip(), False
    return msg, nxt or current.get("rel"), True


def save_form(store, fields, schema: dict, current: dict, values: list, split, rels: list[str]) -> tuple:
    """Save & next from the form: (message, the clip to open, whether to move, the fields to mark).
    A label that breaks the schema is refused in the form's words ("caption is required") and names
    its fields; the store checks again (the schema may have changed since the form was drawn)."""
    label, problems = form.field_problems(fields, schema, values)
    msg, nxt, moved = save_inline(store, current, label, split, rels, [words for _, words in problems])
    return msg, nxt, moved, {name for name, _ in problems if name}


def raw_label(text: str, schema: dict | None) -> tuple[dict | None, list[str]]:
    """The raw JSON editor's label and, worded as the form words them, why it cannot be saved."""
    try:
        label = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return None, [f"raw JSON line {exc.lineno} column {exc.colno}: {exc.msg}"]
    if not schema:
        return label, []
    return label, [words for _, words in form.label_problems(form.form_fields(schema), schema, label)]


def build(ws, schema_state: gr.State, pickers=None) -> None:
    """`pickers`: the app's tabs.pickers.Pickers (a tab built alone makes its own, unwired)."""
    store = ws.store
    items0, rels0, summary0, _ = gallery_items(store)
    with gr.Row():
        with gr.Column(scale=3):
            c = _gallery_column(items0, summary0)
        with gr.Column(scale=3):
            c.update(_clip_column())
        with gr.Column(scale=3):
            c.update(_editor_column())
    c["rels"] = gr.State(rels0)
    c["page"] = gr.State(0)
    c["current"] = gr.State({})
    c["picked"] = gr.Textbox(visible=False, elem_id="annotate-picked")  # the clip to open (API + gallery)
    c["moved"] = gr.State(True)  # False after a refused save: the open clip and its edits stay
    editor = Editor(ws, schema_state, c)
    editor.form()
    editor.wire_moves()
    editor.wire_pages()
    _api(store)
    build_tools(ws, store, editor.listing, (c["picked"], c["moved"]), editor.then_show, pickers)
    build_scan_line(store, c["scan_line"])


def _gallery_column(items0, summary0) -> dict:
    c = {}
    with gr.Row():
        c["status_filter"] = gr.Dropdown(FILTERS, value="all", label="Status", scale=1, elem_id="annotate-filter")
        c["query"] = gr.Textbox(label="Search", placeholder="file name or label text", scale=2)
    c["summary"] = gr.Markdown(summary0, elem_id="annotate-summary")
    c["scan_line"] = gr.Markdown(elem_id="annotate-scan")
    with gr.Row(equal_height=True):
        c["prev_page"] = gr.Button("◀ Previous", size="sm", elem_id="annotate-prev-page", scale=2, min_width=70)
        # shows the page on screen; type another number and press Enter to go there
        c["go_page"] = gr.Number(1, label="Go to page", show_label=False, precision=0, container=False, scale=1,
                                 min_width=60, elem_id="annotate-go-page")
        c["next_page"] = gr.Button("Next ▶", size="sm", elem_id="annotate-next-page", scale=2, min_width=70)
    # file names wrap in full under each thumbnail (ANNOTATE_CSS): they are what a person scans for
    c["gallery"] = gr.Gallery(items0, columns=GALLERY_COLUMNS, height=560, allow_preview=False, label="Clips",
                              object_fit="contain", elem_id="annotate-gallery")
    return c


def _clip_column() -> dict:
    c = {"title": gr.Markdown("Pick a clip in the gallery.", elem_id="annotate-title"),
         "video": gr.Video(label="Clip", interactive=False, height=260)}
    # every frame whole, at its aspect ratio, all rows shown (ANNOTATE_CSS): a label can hinge on
    # a sign at the frame's edge
    c["frames"] = gr.Gallery(label="Frames the model sees", columns=FRAME_COLUMNS, height="fit-content",
                             object_fit="contain", allow_preview=False, elem_id="annotate-frames")
    return c


def _editor_column() -> dict:
    c = {}
    gr.HTML("", head=f"<style>{ANNOTATE_CSS}</style>", padding=False)
    c["split"] = gr.Radio([NO_SPLIT, "train", "val", "test"], value=NO_SPLIT, label="Split")
    c["form_box"] = gr.Column()
    with gr.Row():
        c["save_next"] = gr.Button("Save & next (Ctrl+Enter)", variant="primary", elem_id="annotate-save-next")
        c["skip"] = gr.Button("Skip")
    c["message"] = gr.Markdown(elem_id="annotate-message")
    with gr.Accordion("Raw JSON", open=False):
        c["raw"] = gr.Code(language="json", label="Label as JSON", elem_id="annotate-raw")
        c["save_raw"] = gr.Button("Save raw JSON")
    return c


class Editor:
    """The gallery's and the editor's events: opening a clip, saving, skipping, paging, the form."""

    def __init__(self, ws, schema_state, c: dict):
        self.ws, self.store, self.schema_state, self.c = ws, ws.store, schema_state, c
        self.view_outputs = [c[k] for k in ("current", "video", "frames", "title", "split", "raw")]
        self.listing = ([c["status_filter"], c["query"], c["page"]], [c["gallery"], c["rels"], c["summary"], c["page"]])

    def listed(self, status_, query_, page_, open_rel=None, focus=None):
        """A gallery page (`focus`: the page of that clip), the open clip's tile highlighted when it is
        on it: a highlight on another page's tile would point at a clip that is not open."""
        items, rels_, summary_, page_ = gallery_items(self.store, status_, query_, page_, focus)
        selected = focus_index(rels_, page_, focus or open_rel)
        return gr.Gallery(value=items, selected_index=selected), rels_, summary_, page_

    def refresh_on(self, status_, query_, page_, focus, moved_=True):
        return self.listed(status_, query_, page_, focus=focus) if moved_ else [gr.skip()] * 4

    def show(self, rel, moved_=True):
        if not moved_:
            return [gr.skip()] * len(self.view_outputs)
        try:
            view = open_clip(self.store, rel, self.ws.preview_sampling())
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        return view["current"], view["video"], view["frames"], view["title"], view["split"], view["raw"]

    def on_select(self, rels_, page_, evt: gr.SelectData):
        return clip_at(rels_, page_, evt.index), True

    def on_save_raw(self, cur_, split_, rels_, text, schema):
        label, problems = raw_label(text, schema)
        return save_inline(self.store, cur_, label, split_, rels_, problems)

    def then_show(self, event):
        # every way of moving to a clip ends here, so the form, player and gallery (on the open
        # clip's page, its tile highlighted) stay in step; a refused save moves nothing
        c = self.c
        where = [c["status_filter"], c["query"], c["page"], c["picked"], c["moved"]]
        event.then(self.show, [c["picked"], c["moved"]], self.view_outputs).then(
            self.refresh_on, where, self.listing[1]).then(
            None, js=SCROLL_TO_SELECTED_JS)  # the open clip's tile in view, wherever its page scrolled to

    def form(self) -> None:
        with self.c["form_box"]:
            # Redrawn only when the schema changes. Opening a clip fills the same widgets through an
            # event: redrawing per clip would swap the Save handler while a fast user presses it.
            render(inputs=[self.schema_state, self.c["current"]],
                   triggers=[self.schema_state.change, page_load()])(self.draw_form)

    def draw_form(self, schema, cur):
        if not schema:
            gr.Markdown("Save a schema in the Schema tab to get a form.")
            return
        c, store = self.c, self.store
        fields = form.form_fields(schema)
        comps = render_fields(fields, form.label_to_values(fields, (cur or {}).get("start")))
        c["current"].change(lambda cur_: field_updates(fields, form.label_to_values(fields, (cur_ or {}).get("start")),
                                                       (cur_ or {}).get("confidence")), c["current"], comps)

        def on_save(cur_, split_, rels_, *values):
            msg, nxt, moved_, invalid = save_form(store, fields, schema, cur_, list(values), split_, rels_)
            return msg, nxt, moved_, *field_marks(fields, (cur_ or {}).get("confidence"), invalid)

        self.then_show(c["save_next"].click(on_save, [c["current"], c["split"], c["rels"], *comps],
                                            [c["message"], c["picked"], c["moved"], *comps]))

    def wire_moves(self) -> None:
        c, store, opened = self.c, self.store, [self.c["picked"], self.c["moved"]]
        self.then_show(c["gallery"].select(self.on_select, [c["rels"], c["page"]], opened))
        self.then_show(c["skip"].click(lambda cur_, rels_: (next_clip(store, rels_, cur_.get("rel")), True),
                                       [c["current"], c["rels"]], opened))
        self.then_show(c["save_raw"].click(self.on_save_raw, [c["current"], c["split"], c["rels"], c["raw"],
                                                              self.schema_state], [c["message"], *opened]))

    def turned(self, step):
        return lambda s_, q_, p_, cur_: self.listed(s_, q_, int(p_ or 0) + step, cur_.get("rel"))

    def wire_pages(self) -> None:
        c, listed = self.c, self.listed
        browse = ([c["status_filter"], c["query"], c["page"], c["current"]], self.listing[1])
        # a new filter or search starts at page 1
        first_page = ([c["status_filter"], c["query"], c["current"]], self.listing[1])
        c["status_filter"].change(lambda s_, q_, cur_: listed(s_, q_, 0, cur_.get("rel")), *first_page)
        c["query"].submit(lambda s_, q_, cur_: listed(s_, q_, 0, cur_.get("rel")), *first_page)
        self.schema_state.change(self.turned(0), *browse)
        for button, step in ((c["prev_page"], -1), (c["next_page"], 1)):
            button.click(self.turned(step), *browse).then(None, js=SCROLL_TO_TOP_JS)
        # page numbers as the summary says them (from 1); past the end shows the last page
        c["go_page"].submit(lambda s_, q_, n, cur_: listed(s_, q_, int(n or 1) - 1, cur_.get("rel")),
                            [c["status_filter"], c["query"], c["go_page"], c["current"]], self.listing[1],
                            api_name="go_to_page").then(None, js=SCROLL_TO_TOP_JS)
        c["page"].change(lambda p_: int(p_ or 0) + 1, c["page"], c["go_page"], show_progress="hidden")


def _api(store) -> None:
    """The editor's API twins (open, save, a gallery page, save & next), for scripts and tests."""

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

    def api_gallery(status_: str, query_: str, page_: int) -> dict:
        """API: one gallery page under a status filter and a search (what the gallery shows)."""
        shown = gallery_page(store, status_ or "all", query_ or "", int(page_ or 0))
        return {"clips": [c.rel for c in shown.clips], "statuses": [c.status for c in shown.clips],
                "matching": len(shown.rels), "page": shown.page, "pages": shown.pages,
                "summary": summary_text(shown, query_ or "")}

    def api_save_next(rel: str, label_json: str, revision: str, split_name: str, status_: str, query_: str) -> dict:
        """API twin of Save & next: save, then the next clip that needs work under the filter and search."""
        out = api_save(rel, label_json, revision, split_name)
        return {**out, "next": next_clip(store, matching(store, status_ or "all", query_ or "")[0], rel)}

    gr.api(api_open, api_name="open_clip")
    gr.api(api_save, api_name="save_label")
    gr.api(api_gallery, api_name="gallery")
    gr.api(api_save_next, api_name="save_next")


FOLD_SECONDS = 30.0


def build_scan_line(store, scan_line) -> None:
    """Probe every video in the background and say how far it got (the page's own clips are probed
    before they are shown, so nothing waits for this)."""
    start_video_scan(store)
    timer = gr.Timer(2.0)

    def tick():
        progress = store.scan.progress()
        if progress is None:
            return "", gr.Timer(active=False)
        return f"checking videos in the background: {progress[0]:,} of {progress[1]:,}", gr.Timer()

    timer.tick(tick, None, [scan_line, timer])
    # big datasets keep saves in metadata.pending.jsonl (core.data.journal): write them into
    # metadata.jsonl every half minute, so a script reading the file is at most that far behind
    fold_timer = gr.Timer(FOLD_SECONDS)
    fold_timer.tick(store.fold, None, None, show_progress="hidden", queue=False)


def build_tools(ws, store, listing, opener, then_show, pickers=None) -> None:
    """Pre-label, upload, split and import panels under the editor; `opener` (picked, moved) and
    `then_show` let "Pre-label, then review" open the least sure clip as a gallery click would."""
    from tabs import annotate_tools

    annotate_tools.build(ws, store, *listing, lambda s, q, p: gallery_items(store, s, q, p), opener=opener,
                         then_show=then_show, pickers=pickers)
