"""Paper figures of an LFADS run, part 2: the figures of scores (decoded behaviour, every
method's scores, the summary of every dataset, latents against a simulation's truth), in the
style of :mod:`.plotting` (one journal column wide, PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ground_truth import fit_latent_map, r2_per_channel
from .plotting import (DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, SavedFigure, new_figure, paper_style,
                       save_figure)

__all__ = ["plot_decoded_behavior", "plot_decoded_over_time", "plot_method_comparison", "plot_dataset_summary",
           "plot_latents_vs_truth"]


# ------------------------------------------------------------------ decoded behaviour

@paper_style
def plot_decoded_behavior(true: np.ndarray, decoded: np.ndarray, bin_width_s: float,
                          names: list[str], out_stem: str | Path, n_trials: int = 4,
                          units: list[str] | str | None = None, start_s: float = 0.0,
                          return_figure: bool = False) -> SavedFigure:
    """Decoded (colour) against true (black) behaviour over time: one row per behaviour
    variable, one column per trial (the first ``n_trials``).

    true, decoded: trials x time bins x variables; names: one per variable; units: one per
    variable (or one for all) for the axis labels. The R^2 of each variable over all trials
    and bins is written in its row's first panel.
    """
    true, decoded = np.asarray(true, dtype=float), np.asarray(decoded, dtype=float)
    if true.ndim != 3 or true.shape != decoded.shape:
        raise ValueError(f"true {true.shape} and decoded {decoded.shape} must both be "
                         "trials x time x variables")
    n_var = true.shape[-1]
    if len(names) != n_var:
        raise ValueError(f"{len(names)} names for {n_var} behaviour variables")
    if isinstance(units, str) or units is None:
        units = [units or ""] * n_var
    n_show = max(1, min(n_trials, len(true)))
    r2 = r2_per_channel(decoded, true)
    t = start_s + (np.arange(true.shape[1]) + 0.5) * bin_width_s

    fig = new_figure(DOUBLE_COLUMN_IN, 0.5 + 1.2 * n_var)
    axes = np.atleast_2d(fig.subplots(n_var, n_show, sharex=True, sharey="row", squeeze=False))
    for v in range(n_var):
        for j in range(n_show):
            ax = axes[v, j]
            ax.plot(t, true[j, :, v], color="k", lw=0.8, label="true")
            ax.plot(t, decoded[j, :, v], color="C0", lw=0.8, label="decoded")
            if v == 0:
                ax.set_title(f"Trial {j + 1}")
            if v == n_var - 1:
                ax.set_xlabel("Time (s)")
        label = names[v] + (f" ({units[v]})" if units[v] else "")
        axes[v, 0].set_ylabel(label)
        axes[v, 0].text(0.02, 0.97, f"R$^2$ = {r2[v]:.2f}", transform=axes[v, 0].transAxes,
                        va="top", fontsize=7)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=2)
    return save_figure(fig, out_stem, return_figure)


@paper_style
def plot_decoded_over_time(true: np.ndarray, decoded: np.ndarray, bin_width_s: float,
                           names: list[str], out_stem: str | Path, start_s: float = 0.0,
                           units: list[str] | str | None = None,
                           return_figure: bool = False) -> SavedFigure:
    """Decoded (colour) against true (black) behaviour over a stretch of a continuous
    recording: one row per behaviour variable, time on the recording's clock.

    true, decoded: time bins x variables (NaN bins, e.g. the first lag bins, are not drawn);
    start_s: the first bin's start on the recording's clock (s). The R^2 of each variable over
    the bins shown is written in its row.
    """
    true, decoded = np.asarray(true, dtype=float), np.asarray(decoded, dtype=float)
    if true.ndim != 2 or true.shape != decoded.shape:
        raise ValueError(f"true {true.shape} and decoded {decoded.shape} must both be "
                         "time bins x variables")
    n_var = true.shape[-1]
    if len(names) != n_var:
        raise ValueError(f"{len(names)} names for {n_var} behaviour variables")
    if isinstance(units, str) or units is None:
        units = [units or ""] * n_var
    r2 = r2_per_channel(decoded, true)
    t = start_s + (np.arange(len(true)) + 0.5) * bin_width_s
    fig = new_figure(DOUBLE_COLUMN_IN, 0.5 + 1.0 * n_var)
    axes = np.atleast_1d(fig.subplots(n_var, 1, sharex=True, squeeze=False)[:, 0])
    for v, ax in enumerate(axes):
        ax.plot(t, true[:, v], color="k", lw=0.7, label="true")
        ax.plot(t, decoded[:, v], color="C0", lw=0.7, label="decoded")
        ax.set_ylabel(names[v] + (f" ({units[v]})" if units[v] else ""))
        ax.text(0.01, 0.97, f"R$^2$ = {r2[v]:.2f}", transform=ax.transAxes, va="top",
                fontsize=7)
    axes[-1].set_xlabel("Time on the recording's clock (s)")
    axes[-1].set_xlim(t[0] - bin_width_s / 2, t[-1] + bin_width_s / 2)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2)
    return save_figure(fig, out_stem, return_figure)


# ------------------------------------------------------------------ method comparison

FLAGGED_HATCH = "////"  # bars of scores on trials that a selection saw


def _flagged(table: pd.DataFrame) -> np.ndarray:
    """Rows scored on trials that a choice saw (``seen_by`` other than ``none``)."""
    if "seen_by" not in table:
        return np.zeros(len(table), dtype=bool)
    return (table["seen_by"].fillna("none").astype(str) != "none").to_numpy()


def split_note(table: pd.DataFrame) -> str:
    """Which trials a table's scores come from, for a figure: the split, and what saw it."""
    if "split" not in table:
        return ""
    notes = []
    seen_by = table["seen_by"] if "seen_by" in table else pd.Series("none", index=table.index)
    for (split, seen), _ in table.groupby([table["split"], seen_by], sort=False):
        if str(seen) in ("none", "nan"):
            notes.append(f"{split} trials (no training or selection saw them)")
        else:
            notes.append(f"{split} trials (hatched: seen by {seen})")
    return "Scored on " + "; ".join(notes)


