"""Vertical models (students): architectures and the built-in catalog of verticals."""

from students.verticals import ARCHITECTURES, VERTICALS, VerticalSpec

__all__ = ["ARCHITECTURES", "VERTICALS", "VerticalSpec"]
