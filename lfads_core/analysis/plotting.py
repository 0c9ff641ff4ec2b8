"""Paper figures of an LFADS run, part 1: the figure style and how figures are saved, and the
figures of training and latent dynamics (training curves, rasters with inferred rates, factor
trajectories, a stitched group's sessions in their shared latent space). The figures of
scores are in :mod:`.score_figures`.

Every function draws one figure sized for a journal column (3.5 or 7 inches wide, fonts of
7-8 pt, no top/right spines), saves it as ``out_stem + ".png"`` (300 dpi) and
``out_stem + ".pdf"`` (text kept as text), and returns a :class:`SavedFigure` with both
paths. Figures are plain :class:`matplotlib.figure.Figure` objects on an Agg canvas (no
pyplot, so the process's backend is left alone and no figure stays registered/open); ``return_figure=True`` keeps the figure in the result for
inspection.

Array shapes: trials x time bins x channels. Rates from ``posterior.h5`` are expected counts
per bin; they are shown in Hz (divided by the bin width).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 300
SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.0
MAX_RASTER_NEURONS = 30

STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.0,
    "legend.frameon": False, "pdf.fonttype": 42, "ps.fonttype": 42,
    "savefig.dpi": DPI, "figure.dpi": 100,
}

__all__ = ["SavedFigure", "paper_style", "new_figure", "save_figure", "condition_colors",
           "plot_training_curves", "plot_raster_with_rates", "plot_factor_trajectories",
           "plot_stitched_factors", "plot_pbt_progress"]


@dataclass
class SavedFigure:
    """Paths of a saved figure; ``figure`` is set only when asked for (``return_figure``)."""

    png: Path
    pdf: Path
    figure: Figure | None = None

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.png, self.pdf


def paper_style(func):
    """Run a plotting function under the paper style (rcParams restored afterwards)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)
    return wrapper


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_stem: str | Path, return_figure: bool) -> SavedFigure:
    """Write ``out_stem``.png (300 dpi) and .pdf; the PNG's pixel size is figsize x 300."""
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = Path(f"{stem}.png"), Path(f"{stem}.pdf")
    metadata = {"Creator": "lfads_core.analysis.plotting"}
    fig.savefig(png, dpi=DPI, metadata={"Software": "lfads_core.analysis.plotting"})
    fig.savefig(pdf, metadata=metadata)
    return SavedFigure(png, pdf, fig if return_figure else None)


def condition_colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i) if n <= 10 else cmap(i / max(n - 1, 1)) for i in range(n)]


# ------------------------------------------------------------------ training curves

@paper_style
def plot_training_curves(train_log_csv: str | Path, out_stem: str | Path,
                         return_figure: bool = False) -> SavedFigure:
    """Three panels from ``train_log.csv`` against epoch: reconstruction loss (train, valid,
    smoothed valid loss; nats per trial), KL terms (nats per trial) and the learning rate
    with the KL ramp weights. A log of an earlier version (``valid_metric_smooth``) is read too."""
    log = pd.read_csv(train_log_csv).rename(columns={"valid_metric_smooth": "valid_loss_smooth"})
    if "epoch" not in log or log.empty:
        raise ValueError(f"{train_log_csv}: no 'epoch' column or no rows")
    epoch = log["epoch"].to_numpy()
    fig = new_figure(DOUBLE_COLUMN_IN, 2.8)
    ax_recon, ax_kl, ax_lr = fig.subplots(1, 3)

    def line(ax, column, label, **kw):
        if column in log and log[column].notna().any():
            ok = log[column].notna().to_numpy()
            ax.plot(epoch[ok], log[column].to_numpy()[ok], label=label, **kw)

    line(ax_recon, "train_recon", "train", color="C0")
    line(ax_recon, "valid_recon", "valid", color="C1")
    line(ax_recon, "valid_loss_smooth", "valid loss (smoothed)", color="k", ls="--")
    ax_recon.set_ylabel("Reconstruction NLL (nats / trial)")
    ax_recon.set_title("Reconstruction")

    line(ax_kl, "train_kl_ic", "KL(IC), train", color="C2")
    line(ax_kl, "valid_kl_ic", "KL(IC), valid", color="C2", ls="--")
    line(ax_kl, "train_kl_co", "KL(inputs), train", color="C4")
    line(ax_kl, "valid_kl_co", "KL(inputs), valid", color="C4", ls="--")
    ax_kl.set_ylabel("KL divergence (nats / trial)")
    ax_kl.set_title("KL terms")

    line(ax_lr, "lr", "learning rate", color="C3")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("Learning rate")
    ax_lr.set_title("Schedules")
    weights = ax_lr.twinx()
    weights.spines["right"].set_visible(True)
    line(weights, "kl_ic_weight", "KL(IC) weight", color="C2", ls=":")
    line(weights, "kl_co_weight", "KL(inputs) weight", color="C4", ls=":")
    weights.set_ylabel("KL weight")
    weights.set_ylim(-0.05, 1.05)

    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.28), "ncol": 2,
             "columnspacing": 1.0, "handlelength": 1.8}
    for ax in (ax_recon, ax_kl, ax_lr):
        ax.set_xlabel("Epoch")
    ax_recon.legend(**below)
    ax_kl.legend(**below)
    handles = ax_lr.get_legend_handles_labels()
    more = weights.get_legend_handles_labels()
    ax_lr.legend(handles[0] + more[0], handles[1] + more[1], **below)
    return save_figure(fig, out_stem, return_figure)


