"""LFADS output of one dataset, ready for analysis (the ``extract_factors`` stage).

:func:`collect_factors` gathers the posterior, the alignment metadata and the recording's
trials table (as ingestion stored it) into one :class:`LfadsFactors`;
:func:`write_factors_nwb` writes it as ``factors.nwb``, an NWB file of its own on the
recording's clock, and :func:`write_factors_h5` as ``factors.h5``, plain HDF5 with the same
content. :func:`load_factors` reads either file back (numpy arrays and pandas tables;
:meth:`LfadsFactors.to_pynapple` for pynapple objects).

Trials are in the recording's order: row ``i`` of the arrays is the ``i``-th trial of the
recording's trials table that LFADS modelled, whatever its split, and every table carries the
split (``lfads_split``: ``train`` trained on, ``valid`` read by early stopping and model
selection, ``test`` held out from all training and selection, ``none`` not modelled).

Units, the same in both files: factors and inferred inputs in arbitrary units (``a.u.``), rates
in spikes per second (``Hz``: the posterior's expected counts per bin divided by the bin
width; ``posterior.h5`` keeps counts per bin). For calcium traces (``lfads_input.json``'s
``kind`` = ``traces``) rates are the expected value per bin in the traces' unit, as the
posterior holds them, and both files record ``kind`` and ``rates_unit``; their bins sit on
the imaging clock. Times in seconds on the recording's clock.
Arrays are trials x bins x channels; the bins are the window's plus the ``fp_bins``
forward-prediction bins.

``factors.nwb``:

- Identity of the source recording: same ``session_start_time`` and
  ``timestamps_reference_time``, ``session_id``, subject, experimenter, institution and lab; an
  ``identifier`` derived (UUID 5) from the source's identifier and the posterior's SHA-256; a
  ``session_description`` naming the source file and its SHA-256; ``data_collection`` holds the
  export's settings and provenance as JSON.
- ``intervals/trials``: every trial of the recording's trials table (same rows, order and
  ids) with every column NWB stores as one number, boolean or text per trial, and
  ``lfads_split``. Columns not copied (ragged, multi-dimensional, references) are named with
  the reason in the table's description and in ``data_collection``. Where the recording's
  trials came from another table under ``intervals/`` (the setting ``trials_table``, e.g.
  ``encoding_table``), they are still written as ``intervals/trials`` (``nwbfile.trials`` in
  pynwb, ``trials`` in pynapple), and the table's description and ``data_collection``
  (``trials_table``) name the source table.
- ``processing/misc`` (NWB's module for processed data of no one modality; files of earlier
  versions: ``processing/ecephys``, still read):

  - ``lfads_channels``: one row per LFADS channel (the columns of the rates): ``unit_id``
    (id in the recording's Units table) and ``heldout``.
  - ``lfads_factors`` (a.u.), ``lfads_rates`` (Hz), ``lfads_inferred_inputs`` (a.u.; absent
    without a controller): TimeSeries over every modelled trial's bins, trial after trial in
    the recording's order, time-stamped at bin centres (window start + (j + 0.5) x bin width);
    they share one timestamps array.
  - ``lfads_windows``: TimeIntervals, one row per modelled trial in the series' order: the
    window (``start_time``, ``stop_time``), ``trial`` (its row of ``intervals/trials``),
    ``trial_id``, ``lfads_split`` and ``timeseries`` (its first sample and sample count in
    each series).

``factors.h5``:

- ``factors``, ``rates``, ``inferred_inputs``: modelled trials x bins x dims (float32), each
  with attrs ``unit`` and ``description``.
- ``windows/``: one row per row of the arrays: ``trial_id``, ``trial_row`` (row of
  ``trials/``), ``lfads_split``, ``start_time``, ``stop_time`` (s).
- ``trials/``: every trial of the recording: ``id``, its columns and ``lfads_split``.
- ``channels/``: ``unit_id``, ``heldout``.
- attrs: ``bin_width_s``, ``align_event``, ``window_start_offset_s`` and
  ``window_end_offset_s`` (the window's edges relative to the event), ``fp_bins``,
  ``trial_columns_skipped`` (JSON: column -> why),
  ``trials_table`` (the recording's table under ``intervals/`` the trials came from), the
  source and its SHA-256, the posterior's SHA-256, ``lfads_core_version``, ``layout``.

Trials whose windows overlap (or a trials table not in time order) give timestamps that are
not ascending: a warning is issued (NWB best practice asks for ascending timestamps) and the
file is still complete; pynapple objects need windows that do not overlap.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..fileio import atomic_path, read_table, sha256sum, write_table
from .alignment import window_offsets_s
from .ingest import read_session_trials
from .nwb_output import _SETTINGS_PREFIX, MODULE, PREFIX, new_nwb_file

log = logging.getLogger(__name__)

#: Where earlier versions put the output; :func:`load_factors` reads those files too
OLD_MODULES = ("ecephys",)
SPLITS = ("train", "valid", "test")
SPLIT_COLUMN = "lfads_split"
NOT_MODELLED = "none"
SERIES = {  # name -> (posterior key, unit, description)
    "factors": ("factors", "a.u.",
                "LFADS latent factors (posterior mean over samples): the low-dimensional "
                "readout of the generator from which the rates are computed"),
    "rates": ("rates", "Hz",
              "LFADS inferred firing rate of every channel (posterior mean over samples), in "
              "spikes per second; columns follow the rows of lfads_channels"),
    "inferred_inputs": ("inferred_inputs", "a.u.",
                        "LFADS inferred inputs: mean of the controller's output distribution "
                        "(posterior mean over samples)"),
}
UNITS = {name: unit for name, (_, unit, _) in SERIES.items()}
#: posterior.h5 keys of earlier versions, read where the current one is absent
_OLD_POSTERIOR = {"inferred_inputs": "inputs"}
SPLIT_DESCRIPTION = ("LFADS data split of the trial: 'train' (trained on), 'valid' (read by "
                     "early stopping and model selection), 'test' (held out from all training "
                     "and selection), 'none' (not modelled)")
_PROVENANCE = ("source", "source_sha256", "posterior_sha256", "lfads_input_json", "posterior_h5",
               "trials_table", "kind", "rates_unit")
#: Calcium traces' rates: the expected value per bin in the data's unit, not spikes per second
TRACES_RATES = ("LFADS inferred expected value of every channel's trace per bin (posterior "
                "mean over samples), in the unit of the recording's ROI response series; "
                "columns follow the rows of lfads_channels")
#: The recording's trials table where a file records none: NWB's ``intervals/trials``
DEFAULT_TRIALS_TABLE = "trials"


@dataclass
class LfadsFactors:
    """The LFADS output of one dataset, trials in the recording's order.

    ``factors`` (a.u.), ``rates`` (Hz) and ``inferred_inputs`` (a.u.; 0 columns without a
    controller): float32 arrays, modelled trials x bins x dims. ``trials``: one row per row of
    the arrays, indexed by ``trial_id`` (the recording's trial id): the recording's trial
    columns, ``lfads_split``, ``window_start_time_s`` and ``window_stop_time_s`` (s, the
    recording's clock) and ``trial_row`` (row of the recording's trials table). ``all_trials``:
    every trial of the recording (``lfads_split`` ``none`` where not modelled). ``channels``:
    one row per channel (the last axis of ``rates``): ``unit_id`` and ``heldout``.
    ``window_start_offset_s``, ``window_end_offset_s``: the window's edges relative to the
    alignment event ``align_event`` (s), the same for every trial. ``skipped_trial_columns``: the
    recording's trial columns not carried (column -> why). ``info``: source, checksums, the
    recording's table the trials came from (``trials_table``) and,
    from an NWB file, its identity.
    """

    factors: np.ndarray
    rates: np.ndarray
    inferred_inputs: np.ndarray
    trials: pd.DataFrame
    all_trials: pd.DataFrame
    channels: pd.DataFrame
    bin_width_s: float
    align_event: str
    window_start_offset_s: float
    window_end_offset_s: float
    fp_bins: int
    skipped_trial_columns: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def units(self) -> dict[str, str]:
        """The unit of each array: factors and inferred inputs ``a.u.``, rates ``Hz`` (for
        calcium traces, ``info["kind"] == "traces"``, the traces' unit)."""
        return {**UNITS, "rates": self.info.get("rates_unit", UNITS["rates"])}

    def description(self, name: str) -> str:
        """What each array holds (:data:`SERIES`; rates of traces: :data:`TRACES_RATES`)."""
        if name == "rates" and self.info.get("kind") == "traces":
            return TRACES_RATES
        return SERIES[name][2]

    @property
    def timestamps(self) -> np.ndarray:
        """Bin centres on the recording's clock (s), trials x bins."""
        starts = self.trials["window_start_time_s"].to_numpy(float)
        return starts[:, None] + (np.arange(self.factors.shape[1]) + 0.5) * self.bin_width_s

    @property
    def bin_times(self) -> np.ndarray:
        """Bin centres relative to the alignment event (s), one per bin (windows start at the
        bin edge nearest to event + window start, so this is exact to half a bin)."""
        bins = np.arange(self.factors.shape[1])
        return self.window_start_offset_s + (bins + 0.5) * self.bin_width_s

    def to_pynapple(self) -> dict:
        """The output as pynapple objects on the recording's clock: ``factors``, ``rates``
        (columns: unit ids, with ``heldout`` metadata) and ``inferred_inputs`` (None without a
        controller) as ``TsdFrame`` (bins x dims, time support: the windows), and
        ``windows``, an ``IntervalSet`` of the trials' windows in time order with the trials'
        columns as metadata (a column named like one of pynapple's own attributes gets a
        trailing underscore: NLB's ``split`` becomes ``split_``). Needs pynapple (``pip install
        pynapple``) and windows that do not overlap."""
        try:
            import pynapple as nap
        except ImportError:
            raise ImportError("LfadsFactors.to_pynapple needs pynapple, an optional "
                              "dependency: pip install pynapple") from None
        starts = self.trials["window_start_time_s"].to_numpy(float)
        stops = self.trials["window_stop_time_s"].to_numpy(float)
        order = np.argsort(starts, kind="stable")
        overlap = np.flatnonzero(starts[order][1:] < stops[order][:-1] - 1e-9)
        if overlap.size:
            ids = self.trials.index.to_numpy()[order]
            raise ValueError(f"the windows of trials {ids[overlap[0]]} and {ids[overlap[0] + 1]}"
                             f" overlap ({overlap.size} such pairs), so their bins cannot be one "
                             "time series; use the arrays (trials x bins x dims) instead")
        meta = self.trials.iloc[order].reset_index()
        clash = set(dir(nap.IntervalSet)) | {"start", "end"}  # pynapple's own names
        meta = meta.rename(columns={c: f"{c}_" for c in meta.columns if c in clash})
        windows = nap.IntervalSet(start=starts[order], end=stops[order], metadata=meta)
        times = self.timestamps[order].reshape(-1)

        def frame(values, columns, metadata=None):
            return nap.TsdFrame(t=times, d=values[order].reshape(len(times), values.shape[2]),
                                time_support=windows, columns=columns, metadata=metadata)

        channels = self.channels.set_index("unit_id", drop=False)
        n_inputs = self.inferred_inputs.shape[2]
        return {
            "factors": frame(self.factors, [f"factor_{k}" for k in range(self.factors.shape[2])]),
            "rates": frame(self.rates, channels.index.to_list(), channels[["heldout"]]),
            "inferred_inputs": frame(self.inferred_inputs,
                                     [f"input_{k}" for k in range(n_inputs)]) if n_inputs else None,
            "windows": windows,
        }


# ------------------------------------------------------------------ collecting the output

def collect_factors(posterior_h5: str | Path, lfads_input_json: str | Path,
                    session_h5: str | Path, ingest_summary_json: str | Path | None = None,
                    bin_width_s: float | None = None) -> LfadsFactors:
    """The LFADS output of one dataset in the recording's trial order.

    posterior_h5: ``{split}_rates`` (expected counts per bin), ``{split}_factors``,
    ``{split}_inferred_inputs`` (trials x bins x dims; ``{split}_inputs`` in files of earlier
    versions) and ``{split}_inds`` (rows of the trials table);
    lfads_input_json: alignment's metadata (unit ids, trial ids and window start times per
    split); session_h5: ingestion's ``session.h5`` (the recording's trials table);
    ingest_summary_json: ingestion's summary (the trial columns it could not store);
    bin_width_s: checked against the metadata's if given.
    """
    meta = json.loads(Path(lfads_input_json).read_text())
    width = float(meta["bin_width_s"])
    if bin_width_s is not None and (not bin_width_s > 0 or abs(float(bin_width_s) - width) > 1e-9):
        raise ValueError(f"bin_width_s {bin_width_s} differs from {lfads_input_json}'s {width}")
    unit_ids = np.asarray(meta["unit_ids"], dtype=np.int64)
    heldout = np.asarray(meta.get("heldout", [False] * len(unit_ids)), dtype=bool)
    if len(heldout) != len(unit_ids):
        raise ValueError(f"{lfads_input_json}: {len(heldout)} heldout flags for "
                         f"{len(unit_ids)} unit ids")
    with h5py.File(session_h5, "r") as f:
        session_sha = f.attrs.get("source_sha256")
        trials_table = str(f.attrs.get("trials_table", DEFAULT_TRIALS_TABLE))
    if session_sha is not None and "source_sha256" in meta and session_sha != meta["source_sha256"]:
        raise ValueError(f"{session_h5} and {lfads_input_json} come from different recordings "
                         f"(sha256 {session_sha} and {meta['source_sha256']})")
    trials = read_session_trials(session_h5)
    skipped = {}
    if ingest_summary_json is not None:
        summary = json.loads(Path(ingest_summary_json).read_text())
        skipped.update(summary.get("columns_not_ingested", {}).get("trials", {}))
    if SPLIT_COLUMN in trials:
        skipped[SPLIT_COLUMN] = "name taken by the LFADS split column"
        trials = trials.drop(columns=SPLIT_COLUMN)
    source_ids = trials["id"].to_numpy(np.int64)
    row_of = pd.Series(np.arange(len(source_ids)), index=source_ids)
    if not row_of.index.is_unique:
        raise ValueError(f"{session_h5}: trial ids are not unique")

    parts = {name: [] for name in SERIES}
    rows, ids, starts, splits = [], [], [], []
    n_bins = None
    with h5py.File(posterior_h5, "r") as post:
        for split in SPLITS:
            if f"{split}_rates" not in post or len(post[f"{split}_rates"]) == 0:
                continue
            try:
                split_ids = np.asarray(meta["trial_ids"][split], dtype=np.int64)
                split_starts = np.asarray(meta["window_start_times_s"][split], dtype=np.float64)
            except KeyError as err:
                raise ValueError(f"{lfads_input_json} lacks {err} for the {split} trials of "
                                 f"{posterior_h5}") from None
            rates = post[f"{split}_rates"][()]
            if rates.ndim != 3 or not len(split_ids) == len(split_starts) == len(rates):
                raise ValueError(f"{split}: {len(rates)} trials of rates {rates.shape} in "
                                 f"{posterior_h5} but {len(split_ids)} trial ids and "
                                 f"{len(split_starts)} window starts in {lfads_input_json}")
            if rates.shape[2] != len(unit_ids):
                raise ValueError(f"{split}: rates have {rates.shape[2]} channels, "
                                 f"{lfads_input_json} lists {len(unit_ids)} unit ids")
            if n_bins is not None and rates.shape[1] != n_bins:
                raise ValueError(f"{split}: {rates.shape[1]} bins per trial, other splits "
                                 f"{n_bins}")
            n_bins = rates.shape[1]
            missing = np.setdiff1d(split_ids, source_ids)
            if missing.size:
                raise ValueError(f"{split}: trial ids {missing[:5].tolist()} of "
                                 f"{lfads_input_json} are not in the recording's trials table "
                                 f"({session_h5})")
            split_rows = row_of[split_ids].to_numpy()
            if f"{split}_inds" in post and not np.array_equal(post[f"{split}_inds"][()],
                                                                split_rows):
                raise ValueError(f"{split}: {posterior_h5}'s {split}_inds are not the source "
                                 f"rows of {lfads_input_json}'s trial ids (files of different "
                                 f"runs?)")
            for name, (key, _, _) in SERIES.items():
                stored = [k for k in (f"{split}_{key}", f"{split}_{_OLD_POSTERIOR.get(key)}")
                          if k in post]
                values = post[stored[0]][()] if stored else \
                    np.zeros(rates.shape[:2] + (0,), np.float32)
                if values.shape[:2] != rates.shape[:2]:
                    raise ValueError(f"{split}_{key} {values.shape} does not match the trials "
                                     f"x bins of {split}_rates {rates.shape}")
                parts[name].append(values.astype(np.float32))
            rows.append(split_rows)
            ids.append(split_ids)
            starts.append(split_starts)
            splits += [split] * len(split_rows)
    if not rows:
        raise ValueError(f"{posterior_h5} holds no trials")
    rows = np.concatenate(rows)
    if len(np.unique(rows)) != len(rows):
        raise ValueError(f"{lfads_input_json}: a trial is in more than one split")
    order = np.argsort(rows, kind="stable")  # the recording's order
    arrays = {name: np.concatenate(values)[order] for name, values in parts.items()}
    traces = meta.get("kind") == "traces"  # calcium traces: values per bin, in their unit
    if not traces:
        arrays["rates"] = arrays["rates"] / np.float32(width)  # expected counts per bin -> Hz
    starts = np.concatenate(starts)[order]
    all_trials = trials.set_index("id").rename_axis("trial_id")
    split_of = np.full(len(all_trials), NOT_MODELLED, dtype=object)
    split_of[rows] = np.asarray(splits, dtype=object)
    all_trials[SPLIT_COLUMN] = split_of
    modelled = all_trials.iloc[rows[order]].copy()
    modelled["window_start_time_s"] = starts
    modelled["window_stop_time_s"] = starts + n_bins * width
    modelled["trial_row"] = rows[order]
    if skipped:
        log.info("trial columns not carried into the LFADS output: %s", skipped)
    return LfadsFactors(
        factors=arrays["factors"], rates=arrays["rates"],
        inferred_inputs=arrays["inferred_inputs"], trials=modelled, all_trials=all_trials,
        channels=pd.DataFrame({"unit_id": unit_ids, "heldout": heldout}),
        bin_width_s=width, align_event=str(meta.get("align_event", "")),
        **_offsets(meta), fp_bins=int(meta.get("fp_bins", 0)),
        skipped_trial_columns=skipped,
        info={"source": str(meta.get("source", "")),
              "source_sha256": str(meta.get("source_sha256", "unknown")),
              "posterior_sha256": sha256sum(posterior_h5),
              "lfads_input_json": str(lfads_input_json), "posterior_h5": str(posterior_h5),
              "trials_table": trials_table,
              **({"kind": "traces", "rates_unit": str(meta.get("data_unit") or "a.u.")}
                 if traces else {})})


def _settings(output: LfadsFactors) -> dict:
    """What both files record besides the arrays and tables."""
    return {"bin_width_s": output.bin_width_s, "align_event": output.align_event,
            "window_start_offset_s": output.window_start_offset_s,
            "window_end_offset_s": output.window_end_offset_s,
            "fp_bins": output.fp_bins, "units": output.units,
            "trial_columns_skipped": output.skipped_trial_columns,
            "lfads_core_version": __version__,
            **{k: v for k, v in output.info.items() if k in _PROVENANCE}}


def _check_ascending(output: LfadsFactors) -> None:
    stamps = output.timestamps.reshape(-1)
    if np.any(np.diff(stamps) < 0):
        warnings.warn("some LFADS windows overlap or the trials table is not in time order, so "
                      "the timestamps are not ascending; trials remain separable through the "
                      "windows table", stacklevel=3)


# ------------------------------------------------------------------ factors.h5

def write_factors_h5(output: LfadsFactors, out_h5: str | Path) -> Path:
    """Write ``factors.h5`` (layout in the module doc), atomically; returns ``out_h5``."""
    windows = pd.DataFrame({
        "trial_id": output.trials.index.to_numpy(np.int64),
        "trial_row": output.trials["trial_row"].to_numpy(np.int64),
        SPLIT_COLUMN: output.trials[SPLIT_COLUMN].to_numpy(object),
        "start_time": output.trials["window_start_time_s"].to_numpy(float),
        "stop_time": output.trials["window_stop_time_s"].to_numpy(float)})
    settings = _settings(output)
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as out:
        for name in SERIES:
            unit, description = output.units[name], output.description(name)
            ds = out.create_dataset(name, data=getattr(output, name), compression="gzip",
                                    compression_opts=1, shuffle=True)
            ds.attrs.update(unit=unit, description=f"{description}; modelled trials x bins x "
                            "dims, trials in the recording's order (rows of windows/)")
        write_table(out.create_group("windows"), windows)
        write_table(out.create_group("trials"), output.all_trials.reset_index()
                    .rename(columns={"trial_id": "id"}))
        write_table(out.create_group("channels"), output.channels)
        out.attrs.update({k: v for k, v in settings.items()
                          if k not in ("units", "trial_columns_skipped")})
        out.attrs["trial_columns_skipped"] = json.dumps(output.skipped_trial_columns)
        out.attrs["layout"] = (
            "factors, rates (Hz), inferred_inputs: modelled trials x bins x dims, trials in the "
            "recording's order; windows/: one row per trial of the arrays (trial_id, trial_row, "
            "lfads_split, start_time, stop_time in s); trials/: every trial of the recording "
            "with its columns and lfads_split; channels/: unit_id and heldout per channel of "
            "rates. Read with lfads_core.nwb.export.load_factors.")
    return Path(out_h5)


# ------------------------------------------------------------------ factors.nwb

def _column_data(values: pd.Series) -> np.ndarray:
    """A trial column as NWB stores it: booleans, numbers, or text."""
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    return np.asarray([str(v) for v in values.to_numpy(object)], dtype=object)


def write_factors_nwb(output: LfadsFactors, source_nwb: str | Path, out_nwb: str | Path
                      ) -> Path:
    """Write ``factors.nwb`` (layout in the module doc) with the identity of the recording
    ``source_nwb``, atomically; returns ``out_nwb``."""
    from pynwb import NWBHDF5IO

    out_nwb = Path(out_nwb)
    _check_ascending(output)
    nwb, described, source_name = _nwb_file(output, source_nwb)
    _add_trials(nwb, output, described)
    module = nwb.create_processing_module(
        MODULE, f"Output of an LFADS model fitted "
                f"to {source_name} (lfads_* objects): posterior means of the factors, rates "
                f"and inferred inputs of every modelled trial, at "
                f"{output.bin_width_s * 1e3:g} ms bins on the recording's clock, trials in the "
                f"recording's order")
    module.add(_channels_table(output))
    written = _add_series(module, output)
    module.add(_windows_table(output, nwb.trials, written))
    with atomic_path(out_nwb) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return out_nwb


def _nwb_file(output: LfadsFactors, source_nwb: str | Path):
    """``(nwbfile, described, source_name)``: a new in-memory ``NWBFile`` with the identity of
    the recording ``source_nwb`` (start time, subject, session and lab fields; an identifier
    derived from the source's and the posterior's checksum; the export's settings as JSON in
    ``data_collection``), the descriptions of the source trials table's columns (name ->
    text) and the source file's name. Raises ValueError when the source's trial ids are not
    ``output.all_trials``'s."""
    from pynwb import NWBHDF5IO

    settings = _settings(output)
    table_name = output.info.get("trials_table", DEFAULT_TRIALS_TABLE)
    with NWBHDF5IO(str(source_nwb), "r") as io_src:
        src = io_src.read()
        source_table = _interval_table(src, table_name)
        source_ids = np.asarray(source_table.id.data[:], dtype=np.int64) \
            if source_table is not None else np.array([], np.int64)
        if not np.array_equal(source_ids, output.all_trials.index.to_numpy(np.int64)):
            raise ValueError(f"{source_nwb}'s trials table (intervals/{table_name}) is not the "
                             "one ingested (other trial ids)")
        described = {c: source_table[c].description for c in source_table.colnames}
        nwb, source_name = new_nwb_file(src, settings, source_nwb)
    return nwb, described, source_name


def _add_trials(nwb, output: LfadsFactors, described: dict[str, str]) -> None:
    """Set ``nwb.trials`` (``intervals/trials``) to every trial of the recording (rows, ids
    and order of ``output.all_trials``): ``start_time``, ``stop_time`` (s, the recording's
    clock), the recording's columns with their descriptions (``described``: name -> text)
    and ``lfads_split``; the description names the columns not copied and the source table."""
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    table_name = output.info.get("trials_table", DEFAULT_TRIALS_TABLE)
    table = output.all_trials
    columns = []
    for name in ["start_time", "stop_time"] + [c for c in table.columns
                                               if c not in ("start_time", "stop_time")]:
        description = SPLIT_DESCRIPTION if name == SPLIT_COLUMN else \
            described.get(name) or f"{name} of the recording's trials table " \
            f"(intervals/{table_name})"
        columns.append(VectorData(name=name, description=description,
                                  data=_column_data(table[name])))
    not_copied = "; ".join(f"{k} ({v})" for k, v in output.skipped_trial_columns.items())
    from_table = "" if table_name == DEFAULT_TRIALS_TABLE else \
        f" (the recording's intervals/{table_name}, the table its trials came from)"
    nwb.trials = TimeIntervals(
        name="trials", id=table.index.to_numpy(np.int64), columns=columns,
        description=f"Every trial of the recording's trials table{from_table}, in its order and "
                    "with its ids and columns, and the LFADS split of each"
                    + (f". Columns not copied: {not_copied}" if not_copied else ""))


def _channels_table(output: LfadsFactors):
    """``lfads_channels``: one row per channel (column of the rates, held-in first, then
    held-out): ``unit_id`` (the recording's Units table's id) and ``heldout``."""
    from hdmf.common import DynamicTable, VectorData

    return DynamicTable(
        name=f"{PREFIX}channels",
        description="LFADS channels in model order (held-in first, then held-out); row i is "
                    "column i of lfads_rates. unit_id is the id in the recording's Units "
                    "table.",
        id=np.arange(len(output.channels)),
        columns=[VectorData(name="unit_id", data=output.channels["unit_id"].to_numpy(np.int64),
                            description="id of the unit in the recording's Units table"),
                 VectorData(name="heldout", data=output.channels["heldout"].to_numpy(bool),
                            description="True if the unit was held out of the model's input "
                                        "(its rates are predicted, not reconstructed)")])


def _add_series(module, output: LfadsFactors) -> list:
    """Add ``lfads_factors`` (a.u.), ``lfads_rates`` (Hz) and ``lfads_inferred_inputs`` (a.u.;
    left out with 0 dims) to ``module``: TimeSeries of (modelled trials x bins) samples x dims,
    trial after trial, stamped at bin centres on the recording's clock (s; the later series
    link to the first's timestamps). Returns the series written, in that order."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import TimeSeries

    n_trials, n_bins = output.factors.shape[:2]
    stamps = output.timestamps.reshape(-1)
    first, written = None, []
    for name in SERIES:
        unit, description = output.units[name], output.description(name)
        values = getattr(output, name)
        if values.shape[2] == 0:
            continue
        flat = values.reshape(n_trials * n_bins, values.shape[2])
        series = TimeSeries(
            name=PREFIX + name, unit=unit,
            data=H5DataIO(flat, compression="gzip", compression_opts=4, shuffle=True),
            timestamps=stamps if first is None else first,
            description=f"{description}. Modelled trials one after the other in the order of "
                        f"the recording's trials table; lfads_windows gives each trial's "
                        f"samples.",
            comments=f"Bin width {output.bin_width_s:g} s; time stamps are bin centres.")
        module.add(series)
        first = series if first is None else first
        written.append(series)
    return written


def _windows_table(output: LfadsFactors, trials, written: list):
    """``lfads_windows``: one row per modelled trial in the series' order: its window
    (``start_time``, ``stop_time``: s, the recording's clock; window plus forward bins),
    ``trial`` (its row of ``trials``, the file's trials table), ``trial_id``, ``lfads_split``
    and ``timeseries`` (its first sample and sample count, bins, in each of ``written``)."""
    from pynwb.epoch import TimeIntervals

    n_trials, n_bins = output.factors.shape[:2]
    windows = TimeIntervals(
        name=f"{PREFIX}windows",
        description="LFADS window (plus forward-prediction bins) of each modelled trial, in "
                    "the order of the lfads_* series (the recording's trial order); "
                    "timeseries gives its first sample and sample count in each series")
    windows.add_column("trial", "the trial's row of intervals/trials", table=trials)
    windows.add_column("trial_id", "id of the trial in the recording's trials table")
    windows.add_column(SPLIT_COLUMN, SPLIT_DESCRIPTION)
    trial_rows = output.trials["trial_row"].to_numpy(np.int64)
    starts = output.trials["window_start_time_s"].to_numpy(float)
    splits = output.trials[SPLIT_COLUMN].to_numpy(object)
    ids = output.trials.index.to_numpy(np.int64)
    for k in range(n_trials):
        windows.add_row(start_time=float(starts[k]),
                        stop_time=float(starts[k]) + n_bins * output.bin_width_s,
                        trial=int(trial_rows[k]), trial_id=int(ids[k]),
                        lfads_split=str(splits[k]),
                        timeseries=[_reference(k * n_bins, n_bins, s) for s in written])
    return windows


def _interval_table(nwbfile, name: str):
    """The table ``intervals/{name}`` of a pynwb ``NWBFile`` (``trials`` is ``nwbfile.trials``),
    None if absent."""
    if name == DEFAULT_TRIALS_TABLE and nwbfile.trials is not None:
        return nwbfile.trials
    try:
        return nwbfile.get_time_intervals(name)
    except KeyError:
        return None


def _reference(first: int, count: int, series):
    from pynwb.base import TimeSeriesReference

    return TimeSeriesReference(first, count, series)


# ------------------------------------------------------------------ reading back

def load_factors(path: str | Path):
    """Read ``factors.nwb`` or ``factors.h5`` (by the suffix) into an :class:`LfadsFactors`:
    factors, rates (Hz) and inferred inputs as numpy arrays (trials x bins x dims, trials in
    the recording's order) with the trials' columns, split and windows, and the channels'
    unit ids and held-out flags. ``.to_pynapple()`` turns it into pynapple objects.

    The output of a continuous recording (segments merged onto its bin grid) is read into an
    :class:`lfads_core.nwb.export_continuous.LfadsContinuousFactors` instead: bins x dims on
    the recording's clock, NaN in gaps, with the covered intervals and the blocks of time."""
    path = Path(path)
    if path.suffix.lower() == ".nwb":
        return _load_nwb(path)
    with h5py.File(path, "r") as f:
        continuous = f.attrs.get("layout_kind") == "continuous"
    if continuous:
        from .export_continuous import load_continuous_h5
        return load_continuous_h5(path)
    return _load_h5(path)


def _modelled(all_trials: pd.DataFrame, rows: np.ndarray, starts: np.ndarray,
              stops: np.ndarray, splits: np.ndarray) -> pd.DataFrame:
    trials = all_trials.iloc[rows].copy()
    trials[SPLIT_COLUMN] = splits
    trials["window_start_time_s"] = starts
    trials["window_stop_time_s"] = stops
    trials["trial_row"] = rows
    return trials


def _offsets(settings) -> dict:
    """The window's edges relative to the event (s) as :class:`LfadsFactors` fields, from
    settings that name them as now or as earlier versions did (``window_start_s``)."""
    start, end = window_offsets_s(settings)
    return dict(window_start_offset_s=start, window_end_offset_s=end)


def _settings_of(settings: dict, **arrays) -> dict:
    return dict(bin_width_s=float(settings["bin_width_s"]),
                align_event=str(settings.get("align_event", "")),
                **_offsets(settings), fp_bins=int(settings.get("fp_bins", 0)), **arrays)


def _load_h5(path: Path) -> LfadsFactors:
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in SERIES}
        expected = {**UNITS, "rates": f.attrs.get("rates_unit", UNITS["rates"])}
        for name, unit in expected.items():
            if f[name].attrs.get("unit") != unit:
                raise ValueError(f"{path}: {name} is in {f[name].attrs.get('unit')!r}, not "
                                 f"{unit!r} (a file of an older version?)")
        windows = read_table(f["windows"])
        all_trials = read_table(f["trials"]).set_index("id").rename_axis("trial_id")
        channels = read_table(f["channels"])
        settings = dict(f.attrs)
    skipped = json.loads(settings.pop("trial_columns_skipped", "{}"))
    trials = _modelled(all_trials, windows["trial_row"].to_numpy(np.int64),
                       windows["start_time"].to_numpy(float), windows["stop_time"].to_numpy(float),
                       windows[SPLIT_COLUMN].to_numpy(object))
    info = {k: settings[k] for k in ("source", "source_sha256", "posterior_sha256",
                                     "lfads_core_version", "trials_table", "kind",
                                     "rates_unit") if k in settings}
    return LfadsFactors(trials=trials, all_trials=all_trials, channels=channels,
                        skipped_trial_columns=skipped, info=info,
                        **_settings_of(settings, **arrays))


def _load_nwb(path: Path) -> LfadsFactors:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        text = nwb.data_collection or ""
        names = [m for m in (MODULE, *OLD_MODULES) if m in nwb.processing
                 and f"{PREFIX}windows" in nwb.processing[m].data_interfaces]
        if MODULE in nwb.processing and f"{PREFIX}blocks" in nwb.processing[MODULE].data_interfaces \
                and text.startswith(_SETTINGS_PREFIX):  # a continuous recording's output
            from .export_continuous import load_continuous_nwb
            return load_continuous_nwb(nwb, json.loads(text[len(_SETTINGS_PREFIX):]),
                                       nwb.processing[MODULE])
        if not names or not text.startswith(_SETTINGS_PREFIX):
            raise ValueError(f"{path} is not an LFADS output file of this version (no "
                             f"processing/{MODULE}/{PREFIX}* objects and settings)")
        settings = json.loads(text[len(_SETTINGS_PREFIX):])
        module = nwb.processing[names[0]]
        channels = module[f"{PREFIX}channels"]
        windows = module[f"{PREFIX}windows"]
        n_trials = len(windows)
        arrays = {}
        for name in SERIES:
            key = PREFIX + name
            if key not in module.data_interfaces:
                continue
            data = np.asarray(module[key].data[:])
            arrays[name] = data.reshape(n_trials, len(data) // max(n_trials, 1), data.shape[1])
        n_bins = arrays["factors"].shape[1]
        arrays.setdefault("inferred_inputs", np.zeros((n_trials, n_bins, 0), np.float32))
        all_trials = nwb.trials.to_dataframe().rename_axis("trial_id")
        trials = _modelled(all_trials, np.asarray(windows["trial"].data[:], dtype=np.int64),
                           np.asarray(windows["start_time"].data[:], dtype=float),
                           np.asarray(windows["stop_time"].data[:], dtype=float),
                           np.asarray(windows[SPLIT_COLUMN].data[:], dtype=object))
        info = {"identifier": nwb.identifier, "session_start_time": nwb.session_start_time,
                "session_description": nwb.session_description,
                **{k: settings[k] for k in ("source", "source_sha256", "source_identifier",
                                            "posterior_sha256", "lfads_core_version",
                                            "trials_table", "kind", "rates_unit")
                   if k in settings}}
        return LfadsFactors(
            channels=pd.DataFrame({"unit_id": np.asarray(channels["unit_id"].data[:]),
                                   "heldout": np.asarray(channels["heldout"].data[:], bool)}),
            trials=trials, all_trials=all_trials, info=info,
            skipped_trial_columns=settings.get("trial_columns_skipped", {}),
            **_settings_of(settings, **arrays))
