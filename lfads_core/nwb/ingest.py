"""NWB ingestion: any NWB file with a Units table and a trials table -> one normalised HDF5.

A continuous recording (the setting ``segment_length_ms``, cut into segments by alignment)
needs no trials table: none is read and ``trials/`` is empty (attr ``trials_table`` empty).

The trials table is ``intervals/trials`` unless the setting ``trials_table`` names another
table under ``intervals/`` (any ``TimeIntervals``, e.g. ``intervals/encoding_table``); whichever
it is, ``session.h5`` stores it as ``trials/`` and records its name (attr ``trials_table``, and
``trials_table`` in the summary), so the later stages read one layout.

The NWB file is read with h5py (:mod:`lfads_core.nwb.reading`), every dataset checked before
its values are read; spike times are streamed unit by unit into the output, so memory stays
at one unit's spikes however large the file is.

Output ``session.h5`` (times in seconds on the recording's clock):

- ``units/``: table of every unit of the file: ``id``, ``n_spikes``, ``heldout``, ``kept``,
  ``drop_reason`` and the file's other scalar unit columns.
- ``spikes/times_s`` (float64, kept units' spikes, concatenated unit by unit, each sorted) and
  ``spikes/unit_offsets`` (kept units + 1): unit ``k``'s spikes are ``times[off[k]:off[k+1]]``.
- ``trials/``: table of every trial of the chosen table with its scalar columns (those left
  out of the table's ``colnames`` too, with a warning), ``kept`` and ``drop_reason``.
- ``observed_intervals`` (n x 2): where every kept unit was observed (``obs_intervals``), or the
  whole recording if the file has none.
- ``behavior/{name}`` and ``truth/{name}``: ``data`` (samples x dims) with attrs ``unit`` and
  ``columns``, plus ``timestamps_s`` (samples, s).
- attrs: ``source``, ``source_sha256``, ``recording_start_s``, ``recording_stop_s``,
  ``heldout_column`` (whether the file's units table has a ``heldout`` column),
  ``trials_table`` (the table under ``intervals/`` the trials came from), ``kind`` (``spikes``).

With the setting ``traces`` (calcium imaging) the file's ROI traces are read instead of its
units, into the same layout with ``kind`` = ``traces``: :mod:`lfads_core.nwb.imaging`.

Spike-time policy: spike times that are not sorted within a unit are sorted, with a warning
(counted in the summary); negative or non-finite spike times are rejected with an error, since
NWB times count from the session start and such values mean a corrupt or mis-converted file.
What ingestion leaves out (units, trials, table columns it cannot store) is counted by reason
in the summary.

Event-time policy (the ``align_event`` column): negative times are rejected with an error
naming the file, the table, the column and how many; a trial whose event is NaN or after the
recording's end is dropped (drop reason ``{event} is NaN`` or ``{event} after recording end``)
and counted in a warning (the rule's log and the summary's ``warnings``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputDataError
from ..fileio import atomic_path, read_table, sha256sum, write_table
from . import reading as nr
from .imaging import KIND_TRACES, _column_blocks, frame_period, read_planes
from .intervals import intersect_intervals, merge_intervals

log = logging.getLogger(__name__)

BEHAVIOR_MODULE = nr.BEHAVIOR_MODULE
TRUTH_MODULE = nr.TRUTH_MODULE
#: Columns ingestion adds to the trials table of ``session.h5``; the others are the file's.
TRIAL_COLUMNS_ADDED = ("kept", "drop_reason")
#: The trials table read where the setting ``trials_table`` names none: NWB's ``intervals/trials``
DEFAULT_TRIALS_TABLE = "trials"


@dataclass
class IngestSettings:
    """What to take from the file (the per-dataset settings of the sample sheet)."""

    align_event: str = "move_onset_time"
    behavior: list[str] = field(default_factory=list)
    unit_filter: str = ""
    min_rate_hz: float = 0.0
    trial_filter: str = ""
    trials_table: str = DEFAULT_TRIALS_TABLE  # the table under intervals/ holding the trials
    # A continuous recording (cut into segments): no trials table is read (None: trials)
    segment_length_ms: float | None = None
    traces: str = ""  # ROI response series in processing/ophys (imaging); empty: spikes (Units)
    roi_filter: str = ""  # pandas query over the PlaneSegmentation columns (traces)

    @classmethod
    def from_settings(cls, settings: dict) -> "IngestSettings":
        from ..values import split_list

        return cls(
            align_event=settings["align_event"],
            behavior=split_list(settings["behavior"]),
            unit_filter=settings["unit_filter"],
            min_rate_hz=float(settings["min_rate_hz"]),
            trial_filter=settings["trial_filter"],
            trials_table=settings.get("trials_table") or DEFAULT_TRIALS_TABLE,
            segment_length_ms=None if settings.get("segment_length_ms") in (None, "")
            else float(settings["segment_length_ms"]),
            traces=settings.get("traces") or "",
            roi_filter=settings.get("roi_filter") or "",
        )


@dataclass
class Units:
    """The checked Units table: scalar columns, spike index and observation intervals."""

    table: pd.DataFrame
    spike_data: h5py.Dataset
    ends: np.ndarray
    obs: tuple[h5py.Dataset, np.ndarray] | None
    skipped_columns: dict[str, str]
    heldout_column: bool
    hidden_columns: list[str] = field(default_factory=list)

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], self.ends[:-1]]).astype(np.int64)

    def intervals(self, k: int, recording_stop: float, path) -> np.ndarray:
        """Unit ``k``'s merged observation intervals (the whole recording if none)."""
        if self.obs is None:
            return np.array([[0.0, recording_stop]])
        data, ends = self.obs
        lo = 0 if k == 0 else ends[k - 1]
        values = nr.read(data, path, "units.obs_intervals", np.s_[lo:ends[k]])
        return merge_intervals(np.asarray(values, dtype=float).reshape(-1, 2))


