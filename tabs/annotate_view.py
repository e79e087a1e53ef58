"""What the Annotate tab shows, worked out without drawing anything: gallery pages and their summary,
tile captions, the draft's confidence, the form fields' labels and marks, and the tab's CSS and JS.

tabs.annotate wires these to components; nothing here reads a component's state.
"""

from __future__ import annotations

import gradio as gr

from core.data.drafts import review_rank
from core.data.listing import PAGE_SIZE, REVIEW, gallery_page
from core.data.store import DRAFT
from core.schema.calibration import RAW_UNSURE_BELOW
from core.video.thumbs import THUMB_SIZE

STATUS_ICON = {"unlabelled": "○", "draft": "✎", "labelled": "●", "invalid": "⚠", "unreadable": "✖"}
GALLERY_COLUMNS = 4  # clip tiles per row; their names wrap in full under the thumbnail (ANNOTATE_CSS)
FRAME_COLUMNS = 4  # frames per row in the strip under the player
EMPTY_REVIEW = ("no drafts yet: use **AI pre-label** below (or `cli.py prelabel`) to draft labels, "
                "then review them here")

# Classes the form's fields get: vvw-unsure for a field the model was unsure of (field_updates),
# vvw-invalid for a field a refused save names (field_marks). The frame strip and the clip gallery
# show every picture whole at its own aspect ratio, in as many columns as asked and never wider than
# the column they sit in: Gradio draws square tiles that crop (object-fit: cover), in columns at least
# 100px wide that overflow a narrow column (the fourth frame was cut off), and it lays captions over
# the picture's bottom right corner, where the dashcam frames draw their arrows. Names and times go
# under the picture instead, and the first row starts below the floating label. !important and three
# classes where Gradio's own styles would win (a form group's `div.svelte-… .block { box-shadow:
# none !important }` hid the bar when it was one class).
ANNOTATE_CSS = f"""
.block.vvw-field.vvw-unsure {{ box-shadow: inset 4px 0 0 #e8a317 !important; background: #fff8e6 !important; }}
.block.vvw-field.vvw-invalid {{ box-shadow: inset 4px 0 0 #d0342c !important; background: #fdecea !important; }}
#annotate-frames .grid-wrap, #annotate-gallery .grid-wrap {{ min-height: 0; }}
#annotate-frames .grid-wrap {{ max-height: none; overflow-y: visible; }}
#annotate-frames .grid-container, #annotate-gallery .grid-container {{
  grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)); grid-template-rows: none;
  grid-auto-rows: auto; padding-top: 1.75rem; }}
#annotate-frames .thumbnail-item, #annotate-gallery .thumbnail-item {{ aspect-ratio: auto; height: auto;
  display: flex; flex-direction: column; }}
#annotate-frames .thumbnail-item img, #annotate-gallery .thumbnail-item img {{ height: auto; object-fit: contain; }}
#annotate-gallery .thumbnail-item img {{ aspect-ratio: {THUMB_SIZE[0]} / {THUMB_SIZE[1]}; }}
#annotate-frames .caption-label, #annotate-gallery .caption-label {{ position: static; max-width: 100%;
  border: 0; border-radius: 0; background: none; white-space: normal; overflow-wrap: anywhere;
  text-overflow: clip; text-align: center; padding: 2px; line-height: 1.25; }}
"""


def _scroll_js(top: bool) -> str:
    """After the gallery changed page, bring the open clip's tile into view inside the gallery's own
    scroll box (never the page: the person is looking at the form); `top`: start at the first row
    (a page turned by hand). Gradio has redrawn the tiles by the time a `.then` runs, but not always
    laid them out, so it retries for up to a second."""
    return """() => {
  const box = document.querySelector('#annotate-gallery .grid-wrap');
  if (!box) return;
  if (TOP) box.scrollTop = 0;
  let tries = 0;
  const go = () => {
    const tile = box.querySelector('.thumbnail-item.selected');
    if (!tile) { if (++tries < 20) setTimeout(go, 50); return; }
    const t = tile.getBoundingClientRect(), b = box.getBoundingClientRect();
    if (t.top < b.top) box.scrollTop += t.top - b.top - 36;  // below the floating "Clips" label
    else if (t.bottom > b.bottom) box.scrollTop += t.bottom - b.bottom + 8;
  };
  setTimeout(go, 0);
}""".replace("TOP", "true" if top else "false")


SCROLL_TO_SELECTED_JS, SCROLL_TO_TOP_JS = _scroll_js(False), _scroll_js(True)


def placeholder_image():
    from PIL import Image

    from core.paths import cache_dir

    path = cache_dir() / "thumbs" / "unreadable.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", THUMB_SIZE, (90, 30, 30)).save(path)
    return path


