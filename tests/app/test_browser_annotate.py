"""The Annotate tab in a real browser (Debian Chromium driven by Playwright) against `python app.py`:
what only a browser can tell. The frame strip shows every frame whole at its own aspect ratio, none
cut off or covered; the clip gallery has several columns with whole file names; a refused save names
and marks its field; Save & next scrolls the gallery to the clip it opened; searches count matches,
the empty review queue says how to fill it, and a typed page number goes to that page.
Screenshots go to $VVW_ARTIFACTS (default: tests/artifacts/).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.app.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support import REPO, SAMPLES, start_app, stop_app

pytestmark = pytest.mark.slow  # end to end: see pyproject markers

UNLABELLED = "videos/clip_0100.mp4"  # its metadata row is dropped: the one clip Save & next goes to
OPENED = "videos/clip_0002.mp4"

# Per frame of the strip: the aspect ratio of the picture as painted (the <img> box, narrowed by its
# object-fit) against the file's, and whether each corner of the painted picture is the topmost
# element there (not clipped by the strip, not under its label or buttons).
PAINTED = """strip => [...strip.querySelectorAll('.thumbnail-item img')].map(img => {
  const r = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
  const nw = img.naturalWidth, nh = img.naturalHeight;
  let w = r.width, h = r.height;  // fill and cover: the box (cover crops the picture to it)
  if (fit === 'contain' || fit === 'scale-down') {
    const s = Math.min(r.width / nw, r.height / nh, fit === 'scale-down' ? 1 : Infinity);
    w = nw * s; h = nh * s;
  } else if (fit === 'none') { w = Math.min(nw, r.width); h = Math.min(nh, r.height); }
  const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
  const corners = [[-1, -1], [1, -1], [-1, 1], [1, 1]].map(([dx, dy]) =>
    document.elementFromPoint(cx + dx * (w / 2 - 3), cy + dy * (h / 2 - 3)) === img);
  return {natural: nw / nh, painted: w / h, cropped: fit === 'cover' ? (r.width / r.height) : null,
          width: w, visible: corners.every(Boolean)};
})"""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("VVW_ARTIFACTS", REPO / "tests" / "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory, artifacts):
    root = tmp_path_factory.mktemp("browser-annotate")
    ds, runs = root / "ds", root / "runs"
    shutil.copytree(SAMPLES, ds, ignore=shutil.ignore_patterns("generate.py", "README.md"))
    meta = ds / "metadata.jsonl"
    meta.write_text("".join(x + "\n" for x in meta.read_text().splitlines() if json.loads(x)["video"] != UNLABELLED))
    proc, url = start_app(["--dataset", ds, "--runs", runs], artifacts / "browser-annotate-app.log")
    try:
        yield url, ds, runs
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def page(app):
    from playwright.sync_api import expect, sync_playwright

    url, _ds, _runs = app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # 1280 wide: Gradio's page is at its narrowest full layout, where four 100px frame columns overflowed
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.goto(url)
        tab.get_by_role("tab", name="Annotate").click()
        expect(tab.locator("#annotate-summary")).to_contain_text("page 1 of 3", timeout=30_000)
        yield tab
        browser.close()


def expected_frames(app) -> int:
    from core.video.frames import sample_frames
    from core.workspace import Workspace

    _url, ds, runs = app
    spec = Workspace(dataset_dir=ds, runs_dir=runs).preview_sampling()
    return len(sample_frames(ds / OPENED, spec).frames)


def test_frames_are_whole_and_names_are_in_full(app, page, artifacts):
    from playwright.sync_api import expect

    page.locator("#annotate-gallery .thumbnail-item").nth(2).click()
    expect(page.locator("#annotate-title")).to_contain_text(OPENED, timeout=60_000)
    strip = page.locator("#annotate-frames")
    n = expected_frames(app)
    expect(strip.locator(".thumbnail-item img")).to_have_count(n, timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('#annotate-frames img')].every(i => i.complete "
                           "&& i.naturalWidth > 0)", timeout=30_000)
    strip.scroll_into_view_if_needed()
    strip.screenshot(path=artifacts / "annotate-frame-strip.png")
    frames = strip.evaluate(PAINTED)
    assert len(frames) == n
    for k, f in enumerate(frames):
        assert f["cropped"] is None, f"frame {k + 1} is drawn with object-fit: cover, cropped to its box"
        assert f["painted"] == pytest.approx(f["natural"], rel=0.02), f"frame {k + 1} is not at its aspect ratio"
        assert f["visible"], f"frame {k + 1} is cut off or covered"
        assert f["width"] > 40, f"frame {k + 1} is drawn too small to read ({f['width']:.0f}px)"

    # the clip gallery: several tiles a row, all inside it, each file name whole
    gallery = page.locator("#annotate-gallery")
    tiles = gallery.locator(".thumbnail-item").evaluate_all(
        "ts => ts.map(t => { const r = t.getBoundingClientRect(); return [r.top, r.left, r.right]; })")
    box = gallery.locator(".grid-wrap").bounding_box()
    row = [t for t in tiles if abs(t[0] - tiles[0][0]) < 1]
    assert len(row) >= 4
    assert all(box["x"] <= left and right <= box["x"] + box["width"] for _, left, right in row)
    for k in range(4):
        caption = gallery.locator(".caption-label").nth(k)
        expect(caption).to_contain_text(f"clip_{k:04d}.mp4")
        assert caption.evaluate("e => e.scrollWidth <= e.clientWidth && e.scrollHeight <= e.clientHeight")
    gallery.screenshot(path=artifacts / "annotate-gallery.png")


def test_refused_save_marks_the_field_and_save_next_scrolls_to_the_clip(page, artifacts):
    from playwright.sync_api import expect

    expect(page.locator("#annotate-title")).to_contain_text(OPENED, timeout=60_000)
    caption = page.locator(".vvw-field", has_text="caption").locator("textarea")
    caption.fill("")
    page.locator("#annotate-save-next").click()
    expect(page.locator("#annotate-message")).to_contain_text("✖ not saved: caption is required", timeout=30_000)
    marked = page.locator(".vvw-invalid")
    expect(marked).to_have_count(1, timeout=30_000)
    expect(marked).to_contain_text("caption")
    assert "rgb(208, 52, 44)" in marked.evaluate("e => getComputedStyle(e).boxShadow")  # ANNOTATE_CSS is on the page
    expect(page.locator("#annotate-title")).to_contain_text(OPENED)
    page.screenshot(path=artifacts / "annotate-refused.png", full_page=True)

    caption.fill("A drive in the browser test.")
    page.locator("#annotate-save-next").click()
    expect(page.locator("#annotate-message")).to_contain_text(f"saved {OPENED}", timeout=30_000)
    expect(page.locator("#annotate-title")).to_contain_text(UNLABELLED, timeout=30_000)
    expect(page.locator(".vvw-invalid")).to_have_count(0)
    selected = page.locator("#annotate-gallery .thumbnail-item.selected")
    expect(selected).to_contain_text(UNLABELLED.split("/")[-1], timeout=30_000)
    # the open clip's tile is in the gallery's visible part: the last row of page 3, not its top
    page.wait_for_function("""() => {
      const t = document.querySelector('#annotate-gallery .thumbnail-item.selected');
      const b = document.querySelector('#annotate-gallery .grid-wrap');
      if (!t || !b) return false;
      const r = t.getBoundingClientRect(), w = b.getBoundingClientRect();
      return r.top >= w.top && r.bottom <= w.bottom;
    }""", timeout=10_000)
    page.locator("#annotate-gallery").screenshot(path=artifacts / "annotate-gallery-after-save.png")


def test_search_count_empty_queue_hint_and_go_to_page(app, page):
    from playwright.sync_api import expect

    from core.data.store import AnnotationStore

    summary = page.locator("#annotate-summary")
    search = page.get_by_label("Search")
    search.fill("clip_0007")
    search.press("Enter")
    expect(summary).to_contain_text("1 match for “clip_0007”", timeout=30_000)
    search.fill("")
    search.press("Enter")
    expect(summary).not_to_contain_text("match", timeout=30_000)

    page.locator("#annotate-filter input").click()
    page.get_by_role("option", name="review: drafts, least sure first").click()
    expect(summary).to_contain_text("no drafts yet: use AI pre-label below (or cli.py prelabel)", timeout=30_000)
    page.locator("#annotate-filter input").click()
    page.get_by_role("option", name="all", exact=True).click()
    expect(summary).to_contain_text("page 1 of 3", timeout=30_000)

    go = page.locator("#annotate-go-page input")
    go.fill("3")
    go.press("Enter")
    expect(summary).to_contain_text("page 3 of 3: clips 241-300", timeout=30_000)
    first = AnnotationStore(app[1]).statuses()[240][0]  # the gallery's order (clips without a row come last)
    expect(page.locator("#annotate-gallery .caption-label").first).to_contain_text(first.split("/")[-1])
    page.locator("#annotate-prev-page").click()
    expect(summary).to_contain_text("page 2 of 3", timeout=30_000)
    expect(go).to_have_value("2")  # the box shows the page on screen
