"""A newcomer's whole path in a real browser (Debian Chromium driven by Playwright) against `python app.py`.

Schema (a syntax error is reported once, above the editor) → Annotate (a refused save says why
inline; label one clip; the highlight follows Save & next) → Train (Start above the form, blank
default fields, an estimate with its expected duration in a wrapping box; a reload mid-run shows the
run's form; a short run whose loss curve appears and which completes with its loss in the runs
table) → Compare (the run just trained is picked by itself; schema-valid with the default constrained
decoding; every frame whole) → Inference (the same run, all frames whole) → Export (evaluate base vs
the run; JSONL and SQLite downloaded and read back) → Publish (preview of the run; a publish with no
reachable Hub keeps its reason on the page 30 s later), with no Gradio "Error" badge anywhere.
Screenshots of each step go to $VVW_ARTIFACTS (default: tests/artifacts/). `test_review_queue`:
pre-label new clips, the review queue opens on the least sure draft with its weak fields marked, save.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from core.runs.launch import free_port
from tests.support import REPO, SAMPLES, start_app, stop_app

pytestmark = pytest.mark.slow  # end to end: see pyproject markers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
# Without these, Chromium keeps trying to reach Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
STEPS = 20


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("VVW_ARTIFACTS", REPO / "tests" / "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory, artifacts):
    root = tmp_path_factory.mktemp("browser")
    ds, runs = root / "ds", root / "runs"
    shutil.copytree(SAMPLES, ds, ignore=shutil.ignore_patterns("generate.py", "README.md"))
    _fewer_held_out(ds)
    # Publish reaches for a Hub that is not there: a closed port on this machine (no outside network here)
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_TOKEN="hf_test")
    proc, url = start_app(["--dataset", ds, "--runs", runs], artifacts / "browser-app.log", env=env)
    try:
        yield url, ds, runs
    finally:
        stop_app(proc)


def _fewer_held_out(ds: Path, keep: int = 6) -> None:
    """Keep `keep` clips in val and in test, the rest move to train. A 20-step model writes captions up to
    the token limit, so each held-out clip costs ~2.5 s per pass on this machine, and the path scores the
    test split six times (evaluate x 2 models, two prediction files, the card's two scores) and
    calibrates on val once: 30 + 30 clips made the test ~8 minutes. What it checks counts whatever is there."""
    rows, seen = [], {"val": 0, "test": 0}
    for line in (ds / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") in seen:
            seen[row["split"]] += 1
            if seen[row["split"]] > keep:
                row["split"] = "train"
        rows.append(json.dumps(row) + "\n")
    (ds / "metadata.jsonl").write_text("".join(rows))


def _pick(page, elem_id: str, value: str) -> None:
    """Set a Gradio dropdown that accepts custom values: type and confirm."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    box.press("Enter")
    page.keyboard.press("Escape")


def _no_error_badge(page) -> None:
    """Gradio marks each output of a failed event with an "Error" badge; a failure here is said in
    words beside its button instead (tabs.feedback)."""
    from playwright.sync_api import expect

    expect(page.locator(".error, [data-testid=status-tracker] .error")).to_have_count(0)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def _frames_whole(page, elem_id: str, count: int, shot: Path) -> None:
    """Every frame of a strip is in view and shown whole at its own aspect ratio (not cropped to a
    square tile, not cut off at the strip's edge), checked from the rendered image boxes."""
    from playwright.sync_api import expect

    imgs = page.locator(f"#{elem_id} img")
    expect(imgs).to_have_count(count, timeout=60_000)
    page.wait_for_function(f"[...document.querySelectorAll('#{elem_id} img')].every(i => i.complete && "
                           f"i.naturalWidth > 0)", timeout=30_000)
    page.locator(f"#{elem_id}").screenshot(path=shot)
    boxes = page.evaluate(f"""() => {{
        const strip = document.querySelector('#{elem_id}').getBoundingClientRect();
        return [...document.querySelectorAll('#{elem_id} img')].map(i => {{
            const r = i.getBoundingClientRect(), fit = getComputedStyle(i).objectFit;
            const tile = (i.closest('.thumbnail-item') || i.parentElement).getBoundingClientRect();
            // the part of the box the picture fills: object-fit contain letterboxes, cover crops
            const ar = i.naturalWidth / i.naturalHeight, fits = fit === 'contain' || fit === 'scale-down';
            const w = fits ? Math.min(r.width, r.height * ar) : r.width, h = fits ? Math.min(r.height, r.width / ar) : r.height;
            return {{ar, shown: w / h, fit, w, h,
                     inTile: r.left >= tile.left - 1 && r.right <= tile.right + 1 && r.top >= tile.top - 1 && r.bottom <= tile.bottom + 1,
                     inStrip: r.left >= strip.left - 1 && r.right <= strip.right + 1 && r.top >= strip.top - 1 && r.bottom <= strip.bottom + 1}};
        }});
    }}""")
    assert len(boxes) == count
    for k, b in enumerate(boxes):
        assert b["fit"] != "cover" or abs(b["shown"] - b["ar"]) < 0.02 * b["ar"], (k, b)  # not cropped to the tile
        assert abs(b["shown"] - b["ar"]) < 0.03 * b["ar"], (k, b)  # not stretched either
        assert b["inTile"] and b["inStrip"] and b["w"] > 20, (k, b)  # all of it, in view


def test_newcomer_path(app, artifacts):
    from playwright.sync_api import expect, sync_playwright

    url, ds, runs = app
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        page.goto(url)

        # Schema: the dashcam preset is what drives everything, and it is valid
        page.get_by_role("tab", name="Schema").click()
        expect(page.locator("#schema-status")).to_contain_text("valid JSON Schema", timeout=30_000)
        expect(page.locator("#schema-prompt textarea")).to_have_value(re.compile("event_type"))
        page.screenshot(path=artifacts / "1-schema.png", full_page=True)
        # a syntax error: the reason sits above the editor, Save says so once and the table stays a table
        status_box, editor_box = page.locator("#schema-status").bounding_box(), page.locator("#schema-editor").bounding_box()
        assert status_box["y"] + status_box["height"] <= editor_box["y"]
        schema_before = (ds / "schema.json").read_text()
        page.locator("#schema-editor .cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.type(",}")
        expect(page.locator("#schema-status")).to_contain_text("✖", timeout=10_000)
        page.locator("#schema-save").click()
        expect(page.locator("#schema-status")).to_contain_text("not saved", timeout=10_000)
        expect(page.locator("#schema-status")).to_contain_text("line")
        expect(page.locator(".toast-body")).to_have_count(1)
        page.wait_for_timeout(1500)  # a second toast would have arrived by now
        expect(page.locator(".toast-body")).to_have_count(1)
        expect(page.locator("#schema-broken")).not_to_contain_text("Error")
        assert (ds / "schema.json").read_text() == schema_before
        page.screenshot(path=artifacts / "1-schema-error.png", full_page=True)
        page.keyboard.press("Control+z")  # the editor back to the saved schema

        # Annotate: open a clip, change one field, save with the keyboard
        page.get_by_role("tab", name="Annotate").click()
        expect(page.locator("#annotate-summary")).to_contain_text("page 1 of 3", timeout=30_000)
        page.locator("#annotate-next-page").click()  # 300 clips come in pages of 120
        expect(page.locator("#annotate-summary")).to_contain_text("clips 121-240", timeout=30_000)
        page.locator("#annotate-prev-page").click()
        expect(page.locator("#annotate-summary")).to_contain_text("clips 1-120", timeout=30_000)
        page.locator("#annotate-gallery .thumbnail-item").nth(1).click()
        expect(page.locator("#annotate-title")).to_contain_text("videos/clip_0001.mp4", timeout=60_000)
        caption = page.locator("#annotate-gallery .caption-label").nth(1)
        expect(caption).to_contain_text("clip_0001.mp4")  # the whole name, not "clip_00…"
        assert caption.evaluate("e => e.scrollWidth <= e.clientWidth")
        # a refused save says why where the person looks, and the clip stays open
        raw_toggle = page.locator("button", has_text=re.compile("^Raw JSON")).first
        raw_toggle.click()
        page.locator("#annotate-raw .cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.type("{oops")
        page.get_by_role("button", name="Save raw JSON").click()
        expect(page.locator("#annotate-message")).to_contain_text("not saved: raw JSON line 1 column 2")
        expect(page.locator("#annotate-title")).to_contain_text("videos/clip_0001.mp4")
        page.screenshot(path=artifacts / "2-annotate-error.png", full_page=True)
        raw_toggle.click()
        page.get_by_label("collision").first.check()
        page.keyboard.press("Control+Enter")
        expect(page.locator("#annotate-message")).to_contain_text("saved videos/clip_0001.mp4", timeout=30_000)
        row = next(json.loads(x) for x in (ds / "metadata.jsonl").read_text().splitlines() if "clip_0001" in x)
        assert row["event_type"] == "collision"
        # Save & next opened another clip: the highlight moved to its tile
        expect(page.locator("#annotate-title")).not_to_contain_text("videos/clip_0001.mp4", timeout=30_000)
        opened = re.search(r"videos/(\S+\.mp4)", page.locator("#annotate-title").inner_text()).group(1)
        expect(page.locator("#annotate-gallery .thumbnail-item.selected")).to_contain_text(opened, timeout=30_000)
        page.screenshot(path=artifacts / "2-annotate.png", full_page=True)

        # Train: a short run; the loss curve draws and the run completes
        page.get_by_role("tab", name="Train").click()
        # Start above the form and its accordions; "(blank: default)" fields are blank
        start_box = page.locator("#train-start").bounding_box()
        assert start_box["y"] < page.locator("#train-num-frames").bounding_box()["y"]
        assert start_box["y"] < page.get_by_text("LoRA and what trains", exact=True).first.bounding_box()["y"]
        for field in ("num-frames", "frame-width", "frame-height"):
            expect(page.locator(f"#train-{field} textarea, #train-{field} input").first).to_have_value("")
        # picking a method greys out the settings it does not use (and the form does not send them)
        page.get_by_role("radio", name="grpo", exact=True).check()
        expect(page.locator("#train-grad-accum input")).to_be_disabled()
        page.get_by_role("radio", name="lora", exact=True).check()
        expect(page.locator("#train-grad-accum input")).to_be_enabled()
        # the estimate: an expected duration from measured steps, in a wide box that wraps
        page.locator("#train-estimate").click()
        estimate_box = page.locator("#train-estimate-out textarea")
        expect(estimate_box).to_have_value(re.compile(r"expected duration: about .+ for 500 steps, from [0-9.]+ s/step "
                                                      r"measured"), timeout=180_000)
        assert estimate_box.evaluate("e => e.scrollWidth <= e.clientWidth")  # no sideways scrolling
        assert estimate_box.bounding_box()["width"] > 0.6 * page.viewport_size["width"]
        page.screenshot(path=artifacts / "3-train-estimate.png", full_page=True)
        steps = page.locator("#train-max-steps input")
        steps.fill(str(STEPS))
        steps.press("Tab")
        name = page.locator("#train-name textarea, #train-name input").first.input_value()
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text(f"started {name}", timeout=60_000)
        # a reload during the run shows the running run's form and name, not a new page's defaults
        expect(page.locator("#train-progress")).to_contain_text(re.compile("running|starting"), timeout=120_000)
        page.reload()
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-name textarea, #train-name input").first).to_have_value(name, timeout=30_000)
        expect(steps).to_have_value(str(STEPS))
        expect(page.locator("#train-estimate-out textarea")).to_have_value(re.compile("expected duration"))
        expect(page.locator("#train-progress")).to_contain_text("completed", timeout=600_000)
        expect(page.locator("#train-progress")).to_contain_text(f"step {STEPS}/{STEPS}")
        expect(page.locator("#train-curve")).not_to_contain_text("No data", timeout=30_000)
        # the runs table keeps the last logged loss once the run has ended
        expect(page.locator("#train-runs")).to_contain_text(re.compile(rf"completed\s+{STEPS}\s+{STEPS}\s+\d+\.\d+"))
        page.screenshot(path=artifacts / "3-train.png", full_page=True)
        run = runs / name
        assert (run / "final").is_dir()
        _no_error_badge(page)

        # Compare: the run just trained is already picked (the pickers follow the runs folder), the
        # decoding is constrained by default, and the strip shows every frame whole
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#compare-run input")).to_have_value(name, timeout=30_000)
        expect(page.locator("#compare-constrained input")).to_be_checked()
        page.locator("#compare-run-button").click()
        badge = page.locator("#compare-fine-tuned-badge")
        expect(badge).to_contain_text("schema-valid", timeout=300_000)
        expect(badge).not_to_contain_text("not schema-valid")
        expect(badge).to_contain_text("decoding constrained to the schema")
        _frames_whole(page, "compare-frames", 8, artifacts / "4-compare-frames.png")
        # the score table's headers are whole words on one line ("confidence", not "confi denc e")
        lines = page.evaluate("""() => [...document.querySelectorAll('#compare-fine-tuned-badge th')].map(th => {
            const r = document.createRange(); r.selectNodeContents(th);
            return [th.innerText, new Set([...r.getClientRects()].map(x => Math.round(x.top))).size]; })""")
        assert [h for h, _ in lines] == ["field", "answer", "confidence", "label"]
        assert all(n == 1 for _, n in lines), lines
        page.screenshot(path=artifacts / "4-compare.png", full_page=True)
        _no_error_badge(page)

        # Inference: the newest run is the model, the strip shows all eight frames whole
        page.get_by_role("tab", name="Inference").click()
        expect(page.locator("#inference-model input")).to_have_value(name, timeout=30_000)
        page.locator("#inference-run").click()
        expect(page.locator("#inference-status")).to_contain_text("decoding constrained", timeout=300_000)
        _frames_whole(page, "inference-frames", 8, artifacts / "6-inference-frames.png")
        _no_error_badge(page)

        # Export: evaluate base vs the new run (both picked by default), then batch prediction
        page.get_by_role("tab", name="Export").click()
        expect(page.locator("#export-model input")).to_have_value(name, timeout=30_000)
        expect(page.locator("#export-models")).to_contain_text(name)
        page.locator("#export-evaluate").click()
        expect(page.locator("#export-eval-msg")).to_contain_text("scored 2 model(s) on test, decoding constrained",
                                                                 timeout=600_000)
        expect(page.locator("#export-scores")).to_contain_text("constrained to the schema")
        n_test = sum(1 for x in (ds / "metadata.jsonl").read_text().splitlines() if json.loads(x)["split"] == "test")
        for fmt in (".jsonl", ".sqlite"):
            _pick(page, "export-format", fmt)
            page.locator("#export-predict").click()
            link = page.locator("#export-pred-file a[data-testid=download-link]").first
            expect(link).to_have_attribute("download", re.compile(re.escape(fmt) + "$"), timeout=300_000)
            expect(page.locator("#export-pred-msg")).to_contain_text("rows written")
            with page.expect_download() as info:
                link.click()
            saved = artifacts / f"predictions{fmt}"
            info.value.save_as(saved)
            if fmt == ".jsonl":
                rows = [json.loads(x) for x in saved.read_text().splitlines()]
                assert len(rows) == n_test and all(r["schema_valid"] for r in rows)
            else:
                con = sqlite3.connect(saved)
                assert con.execute("SELECT count(*), sum(schema_valid) FROM predictions").fetchone() == (n_test, n_test)
                con.close()
        page.screenshot(path=artifacts / "5-export.png", full_page=True)
        _no_error_badge(page)

        # Publish: a preview of the run just trained, then a publish with no reachable Hub: the reason
        # stays beside the button (30 s later too), in plain words, and replaces the old preview text
        page.locator("button", has_text=re.compile("^Publish to the Hugging Face Hub")).first.click()
        expect(page.locator("#hub-run input")).to_have_value(name, timeout=30_000)
        page.locator("#hub-repo textarea, #hub-repo input").first.fill("me/tiny-dashcam")
        page.locator("#hub-dry-run").click()
        expect(page.locator("#hub-msg")).to_contain_text("Dry run: the ", timeout=600_000)
        page.locator("#hub-publish").click()
        expect(page.locator("#hub-msg")).to_contain_text("could not reach the Hub", timeout=600_000)
        expect(page.locator("#hub-msg")).not_to_contain_text("Dry run")
        page.wait_for_timeout(30_000)
        expect(page.locator("#hub-msg")).to_contain_text("could not reach the Hub")
        _no_error_badge(page)
        page.screenshot(path=artifacts / "7-publish-error.png", full_page=True)
        browser.close()


def test_review_queue(app, artifacts):
    """Pre-label new clips, the gallery becomes the review queue on the least sure one, its weak fields
    are marked in the form, and Save & next accepts it and moves down the queue."""
    from playwright.sync_api import expect, sync_playwright

    from core.schema.calibration import RAW_UNSURE_BELOW

    url, ds, _runs = app
    new = [f"videos/review_{i}.mp4" for i in range(3)]  # files without a metadata row: unlabelled
    for i, rel in enumerate(new):
        shutil.copy(ds / f"videos/clip_{i + 10:04d}.mp4", ds / rel)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.get_by_role("tab", name="Annotate").click()
        expect(page.locator("#annotate-summary")).to_contain_text("clips", timeout=30_000)
        page.locator("button", has_text=re.compile("^AI pre-label")).first.click()
        limit = page.locator("#annotate-prelabel-limit input")
        limit.fill("3")
        limit.press("Tab")
        page.locator("#annotate-prelabel-review").click()
        expect(page.locator("#annotate-prelabel-message")).to_contain_text("Label next", timeout=300_000)
        expect(page.locator("#annotate-summary")).to_contain_text("review queue: 3 drafts", timeout=30_000)

        drafts = {}
        for line in (ds / "drafts.jsonl").read_text().splitlines():
            d = json.loads(line)
            drafts[d["video"]] = d
        assert set(drafts) == set(new)
        order = sorted(new, key=lambda rel: drafts[rel]["answer_confidence"])  # the queue's rank
        first = drafts[order[0]]
        expect(page.locator("#annotate-title")).to_contain_text(order[0], timeout=60_000)
        expect(page.locator("#annotate-title")).to_contain_text(f"Answer confidence: {first['answer_confidence']:.2f}")
        expect(page.locator("#annotate-title")).to_contain_text(f"Lowest field confidence: {first['min_confidence']:.2f}")
        captions = page.locator("#annotate-gallery .caption-label")
        for k, rel in enumerate(order):
            expect(captions.nth(k)).to_contain_text(rel.split("/")[-1])
        weak = sorted(k for k, v in first["confidence"].items() if v < RAW_UNSURE_BELOW)
        marked = page.locator(".vvw-unsure")
        expect(marked).to_have_count(len(weak), timeout=30_000)
        for name in weak:
            expect(marked.filter(has_text=name).first).to_contain_text(
                f"⚠ model unsure ({first['confidence'][name]:.2f})")
        page.screenshot(path=artifacts / "2-review-queue.png", full_page=True)

        page.locator("#annotate-save-next").click()
        expect(page.locator("#annotate-message")).to_contain_text(f"saved {order[0]}", timeout=30_000)
        expect(page.locator("#annotate-title")).to_contain_text(order[1], timeout=30_000)
        expect(page.locator("#annotate-summary")).to_contain_text("review queue: 2 drafts", timeout=30_000)
        # read through a store: a big dataset's saves may still sit in metadata.pending.jsonl (core.data.journal)
        from core.data.store import LABELLED, AnnotationStore

        clip = AnnotationStore(ds).clip(order[0])
        def norm(label):  # the form writes enum lists in schema order
            return {k: sorted(v) if isinstance(v, list) else v for k, v in label.items()}

        assert clip.status == LABELLED and norm(clip.label) == norm(first["label"])
        page.screenshot(path=artifacts / "2-review-queue-saved.png", full_page=True)
        browser.close()
