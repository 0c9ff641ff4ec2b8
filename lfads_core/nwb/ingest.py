"""NWB ingestion: any NWB file with a Units table and a trials table -> one normalised HDF5.

The NWB file is read lazily (h5py-backed through pynwb): spike times are streamed unit by unit
into the output, so memory stays at one unit's spikes however large the file is.

Output ``session.h5`` (times in seconds on the recording's clock):

- ``units/``: table of every unit of the file: ``id``, ``n_spikes``, ``heldout``, ``kept``,
  ``drop_reason`` and the file's other scalar unit columns.
- ``spikes/times`` (float64, kept units' spikes, concatenated unit by unit, each sorted) and
  ``spikes/unit_offsets`` (kept units + 1): unit ``k``'s spikes are ``times[off[k]:off[k+1]]``.
- ``trials/``: table of every trial with the file's scalar columns, ``kept`` and ``drop_reason``.
- ``valid_intervals`` (n x 2): where every kept unit was observed (``obs_intervals``), or the
  whole recording if the file has none.
- ``behavior/{name}`` and ``truth/{name}``: ``data`` (samples x dims) with attrs ``unit`` and
  ``columns``, plus ``timestamps`` (samples).
- attrs: ``source``, ``source_sha256``, ``recording_start``, ``recording_stop``.

Spike-time policy: spike times that are not sorted within a unit are sorted, with a warning
(counted in the summary); negative or non-finite spike times are rejected with an error, since
NWB times count from the session start and such values mean a corrupt or mis-converted file.
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
from ..fileio import atomic_path, sha256sum, write_table

log = logging.getLogger(__name__)

BEHAVIOR_MODULE = "behavior"
TRUTH_MODULE = "ground_truth"


@dataclass
class IngestSettings:
    """What to take from the file (the per-dataset settings of the sample sheet)."""

    align_event: str = "move_onset_time"
    behavior: list[str] = field(default_factory=list)
    unit_filter: str = ""
    min_rate_hz: float = 0.0
    trial_filter: str = ""

    @classmethod
    def from_settings(cls, settings: dict) -> "IngestSettings":
        from ..values import split_list

        return cls(
            align_event=settings["align_event"],
            behavior=split_list(settings["behavior"]),
            unit_filter=settings["unit_filter"],
            min_rate_hz=float(settings["min_rate_hz"]),
            trial_filter=settings["trial_filter"],
        )


def open_nwb(path: str | Path):
    """Open an NWB file read-only with pynwb; returns ``(io, nwbfile)``.

    Raises :class:`InputDataError` if the file is missing, not HDF5, or not readable as NWB.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "file", "file not found")
    if not h5py.is_hdf5(path):
        raise InputDataError(path, "file", "not an HDF5 file, so not an NWB file")
    try:
        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nwbfile = io.read()
    except Exception as exc:  # pynwb raises many kinds for files that are not NWB
        raise InputDataError(path, "file", f"not a readable NWB file ({type(exc).__name__}: {exc})")
    return io, nwbfile


def _scalar_columns(table) -> pd.DataFrame:
    """The columns of an NWB DynamicTable that hold one scalar per row (ragged ones skipped)."""
    from hdmf.common.table import VectorIndex

    ragged_targets = {col.target.name for col in table.columns if isinstance(col, VectorIndex)}
    columns = {"id": np.asarray(table.id.data[:])}
    for col in table.columns:
        if isinstance(col, VectorIndex) or col.name in ragged_targets:
            continue
        values = col.data[:]
        values = np.asarray(values)
        if values.ndim != 1:
            continue
        if values.dtype.kind == "S":
            values = values.astype(str)
        columns[col.name] = values
    return pd.DataFrame(columns)


def _ragged(table, name: str):
    """``(flat_data, ends)`` h5py-backed datasets of a ragged column, or None."""
    if name not in table.colnames:
        return None
    index = table[name]
    return index.target.data, index.data


def _apply_query(df: pd.DataFrame, query: str, path, field_name: str) -> np.ndarray:
    """Boolean mask of the rows selected by a pandas ``query``; errors name the setting."""
    if not query:
        return np.ones(len(df), dtype=bool)
    try:
        selected = df.query(query)
    except Exception as exc:
        raise InputDataError(path, field_name,
                             f"query {query!r} failed ({exc}); columns are {list(df.columns)}")
    return df.index.isin(selected.index)


