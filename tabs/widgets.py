"""Gradio components for a generated annotation form (core.schema.form decides the fields, this draws them)."""

from __future__ import annotations

import gradio as gr

from core.schema import form


def render_fields(fields: list[form.FormField], values: list, interactive: bool = True) -> list:
    """One component per field, in order; call inside a Blocks/render context."""
    comps = []
    for f, v in zip(fields, values):
        common = {"label": f.label, "info": f.info or None, "interactive": interactive,
                  "elem_classes": ["vvw-field"] + (["vvw-required"] if f.required else [])}
        if f.widget == form.RADIO:
            comps.append(gr.Radio(choices=list(f.choices), value=v, **common))
        elif f.widget == form.DROPDOWN:
            comps.append(gr.Dropdown(choices=list(f.choices), value=v, **common))
        elif f.widget == form.CHECKBOXES:
            comps.append(gr.CheckboxGroup(choices=list(f.choices), value=v or [], **common))
        elif f.widget == form.CHECKBOX:
            comps.append(gr.Checkbox(value=bool(v), **common))
        elif f.widget == form.NUMBER:
            comps.append(gr.Number(value=v, minimum=f.minimum, maximum=f.maximum,
                                   precision=0 if f.integer else None, **common))
        elif f.widget == form.TEXTAREA:
            comps.append(gr.Textbox(value=v or "", lines=2, **common))
        elif f.widget == form.TEXT:
            comps.append(gr.Textbox(value=v or "", lines=1, **common))
        else:
            comps.append(gr.Code(value=v or "", language="json", label=f.label, interactive=interactive,
                                 elem_classes=common["elem_classes"]))
    return comps
