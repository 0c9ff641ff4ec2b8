"""Hyperparameter sweeps over LFADS settings, and the choice of the best run.

A sweep (config ``lfads.sweep``) names one training run per point::

    method: grid            # none | grid | random
    n_runs: 8               # random only: number of points drawn
    seed: 0                 # random only
    parameters:             # "model.<key>" or "training.<key>" -> values
      training.lr: [0.002, 0.004]                                   # grid and random: a list
      model.dropout_rate: {low: 0.0, high: 0.3, scale: linear}      # random only: a range
      training.l2_gen_scale: {low: 10, high: 3000, scale: log}      # (search_space.py)

Grid points are the Cartesian product of the lists, in the order the parameters are written
(the last varies fastest). Random points draw every parameter independently from a
``numpy.random.default_rng(seed)``: a choice from a list, or a draw from a range
(:mod:`lfads_core.workflow.search_space`, the grammar PBT shares); ranges with integer ends
draw integers (ends included).
Runs are named ``sweep_000``, ``sweep_001``, ...; without a sweep the single run is
``default``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import InputDataError
from .search_space import SearchRange, parse_range

DEFAULT_RUN = "default"
SELECTED_RUN = "selected"
METHODS = ("none", "grid", "random")
_WHERE = "lfads.sweep"


def _bad(field: str, why: str):
    raise InputDataError("config", f"{_WHERE}.{field}", why)


def _check_parameters(parameters: dict, method: str) -> dict[str, list | SearchRange]:
    """Each parameter's list of values, or (random) its range."""
    if not parameters:
        _bad("parameters", f"method '{method}' needs at least one parameter")
    checked = {}
    for name, values in parameters.items():
        section, _, key = str(name).partition(".")
        if section not in ("model", "training") or not key:
            _bad("parameters", f"'{name}' must be 'model.<key>' or 'training.<key>'")
        if isinstance(values, list):
            if not values:
                _bad(f"parameters.{name}", "the list of values is empty")
            checked[name] = values
        elif isinstance(values, dict) and method == "random":
            checked[name] = parse_range(values, f"{_WHERE}.parameters.{name}")
        else:
            kind = "a list of values" + (" or a range {low: ..., high: ..., scale: linear|log}"
                                         if method == "random" else "")
            _bad(f"parameters.{name}", f"must be {kind} for method '{method}', got {values!r}")
    return checked


def _draw(values: list | SearchRange, rng: np.random.Generator):
    """One random value of a parameter: a choice from a list, or a draw from a range (whole
    numbers when both its ends are)."""
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    return values.draw(rng, integers=True)


def sweep_points(sweep: dict | None) -> dict[str, dict[str, dict]]:
    """Run name -> ``{"model": {...}, "training": {...}}`` settings of that point.

    ``sweep`` is config ``lfads.sweep`` (None or method ``none``: one run ``default`` with no
    changes). Raises :class:`InputDataError` naming the field of a malformed sweep; the values
    themselves are checked later with the rest of the LFADS settings."""
    sweep = sweep or {}
    method = sweep.get("method", "none")
    if method not in METHODS:
        _bad("method", f"must be one of {METHODS}, got {method!r}")
    if method == "none":
        return {DEFAULT_RUN: {"model": {}, "training": {}}}
    parameters = _check_parameters(sweep.get("parameters") or {}, method)
    names = list(parameters)
    if method == "grid":
        points = [dict(zip(names, combo))
                  for combo in itertools.product(*(parameters[n] for n in names))]
    else:
        n_runs = sweep.get("n_runs", 0)
        if not isinstance(n_runs, int) or isinstance(n_runs, bool) or n_runs < 1:
            _bad("n_runs", f"must be an integer >= 1 for method 'random', got {n_runs!r}")
        rng = np.random.default_rng(sweep.get("seed", 0))
        points = [{n: _draw(parameters[n], rng) for n in names} for _ in range(n_runs)]
    width = max(3, len(str(len(points) - 1)))
    runs = {}
    for i, point in enumerate(points):
        settings = {"model": {}, "training": {}}
        for name, value in point.items():
            section, _, key = name.partition(".")
            settings[section][key] = value
        runs[f"sweep_{i:0{width}d}"] = settings
    return runs


def selection_table(run_configs: dict[str, str | Path], points: dict[str, dict]) -> pd.DataFrame:
    """One row per run: its swept values, best epoch and smoothed validation loss.

    ``run_configs``: run name -> the run's resolved ``config.yaml`` (written by the
    ``train_lfads`` rule; holds ``best_epoch`` and ``best_valid_loss_smooth``, the
    exponential moving average of the validation reconstruction loss at the kept epoch).
    The run with the lowest finite loss is marked ``selected`` (ties: the first run by name).
    A ``config.yaml`` of an earlier version (``best_valid_metric_smooth``) is read too.
    Raises ValueError when no run has a finite loss."""
    rows = []
    for run in sorted(run_configs):
        resolved = yaml.safe_load(Path(run_configs[run]).read_text())
        row = {"run": run}
        for section, values in points.get(run, {}).items():
            row.update({f"{section}.{key}": value for key, value in values.items()})
        loss = resolved.get("best_valid_loss_smooth", resolved.get("best_valid_metric_smooth"))
        row.update(best_epoch=resolved.get("best_epoch"), epochs_run=resolved.get("epochs_run"),
                   best_valid_loss_smooth=float("nan") if loss is None else float(loss))
        rows.append(row)
    table = pd.DataFrame(rows)
    finite = np.isfinite(table["best_valid_loss_smooth"].to_numpy(dtype=float))
    if not finite.any():
        raise ValueError(f"no run has a finite smoothed validation loss: {sorted(run_configs)}")
    best = table["best_valid_loss_smooth"].where(finite).idxmin()
    table["selected"] = table.index == best
    return table