def read_units(f: h5py.File, path) -> Units:
    """The Units table of an open NWB file, its ragged columns checked (metadata only)."""
    group = nr.table_group(f, "units", path, "units")
    if group is None:
        raise InputDataError(path, "units", "the file has no Units table")
    n = len(group["id"])
    spikes = nr.ragged(group, "spike_times", path, "units", n)
    if spikes is None:
        raise InputDataError(path, "units.spike_times", "the Units table has no spike_times column")
    obs = nr.ragged(group, "obs_intervals", path, "units", n)
    if obs is not None and (obs[0].ndim != 2 or obs[0].shape[1] != 2):
        raise InputDataError(path, "units.obs_intervals",
                             f"has shape {obs[0].shape}; (intervals, 2) expected")
    table, skipped, hidden = nr.scalar_table(group, path, "units")
    if len(table) == 0:
        raise InputDataError(path, "units", "the Units table has no rows")
    ends = spikes[1]
    table["n_spikes"] = ends - np.concatenate([[0], ends[:-1]])
    has_heldout = "heldout" in table
    table["heldout"] = table["heldout"].astype(bool) if has_heldout else False
    return Units(table, spikes[0], ends, obs, skipped, has_heldout, hidden)


@dataclass
class TrialsTable:
    """The checked trials table: its scalar columns (``table``), the name of the table under
    ``intervals/`` it came from, the columns not read (column -> why), the columns read
    although its ``colnames`` leaves them out, and warnings about it (hidden columns, NaN
    event times)."""

    table: pd.DataFrame
    name: str
    skipped: dict[str, str]
    hidden: list[str]
    warnings: list[str]


def hidden_column_warning(table: str, hidden: list[str], skipped: dict[str, str]) -> str:
    """The warning about columns stored in a table's group but not in its ``colnames``."""
    read = [c for c in hidden if c not in skipped]
    not_read = {c: skipped[c] for c in hidden if c in skipped}
    return (f"table '{table}': column{'s' if len(hidden) > 1 else ''} {hidden} "
            f"{'are' if len(hidden) > 1 else 'is'} stored in its group but not listed in its "
            "'colnames' attribute (pynwb does not show them)"
            + (f"; read all the same: {read}" if read else "")
            + (f"; not read: {not_read}" if not_read else ""))


