"""Search ranges: the one grammar of a searched setting's range, for sweeps and PBT alike.

A range is written ``{low: ..., high: ..., scale: linear|log}`` (``config/README.md``,
"Search ranges")::

    training.lr: {low: 1.0e-4, high: 1.0e-2, scale: log}     # log-uniform draws
    model.dropout_rate: {low: 0.0, high: 0.3, scale: linear}  # uniform draws

``scale`` is required; ``low < high``; a ``log`` range needs ``low > 0``. :func:`parse_range`
checks one and returns a :class:`SearchRange`, whose methods are the draws and moves both
searches make: a seeded draw (:meth:`SearchRange.draw`), clipping into the range
(:meth:`SearchRange.clip`) and PBT's perturbation (:meth:`SearchRange.perturb`).
:func:`check_search_ranges` checks every range of a configuration (``lfads.sweep.parameters``
and ``lfads.pbt.parameters``) before the schema does, so that a range's error is told in these
words (what line to write) rather than the schema's. No torch here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import InputDataError

SCALES = ("linear", "log")
KEYS = ("low", "high", "scale")
#: Where a configuration holds ranges: the values of these mappings that are mappings.
RANGE_SECTIONS = (("lfads", "sweep", "parameters"), ("lfads", "pbt", "parameters"))
#: The grammar, in the words of the errors.
GRAMMAR = "{low: ..., high: ..., scale: linear|log}"


@dataclass(frozen=True)
class SearchRange:
    """The range ``[low, high]`` of one searched setting; ``scale``: ``linear`` (uniform
    draws) or ``log`` (log-uniform draws). ``low`` and ``high`` are kept as written, so a
    range with whole-number ends can draw whole numbers (``draw(rng, integers=True)``)."""

    low: float
    high: float
    scale: str

    @property
    def integer(self) -> bool:
        """Both ends are whole numbers as written (``16``, not ``16.0``)."""
        return all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                   for v in (self.low, self.high))

    def draw(self, rng: np.random.Generator, integers: bool = False) -> float | int:
        """One value drawn from ``rng``: uniform on a ``linear`` range, log-uniform on a
        ``log`` one. With ``integers`` and whole-number ends (:attr:`integer`), a whole number:
        uniform over ``low..high`` (ends included), or the log-uniform draw rounded."""
        whole = integers and self.integer
        if self.scale == "log":
            value = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
            return int(round(value)) if whole else value
        if whole:
            return int(rng.integers(self.low, self.high + 1))
        return float(rng.uniform(self.low, self.high))

    def clip(self, value: float) -> float:
        """``value`` moved into ``[low, high]``."""
        return float(min(max(value, self.low), self.high))

    def perturb(self, value: float, factor: float) -> float:
        """PBT's perturbation: ``value`` multiplied by ``factor``, clipped into the range."""
        return self.clip(value * factor)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def _bad(where: str, why: str):
    raise InputDataError("config", where, why)


def _migration(spec: Mapping, where: str):
    """The error for a range in the old sweep form, ``log: true|false``: what to write instead."""
    old = spec["log"]
    written = str(old).lower() if isinstance(old, bool) else repr(old)
    if "scale" in spec:
        instead = f"remove `log: {written}` (the range already says `scale: {spec['scale']}`)"
    elif isinstance(old, bool):
        instead = f"replace `log: {written}` with `scale: {'log' if old else 'linear'}`"
    else:
        instead = f"replace `log: {written}` with `scale: log` or `scale: linear`"
    _bad(where, f"`log:` is the old form of a range's scale; {instead}. A range is "
                f"{GRAMMAR} (config/README.md, \"Search ranges\")")


def parse_range(spec, where: str) -> SearchRange:
    """Check one range as written in a configuration and return it.

    ``where``: the key path of the range (``lfads.sweep.parameters.training.lr``), named by
    the error. Raises :class:`InputDataError` (file ``config``; the workflow's start-up names
    the file that set it) for anything but ``{low, high, scale}`` with numbers ``low < high``,
    ``scale`` ``linear`` or ``log``, and ``low > 0`` on a ``log`` range."""
    if not isinstance(spec, Mapping):
        _bad(where, f"a range is {GRAMMAR}, got {spec!r}")
    if "log" in spec:
        _migration(spec, where)
    unknown = sorted(map(str, set(spec) - set(KEYS)))
    if unknown:
        _bad(where, f"unknown key '{unknown[0]}' in a range; a range is {GRAMMAR}")
    missing = [k for k in ("low", "high") if k not in spec]
    if missing:
        _bad(where, f"a range needs `{missing[0]}`; a range is {GRAMMAR}")
    if "scale" not in spec:
        _bad(where, "a range needs its scale: add `scale: log` or `scale: linear` (log-uniform "
                    "or uniform draws)")
    low, high, scale = spec["low"], spec["high"], spec["scale"]
    if scale not in SCALES:
        _bad(f"{where}.scale", f"{scale!r} is not allowed: must be one of 'linear', 'log'")
    if not (_number(low) and _number(high)):
        _bad(where, f"low and high must be numbers, got low={low!r}, high={high!r}")
    if not low < high:
        _bad(where, f"a range needs low < high, got low={low!r}, high={high!r} (a fixed value "
                    "belongs in the model or training settings, not in a search)")
    if scale == "log" and low <= 0:
        _bad(where, f"a log range needs low > 0, got low={low!r}; use `scale: linear` to "
                    "include 0, or a positive low")
    return SearchRange(low, high, scale)


def check_search_ranges(config: Mapping, old_form_only: bool = False) -> None:
    """Check every range of a configuration (:data:`RANGE_SECTIONS`) with :func:`parse_range`;
    with ``old_form_only``, only that none is written in the old form (``log:``), for a file
    whose ranges may be completed by another it is merged with. Only mappings are ranges here
    (a sweep's list of values is not); sections that are not mappings are left to the schema."""
    for section in RANGE_SECTIONS:
        node = config
        for key in section:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        for name, spec in node.items():
            where = ".".join([*section, str(name)])
            if isinstance(spec, Mapping) and not old_form_only:
                parse_range(spec, where)
            elif isinstance(spec, Mapping) and "log" in spec:
                _migration(spec, where)