def _merge_intervals(intervals: np.ndarray) -> np.ndarray:
    """Union of closed intervals (n x 2), sorted and merged."""
    if len(intervals) == 0:
        return np.empty((0, 2))
    intervals = intervals[np.argsort(intervals[:, 0])]
    merged = [list(intervals[0])]
    for start, stop in intervals[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return np.asarray(merged, dtype=float)


def _intersect_intervals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two sorted, merged interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, stop = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if start < stop:
            out.append([start, stop])
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.asarray(out, dtype=float).reshape(-1, 2)


def find_series(nwbfile, name: str, module: str = BEHAVIOR_MODULE):
    """Find a TimeSeries called ``name`` in ``processing/{module}`` (also inside containers such
    as Position or BehavioralTimeSeries) or in ``acquisition``. Returns None if absent."""
    from pynwb import TimeSeries

    places = []
    if module in nwbfile.processing:
        places.extend(nwbfile.processing[module].data_interfaces.values())
    places.extend(nwbfile.acquisition.values())
    for obj in places:
        if isinstance(obj, TimeSeries) and obj.name == name:
            return obj
        for attr in ("time_series", "spatial_series"):
            children = getattr(obj, attr, None)
            if isinstance(children, dict) and name in children:
                return children[name]
    return None


def _series_arrays(series) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps (samples,), data (samples x dims))`` of a TimeSeries, in seconds."""
    data = np.asarray(series.data[:])
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype=np.float64)
    else:
        times = series.starting_time + np.arange(len(data)) / series.rate
    return times, data


def _series_columns(name: str, n_dims: int) -> list[str]:
    if n_dims == 1:
        return [name]
    if n_dims <= 3:
        return [f"{name}_{axis}" for axis in "xyz"[:n_dims]]
    return [f"{name}_{i}" for i in range(n_dims)]


def _write_series(group: h5py.Group, name: str, series) -> dict:
    times, data = _series_arrays(series)
    sub = group.create_group(name)
    sub.create_dataset("timestamps", data=times)
    sub.create_dataset("data", data=data, compression="gzip", compression_opts=1, shuffle=True)
    sub.attrs["unit"] = str(series.unit)
    sub.attrs["columns"] = _series_columns(name, data.shape[1])
    return {"samples": int(data.shape[0]), "dims": int(data.shape[1]), "unit": str(series.unit)}


def ingest_nwb(path: str | Path, out_h5: str | Path, settings: IngestSettings,
               progress_every: int = 0) -> dict:
    """Read an NWB recording and write the normalised ``session.h5``. Returns a summary dict.

    Every check that can fail is made before anything is written; the output is written to a
    temporary file and renamed, so a failure leaves nothing behind.
    """
    path = Path(path)
    io, nwbfile = open_nwb(path)
    try:
        return _ingest(path, nwbfile, Path(out_h5), settings, progress_every)
    finally:
        io.close()


def _ingest(path: Path, nwbfile, out_h5: Path, settings: IngestSettings, progress_every: int):
    units = nwbfile.units
    if units is None:
        raise InputDataError(path, "units", "the file has no Units table")
    spikes = _ragged(units, "spike_times")
    if spikes is None:
        raise InputDataError(path, "units.spike_times", "the Units table has no spike_times column")
    spike_data, spike_ends = spikes
    ends = np.asarray(spike_ends[:], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    unit_table = _scalar_columns(units)
    unit_table["n_spikes"] = ends - starts
    if "heldout" in unit_table:
        unit_table["heldout"] = unit_table["heldout"].astype(bool)
    else:
        unit_table["heldout"] = False
    if len(unit_table) == 0:
        raise InputDataError(path, "units", "the Units table has no rows")

    trials_nwb = nwbfile.trials
    if trials_nwb is None:
        raise InputDataError(path, "trials", "the file has no trials table (intervals/trials)")
    trials = _scalar_columns(trials_nwb)
    if len(trials) == 0:
        raise InputDataError(path, "trials", "the trials table has no rows")
    event = settings.align_event
    if event not in trials:
        raise InputDataError(path, f"trials.{event}",
                             f"alignment column missing; trial columns are {list(trials.columns)}")
    event_times = pd.to_numeric(trials[event], errors="coerce").to_numpy(dtype=float)
    if np.all(np.isnan(event_times)):
        raise InputDataError(path, f"trials.{event}", "alignment column is NaN for every trial")

    # Observation intervals: per unit if the file has them, else the whole recording.
    last_spike = max((float(spike_data[e - 1]) for s, e in zip(starts, ends) if e > s),
                     default=0.0)
    recording_stop = max(float(np.nanmax(trials["stop_time"])), last_spike)
    obs = _ragged(units, "obs_intervals")
    obs_ends = np.asarray(obs[1][:], dtype=np.int64) if obs is not None else None

    def unit_intervals(k: int) -> np.ndarray:
        if obs is None:
            return np.array([[0.0, recording_stop]])
        lo = 0 if k == 0 else obs_ends[k - 1]
        return _merge_intervals(np.asarray(obs[0][lo:obs_ends[k]], dtype=float).reshape(-1, 2))

    observed_s = np.array([np.sum(np.diff(unit_intervals(k), axis=1)) for k in range(len(ends))])
    rate_hz = np.divide(unit_table["n_spikes"].to_numpy(), observed_s,
                        out=np.zeros(len(ends)), where=observed_s > 0)
    unit_table["rate_hz"] = rate_hz

    # Unit filters.
    reason = np.full(len(unit_table), "", dtype=object)
    reason[unit_table["n_spikes"].to_numpy() == 0] = "no spikes"
    keep_query = _apply_query(unit_table, settings.unit_filter, path, "unit_filter")
    reason[(reason == "") & ~keep_query] = "unit_filter"
    reason[(reason == "") & (rate_hz < settings.min_rate_hz)] = f"rate < {settings.min_rate_hz} Hz"
    kept = reason == ""
    unit_table["kept"] = kept
    unit_table["drop_reason"] = reason.astype(str)
    if not kept.any():
        raise InputDataError(
            path, "units",
            f"no units left after filtering ({len(kept)} in file; unit_filter={settings.unit_filter!r},"
            f" min_rate_hz={settings.min_rate_hz}); drop reasons: "
            f"{pd.Series(reason).value_counts().to_dict()}")

    valid = None
    for k in np.flatnonzero(kept):
        valid = unit_intervals(k) if valid is None else _intersect_intervals(valid, unit_intervals(k))

    # Trial filter.
    trial_reason = np.full(len(trials), "", dtype=object)
    trial_reason[~_apply_query(trials, settings.trial_filter, path, "trial_filter")] = "trial_filter"
    trial_reason[(trial_reason == "") & np.isnan(event_times)] = f"{event} is NaN"
    trials["kept"] = trial_reason == ""
    trials["drop_reason"] = trial_reason.astype(str)

    # Behaviour (and ground truth, if the file is simulated) must exist before we write.
    behavior = {}
    for name in settings.behavior:
        series = find_series(nwbfile, name)
        if series is None:
            raise InputDataError(path, f"processing/{BEHAVIOR_MODULE}/{name}",
                                 "behaviour series named in the settings is not in the file")
        behavior[name] = series
    truth = {}
    if TRUTH_MODULE in nwbfile.processing:
        truth = dict(nwbfile.processing[TRUTH_MODULE].data_interfaces)

    summary = {
        "source": str(path),
        "units_in_file": int(len(unit_table)),
        "units_kept": int(kept.sum()),
        "unit_drop_reasons": pd.Series(reason[~kept]).value_counts().to_dict(),
        "trials_in_file": int(len(trials)),
        "trials_kept": int(trials["kept"].sum()),
        "trial_drop_reasons": pd.Series(trial_reason[trial_reason != ""]).value_counts().to_dict(),
        "units_resorted": 0,
        "recording_stop_s": recording_stop,
        "lfads_core_version": __version__,
    }
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
        kept_idx = np.flatnonzero(kept)
        n_kept_spikes = int(unit_table["n_spikes"].to_numpy()[kept].sum())
        times_out = out.create_dataset("spikes/times", shape=(n_kept_spikes,), dtype="f8",
                                       chunks=(min(max(n_kept_spikes, 1), 1 << 20),))
        offsets = np.zeros(len(kept_idx) + 1, dtype=np.int64)
        for i, k in enumerate(kept_idx):
            unit_spikes = np.asarray(spike_data[starts[k]:ends[k]], dtype=np.float64)
            unit_id = unit_table["id"].iat[k]
            if not np.all(np.isfinite(unit_spikes)):
                raise InputDataError(path, "units.spike_times",
                                     f"unit id {unit_id} has non-finite spike times")
            if unit_spikes[0] < 0 or unit_spikes.min() < 0:
                raise InputDataError(path, "units.spike_times",
                                     f"unit id {unit_id} has negative spike times "
                                     f"(min {unit_spikes.min():.6g} s); times must count from "
                                     "session_start_time")
            if np.any(np.diff(unit_spikes) < 0):
                warnings.warn(f"{path}: units.spike_times of unit id {unit_id} are not sorted; "
                              "sorting them")
                log.warning("unit id %s: spike times not sorted; sorted them", unit_id)
                unit_spikes = np.sort(unit_spikes)
                summary["units_resorted"] += 1
            offsets[i + 1] = offsets[i] + len(unit_spikes)
            times_out[offsets[i]:offsets[i + 1]] = unit_spikes
            if progress_every and (i + 1) % progress_every == 0:
                log.info("ingest: %d/%d units, %d spikes", i + 1, len(kept_idx), offsets[i + 1])
        out.create_dataset("spikes/unit_offsets", data=offsets)
        write_table(out.create_group("units"), unit_table)
        write_table(out.create_group("trials"), trials)
        out.create_dataset("valid_intervals", data=valid)
        summary["behavior"] = {n: _write_series(out.require_group("behavior"), n, s)
                               for n, s in behavior.items()}
        summary["ground_truth"] = {n: _write_series(out.require_group("truth"), n, s)
                                   for n, s in truth.items()}
        out.attrs["source"] = str(path)
        out.attrs["source_sha256"] = sha256sum(path)
        out.attrs["recording_start"] = 0.0
        out.attrs["recording_stop"] = recording_stop
        out.attrs["lfads_core_version"] = __version__
        summary["source_sha256"] = out.attrs["source_sha256"]
        summary["spikes_kept"] = int(n_kept_spikes)
    log.info("ingest: kept %d/%d units, %d/%d trials, %d spikes", summary["units_kept"],
             summary["units_in_file"], summary["trials_kept"], summary["trials_in_file"],
             summary["spikes_kept"])
    return summary