# ------------------------------------------------------------------ raster with rates

@paper_style
def plot_raster_with_rates(spikes: np.ndarray, rates: np.ndarray, bin_width_s: float,
                           out_stem: str | Path, neurons: list[int] | np.ndarray | None = None,
                           start_s: float = 0.0, return_figure: bool = False) -> SavedFigure:
    """One trial's spike raster with the inferred rate drawn over each neuron's row.

    spikes: counts (time bins x neurons); rates: expected counts per bin (same shape), shown
    in Hz on one scale for all rows (the top of a row is the largest rate shown). ``neurons``:
    which columns to show (default: the up to 30 with the highest mean rate, in column order).
    ``start_s``: time of the first bin's start (s), e.g. the window start relative to the
    alignment event.
    """
    spikes, rates = np.asarray(spikes), np.asarray(rates, dtype=float)
    if spikes.ndim != 2 or spikes.shape != rates.shape:
        raise ValueError(f"spikes {spikes.shape} and rates {rates.shape} must both be "
                         "(time bins x neurons) of one trial")
    if bin_width_s <= 0:
        raise ValueError(f"bin_width_s must be > 0, got {bin_width_s}")
    if neurons is None:
        top = np.argsort(-rates.mean(axis=0), kind="stable")[:MAX_RASTER_NEURONS]
        neurons = np.sort(top)
    neurons = np.asarray(neurons, dtype=int)
    if neurons.size == 0:
        raise ValueError("no neurons to plot")
    n_bins = spikes.shape[0]
    centres = start_s + (np.arange(n_bins) + 0.5) * bin_width_s
    rates_hz = rates[:, neurons] / bin_width_s
    peak = float(np.nanmax(rates_hz)) if np.isfinite(rates_hz).any() else 1.0
    peak = peak if peak > 0 else 1.0

    fig = new_figure(SINGLE_COLUMN_IN, max(2.0, 0.3 + 0.085 * len(neurons)))
    ax = fig.subplots()
    for row, n in enumerate(neurons):
        hit = spikes[:, n] > 0
        ax.plot(centres[hit], np.full(hit.sum(), row + 0.15), ls="none", marker="o",
                ms=1.2, mew=0, color="k")
        ax.plot(centres, row + 0.1 + 0.8 * rates_hz[:, row] / peak, color="C3", lw=0.7)
    ax.set_xlim(start_s, start_s + n_bins * bin_width_s)
    ax.set_ylim(-0.2, len(neurons) + 0.1)
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Neuron")
    step = max(1, len(neurons) // 6)
    ax.set_yticks(np.arange(0, len(neurons), step) + 0.5,
                  [str(n) for n in neurons[::step]])
    ax.set_title(f"Spikes (dots), inferred rates (lines)\nrow height = {peak:.3g} Hz",
                 fontsize=7)
    return save_figure(fig, out_stem, return_figure)


# ------------------------------------------------------------------ factor trajectories

def _projected_averages(means: list[np.ndarray], n_components: int
                        ) -> tuple[list[np.ndarray], np.ndarray]:
    """Project condition averages (each conditions x bins x factors) on the principal
    components of all of them pooled; returns the projections and each component's fraction of
    the pooled variance."""
    flat = np.concatenate([m.reshape(-1, m.shape[-1]) for m in means])
    centre = flat.mean(axis=0)
    _, sing, vt = np.linalg.svd(flat - centre, full_matrices=False)
    k = min(n_components, vt.shape[0])
    total = float(np.sum(sing ** 2))
    explained = sing[:k] ** 2 / total if total > 0 else np.zeros(k)
    return [(m - centre) @ vt[:k].T for m in means], explained


def _condition_means(factors: np.ndarray, conditions: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    factors = np.asarray(factors, dtype=float)
    conditions = np.asarray(conditions)
    if factors.ndim != 3 or len(conditions) != len(factors):
        raise ValueError(f"factors {factors.shape} must be trials x time x factors with one "
                         f"condition per trial ({len(conditions)} given)")
    labels = np.unique(conditions)
    return np.stack([factors[conditions == c].mean(axis=0) for c in labels]), labels


def condition_average_pcs(factors: np.ndarray, conditions: np.ndarray, n_components: int = 3
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Condition-averaged factors projected on their principal components.

    factors: trials x time bins x factors; conditions: one label per trial. The PCA is fitted
    on the condition averages (all conditions and bins pooled). Returns ``(projected,
    labels, explained)``: conditions x time bins x components, the sorted condition labels,
    and each component's fraction of the variance of the averages.
    """
    means, labels = _condition_means(factors, conditions)
    (projected,), explained = _projected_averages([means], n_components)
    return projected, labels, explained


def event_bin(window_start_offset_s: float | None, bin_width_s: float | None,
              n_bins: int) -> int | None:
    """The bin that starts at the alignment event (windows start ``window_start_offset_s`` s
    from it),
    None if unknown or outside the ``n_bins`` bins."""
    if window_start_offset_s is None or bin_width_s is None:
        return None
    k = int(round(-window_start_offset_s / bin_width_s))
    return k if 0 <= k < n_bins else None


def condition_names(conditions: dict | None) -> tuple[dict | None, str]:
    """``({index: name}, title)`` of the conditions described in ``lfads_input.json``'s
    ``conditions`` (``columns`` and each index's ``values``): one column's value as it is
    (numbers give a colour scale), several joined by commas; ``(None, "Condition")`` without
    condition columns."""
    columns = (conditions or {}).get("columns") or []
    values = (conditions or {}).get("values") or []
    if not columns or not values:
        return None, "Condition"

    def text(value):
        return "NaN" if value is None else str(value)

    names = {k: (v[0] if v[0] is not None else "NaN") if len(v) == 1 else
             ", ".join(text(x) for x in v) for k, v in enumerate(values)}
    return names, ", ".join(columns)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_))


def _condition_colors(labels: np.ndarray, names: list) -> tuple[list, object | None]:
    """Colours of the conditions and, for more than 10, the colour scale they come from
    (by value when every condition has one number, else by condition number)."""
    if len(labels) <= 10:
        return condition_colors(len(labels)), None
    cmap = matplotlib.colormaps["viridis"]
    values = np.asarray(names, dtype=float) if all(_is_number(v) for v in names) else \
        np.arange(len(labels), dtype=float)
    norm = matplotlib.colors.Normalize(values.min(), values.max() if values.max() > values.min()
                                       else values.min() + 1)
    return [cmap(norm(v)) for v in values], matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)


def _event_markers(ax, projected: list[np.ndarray], colors: list, k_event: int | None) -> None:
    for traj, color in zip(projected, colors):
        ax.plot(*traj[:1].T, ls="none", marker="o", ms=2.5, color=color)
        if k_event is not None:
            ax.plot(*traj[k_event:k_event + 1].T, ls="none", marker="^", ms=3.5, color=color,
                    mec="k", mew=0.4)


def _marker_handles(event: str, k_event: int | None) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker="o", ms=2.5, color="0.4", label="window start")]
    if k_event is not None:
        handles.append(Line2D([], [], ls="none", marker="^", ms=3.5, color="0.4", mec="k",
                              mew=0.4, label=f"{event} (0 s)"))
    return handles


@paper_style
def plot_factor_trajectories(factors: np.ndarray, conditions: np.ndarray,
                             out_stem: str | Path, n_components: int = 3,
                             bin_width_s: float | None = None,
                             window_start_offset_s: float | None = None, event: str = "event",
                             condition_names: dict | None = None,
                             condition_title: str = "Condition",
                             return_figure: bool = False) -> SavedFigure:
    """Condition-averaged factor trajectories in the space of their top 3 (or 2) principal
    components, one line per condition; a dot marks the window's first bin and a triangle the
    bin at the alignment event.

    factors: trials x time bins x factors (a.u.); conditions: one label per trial.
    condition_names: label -> what the condition is (e.g. the condition columns' values),
    shown in the legend (up to 10 conditions) or on a colour scale (more: by value when each
    is one number); condition_title: the legend's or scale's title (e.g. the column names).
    bin_width_s: adds the duration to the title; with window_start_offset_s (the window's start
    relative to the event ``event``, s) it places the event marker.
    """
    if n_components not in (2, 3):
        raise ValueError(f"n_components must be 2 or 3, got {n_components}")
    projected, labels, explained = condition_average_pcs(factors, conditions, n_components)
    k = projected.shape[-1]
    if k < 2:
        raise ValueError("need at least 2 principal components (factors and averages)")
    names = [(condition_names or {}).get(label, label) for label in labels.tolist()]
    colors, scale = _condition_colors(labels, names)
    k_event = event_bin(window_start_offset_s, bin_width_s, projected.shape[1])
    fig = new_figure(SINGLE_COLUMN_IN, SINGLE_COLUMN_IN if k == 3 else 3.0)
    ax = fig.add_subplot(projection="3d" if k == 3 else None)
    for traj, color, name in zip(projected, colors, names):
        ax.plot(*traj.T, color=color, lw=0.8, label=str(name))
    _event_markers(ax, list(projected), colors, k_event)
    axis_names = [f"PC{i + 1} ({100 * e:.0f}% var.)" for i, e in enumerate(explained)]
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if k == 3:
        ax.set_zlabel(axis_names[2])
        ax.tick_params(labelsize=7, pad=0)
        ax.set_box_aspect(None, zoom=0.8)  # room for the axis labels inside the figure
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    title = f"Condition-averaged factors ({len(labels)} conditions"
    if bin_width_s is not None:
        title += f", {projected.shape[1] * bin_width_s:.2f} s"
    fig.suptitle(title + ")")  # a 3-D axes' own title can leave the figure
    markers = _marker_handles(event, k_event)
    if scale is None:
        handles = ax.get_legend_handles_labels()[0] + markers
        fig.legend(handles=handles, title=condition_title, loc="outside lower center",
                   ncol=3 if len(handles) > 4 else 2, fontsize=7, title_fontsize=7,
                   columnspacing=1.0, handlelength=1.5)
    else:
        bar = fig.colorbar(scale, ax=ax, shrink=0.6, pad=0.1)
        bar.set_label(condition_title)
        if not all(_is_number(v) for v in names):  # condition numbers, labelled by name
            ticks = np.unique(np.linspace(0, len(names) - 1, min(len(names), 6)).round()
                              .astype(int))
            bar.set_ticks(ticks, labels=[str(names[t]) for t in ticks])
        fig.legend(handles=markers, loc="outside lower center", ncol=len(markers))
    return save_figure(fig, out_stem, return_figure)


@paper_style
def plot_stitched_factors(sessions: dict[str, tuple[np.ndarray, np.ndarray]], out_stem: str | Path,
                          bin_width_s: float, window_start_offset_s: dict[str, float] | None = None,
                          event: str = "event", group: str = "",
                          return_figure: bool = False) -> SavedFigure:
    """A stitched group's sessions in their shared latent space: every session's
    condition-averaged factors projected on the same top principal components (fitted on all
    sessions' averages pooled), one colour per session, one line per condition.

    sessions: name -> (factors: trials x bins x factors (a.u.), conditions: one label per
    trial), all of one model and one number of bins; window_start_offset_s: name -> the window's
    start relative to the event ``event`` (s), for the time axis and the event marker.
    Panels: PC1 against PC2, and PC1 and PC2 against time from the event.
    """
    if not sessions:
        raise ValueError("no sessions to plot")
    names = list(sessions)
    averaged = [_condition_means(*sessions[name])[0] for name in names]
    n_bins = {a.shape[1] for a in averaged}
    if len(n_bins) != 1 or len({a.shape[2] for a in averaged}) != 1:
        raise ValueError("the sessions' factors differ in bins or dimensions: "
                         f"{[a.shape[1:] for a in averaged]}")
    projected, explained = _projected_averages(averaged, 2)
    if projected[0].shape[-1] < 2:
        raise ValueError("need at least 2 principal components (factors and averages)")
    starts = {name: (window_start_offset_s or {}).get(name) for name in names}
    colors = condition_colors(len(names))
    fig = new_figure(DOUBLE_COLUMN_IN, 2.6)
    ax_plane, ax_pc1, ax_pc2 = fig.subplots(1, 3)
    axis_names = [f"PC{i + 1} ({100 * e:.0f}% var.)" for i, e in enumerate(explained)]
    for name, traj, color in zip(names, projected, colors):
        k_event = event_bin(starts[name], bin_width_s, traj.shape[1])
        offset = starts[name] if starts[name] is not None else 0.0
        times = offset + (np.arange(traj.shape[1]) + 0.5) * bin_width_s
        for c, cond in enumerate(traj):
            label = f"{name} ({len(traj)} cond.)" if c == 0 else None
            ax_plane.plot(cond[:, 0], cond[:, 1], color=color, lw=0.7, alpha=0.8, label=label)
            ax_pc1.plot(times, cond[:, 0], color=color, lw=0.7, alpha=0.8)
            ax_pc2.plot(times, cond[:, 1], color=color, lw=0.7, alpha=0.8)
        _event_markers(ax_plane, [cond[:, :2] for cond in traj], [color] * len(traj), k_event)
    ax_plane.set_xlabel(axis_names[0])
    ax_plane.set_ylabel(axis_names[1])
    ax_plane.set_title("Shared latent space")
    known = any(v is not None for v in starts.values())
    for ax, axis_name in ((ax_pc1, axis_names[0]), (ax_pc2, axis_names[1])):
        if known:
            ax.axvline(0, color="k", lw=0.6, ls="--")
        ax.set_xlabel(f"Time from {event} (s)" if known else "Time in window (s)")
        ax.set_ylabel(axis_name)
    ax_pc1.set_title("PC1 over time")
    ax_pc2.set_title("PC2 over time")
    k_any = 0 if known else None
    handles = ax_plane.get_legend_handles_labels()[0] + _marker_handles(event, k_any)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))
    fig.suptitle(f"Stitched model{' ' + group if group else ''}: condition-averaged factors "
                 f"of {len(names)} sessions on shared principal components")
    return save_figure(fig, out_stem, return_figure)


# ------------------------------------------------------------------ population-based training

@paper_style
def plot_pbt_progress(table: pd.DataFrame, out_stem: str | Path, log_scale: tuple[str, ...] = (),
                      return_figure: bool = False) -> SavedFigure:
    """One panel per searched setting and one for the smoothed validation loss (nats per
    trial), against generation; each member is a point at the end of each generation, joined to
    its parent's point of the generation before, coloured by the first-generation member it
    descends from (its lineage). ``table``: ``pbt/generations.tsv`` (columns generation,
    member, parent, founder, the settings, valid_loss_smooth); ``log_scale``: settings drawn
    on a log axis."""
    fixed = {"dataset", "generation", "member", "parent", "founder", "valid_loss_smooth", "why",
             "epochs_run", "seconds", "selected"}
    settings = [c for c in table.columns if c not in fixed]
    panels = settings + ["valid_loss_smooth"]
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = new_figure(DOUBLE_COLUMN_IN, 2.0 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    colors = condition_colors(int(table["founder"].max()) + 1)
    index = table.set_index(["generation", "member"])
    for ax, column in zip(axes, panels):
        for (generation, member), row in index.iterrows():
            color = colors[int(row["founder"])]
            ax.plot(generation, row[column], "o", ms=3, color=color)
            if generation > 0 and (generation - 1, row["parent"]) in index.index:
                before = index.loc[(generation - 1, row["parent"]), column]
                copied = row["parent"] != member
                ax.plot([generation - 1, generation], [before, row[column]], color=color,
                        lw=0.8, ls="--" if copied else "-")
        if "selected" in table and table["selected"].any():
            best = table[table["selected"].astype(bool)].iloc[0]
            ax.plot(best["generation"], best[column], "*", ms=9, color="k", zorder=5)
        if column in log_scale:
            ax.set_yscale("log")
        ax.set_title("smoothed validation loss" if column == "valid_loss_smooth" else column)
        ax.set_xlabel("Generation")
    axes[len(panels) - 1].set_ylabel("nats / trial")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Population-based training: solid = kept its state, dashed = copied a better "
                 "member; colour = lineage, star = selected", fontsize="small")
    return save_figure(fig, out_stem, return_figure)
