"""How one model answer reads on a page (Compare and Inference): a validity badge, the decoding, a
table of fields with their confidence and the label's verdict, and what a person should check."""

from __future__ import annotations

import json

from core.schema.calibration import fields_to_check
from tabs.shared import decoding_text


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return (text[:60] + "…" if len(text) > 60 else text).replace("|", "\\|").replace("\n", " ")


def side_markdown(side: dict | None, constrained: bool | None = None) -> str:
    if side is None:
        return "_waiting…_"
    if side["schema_valid"]:
        badge = "✔ schema-valid"
    else:
        badge = "✖ not schema-valid: " + (side["parse_error"] or "; ".join(side["schema_errors"][:3]))
    text = f"**{badge}** · {side['new_tokens']} tokens in {side['seconds']:.2f}s ({side['tokens_per_s']} tok/s)"
    if constrained is not None:
        text += f" · decoding {decoding_text(constrained)}"
    confidence, agree = side.get("confidence") or {}, side.get("agreement") or {}
    parsed = side.get("parsed") if isinstance(side.get("parsed"), dict) else {}
    fields = list(dict.fromkeys([*confidence, *agree]))
    if fields:
        # one row per field: the answer, how sure the model was (core.serve.confidence), and the label's verdict
        rows = ["| field | answer | confidence | label |", "|---|---|---|---|"]
        check = _to_check(side)
        for name in fields:
            score = confidence.get(name)
            sure = "–" if score is None else f"{'⚠ ' if name in check else ''}{score:.2f}"
            v = agree.get(name)
            mark = "" if v is None else ("✓" if v == 1 else ("✗" if v == 0 else f"{v:.2f}"))
            rows.append(f"| {name} | {_cell(parsed.get(name, '–'))} | {sure} | {mark} |")
        text += "\n\n" + "\n".join(rows)
        text += "\n\n" + review_words(side)
    return text


def _to_check(side: dict) -> set:
    """Fields marked ⚠ (core.schema.calibration.fields_to_check)."""
    return fields_to_check(bool(side.get("calibrated")), side.get("review_fields"), side.get("confidence"))


def review_words(side: dict) -> str:
    """Whether the scores are calibrated and what a person should check (every answer says both)."""
    if not side.get("calibrated"):
        return ("Confidence: raw, not calibrated (calibrate the run in Export); nothing is accepted on its "
                "score, so every field needs review.")
    check = side.get("review_fields") or []
    return ("Confidence: calibrated on held-out labels. "
            + (f"Needs review: {', '.join(check)}." if check else "Every field is above its threshold: accept."))
