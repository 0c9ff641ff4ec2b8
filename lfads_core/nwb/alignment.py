"""Trial alignment: cut binned data into trials around an event, in the lfads-torch layout.

Output ``lfads_input.h5`` (arrays are trials x time bins x channels):

- ``{split}_encod_data``: held-in units over the window (int32 counts), for each split
  ``train``, ``valid`` and, where there are test trials, ``test``.
- ``{split}_recon_data``: held-in then held-out units over the window plus ``fp_bins``
  forward-prediction bins (int32 counts).
- ``{split}_inds``: row of each trial in the source trials table (int64).
- ``{split}_cond_idx``: condition index of each trial (int64): ``k`` is the ``k``-th
  combination of the ``condition_columns``' values in sorted order, listed in the metadata
  JSON's ``conditions`` (``columns``, and ``values``: one list of values per index).
- ``{split}_behavior``: behaviour over the window (float32), if any is configured.
- ``{split}_truth_{name}``: ground truth over window + forward bins (simulated data);
  rates in expected counts per bin.

Splits: training reads ``train``; every choice made while training (early stopping, the
learning-rate plateau, sweep and PBT selection) reads ``valid``; nothing in training reads
``test``, so scores on the test trials are scores on trials no choice saw.
- attrs: ``bin_width_s``, ``window_start_offset_s`` and ``window_end_offset_s`` (the window's
  edges relative to the alignment event), ``fp_bins``, ``n_heldin``,
  ``n_heldout``, ``align_event``, ``trials_table`` (the table under the NWB file's
  ``intervals/`` the trials came from), ``source_sha256``.

The metadata JSON (``lfads_input.json``) repeats the attrs and adds, among others,
``window_start_times_s``: each split's windows' start times on the recording's clock (s).

The window is snapped to the bin grid: it starts at the bin edge nearest to
``event + window_start``. A trial is dropped (and counted, with the reason) if its event is
NaN, if its window (with forward bins) is not inside one valid (observed) interval or the
recording, or if its behaviour has a NaN in the window. Windows that leave their trial's own
``[start_time, stop_time]`` or reach into the next trial are counted, with a warning, and
dropped with ``outside_trial: drop``.

A continuous recording (the setting ``segment_length_ms``) is cut into overlapping segments of
its observed time instead, split by blocks of time, in the same layout
(:mod:`lfads_core.nwb.segments`).

Counts are made from ``binned.h5``'s per-spike bin indices, one unit at a time, and written a
block of trials at a time, so memory grows with the trials cut, not with the recording.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..fileio import atomic_path, read_table, write_json
from ..values import ms_to_bins, split_list
from .binning import WindowCounts, bin_centres, dense_block, sample_series, window_values
from .imaging import KIND_TRACES, kind_of
from .intervals import TOLERANCE_S, inside_intervals

log = logging.getLogger(__name__)

OUTSIDE_TRIAL = ("warn", "drop")
SPLITS = ("train", "valid", "test")
#: The file's split labels (lower case) of each split under ``split: file``: NLB's by default.
DEFAULT_SPLIT_LABELS = "train=train; valid=val,valid; test=test"
BLOCK_ENTRIES = 1 << 24  # counts per block of trials written at once
PASS_ENTRIES = 1 << 23  # spikes (about) counted per pass of windows (12 bytes each)
#: The window's edges relative to the alignment event (s), as lfads_input.h5's attrs and
#: lfads_input.json name them -> their names in files of earlier versions
WINDOW_OFFSET_KEYS = {"window_start_offset_s": "window_start_s",
                      "window_end_offset_s": "window_end_s"}


def window_offsets_s(attrs) -> tuple[float, float]:
    """``(start, end)`` of the window relative to the alignment event (s, NaN where absent)
    from lfads_input.h5's attrs, lfads_input.json or any file that records them; files of
    earlier versions name them ``window_start_s`` and ``window_end_s``."""
    values = []
    for key, old in WINDOW_OFFSET_KEYS.items():
        value = attrs[key] if key in attrs else attrs.get(old, np.nan)
        values.append(float(value))
    return values[0], values[1]


@dataclass
class AlignSettings:
    """How to cut and split trials (the per-dataset settings of the sample sheet)."""

    align_event: str = "move_onset_time"
    window_start_ms: float = -250.0
    window_end_ms: float = 450.0
    fp_bins: int = 0
    heldout: str = "auto"  # "auto", "file", "none" or a fraction such as "0.2"
    split: str = "auto"  # "auto", "file" or "random"
    valid_fraction: float = 0.2
    test_fraction: float = 0.0  # of the kept trials; under split "file" drawn from the training ones
    split_labels: str = DEFAULT_SPLIT_LABELS  # split "file": the file's labels of each split
    seed: int = 0
    condition_columns: tuple[str, ...] = ()
    outside_trial: str = "warn"  # windows leaving their trial: "warn" (keep) or "drop"
    # A continuous recording: segments of this length instead of trials (None: trials), see
    # lfads_core.nwb.segments
    segment_length_ms: float | None = None
    segment_overlap_ms: float | str = "auto"  # "auto": a fifth of the segment, whole bins
    split_blocks: int = 10  # contiguous blocks of time split into train / valid / test

    @classmethod
    def from_settings(cls, s: dict) -> "AlignSettings":
        return cls(align_event=s["align_event"], window_start_ms=float(s["window_start_ms"]),
                   window_end_ms=float(s["window_end_ms"]), fp_bins=int(s["fp_bins"]),
                   heldout=str(s["heldout"]), split=s["split"],
                   valid_fraction=float(s["valid_fraction"]),
                   test_fraction=test_fraction_value(s.get("test_fraction", 0.0)),
                   split_labels=s.get("split_labels", DEFAULT_SPLIT_LABELS), seed=int(s["seed"]),
                   condition_columns=tuple(split_list(s["condition_columns"])),
                   outside_trial=s.get("outside_trial", "warn"),
                   segment_length_ms=None if s.get("segment_length_ms") in (None, "")
                   else float(s["segment_length_ms"]),
                   segment_overlap_ms=s.get("segment_overlap_ms", "auto"),
                   split_blocks=int(s.get("split_blocks", 10)))


def test_fraction_value(value) -> float:
    """``test_fraction`` as a number: ``auto`` not resolved by the workflow (which knows
    whether a sweep or PBT selects; :func:`lfads_core.workflow.settings.load_dataset_sheet`)
    means no test trials."""
    return 0.0 if value == "auto" else float(value)


def window_bins(settings: AlignSettings, bin_width: float, where: str, snap: bool = False
                ) -> tuple[float, int]:
    """``(start_s, n_bins)``: the window's start relative to the event (s) and its length in
    bins of ``bin_width`` (s), which must be a whole number; with ``snap`` (frames of calcium
    imaging, whose period is no whole number of ms) the nearest whole number, at least 1."""
    length_ms = settings.window_end_ms - settings.window_start_ms
    n = ms_to_bins(length_ms, bin_width)
    if length_ms <= 0:
        raise InputDataError(where, "window_end_ms", "window end must be after window start")
    if snap:
        return settings.window_start_ms / 1e3, max(1, int(round(n)))
    if abs(n - round(n)) > 1e-6:
        raise InputDataError(where, "window_start_ms",
                             f"window length {length_ms:g} ms is not a whole number of "
                             f"{bin_width * 1e3:g} ms bins")
    return settings.window_start_ms / 1e3, int(round(n))


#: ``heldout: auto`` on a file whose units table has no ``heldout`` column
AUTO_HELDOUT_FRACTION = 0.2


def resolved_heldout(mode: str, heldout_column: bool) -> str:
    """``heldout`` as ``file``, ``none`` or a fraction: ``auto`` is ``file`` where the units
    table has a ``heldout`` column, else a seeded :data:`AUTO_HELDOUT_FRACTION` of the units."""
    if mode == "auto":
        return "file" if heldout_column else str(AUTO_HELDOUT_FRACTION)
    return str(mode)


def resolved_split(mode: str, trials: pd.DataFrame) -> str:
    """``split`` as ``file`` or ``random``: ``auto`` is ``file`` where the trials table has a
    ``split`` column, else ``random``."""
    if mode == "auto":
        return "file" if "split" in trials else "random"
    return mode


def heldout_mask(units: pd.DataFrame, mode: str, seed: int) -> np.ndarray:
    """Which units are held out (``mode`` as :func:`resolved_heldout` gives it): the file's
    ``heldout`` column, none, or a seeded fraction."""
    if mode == "file":
        return units["heldout"].to_numpy(dtype=bool)
    if mode == "none":
        return np.zeros(len(units), dtype=bool)
    n_out = int(round(float(mode) * len(units)))
    mask = np.zeros(len(units), dtype=bool)
    mask[np.random.default_rng(seed).permutation(len(units))[:n_out]] = True
    return mask


def split_label_map(text: str, where) -> dict[str, str]:
    """The file's split labels (lower case) -> ``train``, ``valid`` or ``test``, from
    ``"train=train; valid=val,valid; test=test"`` (each split, ``=``, its labels)."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        split, sep, labels = part.partition("=")
        split = split.strip()
        if not sep or split not in SPLITS:
            raise InputDataError(where, "split_labels", f"'{part}' is not '<split>=<label>,...' with "
                                 f"a split of {list(SPLITS)} (the default: '{DEFAULT_SPLIT_LABELS}')")
        for label in filter(None, (x.strip().lower() for x in labels.split(","))):
            if mapping.setdefault(label, split) != split:
                raise InputDataError(where, "split_labels", f"label '{label}' is given to both "
                                     f"{mapping[label]} and {split}")
    return mapping