def gallery_items(store, status_filter: str = "all", query: str = "", page: int = 0,
                  focus: str | None = None) -> tuple[list, list[str], str, int]:
    """(gallery items of one page, every matching clip path in order, a summary line, the page).
    `focus`: a clip whose page to show instead of `page` (the clip just opened), when it matches."""
    from core.video.thumbs import thumbnail

    shown = gallery_page(store, status_filter, query, page, focus)
    items = [(str(thumbnail(c.path) or placeholder_image()), caption(c)) for c in shown.clips]
    text = summary_text(shown, query)
    if status_filter == REVIEW and not shown.rels:
        text += "\n\n" + EMPTY_REVIEW
    elif status_filter == REVIEW:
        text += (f"\n\nreview queue: {len(shown.rels)} drafts, least sure answer first (the number on a tile; "
                 "drafts without a confidence come last)")
    return items, shown.rels, text, shown.page


def caption(clip) -> str:
    """A tile's caption: status, the draft's review rank when it has one (core.data.drafts), the file name."""
    score = review_rank(clip.draft or {}) if clip.status == DRAFT else None
    return f"{STATUS_ICON[clip.status]} " + ("" if score is None else f"{score:.2f} ") + clip.rel.split("/")[-1]


def summary_text(shown, query: str = "") -> str:
    text = f"{shown.total} clips · " + " · ".join(f"{STATUS_ICON[s]} {s} {n}" for s, n in shown.counts.items())
    if (query or "").strip():  # a search always says how many it found, on one page or many
        n = len(shown.rels)
        text += f"\n\n{n} {'match' if n == 1 else 'matches'} for “{query.strip()}”"
    if shown.pages > 1:
        text += (f"\n\npage {shown.page + 1} of {shown.pages}: clips {shown.first + 1}-{shown.first + len(shown.clips)}"
                 f" of {len(shown.rels)} shown")
    if shown.problems:
        text += (f"\n\n⚠ {len(shown.problems)} unreadable metadata lines kept as they are: "
                 + "; ".join(shown.problems[:3]))
    return text


def confidence_text(draft: dict) -> str:
    """The draft's confidence for the title: the answer's score (the queue's order), its least sure
    field and the fields under RAW_UNSURE_BELOW."""
    conf = draft.get("confidence")
    if not conf:
        return "" if conf is None else "\n\nThe model's answer did not parse: no confidence."
    answer = draft.get("answer_confidence")  # the queue's order (core.data.drafts.review_rank)
    text = "" if answer is None else f"\n\nAnswer confidence: {answer:.2f} (the review queue's order, raw)"
    least = draft.get("min_confidence")  # the least sure choice field
    text += f"\n\nLowest field confidence: {min(conf.values()) if least is None else least:.2f}"
    if draft.get("calibrated"):
        check = draft.get("review_fields") or []
        return text + (" (calibrated); ⚠ check: " + ", ".join(f"{k} {conf[k]:.2f}" if k in conf else k for k in check)
                       if check else " (calibrated); every field above its threshold")
    text += " (raw, not calibrated)"
    weak = sorted(((k, v) for k, v in conf.items() if v < RAW_UNSURE_BELOW), key=lambda kv: kv[1])
    return text + ("; ⚠ model unsure: " + ", ".join(f"{k} {v:.2f}" for k, v in weak) if weak else "")


def _score(field, confidence: dict | None):
    # confidence is per top-level field: a nested field shows its top-level field's score
    return (confidence or {}).get(field.name.split(".")[0])


def field_classes(field, score, invalid: bool = False) -> list[str]:
    classes = ["vvw-field"] + (["vvw-required"] if field.required else [])
    classes += ["vvw-unsure"] if score is not None and score < RAW_UNSURE_BELOW else []
    return classes + (["vvw-invalid"] if invalid else [])


def field_updates(fields, values: list, confidence: dict | None) -> list:
    """The form's components for an opened clip: its values and, for a draft, each field's confidence
    in its label; a field under RAW_UNSURE_BELOW says "⚠ model unsure (0.31)" and gets the CSS class
    vvw-unsure. A newly opened clip has no field marked invalid."""
    out = []
    for f, v in zip(fields, values):
        score = _score(f, confidence)
        label = f.label
        if score is not None and score < RAW_UNSURE_BELOW:
            label = f"{f.label} · ⚠ model unsure ({score:.2f})"
        elif score is not None:
            label = f"{f.label} · model {score:.2f}"
        out.append(gr.update(value=v, label=label, elem_classes=field_classes(f, score)))
    return out


def field_marks(fields, confidence: dict | None, invalid) -> list:
    """Only the fields' classes (their values stay as the person left them): vvw-invalid on the fields
    a refused save names, nothing on the others."""
    return [gr.update(elem_classes=field_classes(f, _score(f, confidence), f.name in invalid)) for f in fields]


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
