"""The training configuration: `TrainConfig`, one flat dataclass composed of groups of fields.

A field is declared once, in core/config/groups.py: its default, the doc under it, its form label,
choices and the methods that use it. From that come the flags (`commands/train.py`), the Train tab's
form (`tabs/train.py`), the YAML docs (`cli.py train --print-config`) and the checks
(core.config.checks: a bad value, or a value the method ignores, is a ConfigError naming the field,
before anything loads or launches). What training actually saw is the preprocessing spec
(core.spec), built from a config whose blanks `core.spec.resolve_defaults` filled.
"""

from __future__ import annotations

from core.config.checks import MAX_FRAME_SIDE, MIN_FRAME_SIDE, report_targets
from core.config.describe import FieldInfo, described, field_docs, flag_help, yaml_docs
from core.config.groups import GROUPS, METHODS, opt
from core.config.trainconfig import TrainConfig

__all__ = ["GROUPS", "MAX_FRAME_SIDE", "METHODS", "MIN_FRAME_SIDE", "FieldInfo", "TrainConfig", "described",
           "field_docs", "flag_help", "opt", "report_targets", "yaml_docs"]
