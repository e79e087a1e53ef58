"""Annotate tab: gallery with status, player, the frames the model sees, a schema-generated form,
drafts from a model, uploads, splits and imports. All state lives on disk in the annotation store;
the page only remembers which clip is open and the revision it was opened at.
"""

from __future__ import annotations

import json

import gradio as gr

from core.data.listing import PAGE_SIZE, REVIEW, gallery_page, matching, next_clip, start_video_scan
from core.data.store import DRAFT, STATUSES, UNREADABLE
from core.errors import WorkbenchError
from core.schema import form
from tabs.compare import LOW_CONFIDENCE
from tabs.widgets import render_fields

STATUS_ICON = {"unlabelled": "○", "draft": "✎", "labelled": "●", "invalid": "⚠", "unreadable": "✖"}
NO_SPLIT = "(none)"
# the status filter; REVIEW is the review queue (core.data.listing): drafts, least sure first
FILTERS = [("all", "all"), *((s, s) for s in STATUSES), ("review: drafts, least sure first", REVIEW)]
# a field the model was unsure of (field_updates): tinted with a bar, so the eye finds it before reading labels;
# injected by the tab (gr.HTML's head) so the class and its look live in one file
UNSURE_STYLE = ("<style>.vvw-unsure { box-shadow: inset 4px 0 0 #e8a317 !important; background: #fff8e6 !important; }"
                "</style>")  # !important: Gradio's block styles win otherwise


def placeholder_image():
    from PIL import Image

    from core.paths import cache_dir

    path = cache_dir() / "thumbs" / "unreadable.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (160, 96), (90, 30, 30)).save(path)
    return path


def gallery_items(store, status_filter: str = "all", query: str = "", page: int = 0,
                  focus: str | None = None) -> tuple[list, list[str], str, int]:
    """(gallery items of one page, every matching clip path in order, a summary line, the page).
    `focus`: a clip whose page to show instead of `page` (the clip just opened), when it matches."""
    from core.video.thumbs import thumbnail

    shown = gallery_page(store, status_filter, query, page, focus)
    items = [(str(thumbnail(c.path) or placeholder_image()), caption(c)) for c in shown.clips]
    text = summary_text(shown)
    if status_filter == REVIEW:
        scores = store.draft_scores()  # the index's, as the queue's order: no draft parsed for this count
        unsure = sum(1 for rel in shown.rels if (scores.get(rel) is not None and scores[rel] < LOW_CONFIDENCE))
        text += (f"\n\nreview queue: {len(shown.rels)} drafts, least sure first; {unsure} with a field below "
                 f"{LOW_CONFIDENCE} (drafts without a confidence come last)")
    return items, shown.rels, text, shown.page


def caption(clip) -> str:
    """A tile's caption: status, the draft's lowest field confidence when it has one, the file name."""
    score = (clip.draft or {}).get("min_confidence") if clip.status == DRAFT else None
    return f"{STATUS_ICON[clip.status]} " + ("" if score is None else f"{score:.2f} ") + clip.rel.split("/")[-1]


def confidence_text(draft: dict) -> str:
    """The draft's confidence for the title: its least sure field and the fields under LOW_CONFIDENCE."""
    conf = draft.get("confidence")
    if not conf:
        return "" if conf is None else "\n\nThe model's answer did not parse: no confidence."
    weak = sorted(((k, v) for k, v in conf.items() if v < LOW_CONFIDENCE), key=lambda kv: kv[1])
    text = f"\n\nLowest field confidence: {min(conf.values()):.2f}"
    return text + ("; ⚠ model unsure: " + ", ".join(f"{k} {v:.2f}" for k, v in weak) if weak else "")


def field_updates(fields, values: list, confidence: dict | None) -> list:
    """The form's components for an opened clip: its values and, for a draft, each field's confidence
    in its label; a field under LOW_CONFIDENCE says "⚠ model unsure (0.31)" and gets the CSS class
    vvw-unsure. A nested field shows its top-level field's score (confidence is per top-level field)."""
    out = []
    for f, v in zip(fields, values):
        score = (confidence or {}).get(f.name.split(".")[0])
        classes = ["vvw-field"] + (["vvw-required"] if f.required else [])
        label = f.label
        if score is not None and score < LOW_CONFIDENCE:
            label, classes = f"{f.label} · ⚠ model unsure ({score:.2f})", classes + ["vvw-unsure"]
        elif score is not None:
            label = f"{f.label} · model {score:.2f}"
        out.append(gr.update(value=v, label=label, elem_classes=classes))
    return out


def summary_text(shown) -> str:
    text = f"{shown.total} clips · " + " · ".join(f"{STATUS_ICON[s]} {s} {n}" for s, n in shown.counts.items())
    if shown.pages > 1:
        text += (f"\n\npage {shown.page + 1} of {shown.pages}: clips {shown.first + 1}-{shown.first + len(shown.clips)}"
                 f" of {len(shown.rels)} shown")
    if shown.problems:
        text += (f"\n\n⚠ {len(shown.problems)} unreadable metadata lines kept as they are: "
                 + "; ".join(shown.problems[:3]))
    return text


