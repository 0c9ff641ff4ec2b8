"""Checks made when the workflow starts, before any job: each dataset's settings against its
NWB file's metadata, so that a setting the file cannot satisfy is named at once, with the
sheet, the dataset, the field and the file, rather than by a later stage.

Only metadata and small tables are read (h5py): the units table and the trials table (the
one the setting ``trials_table`` names under ``intervals/``; a wrong name is an error listing
the tables there are), the spike
index, observation intervals and the datasets' shapes, types and stored sizes; never the
spike times or behaviour samples. Counts of usable trials are upper bounds where the file
must be read to know more (the recording's end needs the last spike; NaN behaviour needs the
samples): the check never refuses a dataset the stages would accept, and the stages check
again.

Minimum trials (after every filter, window and split), from what the later stages need:

- ``train_lfads``: 1 training trial, and 1 validation trial for the validation loss that
  drives early stopping, the learning-rate schedule and model selection.
- ``evaluate``: 1 test trial where ``test_fraction`` asks for test trials (the metrics are
  scored on them; else on the validation trials).
- ``decode_behavior`` (with behaviour): as many training trials as
  ``evaluation.decoding.inner_folds`` (the decoders' ridge penalty is chosen by that many
  folds over the training trials).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..nwb import reading as nr
from ..nwb.alignment import (SPLITS, AlignSettings, assign_split, heldout_warning, resolved_heldout,
                             resolved_split, test_fraction_value, trial_window_flags, window_bins)
from ..nwb.binning import make_grid
from ..nwb.ingest import (DEFAULT_TRIALS_TABLE, IngestSettings, hidden_column_warning,
                          last_spike, read_trials, read_units, trial_drop_reasons,
                          unit_drop_reasons)
from ..nwb.intervals import inside_intervals, intersect_intervals, merge_intervals
from ..nwb.segments import (DEFAULT_SPLIT_BLOCKS, block_warnings, check_split_counts,
                            is_continuous, segment_bins, segment_recording)
from ..values import split_list



def _check_trials_and_behavior(f, nwb, where: str, ingest, align):
    """The trials table (``trials_table``) with its condition and ``split`` columns, and the
    behaviour series, of a dataset's file: ``(read trials, resolved split)``."""
    read = read_trials(f, nwb, ingest.align_event, ingest.trials_table)
    trials, table = read.table, read.name
    for column in align.condition_columns:
        if column not in trials:
            raise InputDataError(where, "condition_columns", f"{nwb}: trials table '{table}' has "
                                 f"no column '{column}'; its columns are {list(trials.columns)}")
    split = resolved_split(align.split, trials)
    if split == "file" and "split" not in trials:
        raise InputDataError(where, "split", f"split is 'file' but the trials table '{table}' of "
                             f"{nwb} has no 'split' column; set split to 'random' for this "
                             "dataset")
    for series in ingest.behavior:
        group = nr.find_series(f, series, nwb)
        nr.check_series(group, nwb, f"processing/{nr.BEHAVIOR_MODULE}/{series}")
    return read, split

def minimum_trials(settings: dict, config: dict) -> list[tuple[str, str, int, str]]:
    """``(stage, "train" | "valid" | "test", n, why)``: the trials each later stage needs."""
    needs = [("train_lfads", "train", 1, "to train on"),
             ("train_lfads", "valid", 1, "for the validation loss")]
    if test_fraction_value(settings.get("test_fraction", 0)) > 0:
        needs.append(("evaluate", "test", 1, "to score the metrics on (test_fraction > 0)"))
    if split_list(settings["behavior"]):
        inner = int(config["evaluation"]["decoding"]["inner_folds"])
        needs.append(("decode_behavior", "train", inner,
                      f"for the decoders' {inner} inner folds, which choose the ridge penalty "
                      "(evaluation.decoding.inner_folds)"))
    return needs


def check_window(settings: dict, where: str) -> tuple[float, int]:
    """Window order and whole bins, from the settings alone: ``(offset_s, n_window)``."""
    align = AlignSettings.from_settings(settings)
    if align.window_end_ms <= align.window_start_ms:
        raise InputDataError(where, "window_end_ms", f"window end {align.window_end_ms:g} ms "
                             f"must be after window start {align.window_start_ms:g} ms")
    if is_traces(settings):  # bins of frames: their width is the file's (_check_traces_file)
        return align.window_start_ms / 1e3, 0
    return window_bins(align, settings["bin_width_ms"] / 1e3, where)


