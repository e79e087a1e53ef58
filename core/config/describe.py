"""What each TrainConfig field is, for whoever shows it: flags, the Train tab's form, the YAML docs.

`field_docs` reads the string under each field from the source of its class with ast;
`described()` joins it with the field's metadata and group, in the order fields are declared.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass, fields

import yaml

from core.config.checks import default_of
from core.config.groups import GROUPS, METHODS


@dataclass(frozen=True)
class FieldInfo:
    name: str
    group: str
    label: str
    doc: str
    default: object
    kind: str  # choice | bool | tristate | int | float | text, with "optional " in front when it may be unset
    choices: tuple
    methods: tuple
    form: bool
    lines: int

    @property
    def optional(self) -> bool:
        return self.kind.startswith("optional ")

    @property
    def only_for(self) -> str:
        """" [method grpo]" when some method ignores the field; "" when every method uses it."""
        return "" if set(self.methods) == set(METHODS) else f" [method {'/'.join(self.methods)}]"


def _kind(f) -> str:
    kind = str(f.type)
    if f.metadata["choices"]:
        return "choice"
    if kind.startswith("bool"):
        return "tristate" if kind.endswith("| None") else "bool"
    base = "int" if kind.startswith("int") else "float" if kind.startswith("float") else "text"
    return ("optional " if kind.endswith("| None") else "") + base


def described(config_class) -> list[FieldInfo]:
    """Every field of `config_class` (TrainConfig, or a class built on it) with its group and doc."""
    docs = field_docs(config_class)
    groups = {f.name: title for title, cls in GROUPS for f in fields(cls)}
    return [FieldInfo(f.name, groups.get(f.name, "Other"), f.metadata.get("label") or f.name.replace("_", " ").capitalize(),
                      docs[f.name], default_of(f), _kind(f), f.metadata.get("choices", ()),
                      f.metadata.get("methods", METHODS), f.metadata.get("form", True), f.metadata.get("lines", 1))
            for f in fields(config_class)]


def field_docs(config_class=None) -> dict[str, str]:
    """Each field's doc (the string under it), whitespace folded to one line. Every field has one
    (a test checks); a class built on TrainConfig adds its own fields' docs."""
    from core.config.trainconfig import TrainConfig

    out = {}
    for cls in reversed((config_class or TrainConfig).__mro__):
        if cls is not object:
            out.update(_class_docs(cls))
    return out


@functools.cache
def _class_docs(cls) -> dict[str, str]:
    import inspect

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    node = ast.parse(inspect.cleandoc("\n" + source) if source[:1].isspace() else source).body[0]
    docs = {}
    for item, after in zip(node.body, node.body[1:]):
        if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[item.target.id] = " ".join(after.value.value.split())
    return docs


def flag_help(info: FieldInfo) -> str:
    """A field's --help text: its doc, the default when short, the methods when not all."""
    shown = "" if info.default in (None, "") or len(str(info.default)) > 30 else f" (default: {info.default})"
    return (info.doc + shown + info.only_for).replace("%", "%%")  # argparse formats help with %


def yaml_docs(config_class=None) -> str:
    """A config file with every field at its default, each under its doc, by group: what
    `cli.py train --print-config` prints, and a valid config to start from."""
    from core.config.trainconfig import TrainConfig

    lines, group = ["# TrainConfig: every field at its default. Keys are flat; delete what you keep at the default."], None
    for info in described(config_class or TrainConfig):
        if info.group != group:
            group = info.group
            lines += ["", f"# --- {group} ---"]
        lines += ["# " + line for line in textwrap.wrap(info.doc + info.only_for, 98)]
        lines.append(yaml.safe_dump({info.name: info.default}, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"
