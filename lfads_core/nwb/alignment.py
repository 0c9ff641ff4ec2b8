"""Trial alignment: cut binned data into trials around an event, in the lfads-torch layout.

Output ``lfads_input.h5`` (arrays are trials x time bins x channels):

- ``{train,valid}_encod_data``: held-in units over the window (int32 counts).
- ``{train,valid}_recon_data``: held-in then held-out units over the window plus ``fp_bins``
  forward-prediction bins (int32 counts).
- ``{train,valid}_inds``: row of each trial in the source trials table (int64).
- ``{train,valid}_cond_idx``: condition index of each trial (int64).
- ``{train,valid}_behavior``: behaviour over the window (float32), if any is configured.
- ``{train,valid}_truth_{name}``: ground truth over window + forward bins (simulated data);
  rates in expected counts per bin.
- attrs: ``bin_width_s``, ``window_start_s``, ``window_end_s``, ``fp_bins``, ``n_heldin``,
  ``n_heldout``, ``source_sha256``.

The window is snapped to the bin grid: it starts at the bin edge nearest to
``event + window_start``. A trial is dropped (and counted, with the reason) if its event is
NaN, if its window (with forward bins) is not inside one valid (observed) interval or the
recording, or if its behaviour has a NaN in the window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..fileio import atomic_path, read_table, write_json
from ..values import split_list

log = logging.getLogger(__name__)

_TOLERANCE_S = 1e-9


@dataclass
class AlignSettings:
    """How to cut and split trials (the per-dataset settings of the sample sheet)."""

    align_event: str = "move_onset_time"
    window_start_ms: float = -250.0
    window_end_ms: float = 450.0
    fp_bins: int = 0
    heldout: str = "file"  # "file", "none" or a fraction such as "0.2"
    split: str = "file"  # "file" or "random"
    valid_fraction: float = 0.2
    seed: int = 0
    condition_columns: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, s: dict) -> "AlignSettings":
        return cls(align_event=s["align_event"], window_start_ms=float(s["window_start_ms"]),
                   window_end_ms=float(s["window_end_ms"]), fp_bins=int(s["fp_bins"]),
                   heldout=str(s["heldout"]), split=s["split"],
                   valid_fraction=float(s["valid_fraction"]), seed=int(s["seed"]),
                   condition_columns=tuple(split_list(s["condition_columns"])))


def window_bins(settings: AlignSettings, bin_width: float, where: str) -> tuple[int, int]:
    """``(offset, length)`` of the window in bins; the length must be a whole number of bins."""
    length_s = (settings.window_end_ms - settings.window_start_ms) / 1e3
    n = length_s / bin_width
    if length_s <= 0:
        raise InputDataError(where, "window_end_ms", "window end must be after window start")
    if abs(n - round(n)) > 1e-6:
        raise InputDataError(where, "window_start_ms",
                             f"window length {length_s * 1e3:g} ms is not a whole number of "
                             f"{bin_width * 1e3:g} ms bins")
    return settings.window_start_ms / 1e3, int(round(n))


def inside_intervals(starts: np.ndarray, stops: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """True where ``[start, stop]`` lies inside one of the (sorted, disjoint) ``intervals``."""
    if len(intervals) == 0:
        return np.zeros(len(starts), dtype=bool)
    i = np.searchsorted(intervals[:, 0], starts + _TOLERANCE_S, side="right") - 1
    ok = i >= 0
    i = np.clip(i, 0, None)
    return ok & (starts >= intervals[i, 0] - _TOLERANCE_S) & (stops <= intervals[i, 1] + _TOLERANCE_S)


def heldout_mask(units: pd.DataFrame, mode: str, seed: int) -> np.ndarray:
    """Which units are held out: the file's ``heldout`` column, none, or a seeded fraction."""
    if mode == "file":
        return units["heldout"].to_numpy(dtype=bool)
    if mode == "none":
        return np.zeros(len(units), dtype=bool)
    n_out = int(round(float(mode) * len(units)))
    mask = np.zeros(len(units), dtype=bool)
    mask[np.random.default_rng(seed).permutation(len(units))[:n_out]] = True
    return mask


