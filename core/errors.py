"""Typed, user-worded errors raised in core and turned into UI/CLI messages once at the edge."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message is meant to be shown to a person as is."""


class VideoError(WorkbenchError):
    """A video could not be probed or decoded. Always names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SchemaError(WorkbenchError):
    """The JSON Schema itself is malformed or uses something we do not support."""


class DatasetError(WorkbenchError):
    """A dataset folder, metadata line or label is unusable."""


class ModelError(WorkbenchError):
    """A model name/path cannot be resolved or loaded."""


class ConfigError(WorkbenchError):
    """A training/eval configuration value is invalid."""


class HubError(WorkbenchError):
    """Publishing to the Hugging Face Hub cannot start or failed (no token, refused, unreachable)."""