def read_trials(f: h5py.File, path, event: str, table: str = DEFAULT_TRIALS_TABLE
                ) -> TrialsTable:
    """The trials table ``intervals/{table}``'s scalar columns; times and the alignment column
    must be numbers, and alignment times not negative. A missing table is an error listing the
    tables the file has under ``intervals/`` (field ``trials_table``)."""
    tables = nr.interval_tables(f)
    location = f"intervals/{table}"
    if table not in tables:
        there = f"the tables there are {tables}" if tables else \
            "it has no tables under intervals/ at all"
        what = f"{location} is not a table" if location in f else \
            f"the file has no table '{table}' under intervals/"
        raise InputDataError(path, "trials_table", f"no trials table: {what}; {there}")
    group = nr.table_group(f, location, path, table)
    trials, skipped, hidden = nr.scalar_table(group, path, table)
    notes = [hidden_column_warning(table, hidden, skipped)] if hidden else []
    if len(trials) == 0:
        raise InputDataError(path, table, f"the trials table '{table}' has no rows")
    for column in ("start_time", "stop_time"):
        if column not in trials:
            raise InputDataError(path, f"{table}.{column}", "required trials column is missing")
    if event not in trials:
        raise InputDataError(path, f"{table}.{event}", f"alignment column missing; the columns "
                             f"of table '{table}' are {list(trials.columns)}")
    for column in ("start_time", "stop_time", event):
        values = trials[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            what = "text" if pd.api.types.is_string_dtype(values) else str(values.dtype)
            raise InputDataError(path, f"{table}.{column}",
                                 f"holds {what} values, not times in seconds")
    times = trials[event].to_numpy(dtype=float)
    if np.all(np.isnan(times)):
        raise InputDataError(path, f"{table}.{event}", "alignment column is NaN for every trial")
    negative = times < 0
    if negative.any():
        raise InputDataError(path, f"{table}.{event}",
                             f"{int(negative.sum())} of the {len(times)} trials of table "
                             f"'{table}' have a negative '{event}' time (the lowest "
                             f"{np.nanmin(times):.6g} s); NWB times count from the session "
                             "start, so the file was converted with another clock or the "
                             "column holds no times")
    n_nan = int(np.isnan(times).sum())
    if n_nan:
        notes.append(f"table '{table}': {n_nan} of the {len(times)} trials have no '{event}' "
                     f"time (NaN); they are dropped (drop reason '{event} is NaN')")
    return TrialsTable(trials, table, skipped, hidden, notes)


def no_trials() -> TrialsTable:
    """The empty trials table of a continuous recording (no table is read: its time is cut
    into segments, :mod:`lfads_core.nwb.segments`)."""
    table = pd.DataFrame({"start_time": np.zeros(0), "stop_time": np.zeros(0)})
    return TrialsTable(table, "", {}, [], [])


def late_event_warning(table: str, event: str, n_late: int, n_trials: int,
                       recording_stop: float) -> str:
    return (f"table '{table}': {n_late} of the {n_trials} trials have a '{event}' time after "
            f"the recording's end ({recording_stop:.6g} s, the last trial's stop or spike); they "
            f"are dropped (drop reason '{event} after recording end')")


def read_session_trials(session_h5: str | Path) -> pd.DataFrame:
    """The recording's trials table as ingestion stored it in ``session.h5``: every trial in the
    file's order, with ``id`` (the file's trial id) and the file's scalar columns (numbers,
    booleans, text), without the columns ingestion adds."""
    with h5py.File(session_h5, "r") as f:
        trials = read_table(f["trials"])
    return trials.drop(columns=[c for c in TRIAL_COLUMNS_ADDED if c in trials])


def apply_query(df: pd.DataFrame, query: str, path, field_name: str) -> np.ndarray:
    """Boolean mask of the rows selected by a pandas ``query``; errors name the setting."""
    if not query:
        return np.ones(len(df), dtype=bool)
    try:
        selected = df.query(query)
    except Exception as exc:
        raise InputDataError(path, field_name,
                             f"query {query!r} failed ({exc}); columns are {list(df.columns)}")
    return df.index.isin(selected.index)


def unit_drop_reasons(units: Units, observed_s: np.ndarray, settings: IngestSettings,
                      path) -> np.ndarray:
    """Why each unit is dropped (``""`` if kept); an error if none is kept."""
    table = units.table
    table["rate_hz"] = np.divide(table["n_spikes"].to_numpy(), observed_s,
                                 out=np.zeros(len(table)), where=observed_s > 0)
    reason = np.full(len(table), "", dtype=object)
    reason[table["n_spikes"].to_numpy() == 0] = "no spikes"
    keep_query = apply_query(table, settings.unit_filter, path, "unit_filter")
    reason[(reason == "") & ~keep_query] = "unit_filter"
    reason[(reason == "") & (table["rate_hz"].to_numpy() < settings.min_rate_hz)] = \
        f"rate < {settings.min_rate_hz} Hz"
    if not (reason == "").any():
        field = "unit_filter" if settings.unit_filter and not keep_query.any() else "units"
        raise InputDataError(
            path, field,
            f"no units left after filtering ({len(reason)} in file; unit_filter="
            f"{settings.unit_filter!r}, min_rate_hz={settings.min_rate_hz}); drop reasons: "
            f"{pd.Series(reason).value_counts().to_dict()}")
    return reason


def trial_drop_reasons(trials: pd.DataFrame, settings: IngestSettings, path,
                       recording_stop: float = np.inf) -> np.ndarray:
    """Why each trial is dropped by ingestion (``""`` if kept): the trial filter, a NaN event,
    an event after ``recording_stop``."""
    reason = np.full(len(trials), "", dtype=object)
    reason[~apply_query(trials, settings.trial_filter, path, "trial_filter")] = "trial_filter"
    event = settings.align_event
    times = trials[event].to_numpy(dtype=float)
    reason[(reason == "") & np.isnan(times)] = f"{event} is NaN"
    reason[(reason == "") & (times > recording_stop)] = f"{event} after recording end"
    if not (reason == "").any():
        raise InputDataError(path, "trial_filter", f"no trials left: trial_filter "
                             f"{settings.trial_filter!r} and non-NaN '{event}' within the "
                             f"recording keep none of the {len(trials)} trials of table "
                             f"'{settings.trials_table}'")
    return reason


def last_spike(units: Units, path) -> float:
    """Latest of the units' last stored spike times (one value read per unit)."""
    ends, starts = units.ends, units.starts
    return max((float(nr.read(units.spike_data, path, "units.spike_times", e - 1))
                for s, e in zip(starts, ends) if e > s), default=0.0)


def _series_columns(name: str, n_dims: int) -> list[str]:
    if n_dims == 1:
        return [name]
    if n_dims <= 3:
        return [f"{name}_{axis}" for axis in "xyz"[:n_dims]]
    return [f"{name}_{i}" for i in range(n_dims)]


def _write_series(group: h5py.Group, name: str, times, data, unit: str) -> dict:
    sub = group.create_group(name)
    sub.create_dataset("timestamps_s", data=times)
    sub.create_dataset("data", data=data, compression="gzip", compression_opts=1, shuffle=True)
    sub.attrs["unit"] = unit
    sub.attrs["columns"] = _series_columns(name, data.shape[1])
    return {"samples": int(data.shape[0]), "dims": int(data.shape[1]), "unit": unit}


def ingest_nwb(path: str | Path, out_h5: str | Path, settings: IngestSettings,
               progress_every: int = 0) -> dict:
    """Read an NWB recording and write the normalised ``session.h5``. Returns a summary dict.

    Every check that can fail is made before anything is written, except per-spike checks
    (finite, non-negative), made as each unit streams; the output is written to a temporary
    file and renamed, so a failure leaves nothing behind.
    """
    path = Path(path)
    with nr.open_nwb_h5(path) as f:
        if settings.traces:  # calcium imaging: ingest_traces, below

            return ingest_traces(path, f, Path(out_h5), settings)
        return _ingest(path, f, Path(out_h5), settings, progress_every)


def _read_series(f, names, path, module):
    out = {}
    for name in names:
        group = nr.find_series(f, name, path, module)
        field = f"processing/{module}/{name}"
        out[name] = (*nr.series_arrays(group, path, field), nr.series_unit(group))
    return out


def _ingest(path: Path, f: h5py.File, out_h5: Path, settings: IngestSettings,
            progress_every: int):
    units = read_units(f, path)
    continuous = settings.segment_length_ms is not None
    read = no_trials() if continuous else \
        read_trials(f, path, settings.align_event, settings.trials_table)
    trials, trial_columns_skipped = read.table, read.skipped
    notes = list(read.warnings)
    if units.hidden_columns:
        notes.insert(0, hidden_column_warning("units", units.hidden_columns,
                                              units.skipped_columns))
    unit_table = units.table

    recording_stop = max(float(np.nanmax(trials["stop_time"])) if len(trials) else 0.0,
                         last_spike(units, path))
    observed_s = np.array([np.sum(np.diff(units.intervals(k, recording_stop, path), axis=1))
                           for k in range(len(unit_table))])
    reason = unit_drop_reasons(units, observed_s, settings, path)
    kept = reason == ""
    unit_table["kept"] = kept
    unit_table["drop_reason"] = reason.astype(str)
    valid = None
    for k in np.flatnonzero(kept):
        valid = units.intervals(k, recording_stop, path) if valid is None else \
            intersect_intervals(valid, units.intervals(k, recording_stop, path))

    # Behaviour (and ground truth, if the file is simulated) is checked and read before writing.
    behavior, truth = _mark_trials_read_series(f, path, settings, read, trials, notes,
                                               recording_stop, continuous)

    summary = {
        "source": str(path),
        "kind": "spikes",
        "trials_table": read.name,
        "units_in_file": int(len(unit_table)),
        "units_kept": int(kept.sum()),
        "unit_drop_reasons": pd.Series(reason[~kept]).value_counts().to_dict(),
        "trials_in_file": int(len(trials)),
        "trials_kept": int(trials["kept"].sum()),
        "trial_drop_reasons": trials.loc[~trials["kept"], "drop_reason"].value_counts().to_dict(),
        "columns_not_ingested": {"units": units.skipped_columns,
                                 "trials": trial_columns_skipped},
        "columns_not_in_colnames": {"units": units.hidden_columns, "trials": read.hidden},
        "warnings": notes,
        "heldout_column": units.heldout_column,
        "units_resorted": 0,
        "recording_stop_s": recording_stop,
        "lfads_core_version": __version__,
    }
    ignored = {t: [c for c in cols if c not in ("spike_times", "obs_intervals")]
               for t, cols in summary["columns_not_ingested"].items()}
    if any(ignored.values()):
        log.info("ingest: table columns not ingested (not one number or text per row): %s",
                 {t: c for t, c in ignored.items() if c})
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
        kept_idx = np.flatnonzero(kept)
        n_kept_spikes = int(unit_table["n_spikes"].to_numpy()[kept].sum())
        times_out = out.create_dataset("spikes/times_s", shape=(n_kept_spikes,), dtype="f8",
                                       chunks=(min(max(n_kept_spikes, 1), 1 << 20),))
        offsets = np.zeros(len(kept_idx) + 1, dtype=np.int64)
        starts, ends = units.starts, units.ends
        for i, k in enumerate(kept_idx):
            unit_spikes = nr.read(units.spike_data, path, "units.spike_times",
                                  np.s_[starts[k]:ends[k]]).astype(np.float64, copy=False)
            unit_id = unit_table["id"].iat[k]
            if not np.all(np.isfinite(unit_spikes)):
                raise InputDataError(path, "units.spike_times",
                                     f"unit id {unit_id} has non-finite spike times")
            if unit_spikes.min() < 0:
                raise InputDataError(path, "units.spike_times",
                                     f"unit id {unit_id} has negative spike times "
                                     f"(min {unit_spikes.min():.6g} s); times must count from "
                                     "session_start_time")
            if np.any(np.diff(unit_spikes) < 0):
                warnings.warn(f"{path}: units.spike_times of unit id {unit_id} are not sorted; "
                              "sorting them")
                unit_spikes = np.sort(unit_spikes)
                summary["units_resorted"] += 1
            recording_stop = max(recording_stop, float(unit_spikes[-1]))
            offsets[i + 1] = offsets[i] + len(unit_spikes)
            times_out[offsets[i]:offsets[i + 1]] = unit_spikes
            if progress_every and (i + 1) % progress_every == 0:
                log.info("ingest: %d/%d units, %d spikes", i + 1, len(kept_idx), offsets[i + 1])
        if units.obs is None:  # the whole recording, now that every spike has been seen
            valid = np.array([[0.0, recording_stop]])
        out.create_dataset("spikes/unit_offsets", data=offsets)
        write_table(out.create_group("units"), unit_table)
        write_table(out.create_group("trials"), trials)
        out.create_dataset("observed_intervals", data=valid)
        summary["behavior"] = {n: _write_series(out.require_group("behavior"), n, *s)
                               for n, s in behavior.items()}
        summary["ground_truth"] = {n: _write_series(out.require_group("truth"), n, *s)
                                   for n, s in truth.items()}
        summary["recording_stop_s"] = recording_stop
        out.attrs["kind"] = "spikes"
        out.attrs["source"] = str(path)
        out.attrs["source_sha256"] = sha256sum(path)
        out.attrs["recording_start_s"] = 0.0
        out.attrs["recording_stop_s"] = recording_stop
        out.attrs["heldout_column"] = units.heldout_column
        out.attrs["trials_table"] = read.name
        out.attrs["lfads_core_version"] = __version__
        summary["source_sha256"] = out.attrs["source_sha256"]
        summary["spikes_kept"] = int(n_kept_spikes)
    log.info("ingest: kept %d/%d units, %d/%d trials, %d spikes", summary["units_kept"],
             summary["units_in_file"], summary["trials_kept"], summary["trials_in_file"],
             summary["spikes_kept"])
    return summary



def _mark_trials_read_series(f, path, settings, read, trials: pd.DataFrame, notes: list[str],
                             recording_stop: float, continuous: bool = False):
    """Mark each trial kept or dropped (columns ``kept``, ``drop_reason``; a continuous
    recording has none), warn the ``notes`` (and late events, after ``recording_stop`` s), and
    read the behaviour and a simulated recording's ground truth: ``(behavior, truth)``."""
    trial_reason = np.zeros(0, dtype=object) if continuous else \
        trial_drop_reasons(trials, settings, path, recording_stop)
    n_late = int(np.sum(trial_reason == f"{settings.align_event} after recording end"))
    if n_late:
        notes.append(late_event_warning(read.name, settings.align_event, n_late, len(trials),
                                        recording_stop))
    for note in notes:
        warnings.warn(f"{path}: {note}", stacklevel=3)
    trials["kept"] = trial_reason == ""
    trials["drop_reason"] = trial_reason.astype(str)
    behavior = _read_series(f, settings.behavior, path, BEHAVIOR_MODULE)
    truth_group = f.get(f"processing/{TRUTH_MODULE}")
    truth = _read_series(f, [k for k, v in truth_group.items() if nr._is_series(v)]
                         if isinstance(truth_group, h5py.Group) else [], path, TRUTH_MODULE)
    return behavior, truth

# ------------------------------------------------------------------ calcium imaging

def ingest_traces(path, f: h5py.File, out_h5, settings) -> dict:
    """Ingest the ROI traces named by ``settings.traces`` (module docstring) into
    ``session.h5``; returns the ingestion summary."""
    from ..values import split_list

    planes, rois = read_planes(f, split_list(settings.traces), path)
    read = read_trials(f, path, settings.align_event, settings.trials_table)
    trials, notes = read.table, list(read.warnings)
    times = planes[0].times
    period = frame_period(times)
    # Frame k fills the slot [t_k - period / 2, t_k + period / 2): the recording's span.
    recording_start, recording_stop = float(times[0] - period / 2), float(times[-1] + period / 2)

    keep = apply_query(rois, settings.roi_filter, path, "roi_filter")
    reason = np.where(keep, "", "roi_filter").astype(object)
    # First pass: no infinite values; ROIs without one finite frame are dropped.
    finite = np.zeros(len(rois), dtype=np.int64)
    column = 0
    for plane in planes:
        for lo, values in _column_blocks(plane, path):
            inf = np.isinf(values)
            if inf.any():
                k = int(np.flatnonzero(inf.any(axis=0))[0])
                raise InputDataError(path, f"{plane.field}.data",
                                     f"{int(inf.sum())} values are infinite (e.g. ROI column "
                                     f"{lo + k}); mark frames that were not observed as NaN")
            finite[column + lo: column + lo + values.shape[1]] = np.isfinite(values).sum(axis=0)
        column += plane.data.shape[1] if plane.data.ndim == 2 else 1
    rois["finite_frames"] = finite
    reason[(reason == "") & (finite == 0)] = "no finite frames"
    kept = reason == ""
    if not kept.any():
        raise InputDataError(path, "roi_filter" if settings.roi_filter else "traces",
                             f"no ROIs left ({len(rois)} in {settings.traces!r}; roi_filter="
                             f"{settings.roi_filter!r}); drop reasons: "
                             f"{pd.Series(reason).value_counts().to_dict()}")
    rois["kept"] = kept
    rois["drop_reason"] = reason.astype(str)

    behavior, truth = _mark_trials_read_series(f, path, settings, read, trials, notes,
                                               recording_stop)

    n_frames, n_kept = len(times), int(kept.sum())
    nan_frames = int(n_frames * n_kept - finite[kept].sum())
    summary = {
        "source": str(path),
        "kind": KIND_TRACES,
        "traces": [p.name for p in planes],
        "trials_table": read.name,
        "units_in_file": int(len(rois)),
        "units_kept": n_kept,
        "unit_drop_reasons": pd.Series(reason[~kept]).value_counts().to_dict(),
        "rois_in_file": int(len(rois)),
        "rois_kept": n_kept,
        "frames": n_frames,
        "frame_period_s": period,
        "frame_rate_hz": 1.0 / period,
        "nan_fraction": nan_frames / max(1, n_frames * n_kept),
        "trials_in_file": int(len(trials)),
        "trials_kept": int(trials["kept"].sum()),
        "trial_drop_reasons": trials.loc[~trials["kept"], "drop_reason"].value_counts().to_dict(),
        "columns_not_ingested": {"trials": read.skipped},
        "columns_not_in_colnames": {"trials": read.hidden},
        "warnings": notes,
        "heldout_column": bool(any(p.heldout_column for p in planes)),
        "recording_stop_s": recording_stop,
        "lfads_core_version": __version__,
    }
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
        chunks = (min(n_frames, max(1, (1 << 16) // max(1, min(n_kept, 64)))), min(n_kept, 64))
        data_out = out.create_dataset("traces/data", shape=(n_frames, n_kept), dtype="f4",
                                      chunks=chunks, compression="gzip", compression_opts=1,
                                      shuffle=True)
        out.create_dataset("traces/timestamps_s", data=times)
        column, written = 0, 0
        for plane in planes:
            for lo, values in _column_blocks(plane, path):
                sel = kept[column + lo: column + lo + values.shape[1]]
                if sel.any():
                    data_out[:, written:written + int(sel.sum())] = values[:, sel]
                    written += int(sel.sum())
            column += plane.data.shape[1] if plane.data.ndim == 2 else 1
        write_table(out.create_group("units"), rois)
        write_table(out.create_group("trials"), trials)
        out.create_dataset("observed_intervals",
                           data=np.array([[recording_start, recording_stop]]))
        summary["behavior"] = {n: _write_series(out.require_group("behavior"), n, *s)
                               for n, s in behavior.items()}
        summary["ground_truth"] = {n: _write_series(out.require_group("truth"), n, *t)
                                   for n, t in truth.items()}
        out.attrs["kind"] = KIND_TRACES
        out.attrs["source"] = str(path)
        out.attrs["source_sha256"] = sha256sum(path)
        out.attrs["recording_start_s"] = recording_start
        out.attrs["recording_stop_s"] = recording_stop
        out.attrs["frame_period_s"] = period
        out.attrs["heldout_column"] = summary["heldout_column"]
        out.attrs["trials_table"] = read.name
        out.attrs["traces_series"] = [p.name for p in planes]
        out.attrs["data_unit"] = planes[0].unit
        out.attrs["lfads_core_version"] = __version__
        summary["source_sha256"] = out.attrs["source_sha256"]
    log.info("ingest: kept %d/%d ROIs of %s, %d frames at %.4g Hz, %d/%d trials", n_kept,
             len(rois), summary["traces"], n_frames, 1.0 / period, summary["trials_kept"],
             summary["trials_in_file"])
    return summary
