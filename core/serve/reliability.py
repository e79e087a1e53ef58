"""The calibration part of an evaluation report: per field, a reliability plot (SVG) and Markdown tables.

`reliability_svg(cal, title)` draws one field's calibration (core.schema.scoring.calibration) as
two small panels: accuracy against mean confidence per bin (the reliability curve, with the
diagonal a calibrated model would follow) and accuracy against the share of rows kept when rows
below a confidence threshold are left for a person (the auto-accept trade-off).
`calibration_markdown(cal)` gives the same numbers as tables. Plain SVG text, so reports need no
plotting library and open in any browser or Markdown viewer. This module does not compute the
numbers (core.schema.scoring does) or write files (core.serve.report does).
"""

from __future__ import annotations

from html import escape

PANEL, PAD = 220, 34  # panel side and margin, in SVG units


def _panel(x0: int, points: list[tuple[float, float, float]], xlabel: str, diagonal: bool) -> list[str]:
    """One unit-square panel at x offset `x0`; points (x, y, weight) joined by a line."""
    def px(x: float) -> float:
        return x0 + PAD + x * PANEL

    def py(y: float) -> float:
        return PAD + (1 - y) * PANEL

    out = [f'<rect x="{px(0)}" y="{py(1)}" width="{PANEL}" height="{PANEL}" fill="none" stroke="#888"/>']
    for t in (0.0, 0.5, 1.0):
        out.append(f'<text x="{px(t)}" y="{py(0) + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
        out.append(f'<text x="{px(0) - 4}" y="{py(t) + 3}" font-size="10" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{px(0.5)}" y="{py(0) + 28}" font-size="11" text-anchor="middle">{xlabel}</text>')
    if diagonal:
        out.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#bbb" stroke-dasharray="4 3"/>')
    if len(points) > 1:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    heaviest = max((w for _, _, w in points), default=1) or 1
    for x, y, w in points:
        r = 2.5 + 4 * (w / heaviest) ** 0.5
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r:.1f}" fill="#1f77b4" fill-opacity="0.7"/>')
    return out


def reliability_svg(cal: dict, title: str) -> str:
    """Reliability curve (dot size: rows in the bin) and accuracy vs share kept, as one SVG."""
    bins = [(b["mean_confidence"], b["accuracy"], b["count"]) for b in cal["bins"] if b["count"]]
    kept = sorted((c["kept"], c["accuracy"], 1) for c in cal["coverage"] if c["accuracy"] is not None)
    width, height = 2 * (PANEL + 2 * PAD), PANEL + 2 * PAD + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{PAD}" y="18" font-size="12">{escape(title)} (ECE {cal["ece"]})</text>',
             f'<text x="6" y="{PAD + PANEL / 2}" font-size="11" transform="rotate(-90 10 {PAD + PANEL / 2})">'
             'accuracy</text>']
    parts += _panel(0, bins, "mean confidence", diagonal=True)
    parts += _panel(PANEL + 2 * PAD, kept, "share of rows kept (confidence >= t)", diagonal=False)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _cell(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def calibration_markdown(field: str, cal: dict, image: str | None = None) -> list[str]:
    """Markdown lines for one field: ECE, the reliability table, the threshold table (and the plot)."""
    lines = [f"#### {field}", "",
             f"ECE {_cell(cal['ece'])} (raw scores {_cell(cal.get('ece_raw'))}) over {cal['rows']} rows"
             + (f" ({cal['unscored']} without a confidence)" if cal.get("unscored") else ""), ""]
    if image:
        lines += [f"![reliability of {field}]({image})", ""]
    lines += ["| confidence | rows | mean confidence | accuracy |", "|---|---|---|---|"]
    lines += [f"| {b['lo']:g}-{b['hi']:g} | {b['count']} | {_cell(b['mean_confidence'])} | {_cell(b['accuracy'])} |"
              for b in cal["bins"] if b["count"]]
    lines += ["", "| accept if confidence >= | share of rows kept | accuracy of kept rows |", "|---|---|---|"]
    lines += [f"| {c['threshold']:g} | {_cell(c['kept'])} | {_cell(c['accuracy'])} |" for c in cal["coverage"]]
    return lines + [""]
