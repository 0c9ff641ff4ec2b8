"""Conversions of the values people type in the sheet and the config."""

from __future__ import annotations

__all__ = ["split_list"]


def split_list(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty text -> ``[]``."""
    return [part.strip() for part in text.split(",") if part.strip()]
