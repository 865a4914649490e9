"""Errors shared by the modules that find, check, load and download weights."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """A checkpoint is missing or unusable. The message names it, where it was looked for, and the fix."""