def focus_index(rels: list[str], page: int, rel: str | None) -> int | None:
    """The tile of `rel` on gallery page `page` (None when it is not there): the highlight follows
    the open clip, not the tile clicked before Save & next moved on."""
    try:
        index = rels.index(rel) - int(page or 0) * PAGE_SIZE
    except ValueError:  # filtered out, or no clip open
        return None
    return index if 0 <= index < PAGE_SIZE else None


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
                status_filter = gr.Dropdown(FILTERS, value="all", label="Status", scale=1, elem_id="annotate-filter")
                query = gr.Textbox(label="Search", placeholder="file name or label text", scale=2)
            summary = gr.Markdown(summary0, elem_id="annotate-summary")
            scan_line = gr.Markdown(elem_id="annotate-scan")
            with gr.Row():
                prev_page = gr.Button("◀ Previous page", size="sm", elem_id="annotate-prev-page")
                next_page = gr.Button("Next page ▶", size="sm", elem_id="annotate-next-page")
            # two columns and wrapping captions (app.py's CSS): file names are what a person scans for
            gallery = gr.Gallery(items0, columns=2, height=520, allow_preview=False, label="Clips",
                                 elem_id="annotate-gallery")
        with gr.Column(scale=3):
            title = gr.Markdown("Pick a clip in the gallery.", elem_id="annotate-title")
            video = gr.Video(label="Clip", interactive=False, height=260)
            frames = gr.Gallery(label="Frames the model sees", columns=4, height=220, allow_preview=False,
                                elem_id="annotate-frames")
        with gr.Column(scale=3):
            gr.HTML("", head=UNSURE_STYLE, padding=False)
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
    moved = gr.State(True)  # False after a refused save: the open clip and its edits stay

    def refresh(status_, query_, page_, focus=None):
        return gallery_items(store, status_, query_, page_, focus)

    def refresh_on(status_, query_, page_, focus, moved_=True):
        if not moved_:
            return [gr.skip()] * 4
        items, rels_, summary_, page_ = gallery_items(store, status_, query_, page_, focus)
        return gr.Gallery(value=items, selected_index=focus_index(rels_, page_, focus)), rels_, summary_, page_

    def show(rel, moved_=True):
        if not moved_:
            return [gr.skip()] * len(view_outputs)
        try:
            view = open_clip(store, rel, ws.preview_sampling())
        except WorkbenchError as exc:
            raise gr.Error(str(exc)) from exc
        return view["current"], view["video"], view["frames"], view["title"], view["split"], view["raw"]

    def on_select(rels_, page_, evt: gr.SelectData):
        return clip_at(rels_, page_, evt.index), True

    def on_save_raw(cur_, split_, rels_, text):
        try:
            label, problems = json.loads(text or "{}"), ()
        except json.JSONDecodeError as exc:
            label, problems = None, [f"raw JSON line {exc.lineno} column {exc.colno}: {exc.msg}"]
        return save_inline(store, cur_, label, split_, rels_, problems)

    view_outputs = [current, video, frames, title, split, raw]
    listing = ([status_filter, query, page], [gallery, rels, summary, page])

    def then_show(event):
        # every way of moving to a clip ends here, so the form, player and gallery (on the open
        # clip's page, its tile highlighted) stay in step; a refused save moves nothing
        event.then(show, [picked, moved], view_outputs).then(refresh_on, [status_filter, query, page, picked, moved],
                                                              listing[1])

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
            current.change(lambda c: field_updates(fields, form.label_to_values(fields, (c or {}).get("start")),
                                                   (c or {}).get("confidence")), current, comps)

            def on_save(cur_, split_, rels_, *values):
                label, problems = form.values_to_label(fields, list(values))
                return save_inline(store, cur_, label, split_, rels_, problems)

            then_show(save_next.click(on_save, [current, split, rels, *comps], [message, picked, moved]))

    then_show(gallery.select(on_select, [rels, page], [picked, moved]))
    then_show(skip.click(lambda cur_, rels_: (next_clip(store, rels_, cur_.get("rel")), True), [current, rels],
                         [picked, moved]))
    then_show(save_raw.click(on_save_raw, [current, split, rels, raw], [message, picked, moved]))
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

    def api_gallery(status_: str, query_: str, page_: int) -> dict:
        """API: one gallery page under a status filter and a search (what the gallery shows)."""
        shown = gallery_page(store, status_ or "all", query_ or "", int(page_ or 0))
        return {"clips": [c.rel for c in shown.clips], "statuses": [c.status for c in shown.clips],
                "matching": len(shown.rels), "page": shown.page, "pages": shown.pages, "summary": summary_text(shown)}

    def api_save_next(rel: str, label_json: str, revision: str, split_name: str, status_: str, query_: str) -> dict:
        """API twin of Save & next: save, then the next clip that needs work under the filter and search."""
        out = api_save(rel, label_json, revision, split_name)
        return {**out, "next": next_clip(store, matching(store, status_ or "all", query_ or "")[0], rel)}

    gr.api(api_open, api_name="open_clip")
    gr.api(api_save, api_name="save_label")
    gr.api(api_gallery, api_name="gallery")
    gr.api(api_save_next, api_name="save_next")
    build_tools(ws, store, listing, (picked, moved), then_show)
    build_scan_line(store, scan_line)


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


def build_tools(ws, store, listing, opener, then_show) -> None:
    """Pre-label, upload, split and import panels under the editor; `opener` (picked, moved) and
    `then_show` let "Pre-label, then review" open the least sure clip as a gallery click would."""
    from tabs import annotate_tools

    annotate_tools.build(ws, store, *listing, lambda s, q, p: gallery_items(store, s, q, p), opener=opener,
                         then_show=then_show)
