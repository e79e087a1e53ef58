"""Rewards for GRPO, derived from the user's JSON Schema and the clip's label. Pure functions.

Each completion gets named components, each in [0, 1] before weighting:
  json    1.0 when the whole answer is one JSON object; 0.5 when an object can be dug out of code
          fences or prose around it (core.schema.base.extract_json); 0.0 when none parses (truncated...)
  schema  1.0 when that object is valid under the schema
  fields  mean per-field agreement with the label, core.schema.scoring.field_score with partial
          lists: enum / number / boolean exact, enum list by set F1 (evaluation counts a list right
          only when all of it is), free text token F1; a field missing from the answer scores 0
  length  completion tokens / max completion tokens (a penalty: its weight is subtracted)
  custom  a user function "module:function" called as fn(completion, label, schema) -> float
The total is  w_json*json + w_schema*schema + w_fields*fields - w_length*length + w_custom*custom.
This module runs no model and knows nothing of GRPO's advantages (core.train.grpo does).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ConfigError
from core.schema.base import extract_json, fields, is_valid
from core.schema.scoring import field_score

COMPONENTS = ("json", "schema", "fields", "length", "custom")


@dataclass(frozen=True)
class RewardWeights:
    json: float = 1.0
    schema: float = 2.0
    fields: float = 5.0
    length: float = 0.0
    custom: float = 1.0

    @property
    def best(self) -> float:
        """The total a perfect, zero-length, custom-reward-1 answer would get (for scaling in reports)."""
        return self.json + self.schema + self.fields + self.custom


def json_reward(text: str) -> tuple[float, dict | None]:
    """(reward, parsed object or None)."""
    stripped = (text or "").strip()
    try:
        obj = json.loads(stripped)
        if isinstance(obj, dict):
            return 1.0, obj
    except json.JSONDecodeError:
        pass
    obj, _ = extract_json(text or "")
    return (0.5, obj) if obj is not None else (0.0, None)


def schema_reward(schema: dict, obj: dict | None) -> float:
    return float(obj is not None and is_valid(schema, obj))


def field_scores(schema: dict, obj: dict | None, label: dict) -> dict[str, float]:
    """Per labelled field, a score in [0, 1]; all 0 without a parsed object."""
    return {f.name: field_score(f, obj[f.name], label[f.name], partial_lists=True)
            if obj is not None and f.name in obj else 0.0 for f in fields(schema) if f.name in label}


def fields_reward(schema: dict, obj: dict | None, label: dict) -> float:
    scores = field_scores(schema, obj, label)
    return sum(scores.values()) / len(scores) if scores else 0.0


def length_fraction(n_tokens: int | None, max_tokens: int | None) -> float:
    if not n_tokens or not max_tokens:
        return 0.0
    return min(n_tokens / max_tokens, 1.0)


def load_custom_reward(path: str) -> Callable | None:
    """'package.module:function' → the function; '' or None → None. Raises ConfigError."""
    if not path:
        return None
    module_name, _, func_name = path.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"custom_reward must look like 'module:function', not {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"custom_reward {path}: cannot import {module_name} ({exc})") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"custom_reward {path}: {module_name} has no function {func_name}")
    return func


def score_completion(schema: dict, text: str, label: dict, weights: RewardWeights = RewardWeights(),
                     n_tokens: int | None = None, max_tokens: int | None = None,
                     custom: Callable | None = None) -> dict:
    """{'json', 'schema', 'fields', 'length', 'custom', 'total'} for one completion."""
    j, obj = json_reward(text)
    parts = {"json": j, "schema": schema_reward(schema, obj), "fields": fields_reward(schema, obj, label),
             "length": length_fraction(n_tokens, max_tokens),
             "custom": float(custom(text, label, schema)) if custom is not None else 0.0}
    parts["total"] = (weights.json * parts["json"] + weights.schema * parts["schema"]
                      + weights.fields * parts["fields"] - weights.length * parts["length"]
                      + weights.custom * parts["custom"])
    return parts


def score_batch(schema: dict, texts: list[str], labels: list[dict], weights: RewardWeights = RewardWeights(),
                n_tokens: list[int] | None = None, max_tokens: int | None = None,
                custom: Callable | None = None) -> list[dict]:
    n_tokens = n_tokens or [None] * len(texts)
    return [score_completion(schema, t, lab, weights, n, max_tokens, custom)
            for t, lab, n in zip(texts, labels, n_tokens)]


def group_advantages(totals: list[float], group_size: int, eps: float = 1e-4) -> list[float]:
    """GRPO's advantage: each reward minus its group's mean, over the group's standard deviation.
    A group whose completions all score the same gets advantage 0 (it teaches nothing)."""
    if group_size < 1 or len(totals) % group_size:
        raise ValueError(f"{len(totals)} rewards do not split into groups of {group_size}")
    out = []
    for i in range(0, len(totals), group_size):
        group = totals[i:i + group_size]
        mean = sum(group) / len(group)
        std = (sum((r - mean) ** 2 for r in group) / max(len(group) - 1, 1)) ** 0.5
        out += [(r - mean) / (std + eps) for r in group]
    return out