def _in_file(exc: InputDataError, where: str, setting: str | None = None) -> InputDataError:
    """An error found in the file, re-raised naming the sheet's dataset (and the setting)."""
    extra = f", setting '{setting}'" if setting else ""
    return InputDataError(exc.path, exc.field, f"{exc.reason} [{where}{extra}]")


def check_dataset(name: str, settings: dict, sheet, config: dict, read_file: bool = True
                  ) -> dict:
    """Check one dataset; returns what it found (upper bounds of the usable trials and units).
    Raises :class:`InputDataError` naming the sheet, the dataset, the field and the file."""
    where = f"{sheet} (dataset '{name}')"
    continuous = is_continuous(settings)
    try:
        if continuous:
            offset_s = 0.0
            n_window, n_overlap = segment_bins(settings["segment_length_ms"],
                                               settings.get("segment_overlap_ms", "auto"),
                                               settings["bin_width_ms"] / 1e3, where)
        else:
            offset_s, n_window = check_window(settings, where)
    except InputDataError as exc:
        raise InputDataError(where, exc.field, f"{exc.reason} (file {settings['nwb']})")
    found = {"n_window": n_window}
    if continuous:
        if settings["split"] == "file":
            raise InputDataError(where, "split", "split 'file' reads a trials table; a continuous "
                                 "dataset (segment_length_ms) is split by blocks of time "
                                 f"(split_blocks): set split to auto (file {settings['nwb']})")
        found.update(segments=True, n_overlap=n_overlap,
                     split_blocks=int(settings.get("split_blocks", DEFAULT_SPLIT_BLOCKS)))
    if not read_file:
        return found
    nwb = Path(settings["nwb"])
    try:
        with nr.open_nwb_h5(nwb) as f:
            found.update(_check_file(f, nwb, settings, config, where, offset_s, n_window))
    except InputDataError as exc:
        if exc.path == where:
            raise
        if exc.field == "trials_table":
            raise _where_file(exc, where)
        raise _in_file(exc, where, _setting_of(exc.field))
    return found


def _setting_of(field: str) -> str | None:
    """The sheet setting behind a file field, where there is one."""
    if field.startswith("processing/ophys/"):
        return "traces"
    if field.startswith("processing/"):
        return "behavior"
    return None


def _where_file(exc: InputDataError, where: str) -> InputDataError:
    """A file error about a sheet setting itself (``trials_table``): named as a setting of
    the sheet's dataset, with the file."""
    return InputDataError(where, exc.field, f"{exc.path}: {exc.reason}")


def _check_file(f, nwb: Path, settings: dict, config: dict, where: str, offset_s: float,
                n_window: int) -> dict:
    if is_traces(settings):
        return _check_traces_file(f, nwb, settings, config, where)
    ingest = IngestSettings.from_settings(settings)
    align = AlignSettings.from_settings(settings)
    units = read_units(f, nwb)
    if align.segment_length_ms is not None:
        return _check_continuous(f, nwb, settings, config, where, ingest, align, units, n_window)
    read, split = _check_trials_and_behavior(f, nwb, where, ingest, align)
    trials, table = read.table, read.name

    # Units: the stop of the last trial bounds the recording from below, so rates (where the
    # file has no obs_intervals) are upper bounds and the kept units a superset.
    stop = float(np.nanmax(trials["stop_time"]))
    notes = list(read.warnings)
    kept = _check_units(units, nwb, ingest, align, where, stop, notes)
    n_units, n_heldout, heldout_mode, no_heldout, valid = kept

    # Trials: ingestion's filters, then alignment's windows and split.
    reason = trial_drop_reasons(trials, ingest, nwb)
    width = settings["bin_width_ms"] / 1e3
    first = np.round((trials[ingest.align_event].to_numpy(float) + offset_s) / width)
    first = np.where(np.isfinite(first), first, -1)
    win_start, win_stop = first * width, (first + n_window + align.fp_bins) * width
    reason[(reason == "") & (first < 0)] = "window outside recording"
    reason[(reason == "") & ~inside_intervals(win_start, win_stop, valid)] = \
        "window outside obs_intervals"
    outside, _ = trial_window_flags(trials, win_start, win_stop)
    if align.outside_trial == "drop":
        reason[(reason == "") & outside] = "window outside trial"
    kept = np.flatnonzero(reason == "")
    labels = assign_split(trials.iloc[kept], align, where) if len(kept) else np.array([])
    reason[kept] = np.where(np.isin(labels, SPLITS), "", labels)
    counts = {name: int(np.sum(labels == name)) for name in SPLITS}
    drops = pd.Series(reason[reason != ""]).value_counts().to_dict()
    in_table = "" if table == DEFAULT_TRIALS_TABLE else f" (table '{table}')"
    for stage, which, need, why in minimum_trials(settings, config):
        if counts[which] >= need:
            continue
        field = _short_field(which, split, drops, len(kept), need)
        raise InputDataError(
            where, field,
            f"{stage} needs at least {need} {which} trials {why}, but at most "
            f"{counts['train']} train, {counts['valid']} valid and {counts['test']} test trials "
            f"of the {len(trials)} in {nwb}{in_table} are left (window "
            f"{align.window_start_ms:g}..{align.window_end_ms:g} ms + {align.fp_bins} forward "
            f"bins around '{align.align_event}', split '{split}'; dropped: {drops or 'none'})")
    return {"units": n_units, "heldout_units": n_heldout, **counts,
            "windows_outside_trial": int(np.sum(outside & (reason == ""))), "dropped": drops,
            "split": split, "heldout": heldout_mode, "no_heldout": no_heldout,
            "trials_table": table, "warnings": notes}


