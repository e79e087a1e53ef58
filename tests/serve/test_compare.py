"""Compare: both sides on the same frames and prompt, with validity and agreement; the tab streams sides."""

from __future__ import annotations

import json

from core.data.store import AnnotationStore
from core.serve.compare import compare_clip
from core.serve.manager import ModelManager
from tests.support import SAMPLES

CLIP = "videos/clip_0003.mp4"


def test_compare_on_labelled_clip_reports_both_sides(short_run):
    label = AnnotationStore(SAMPLES).clip(CLIP).label
    mm = ModelManager(max_resident=1)
    seen = []
    result = compare_clip(mm, SAMPLES / CLIP, str(short_run), label=label, max_new_tokens=120,
                          on_side=lambda name, side: seen.append(name))
    spec = json.loads((short_run / "preprocessing.json").read_text())
    assert seen == ["base", "finetuned"] and len(mm.loaded()) == 1
    assert result["instruction"] == spec["instruction"]  # the run's prompt for both sides
    assert len(result["frames"].frames) == spec["sampling"]["num_frames"]
    for side in result["sides"].values():
        assert set(side["agreement"]) >= {"event_type", "visibility", "rule_violations"}
        assert isinstance(side["schema_valid"], bool) and side["new_tokens"] > 0
    assert result["sides"]["base"]["text"] != result["sides"]["finetuned"]["text"]


def test_constrained_compare_is_valid_on_both_sides(short_run):
    mm = ModelManager(max_resident=1)
    result = compare_clip(mm, SAMPLES / CLIP, str(short_run), constrained=True, max_new_tokens=160)
    assert all(s["schema_valid"] for s in result["sides"].values()), {k: s["text"] for k, s in result["sides"].items()}


def test_compare_tab_streams_each_side_and_free_prompt(short_run, tmp_path):
    from core.workspace import Workspace
    from tabs.compare import FREE_PROMPT, SCHEMA_PROMPT, run_compare

    ws = Workspace(dataset_dir=SAMPLES, runs_dir=tmp_path)
    steps = list(run_compare(ws, CLIP, None, str(short_run), None, SCHEMA_PROMPT, "", False))
    assert len(steps) == 5  # cleared, frames, base, fine-tuned, done
    assert steps[0][0] is None and steps[0][-1] == ""  # a new try clears the last one's results and message
    assert steps[1][2] == "_waiting…_" and steps[2][2] != "_waiting…_" and steps[2][5] == "_waiting…_"
    final = steps[-1]
    for side in (final[2], final[5]):  # each side: a field table with confidence and the label's verdict
        assert "| field | answer | confidence | label |" in side and "| event_type |" in side
        assert "decoding unconstrained" in side  # every answer says how it was decoded
    assert len(final[0]) == 8 and "Loaded:" in final[-2] and final[-1] == ""
    # no run picked: the reason is the message beside the button; every other output is left as it was
    refused = list(run_compare(ws, CLIP, None, None, None, SCHEMA_PROMPT, "", True))
    assert len(refused) == 1 and refused[0][-1] == "✖ pick a fine-tuned run (train one in the Train tab)"
    free = list(run_compare(ws, CLIP, None, str(short_run), None, FREE_PROMPT, "Describe the road.", False))
    assert free[-1][1] == "Describe the road."
