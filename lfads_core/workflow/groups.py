"""Stitched models from the sample sheet: rows with the same ``group`` train one LFADS model
(each row a session with its own read-in and read-out; :mod:`lfads_core.lfads.stitching`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputDataError

# What must agree within a group: the sessions share the model's bins.
_SHARED = {
    "bin_width_ms": lambda s: s["bin_width_ms"],
    # a continuous recording's windows are its segments
    "window length (window_end_ms - window_start_ms, or segment_length_ms)":
        lambda s: float(s["segment_length_ms"]) if s.get("segment_length_ms") not in (None, "")
        else s["window_end_ms"] - s["window_start_ms"],
    "fp_bins": lambda s: s["fp_bins"],
    # calcium imaging: every row traces or every row spikes, and the same frames per bin
    "traces": lambda s: "spikes" if not str(s.get("traces", "")).strip() else "traces",
    "bin_frames": lambda s: int(s.get("bin_frames", 1)),
}


def model_groups(datasets: dict[str, dict], sheet: str | Path) -> dict[str, list[str]]:
    """Group name -> its datasets in sheet order, for the rows whose ``group`` is set.

    Raises :class:`InputDataError` naming the sheet, the group's rows and the field when a
    group has the name of a dataset or its rows disagree on the bin width, the window length
    or the forward-prediction bins."""
    groups: dict[str, list[str]] = {}
    for name, settings in datasets.items():
        if settings.get("group"):
            groups.setdefault(settings["group"], []).append(name)
    for group, rows in groups.items():
        where = f"{sheet} (group '{group}', rows {rows})"
        if group in datasets:
            raise InputDataError(where, "group", f"'{group}' is also the name of a dataset; "
                                 "a group's results go to results/{group}/, so name it otherwise")
        for field, value in _SHARED.items():
            values = {row: value(datasets[row]) for row in rows}
            if len(set(values.values())) > 1:
                raise InputDataError(where, field, f"must agree within a group (one model sees "
                                     f"every session's bins), got {values}")
    return groups