@paper_style
def plot_method_comparison(table: pd.DataFrame, out_stem: str | Path,
                           return_figure: bool = False) -> SavedFigure:
    """Bar chart of each method's score, one panel per metric, error bars where ``err`` is
    finite. ``table``: tidy, columns method, metric, value, err (err may be NaN); methods and
    metrics keep their order of first appearance, each method one colour in every panel. A
    panel shows the methods that have a row for its metric (a NaN value shows as "n/a")."""
    missing = {"method", "metric", "value", "err"} - set(table.columns)
    if missing:
        raise ValueError(f"method comparison table lacks column(s) {sorted(missing)}")
    if table.empty:
        raise ValueError("method comparison table has no rows")
    if table.duplicated(["method", "metric"]).any():
        dup = table[table.duplicated(["method", "metric"], keep=False)]
        raise ValueError(f"several rows for one (method, metric): "
                         f"{dup[['method', 'metric']].values.tolist()}")
    methods = list(dict.fromkeys(table["method"]))
    metrics = list(dict.fromkeys(table["metric"]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    width = SINGLE_COLUMN_IN if len(metrics) == 1 else DOUBLE_COLUMN_IN
    fig = new_figure(width, 2.4)
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)[0])
    for ax, metric in zip(axes, metrics):
        rows = table[table["metric"] == metric].set_index("method")
        shown = [m for m in methods if m in rows.index]
        x = np.arange(len(shown))
        values = rows.loc[shown, "value"].to_numpy(dtype=float)
        errs = rows.loc[shown, "err"].to_numpy(dtype=float)
        bars = ax.bar(x, np.nan_to_num(values), color=[colors[m] for m in shown], width=0.7)
        for bar, flagged in zip(bars, _flagged(rows.loc[shown])):
            if flagged:
                bar.set_hatch(FLAGGED_HATCH)
        has_err = np.isfinite(errs) & np.isfinite(values)
        if has_err.any():
            ax.errorbar(x[has_err], values[has_err], yerr=errs[has_err], fmt="none",
                        ecolor="k", elinewidth=0.7, capsize=2)
        for i in np.flatnonzero(~np.isfinite(values)):
            ax.text(x[i], 0, "n/a", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, shown, rotation=45, ha="right")
        ax.set_ylabel(metric)
        ax.set_xlabel("Method")
        ax.axhline(0, color="k", lw=0.5)
    note = split_note(table)
    if note:
        fig.suptitle(note, fontsize=7)
    return save_figure(fig, out_stem, return_figure)


