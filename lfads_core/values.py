"""Conversions of the values people type in the sheet and the config."""

from __future__ import annotations

__all__ = ["split_list", "ms_to_bins"]


def ms_to_bins(ms: float, bin_width_s: float) -> float:
    """A duration typed in milliseconds (a window, a kernel, a lag) in bins of ``bin_width_s``
    seconds (not rounded)."""
    return ms / (bin_width_s * 1e3)


def split_list(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty text -> ``[]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


#: The kinds of data a recording's channels hold, as files record them (attr ``kind``)
KIND_SPIKES = "spikes"
KIND_TRACES = "traces"  # calcium imaging: values per frame (an RoiResponseSeries), not counts


def kind_of(attrs) -> str:
    """The data kind recorded in a file's attrs (files without it hold spikes)."""
    kind = attrs.get("kind", KIND_SPIKES)
    return kind.decode() if isinstance(kind, bytes) else str(kind)