def assign_split(trials: pd.DataFrame, settings: AlignSettings, where) -> np.ndarray:
    """``"train"``, ``"valid"``, ``"test"`` or a drop reason (``split=<label>``) for each kept
    trial.

    ``random`` (and ``auto`` without a ``split`` column): a seeded ``valid_fraction`` of the
    trials is valid and a ``test_fraction`` test (the valid trials are those of a split
    without test trials, with the same seed). ``file`` (and ``auto`` with one): the trials
    table's ``split`` column through ``split_labels``; trials whose label
    maps to no split are dropped. If ``test_fraction`` > 0 and the file labels no trial as
    test, a seeded ``test_fraction`` of all the trials is drawn from its training trials.
    """
    n = len(trials)
    rng = np.random.default_rng(settings.seed)
    if resolved_split(settings.split, trials) == "random":
        labels = np.full(n, "train", dtype=object)
        order = rng.permutation(n)
        n_valid = int(round(settings.valid_fraction * n))
        n_test = int(round(settings.test_fraction * n))
        labels[order[:n_valid]] = "valid"
        labels[order[n_valid:n_valid + n_test]] = "test"
        return labels
    if "split" not in trials:
        raise InputDataError(where, "trials.split",
                             "split is 'file' but the trials table has no split column; "
                             "set split to 'random' for this dataset")
    text = trials["split"].astype(str)
    labels = text.str.lower().map(split_label_map(settings.split_labels, where))
    labels = labels.fillna("split=" + text).to_numpy(dtype=object)
    if settings.test_fraction > 0 and not np.any(labels == "test"):
        train = np.flatnonzero(labels == "train")
        n_test = min(len(train), int(round(settings.test_fraction * n)))
        labels[rng.permutation(train)[:n_test]] = "test"
    return labels