def _check_units(units, nwb: Path, ingest: IngestSettings, align: AlignSettings, where: str,
                 stop: float, notes: list) -> tuple:
    """The units ingestion keeps and alignment holds out, and where all kept units were
    observed (``stop``: the recording's end where the file has no ``obs_intervals``):
    ``(n_units, n_heldout, heldout mode, why none is held out or None, observed intervals)``;
    a warning about the units table goes to ``notes``."""
    if units.hidden_columns:
        notes.insert(0, hidden_column_warning("units", units.hidden_columns,
                                              units.skipped_columns))
    if units.obs is not None:
        data, ends = units.obs
        all_obs = nr.read(data, nwb, "units.obs_intervals").astype(float)
        starts = np.concatenate([[0], ends[:-1]])
        per_unit = [merge_intervals(all_obs[s:e]) for s, e in zip(starts, ends)]
    else:
        per_unit = [np.array([[0.0, stop]])] * len(units.table)
    observed = np.array([np.sum(np.diff(iv, axis=1)) for iv in per_unit])
    kept_units = unit_drop_reasons(units, observed, ingest, nwb) == ""
    heldout = units.table["heldout"].to_numpy(bool)[kept_units]
    n_units = int(kept_units.sum())
    heldout_mode = resolved_heldout(align.heldout, units.heldout_column)
    if heldout_mode == "file" and heldout.all():
        raise InputDataError(where, "heldout", f"heldout is '{align.heldout}' and {nwb}'s 'heldout' "
                             f"column holds out all {n_units} kept units, leaving none as input")
    n_heldout = {"file": int(heldout.sum()), "none": 0}.get(heldout_mode)
    if n_heldout is None:
        n_heldout = int(round(float(heldout_mode) * n_units))
        if n_heldout >= n_units:
            raise InputDataError(where, "heldout", f"a fraction {heldout_mode} of the {n_units} "
                                 f"kept units of {nwb} holds out all of them, leaving none as input")
    no_heldout = heldout_warning(heldout_mode, n_units, units.heldout_column) \
        if n_heldout == 0 and heldout_mode != "none" else None

    valid = np.array([[0.0, np.inf]])
    if units.obs is not None:
        for k in np.flatnonzero(kept_units):
            valid = intersect_intervals(valid, per_unit[k])
    return n_units, n_heldout, heldout_mode, no_heldout, valid