def assign_split(trials: pd.DataFrame, settings: AlignSettings, where: str) -> np.ndarray:
    """``"train"``, ``"valid"`` or a drop reason for each (kept) trial."""
    if settings.split == "random":
        n = len(trials)
        n_valid = int(round(settings.valid_fraction * n))
        labels = np.full(n, "train", dtype=object)
        labels[np.random.default_rng(settings.seed).permutation(n)[:n_valid]] = "valid"
        return labels
    if "split" not in trials:
        raise InputDataError(where, "trials.split",
                             "split is 'file' but the trials table has no split column; "
                             "set split to 'random' for this dataset")
    names = trials["split"].astype(str).str.lower().map(
        {"train": "train", "val": "valid", "valid": "valid"})
    return names.fillna("split=" + trials["split"].astype(str)).to_numpy(dtype=object)


def condition_index(trials: pd.DataFrame, columns: tuple[str, ...], where: str) -> np.ndarray:
    """Integer condition per trial from the unique combinations of ``columns`` (0 if none)."""
    for column in columns:
        if column not in trials:
            raise InputDataError(where, f"trials.{column}",
                                 f"condition column missing; trial columns are {list(trials.columns)}")
    if not columns:
        return np.zeros(len(trials), dtype=np.int64)
    return trials.groupby(list(columns), sort=True, dropna=False).ngroup().to_numpy(np.int64)