def heldout_warning(mode: str, n_units: int, heldout_column: bool) -> str:
    """Why ``heldout`` (resolved ``mode``) holds out no unit of ``n_units``."""
    if mode != "file":
        return f"a fraction {mode} of {n_units} kept units rounds to 0"
    if not heldout_column:
        return "the file's units table has no 'heldout' column"
    return "the file's 'heldout' column marks none of the kept units"


def condition_index(trials: pd.DataFrame, columns: tuple[str, ...], where: str) -> np.ndarray:
    """Integer condition per trial from the unique combinations of ``columns`` (0 if none)."""
    for column in columns:
        if column not in trials:
            raise InputDataError(where, f"trials.{column}",
                                 f"condition column missing; trial columns are {list(trials.columns)}")
    if not columns:
        return np.zeros(len(trials), dtype=np.int64)
    return trials.groupby(list(columns), sort=True, dropna=False).ngroup().to_numpy(np.int64)


def condition_values(trials: pd.DataFrame, columns: tuple[str, ...], conditions: np.ndarray
                     ) -> list[list]:
    """The values of ``columns`` of each condition index of :func:`condition_index`: entry
    ``k`` lists condition ``k``'s values, one per column (plain numbers, text or booleans; a
    missing value is None). One empty list when there are no condition columns."""
    if not columns:
        return [[]]
    first = pd.Series(np.arange(len(trials))).groupby(conditions, sort=True).first()
    return [[_plain(trials[c].iat[row]) for c in columns] for row in first.to_numpy()]