@paper_style
def plot_dataset_summary(table: pd.DataFrame, out_stem: str | Path,
                         return_figure: bool = False) -> SavedFigure:
    """Every dataset's scores side by side: one panel per metric, one group of bars per
    dataset, one bar (same colour in every panel) per method, standard errors where ``err``
    is finite. ``table``: tidy, columns dataset, method, metric, value, err (as
    :func:`lfads_core.analysis.evaluation.method_scores` returns); order of first appearance kept."""
    missing = {"dataset", "method", "metric", "value", "err"} - set(table.columns)
    if missing:
        raise ValueError(f"summary table lacks column(s) {sorted(missing)}")
    if table.empty:
        raise ValueError("summary table has no rows")
    datasets = list(dict.fromkeys(table["dataset"]))
    methods = list(dict.fromkeys(table["method"]))
    metrics = list(dict.fromkeys(table["metric"]))
    n_cols = min(len(metrics), 3)
    n_rows = -(-len(metrics) // n_cols)
    fig = new_figure(DOUBLE_COLUMN_IN, 0.4 + 2.0 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    x = np.arange(len(datasets))
    for ax, metric in zip(axes, metrics):
        rows = table[table["metric"] == metric]
        present = [m for m in methods if (rows["method"] == m).any()]
        width = 0.8 / len(present)
        for i, method in enumerate(present):
            by_dataset = rows[rows["method"] == method].set_index("dataset").reindex(datasets)
            shown = by_dataset["method"].notna().to_numpy()
            values = by_dataset["value"].to_numpy(dtype=float)
            errs = by_dataset["err"].to_numpy(dtype=float)
            pos = x + (i - (len(present) - 1) / 2) * width
            bars = ax.bar(pos[shown], np.nan_to_num(values[shown]), width, color=colors[method],
                          label=method)
            for bar, flagged in zip(bars, _flagged(by_dataset[shown])):
                if flagged:
                    bar.set_hatch(FLAGGED_HATCH)
            has_err = shown & np.isfinite(errs) & np.isfinite(values)
            if has_err.any():
                ax.errorbar(pos[has_err], values[has_err], yerr=errs[has_err], fmt="none",
                            ecolor="k", elinewidth=0.7, capsize=1.5)
        ax.set_xticks(x, [_dataset_label(table, d) for d in datasets],
                      rotation=30 if len(datasets) > 3 else 0,
                      ha="right" if len(datasets) > 3 else "center")
        ax.set_ylabel(metric)
        ax.axhline(0, color="k", lw=0.5)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles = {}
    for ax in axes[:len(metrics)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center",
               ncol=min(len(handles), 6))
    if "split" in table:
        fig.suptitle("Each dataset's scores on the split under its name; hatched: validation "
                     "trials, which model selection saw", fontsize=7)
    return save_figure(fig, out_stem, return_figure)


def _dataset_label(table: pd.DataFrame, dataset: str) -> str:
    """A dataset's tick label: its name and the split its scores come from."""
    if "split" not in table:
        return dataset
    splits = table.loc[table["dataset"] == dataset, "split"].dropna().unique()
    return f"{dataset}\n({', '.join(map(str, splits))})"


# ------------------------------------------------------------------ latents vs truth

@paper_style
def plot_latents_vs_truth(factors_train: np.ndarray, latents_train: np.ndarray,
                          factors_scored: np.ndarray, latents_scored: np.ndarray,
                          bin_width_s: float, out_stem: str | Path, n_trials: int = 3,
                          split: str = "valid", return_figure: bool = False) -> SavedFigure:
    """True latents (solid) and their affine prediction from the factors (dashed) for the
    first ``n_trials`` trials of the scored ``split``, one panel per latent dimension; the
    panel title gives that dimension's R^2 over all the split's trials and bins.

    factors_*: trials x time bins x factors; latents_*: trials x time bins x latents (same
    trials and bins). The map is fitted on the training trials only.
    """
    for f, z, name in ((factors_train, latents_train, "train"),
                       (factors_scored, latents_scored, split)):
        if f.ndim != 3 or z.ndim != 3 or f.shape[:2] != z.shape[:2]:
            raise ValueError(f"{name}: factors {f.shape} and latents {z.shape} must be "
                             "trials x time x dims with the same trials and bins")
    predicted = fit_latent_map(factors_train, latents_train, factors_scored)
    truth = np.asarray(latents_scored, dtype=float)
    ok = np.isfinite(truth).all(axis=-1).reshape(-1)
    r2 = r2_per_channel(predicted.reshape(-1, truth.shape[-1])[ok],
                        truth.reshape(-1, truth.shape[-1])[ok])
    n_lat = truth.shape[-1]
    n_show = max(1, min(n_trials, len(truth)))
    t = (np.arange(truth.shape[1]) + 0.5) * bin_width_s
    cols = min(n_lat, 3)
    rows = int(np.ceil(n_lat / cols))
    fig = new_figure(DOUBLE_COLUMN_IN if cols > 1 else SINGLE_COLUMN_IN, 0.4 + 1.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for d in range(n_lat):
        ax = axes[d]
        for j in range(n_show):
            color = f"C{j % 10}"
            ax.plot(t, truth[j, :, d], color=color, lw=0.9,
                    label=f"trial {j + 1} true" if d == 0 else None)
            ax.plot(t, predicted[j, :, d], color=color, lw=0.9, ls="--",
                    label=f"trial {j + 1} from factors" if d == 0 else None)
        ax.set_title(f"Latent {d + 1}: R$^2$ = {r2[d]:.2f}")
        ax.set_xlabel("Time in window (s)")
        ax.set_ylabel(f"Latent {d + 1} (z-scored)")
    for ax in axes[n_lat:]:
        ax.set_visible(False)
    fig.legend(loc="outside lower center", ncol=min(2 * n_show, 6))
    fig.suptitle(f"Affine map factors -> true latents (fitted on train trials); "
                 f"mean R$^2$ on the {split} trials = {np.mean(r2):.2f}")
    return save_figure(fig, out_stem, return_figure)