def _check_continuous(f, nwb: Path, settings: dict, config: dict, where: str,
                      ingest: IngestSettings, align: AlignSettings, units, n_window: int) -> dict:
    """A continuous recording: its segments per split, exactly as alignment will cut them
    (the recording's end is its last spike, as ingestion takes it; one value read per unit)."""
    for series in ingest.behavior:
        group = nr.find_series(f, series, nwb)
        nr.check_series(group, nwb, f"processing/{nr.BEHAVIOR_MODULE}/{series}")
    stop = last_spike(units, nwb)
    notes = []
    n_units, n_heldout, heldout_mode, no_heldout, valid = _check_units(
        units, nwb, ingest, align, where, stop, notes)
    width = settings["bin_width_ms"] / 1e3
    t_start, n_bins = make_grid(0.0, stop, width)
    if units.obs is None:  # as ingestion: the recording, to its last spike
        valid = np.array([[0.0, stop]])
    _, n_overlap = segment_bins(align.segment_length_ms, align.segment_overlap_ms, width, where)
    try:
        seg = segment_recording(valid, t_start, width, n_bins, n_window, n_overlap,
                                align.fp_bins, align.split_blocks, align.valid_fraction,
                                align.test_fraction, align.seed, where)
        needs = [(which, need, f"by {stage} {why}")
                 for stage, which, need, why in minimum_trials(settings, config)]
        check_split_counts(seg, needs, width, where)
    except InputDataError as exc:
        raise InputDataError(where, exc.field, f"{exc.reason} (file {nwb})")
    notes += block_warnings(seg)
    return {"units": n_units, "heldout_units": n_heldout, **seg.counts,
            "windows_outside_trial": 0, "dropped": {}, "split": "blocks",
            "heldout": heldout_mode, "no_heldout": no_heldout, "trials_table": None,
            "segments": True, "n_overlap": n_overlap, "split_blocks": align.split_blocks,
            "warnings": notes}


def _short_field(which: str, split: str, drops: dict, n_kept: int, need: int) -> str:
    """The setting most likely at fault for too few trials."""
    if n_kept >= need:
        if which == "test":
            return "test_fraction"
        return "valid_fraction" if split == "random" and which == "valid" else "split"
    setting = {"trial_filter": "trial_filter", "window outside recording": "window_start_ms",
               "window outside obs_intervals": "window_start_ms",
               "window outside trial": "outside_trial"}
    for cause, _ in sorted(drops.items(), key=lambda kv: -kv[1]):
        if cause in setting:
            return setting[cause]
        if cause.startswith("split="):
            return "split"
    return "nwb"


def check_datasets(datasets: dict[str, dict], sheet, config: dict,
                   simulated_dir: str = "resources/simulated") -> dict[str, dict]:
    """Check every dataset of the sheet; a simulated file not yet written (the ``simulate``
    rule writes it) gets only the checks that need no file."""
    found = {}
    for name, settings in datasets.items():
        path = Path(settings["nwb"])
        pending = path.parent == Path(simulated_dir) and not path.is_file()
        found[name] = check_dataset(name, settings, sheet, config, read_file=not pending)
    return found


# ------------------------------------------------------------------ calcium imaging

def is_traces(settings: dict) -> bool:
    """Whether a dataset models calcium imaging traces (setting ``traces``), not spikes."""
    return bool(str(settings.get("traces", "") or "").strip())