def _plain(value):
    """A table value as plain JSON: numbers, text and booleans; NaN and missing as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value


def trial_window_flags(trials: pd.DataFrame, win_start: np.ndarray, win_stop: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(outside, overlap)``: windows that leave their trial's ``[start_time, stop_time]``,
    and windows that reach past the start of the next trial in time."""
    start = trials["start_time"].to_numpy(float)
    stop = trials["stop_time"].to_numpy(float)
    outside = (win_start < start - TOLERANCE_S) | (win_stop > stop + TOLERANCE_S)
    order = np.argsort(start, kind="stable")
    next_start = np.full(len(trials), np.inf)
    next_start[order[:-1]] = start[order[1:]]
    overlap = win_stop > next_start + TOLERANCE_S
    return outside, overlap


def align_trials(binned_h5, out_h5, settings: AlignSettings, metadata_json=None) -> dict:
    """Cut ``binned.h5`` (see :func:`lfads_core.nwb.binning.bin_session`) into aligned trials.

    Writes ``out_h5`` (layout in the module docstring) and, if given, ``metadata_json`` (bin
    width, window, unit ids, trial ids and window start times per split, the condition
    columns' values of each condition index, source checksum). Returns the alignment summary: kept
    and dropped trials and why, and any warnings. Errors name the source NWB file.
    A continuous recording (``segment_length_ms`` set) is cut into overlapping segments by
    :func:`lfads_core.nwb.segments.align_segments` instead (:func:`...segments.align_windows`
    chooses).
    """
    if settings.segment_length_ms is not None:
        raise ValueError("segment_length_ms is set: a continuous recording is cut into segments "
                         "(lfads_core.nwb.segments.align_windows)")
    if settings.outside_trial not in OUTSIDE_TRIAL:
        raise InputDataError(binned_h5, "outside_trial", f"must be one of {OUTSIDE_TRIAL}, got "
                             f"{settings.outside_trial!r}")
    with h5py.File(binned_h5, "r") as src:
        source = str(src.attrs["source"])

        def fail(field, message):
            return InputDataError(source, field, f"{message} (aligning {binned_h5})")

        bin_width = float(src.attrs["bin_width_s"])
        t_start = float(src.attrs["t_start_s"])
        n_bins = int(src.attrs["n_bins"])
        kind = kind_of(src.attrs)  # spikes, or traces (calcium imaging: values, NaN kept)
        offset_s, n_window = window_bins(settings, bin_width, source, snap=kind == KIND_TRACES)
        n_total = n_window + settings.fp_bins
        trials = read_table(src["trials"])
        units = read_table(src["units"])
        event = settings.align_event
        table = str(src.attrs.get("trials_table", "trials"))  # the table ingestion read
        if event not in trials:
            raise fail(f"{table}.{event}", "alignment column missing")

        reason = np.where(trials["kept"].to_numpy(bool), "", trials["drop_reason"]).astype(object)
        first_bin, win_start, win_stop = _place_windows(trials[event].to_numpy(float),
                                                        offset_s, n_total, t_start, bin_width)
        warns, n_outside, n_overlap = _drop_windows(
            reason, trials, first_bin, win_start, win_stop, n_total, n_bins,
            src["observed_intervals"][()], settings, fail)

        series = {part: {name: (grp["timestamps_s"][()], grp["data"][()]) for name, grp in
                         src.get(part, {}).items()} for part in ("behavior", "truth")}
        behavior_columns = [c for g in src.get("behavior", {}).values() for c in g.attrs["columns"]]
        truth_units = {name: g.attrs["unit"] for name, g in src.get("truth", {}).items()}
        window_index = np.flatnonzero(reason == "")
        beh = None
        if series["behavior"]:
            beh = _window_behavior(series["behavior"], first_bin[window_index], n_window,
                                   t_start, bin_width)
            nan_rows = np.any(np.isnan(beh), axis=(1, 2))
            reason[window_index[nan_rows]] = "NaN behaviour in window"
        split = _split_kept(reason, trials, settings, source)
        conditions = condition_index(trials, settings.condition_columns, source)

        heldout_column = bool(src.attrs.get("heldout_column", True))
        heldout_mode, heldout = _held_out_units(units, settings, heldout_column, warns, fail)
        channel_order = np.concatenate([np.flatnonzero(~heldout), np.flatnonzero(heldout)])
        n_heldin = int((~heldout).sum())
        rows = {name: np.flatnonzero((reason == "") & (split == name)) for name in SPLITS}
        drops = pd.Series(reason[reason != ""]).value_counts().to_dict()
        _check_trials_left(rows, drops, len(trials), settings, trials, fail)
        splits = [name for name in SPLITS if len(rows[name])]  # test only where there are any
        for message in warns:
            log.warning("%s: %s", source, message)
        attrs, metadata = _alignment_metadata(src, settings, bin_width, heldout, heldout_mode,
                                              units, trials, rows, splits, win_start, conditions,
                                              channel_order, behavior_columns, table)
        if kind == KIND_TRACES:  # the window's end snapped to the frame grid
            metadata.update(trace_metadata(src, n_window, offset_s, bin_width))
            attrs["window_end_offset_s"] = metadata["window_end_offset_s"]
        behavior = None if beh is None else \
            {name: beh[np.searchsorted(window_index, rows[name])] for name in splits}
        truth = {t: (ts, d, truth_units[t]) for t, (ts, d) in series["truth"].items()}
        n_spikes = write_windows(src, out_h5, {name: rows[name] for name in splits}, first_bin,
                                 n_window, n_total, channel_order, conditions, behavior, attrs,
                                 behavior_columns, truth, metadata, metadata_json)

    summary = {
        "trials_table": table,
        "trials_in_file": int(len(trials)),
        "train_trials": int(len(rows["train"])),
        "valid_trials": int(len(rows["valid"])),
        "test_trials": int(len(rows["test"])),
        "dropped_trials": int(sum(drops.values())),
        "drop_reasons": drops,
        "windows_outside_trial": n_outside,
        "windows_overlapping_next_trial": n_overlap,
        "warnings": warns,
        "n_bins_window": n_window,
        "fp_bins": settings.fp_bins,
        "n_heldin": n_heldin,
        "n_heldout": int(heldout.sum()),
        **({} if n_spikes is None else {"spikes_in_trials": n_spikes}),
    }
    if kind == KIND_TRACES:
        summary.update(kind=kind, masked_fraction=masked_fractions(out_h5, splits))
    log.info("align: %d train, %d valid, %d test trials; dropped %s", summary["train_trials"],
             summary["valid_trials"], summary["test_trials"], drops or "none")
    return summary


