"""The Train tab's form as plain values: which fields it shows, form values to a TrainConfig and back.

No gradio here: the tab lays out `form_fields()` and calls these two functions. Blank optional fields
mean "the default for this model"; a tristate is auto/on/off. A field the chosen method does not use
is greyed out on the form and not sent: its value (typed, or cloned from a past run) is dropped and
the field keeps its default, where a command or YAML file that sets it is refused (core.config.checks).
"""

from __future__ import annotations

from core.config.describe import FieldInfo, described
from core.errors import ConfigError

TRISTATE = ("auto", "on", "off")


def form_fields(config_class=None) -> list[FieldInfo]:
    """The fields the form shows, in declaration order (grouped)."""
    from core.config.trainconfig import TrainConfig

    return [info for info in described(config_class or TrainConfig) if info.form]


def config_from_form(values: dict, base: dict | None = None, config_class=None):
    """Form values → validated TrainConfig. Fields the form does not show come from `base` (a cloned
    run's config), else the defaults."""
    from core.config.trainconfig import TrainConfig

    cls = config_class or TrainConfig
    shown = {info.name: info for info in form_fields(cls)}
    unknown = set(values) - set(shown)
    if unknown:
        raise ConfigError(f"form: unknown fields {', '.join(sorted(unknown))}")
    data = dict(base or {})
    for name, value in values.items():
        data[name] = _from_widget(shown[name], value)
    method = data.get("method", cls().method)
    for info in described(cls):
        if method not in info.methods:
            data.pop(info.name, None)
    return cls.from_dict(data, source="form")


def _from_widget(info: FieldInfo, value):
    if info.kind == "tristate":
        return {"on": True, "off": False}.get(str(value), None)
    if info.optional:
        text = str(value if value is not None else "").strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            wanted = "whole number" if info.kind.endswith("int") else "number"
            raise ConfigError(f"form: {info.name} {text!r} is not a {wanted} (leave it blank for the default)") from None
        return int(number) if info.kind.endswith("int") and number.is_integer() else number
    if info.kind == "bool":
        return bool(value)
    if info.kind == "text":
        return str(value if value is not None else "")
    return value


def form_values(config: dict, config_class=None) -> dict:
    """A run's config.yaml (or any config mapping) → form values, the inverse of config_from_form."""
    out = {}
    for info in form_fields(config_class):
        value = config.get(info.name, info.default)
        if info.kind == "tristate":
            out[info.name] = "auto" if value is None else "on" if value else "off"
        elif info.optional:  # blank is the default, never a 0 the person did not type
            out[info.name] = "" if value is None else str(value)
        else:
            out[info.name] = value
    return out