def align_trials(binned_h5, out_h5, settings: AlignSettings, metadata_json=None) -> dict:
    """Cut ``binned.h5`` (see :func:`lfads_core.nwb.binning.bin_session`) into aligned trials.

    Writes ``out_h5`` (layout in the module docstring) and, if given, ``metadata_json`` (bin
    width, window, unit ids, trial ids, source checksum). Returns the alignment summary: kept
    and dropped trials and why.
    """
    where = str(binned_h5)
    with h5py.File(binned_h5, "r") as src:
        bin_width = float(src.attrs["bin_width"])
        t_start = float(src.attrs["t_start"])
        n_bins = int(src.attrs["n_bins"])
        offset_s, n_window = window_bins(settings, bin_width, where)
        n_total = n_window + settings.fp_bins
        trials = read_table(src["trials"])
        units = read_table(src["units"])
        valid_intervals = src["valid_intervals"][()]
        event = settings.align_event
        if event not in trials:
            raise InputDataError(where, f"trials.{event}", "alignment column missing")

        reason = np.where(trials["kept"].to_numpy(bool), "", trials["drop_reason"]).astype(object)
        event_times = trials[event].to_numpy(float)
        first_bin = np.round((event_times + offset_s - t_start) / bin_width)
        first_bin = np.where(np.isfinite(first_bin), first_bin, -1).astype(np.int64)
        win_start = t_start + first_bin * bin_width
        win_stop = t_start + (first_bin + n_total) * bin_width
        in_recording = (first_bin >= 0) & (first_bin + n_total <= n_bins)
        in_observed = inside_intervals(win_start, win_stop, valid_intervals)
        candidates = reason == ""
        reason[candidates & ~in_recording] = "window outside recording"
        reason[(reason == "") & ~in_observed] = "window outside obs_intervals"
        if candidates.any() and not (reason == "").any():
            raise InputDataError(
                where, "window_start_ms",
                f"the window {settings.window_start_ms:g}..{settings.window_end_ms:g} ms "
                f"(+{settings.fp_bins} forward bins) around '{event}' leaves the recording or "
                f"its observed intervals for every trial")

        behavior = {name: ds[()] for name, ds in src.get("behavior", {}).items()}
        behavior_columns = [c for ds in src.get("behavior", {}).values() for c in ds.attrs["columns"]]
        truth = {name: ds[()] for name, ds in src.get("truth", {}).items()}
        truth_units = {name: ds.attrs["unit"] for name, ds in src.get("truth", {}).items()}
        window_index = np.flatnonzero(reason == "")
        counts_ds = src["counts"][()]

        def cut(ds, rows, length):
            return np.stack([ds[first_bin[r]:first_bin[r] + length] for r in rows]) \
                if len(rows) else np.zeros((0, length) + ds.shape[1:], ds.dtype)

        if behavior:
            beh = np.concatenate([cut(ds, window_index, n_window) for ds in behavior.values()],
                                 axis=2)
            nan_rows = np.any(np.isnan(beh), axis=(1, 2))
            reason[window_index[nan_rows]] = "NaN behaviour in window"
        kept_rows = np.flatnonzero(reason == "")
        split = np.full(len(trials), "", dtype=object)
        split[kept_rows] = assign_split(trials.iloc[kept_rows], settings, where)
        dropped_by_split = kept_rows[(split[kept_rows] != "train") & (split[kept_rows] != "valid")]
        reason[dropped_by_split] = split[dropped_by_split]
        conditions = condition_index(trials, settings.condition_columns, where)

        heldout = heldout_mask(units, settings.heldout, settings.seed)
        channel_order = np.concatenate([np.flatnonzero(~heldout), np.flatnonzero(heldout)])
        n_heldin = int((~heldout).sum())
        arrays = {}
        for name in ("train", "valid"):
            rows = np.flatnonzero((reason == "") & (split == name))
            recon = cut(counts_ds, rows, n_total)[:, :, channel_order].astype(np.int32)
            arrays[f"{name}_encod_data"] = recon[:, :n_window, :n_heldin]
            arrays[f"{name}_recon_data"] = recon
            arrays[f"{name}_inds"] = rows.astype(np.int64)
            arrays[f"{name}_cond_idx"] = conditions[rows]
            if behavior:
                arrays[f"{name}_behavior"] = np.concatenate(
                    [cut(ds, rows, n_window) for ds in behavior.values()], axis=2)
            for tname, ds in truth.items():
                values = cut(ds, rows, n_total)
                if tname == "rates":
                    values = values[:, :, channel_order]
                    if truth_units[tname] == "Hz":
                        values = values * bin_width
                arrays[f"{name}_truth_{tname}"] = values.astype(np.float32)
        if len(arrays["train_inds"]) == 0:
            raise InputDataError(where, "split",
                                 f"no training trials left ({len(trials)} trials; drop reasons "
                                 f"{pd.Series(reason[reason != '']).value_counts().to_dict()})")
        attrs = {
            "bin_width_s": bin_width,
            "window_start_s": settings.window_start_ms / 1e3,
            "window_end_s": settings.window_end_ms / 1e3,
            "fp_bins": settings.fp_bins,
            "n_heldin": n_heldin,
            "n_heldout": int(heldout.sum()),
            "align_event": event,
            "source_sha256": src.attrs["source_sha256"],
        }
        metadata = {
            **attrs,
            "source": src.attrs["source"],
            "lfads_core_version": src.attrs["lfads_core_version"],
            "unit_ids": units["id"].to_numpy()[channel_order].tolist(),
            "heldout": heldout[channel_order].tolist(),
            "behavior_columns": behavior_columns,
            "trial_ids": {name: trials["id"].to_numpy()[arrays[f"{name}_inds"]].tolist()
                          for name in ("train", "valid")},
            "window_start_times_s": {name: win_start[arrays[f"{name}_inds"]].tolist()
                                     for name in ("train", "valid")},
        }

    with atomic_path(out_h5) as tmp:
        with h5py.File(tmp, "w") as out:
            for key, value in arrays.items():
                out.create_dataset(key, data=value, compression="gzip", compression_opts=1)
            out.attrs.update(attrs)
            out.attrs["behavior_columns"] = behavior_columns
        if metadata_json is not None:
            write_json(metadata, metadata_json)

    dropped = pd.Series(reason[reason != ""]).value_counts().to_dict()
    summary = {
        "trials_in_file": int(len(trials)),
        "train_trials": int(len(arrays["train_inds"])),
        "valid_trials": int(len(arrays["valid_inds"])),
        "dropped_trials": int(sum(dropped.values())),
        "drop_reasons": dropped,
        "n_bins_window": n_window,
        "fp_bins": settings.fp_bins,
        "n_heldin": n_heldin,
        "n_heldout": int(heldout.sum()),
        "spikes_in_trials": int(arrays["train_recon_data"].sum() + arrays["valid_recon_data"].sum()),
    }
    log.info("align: %d train, %d valid trials; dropped %s", summary["train_trials"],
             summary["valid_trials"], dropped or "none")
    return summary