def _alignment_metadata(src: h5py.File, settings: AlignSettings, bin_width: float,
                        heldout: np.ndarray, heldout_mode: str, units: pd.DataFrame,
                        trials: pd.DataFrame, rows: dict[str, np.ndarray], splits: list[str],
                        win_start: np.ndarray, conditions: np.ndarray, channel_order: np.ndarray,
                        behavior_columns: list[str], table: str) -> tuple[dict, dict]:
    """``(attrs, metadata)``: lfads_input.h5's attrs (bin width s, the window's edges relative
    to the event s, forward bins, held-in and held-out unit counts, the event, trials table,
    source checksum) and lfads_input.json's content: the attrs and the source, unit ids and
    held-out flags in channel order, behaviour columns, split and held-out modes, each split's
    trial ids and window start times on the recording's clock (``win_start``, trials,: s),
    and the condition columns' values of each condition index."""
    attrs = {
        "bin_width_s": bin_width,
        "window_start_offset_s": settings.window_start_ms / 1e3,
        "window_end_offset_s": settings.window_end_ms / 1e3,
        "fp_bins": settings.fp_bins,
        "n_heldin": int((~heldout).sum()),
        "n_heldout": int(heldout.sum()),
        "align_event": settings.align_event,
        "trials_table": table,
        "source_sha256": src.attrs["source_sha256"],
    }
    metadata = {
        **attrs,
        "source": src.attrs["source"],
        "lfads_core_version": src.attrs["lfads_core_version"],
        "unit_ids": units["id"].to_numpy()[channel_order].tolist(),
        "heldout": heldout[channel_order].tolist(),
        "behavior_columns": behavior_columns,
        "split_mode": resolved_split(settings.split, trials),
        "heldout_mode": heldout_mode,
        "trial_ids": {name: trials["id"].to_numpy()[rows[name]].tolist() for name in splits},
        "window_start_times_s": {name: win_start[rows[name]].tolist() for name in splits},
        "conditions": {"columns": list(settings.condition_columns),
                       "values": condition_values(trials, settings.condition_columns,
                                                  conditions)},
    }
    return attrs, metadata