def _check_traces_file(f, nwb: Path, settings: dict, config: dict, where: str) -> dict:
    """:func:`_check_file` for calcium traces: the series and their ROI tables, ``roi_filter``,
    held-out ROIs, the frame times (read: one number per frame) and the trial windows on the
    grid of ``bin_frames`` frames, and the trials each later stage needs."""
    from ..nwb.binning import trace_grid
    from ..nwb.imaging import frame_period, read_planes
    from ..nwb.ingest import apply_query

    ingest = IngestSettings.from_settings(settings)
    align = AlignSettings.from_settings(settings)
    planes, rois = read_planes(f, split_list(ingest.traces), nwb)
    read, split = _check_trials_and_behavior(f, nwb, where, ingest, align)
    trials, table = read.table, read.name
    kept = apply_query(rois, ingest.roi_filter, nwb, "roi_filter")
    n_units = int(kept.sum())
    if not n_units:
        raise InputDataError(where, "roi_filter", f"roi_filter {ingest.roi_filter!r} keeps none "
                             f"of the {len(rois)} ROIs of {ingest.traces!r} in {nwb}")
    heldout_column = any(p.heldout_column for p in planes)
    heldout_mode = resolved_heldout(align.heldout, heldout_column)
    n_heldout = {"file": int(rois["heldout"].to_numpy(bool)[kept].sum()), "none": 0}.get(
        heldout_mode)
    if n_heldout is None:
        n_heldout = int(round(float(heldout_mode) * n_units))
    if n_heldout >= n_units:
        raise InputDataError(where, "heldout", f"heldout '{align.heldout}' holds out all "
                             f"{n_units} kept ROIs of {nwb}, leaving none as input")
    no_heldout = heldout_warning(heldout_mode, n_units, heldout_column).replace(
        "units table", "plane segmentation").replace("units", "ROIs") \
        if n_heldout == 0 and heldout_mode != "none" else None

    times = planes[0].times
    period = frame_period(times)
    t_start, width, n_bins = trace_grid(float(times[0]), period, int(settings["bin_frames"]),
                                        (float(times[-1]) - float(times[0])) / period + 1)
    offset_s, n_window = window_bins(align, width, where, snap=True)
    n_total = n_window + align.fp_bins
    reason = trial_drop_reasons(trials, ingest, nwb, float(times[-1] + period / 2))
    first = np.round((trials[ingest.align_event].to_numpy(float) + offset_s - t_start) / width)
    first = np.where(np.isfinite(first), first, -1)
    win_start = t_start + first * width
    win_stop = win_start + n_total * width
    reason[(reason == "") & ((first < 0) | (first + n_total > n_bins))] = \
        "window outside recording"
    outside, _ = trial_window_flags(trials, win_start, win_stop)
    if align.outside_trial == "drop":
        reason[(reason == "") & outside] = "window outside trial"
    kept_trials = np.flatnonzero(reason == "")
    labels = assign_split(trials.iloc[kept_trials], align, where) if len(kept_trials) \
        else np.array([])
    reason[kept_trials] = np.where(np.isin(labels, SPLITS), "", labels)
    counts = {name: int(np.sum(labels == name)) for name in SPLITS}
    drops = pd.Series(reason[reason != ""]).value_counts().to_dict()
    for stage, which, need, why in minimum_trials(settings, config):
        if counts[which] >= need:
            continue
        raise InputDataError(
            where, _short_field(which, split, drops, len(kept_trials), need),
            f"{stage} needs at least {need} {which} trials {why}, but at most "
            f"{counts['train']} train, {counts['valid']} valid and {counts['test']} test trials "
            f"of the {len(trials)} in {nwb} are left (window {align.window_start_ms:g}.."
            f"{align.window_end_ms:g} ms snapped to {n_window} bins of {width * 1e3:.4g} ms + "
            f"{align.fp_bins} forward bins around '{align.align_event}', split '{split}'; "
            f"dropped: {drops or 'none'})")
    bins = (f"{n_window} bins of {int(settings['bin_frames'])} frame"
            f"{'s' if int(settings['bin_frames']) > 1 else ''} ({width * 1e3:.4g} ms at "
            f"{1 / period:.4g} Hz; bin_width_ms does not apply to traces) + {align.fp_bins} "
            "forward")
    return {"units": n_units, "heldout_units": n_heldout, **counts, "n_window": n_window,
            "windows_outside_trial": int(np.sum(outside & (reason == ""))), "dropped": drops,
            "split": split, "heldout": heldout_mode, "no_heldout": no_heldout,
            "trials_table": table, "warnings": list(read.warnings), "kind": "traces",
            "channel_name": "ROIs", "bins_text": bins, "traces": ingest.traces}


#: Likelihoods for calcium traces (``lfads.model.likelihood``); poisson is for spike counts.
TRACE_LIKELIHOODS = ("gamma", "zig", "gaussian")


def check_trace_likelihoods(datasets: dict[str, dict], models: dict[str, list[str]],
                            lfads_settings: dict) -> None:
    """Stop a model of calcium traces whose likelihood is still ``poisson`` (meant for spike
    counts), naming the setting: ``lfads.model.likelihood`` or the model's override."""
    for (model, run), settings in lfads_settings.items():
        traces = [d for d in models.get(model, []) if d in datasets and is_traces(datasets[d])]
        likelihood = settings["model"].get("likelihood", "poisson")
        if traces and likelihood == "poisson":
            raise InputDataError(
                "config", "lfads.model.likelihood",
                f"model '{model}' (run '{run}') learns calcium traces ({', '.join(traces)}: "
                f"setting 'traces'), but its likelihood is poisson, for spike counts; set "
                f"lfads.model.likelihood (or lfads.overrides.{model}.model.likelihood) to one "
                f"of {', '.join(TRACE_LIKELIHOODS)}: gamma for fluorescence or dF/F, zig for "
                "deconvolved events")
