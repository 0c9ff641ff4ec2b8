"""Errors raised on bad input: each names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path


class InputDataError(ValueError):
    """An input file or setting that cannot be used.

    The message always starts with the file and the field, e.g.
    ``data.nwb: field 'units.spike_times': ...``, so a user knows where to look.
    """

    def __init__(self, path: str | Path, field: str, message: str):
        self.path = str(path)
        self.field = field
        self.reason = message
        super().__init__(f"{self.path}: field '{field}': {message}")