def _place_windows(event_times: np.ndarray, offset_s: float, n_total: int, t_start: float,
                  bin_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first_bin, win_start, win_stop)`` of each trial's window (plus forward bins):
    ``event_times`` (trials,) and ``offset_s`` (the window's start relative to the event) in
    s; the window starts at the bin edge nearest to event + offset on the grid ``t_start +
    k * bin_width`` (s) and lasts ``n_total`` bins. ``first_bin`` (int64, -1 where the event
    is NaN); ``win_start``, ``win_stop`` on the recording's clock (s)."""
    first_bin = np.round((event_times + offset_s - t_start) / bin_width)
    first_bin = np.where(np.isfinite(first_bin), first_bin, -1).astype(np.int64)
    win_start = t_start + first_bin * bin_width
    win_stop = t_start + (first_bin + n_total) * bin_width
    return first_bin, win_start, win_stop


def _drop_windows(reason: np.ndarray, trials: pd.DataFrame, first_bin: np.ndarray,
                  win_start: np.ndarray, win_stop: np.ndarray, n_total: int, n_bins: int,
                  observed_intervals: np.ndarray, settings: AlignSettings, fail
                  ) -> tuple[list[str], int, int]:
    """Mark in ``reason`` (trials,; "" for kept) the windows outside the recording
    (``n_bins`` bins) or its ``observed_intervals`` (intervals x 2, s) and, with
    ``outside_trial: drop``, those leaving their trial. ``win_start``, ``win_stop``: s.
    Returns ``(warnings, windows outside their trial, windows reaching into the next)``;
    raises ``fail(...)`` when no candidate trial's window fits."""
    in_recording = (first_bin >= 0) & (first_bin + n_total <= n_bins)
    in_observed = inside_intervals(win_start, win_stop, observed_intervals)
    candidates = reason == ""
    reason[candidates & ~in_recording] = "window outside recording"
    reason[(reason == "") & ~in_observed] = "window outside obs_intervals"
    if candidates.any() and not (reason == "").any():
        raise fail("window_start_ms",
                   f"the window {settings.window_start_ms:g}..{settings.window_end_ms:g} ms "
                   f"(+{settings.fp_bins} forward bins) around '{settings.align_event}' leaves "
                   "the recording or its observed intervals for every trial")
    outside, overlap = trial_window_flags(trials, win_start, win_stop)
    warns = []
    n_outside, n_overlap = int((outside & (reason == "")).sum()), \
        int((overlap & (reason == "")).sum())
    if n_outside:
        action = "dropped (outside_trial: drop)" if settings.outside_trial == "drop" else \
            "kept (set outside_trial: drop to drop them)"
        warns.append(f"{n_outside} trial windows leave their trial's [start_time, "
                     f"stop_time], {n_overlap} of them reaching into the next trial; {action}")
        if settings.outside_trial == "drop":
            reason[outside & (reason == "")] = "window outside trial"
    return warns, n_outside, n_overlap


def _window_behavior(behavior: dict, first_bin: np.ndarray, n_window: int, t_start: float,
                    bin_width: float) -> np.ndarray:
    """Every behaviour series (name -> (timestamps s, samples x columns)) sampled at the
    window's bin centres: trials x ``n_window`` bins x columns (float32), the series'
    columns one after the other. ``first_bin`` (trials,): each window's first bin."""
    centres = bin_centres(first_bin, n_window, t_start, bin_width)
    return np.concatenate([sample_series(ts, d, centres).astype(np.float32)
                           for ts, d in behavior.values()], axis=2)


def _split_kept(reason: np.ndarray, trials: pd.DataFrame, settings: AlignSettings,
                source: str) -> np.ndarray:
    """Each trial's split (trials,; "" for dropped trials) from :func:`assign_split` over the
    kept ones; trials the split leaves out get its drop reason in ``reason``."""
    kept_rows = np.flatnonzero(reason == "")
    split = np.full(len(trials), "", dtype=object)
    split[kept_rows] = assign_split(trials.iloc[kept_rows], settings, source)
    dropped_by_split = kept_rows[~np.isin(split[kept_rows], SPLITS)]
    reason[dropped_by_split] = split[dropped_by_split]
    return split


def _held_out_units(units: pd.DataFrame, settings: AlignSettings, heldout_column: bool,
                    warns: list[str], fail) -> tuple[str, np.ndarray]:
    """``(mode, heldout)``: ``heldout`` resolved (:func:`resolved_heldout`) and which units
    (units,) it holds out; a warning appended to ``warns`` when it holds out none, ``fail``
    raised when it holds out all."""
    heldout_mode = resolved_heldout(settings.heldout, heldout_column)
    heldout = heldout_mask(units, heldout_mode, settings.seed)
    if not heldout.any() and heldout_mode != "none":
        why = heldout_warning(heldout_mode, len(units), heldout_column)
        warns.append(f"heldout is '{settings.heldout}' but no unit is held out ({why}): "
                     "no co-bps or other held-out metrics")
    if heldout.all():
        raise fail("heldout", f"heldout '{settings.heldout}' holds out all {len(units)} "
                   "kept units, leaving none as encoder input")
    return heldout_mode, heldout


def _check_trials_left(rows: dict[str, np.ndarray], drops: dict, n_trials: int,
                       settings: AlignSettings, trials: pd.DataFrame, fail) -> None:
    """Raise ``fail(...)`` unless at least 1 training, 1 validation and, with
    ``test_fraction`` > 0, 1 test trial are left (``rows``: split -> kept rows; ``drops``:
    reason -> count)."""
    needs = [("train", "split", "train_lfads needs at least 1 for training"),
             ("valid", "valid_fraction" if resolved_split(settings.split, trials) == "random"
              else "split",
              "train_lfads needs at least 1 for the validation loss")]
    if settings.test_fraction > 0:
        needs.append(("test", "test_fraction", f"test_fraction {settings.test_fraction:g} asks "
                      "for at least 1"))
    for name, field, why in needs:
        if len(rows[name]) < 1:
            raise fail(field, f"0 {name} trials left of {n_trials} (drop reasons {drops}); "
                       f"{why}")


def write_windows(src, out_h5, rows: dict[str, np.ndarray], first_bin: np.ndarray, n_window: int,
                  n_total: int, channel_order: np.ndarray, conditions: np.ndarray,
                  behavior: dict[str, np.ndarray] | None, attrs: dict, behavior_columns: list,
                  truth: dict[str, tuple], metadata: dict | None = None,
                  metadata_json=None, per_window: dict[str, np.ndarray] | None = None
                  ) -> int | None:
    """Write ``out_h5`` (layout in the module docstring) from the open ``binned.h5`` ``src``:
    for each split, the windows ``rows[split]`` (their numbers, written as ``{split}_inds``),
    window ``i`` being ``n_total`` bins from bin ``first_bin[i]`` (the first ``n_window`` the
    encoder's), units in ``channel_order`` (held-in first; ``attrs['n_heldin']`` of them),
    ``conditions[i]`` its condition, ``behavior[split]`` its behaviour (or None) and ``truth``
    ``{name: (timestamps, data, unit)}`` sampled on its bins. Writes ``metadata`` to
    ``metadata_json`` if given, before the file is moved into place. ``per_window``: more
    arrays indexed by window number, written as ``{split}_{key}`` (e.g. segments' first bins).
    Counts (or, for calcium traces, values) are made a block of windows at a time. Returns the
    number of spikes in the windows (None for traces)."""
    splits = list(rows)
    all_rows = np.concatenate([rows[name] for name in splits])
    n_units, n_heldin = len(channel_order), int(attrs["n_heldin"])
    bin_width, t_start = float(src.attrs["bin_width_s"]), float(src.attrs["t_start_s"])
    kind = kind_of(src.attrs)  # spike counts, or values (calcium traces, NaN kept)
    log.info("align: cutting %d windows of %d %s", len(all_rows), n_units,
             "ROIs" if kind == KIND_TRACES else "units")
    if kind == KIND_TRACES:
        entries = window_values(src["traces/values"], first_bin[all_rows], n_total,
                                np.argsort(channel_order))
    else:
        spikes = src["spikes/bins"]  # counted a pass of windows at a time: PASS_ENTRIES spikes
        spikes_a_window = len(spikes) / max(1, int(src.attrs["n_bins"])) * n_total
        entries = WindowCounts(spikes, src["spikes/unit_offsets"][()], first_bin[all_rows],
                               n_total, np.argsort(channel_order),
                               PASS_ENTRIES / max(spikes_a_window, 1.0))
    dtype = getattr(entries, "dtype", np.int32)  # counts, or values (traces)
    first_position = np.cumsum([0] + [len(rows[name]) for name in splits])
    position = {name: first_position[k] + np.arange(len(rows[name])) for k, name in enumerate(splits)}
    block = max(1, BLOCK_ENTRIES // max(1, n_total * n_units))

    def create(out, key, shape, dtype, chunk_rows=1):
        return out.create_dataset(key, shape=shape, dtype=dtype, compression="gzip",
                                  compression_opts=1,
                                  chunks=(min(chunk_rows, max(shape[0], 1)),) + shape[1:])

    with atomic_path(out_h5) as tmp:
        with h5py.File(tmp, "w") as out:
            for name in splits:
                r, n = rows[name], len(rows[name])
                recon = create(out, f"{name}_recon_data", (n, n_total, n_units), dtype)
                encod = create(out, f"{name}_encod_data", (n, n_window, n_heldin), dtype)
                truth_out = {t: create(out, f"{name}_truth_{t}", (n, n_total, d.shape[1]),
                                       np.float32) for t, (_, d, _) in truth.items()}
                for lo in range(0, n, block):
                    hi = min(n, lo + block)
                    counts = dense_block(entries, position[name][lo:hi], n_total, n_units)
                    recon[lo:hi] = counts
                    encod[lo:hi] = counts[:, :n_window, :n_heldin]
                    centres = bin_centres(first_bin[r[lo:hi]], n_total, t_start, bin_width)
                    for t, (ts, d, unit) in truth.items():
                        values = sample_series(ts, d, centres).astype(np.float32)
                        if t == "rates":
                            values = values[:, :, channel_order]
                            if unit == "Hz":
                                values = values * bin_width
                        truth_out[t][lo:hi] = values.astype(np.float32)
                for key, value in ((f"{name}_inds", r.astype(np.int64)),
                                   (f"{name}_cond_idx", conditions[r])):
                    out.create_dataset(key, data=value, compression="gzip", compression_opts=1)
                for key, value in (per_window or {}).items():
                    out.create_dataset(f"{name}_{key}", data=np.asarray(value)[r])
                if behavior is not None:
                    out.create_dataset(f"{name}_behavior", data=behavior[name],
                                       compression="gzip", compression_opts=1)
            out.attrs.update(attrs)
            out.attrs["behavior_columns"] = behavior_columns
            out.attrs["kind"] = kind
        if metadata_json is not None:
            write_json(metadata, metadata_json)
    return None if kind == KIND_TRACES else entries.n_spikes


def trace_metadata(src: h5py.File, n_window: int, offset_s: float, bin_width: float) -> dict:
    """lfads_input.json's entries for calcium traces: the kind, the data's unit, the frames
    per bin and the frame period (s), the window's length in bins (snapped to the frame grid)
    and its end relative to the event (s): ``offset_s`` + ``n_window`` bins of ``bin_width``."""
    return {"kind": KIND_TRACES, "data_unit": str(src.attrs.get("data_unit", "")),
            "bin_frames": int(src.attrs["bin_frames"]),
            "frame_period_s": float(src.attrs["frame_period_s"]), "n_bins_window": n_window,
            "window_end_offset_s": offset_s + n_window * bin_width}


def masked_fractions(lfads_h5, splits) -> dict[str, float]:
    """The fraction of NaN (masked) entries of each split's ``recon_data`` (traces), read a
    block of trials at a time."""
    out = {}
    with h5py.File(lfads_h5, "r") as f:
        for name in splits:
            data = f[f"{name}_recon_data"]
            step = max(1, BLOCK_ENTRIES // max(1, int(np.prod(data.shape[1:]))))
            nan = sum(int(np.isnan(data[lo:lo + step]).sum())
                      for lo in range(0, data.shape[0], step))
            out[name] = nan / max(1, data.size)
    return out
