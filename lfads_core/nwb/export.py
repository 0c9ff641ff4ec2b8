"""LFADS output of one dataset (the ``extract_factors`` stage): :func:`write_factors_h5` for
Python users, and :func:`write_factors_nwb`, an NWB file of its own on the source recording's
clock.

Layout of the file written by :func:`write_factors_nwb`:

- The file's identity follows the source recording: same ``session_start_time`` and
  ``timestamps_reference_time``, ``session_id``, subject, experimenter, institution and lab;
  an ``identifier`` derived (UUID 5) from the source's identifier and the posterior's
  SHA-256; a ``session_description`` naming the source file and its SHA-256.
- ``intervals/trials``: every trial of the source's trials table (same rows and order, row
  ``i`` has id ``i``, the row index that ``*_inds`` of ``lfads_input.h5`` use), with
  ``source_trial_id`` (the id in the source file) and ``lfads_split`` (``train``,
  ``valid``, ``test`` or ``none`` for trials LFADS did not model).
- ``processing/lfads``:

  - ``channels``: one row per LFADS channel (the column order of ``rates``): ``unit_id``
    (id in the source's Units table) and ``heldout``. Spike times are not copied.
  - for each split ``s`` with trials: TimeSeries ``{s}_factors`` (a.u.), ``{s}_rates``
    (Hz: expected counts per bin / bin width) and ``{s}_inferred_inputs`` (a.u.; left out
    when the model has no controller outputs). Samples are the bins of every trial's window,
    time-stamped at the bin centres on the recording's clock (window start + (j + 0.5) x
    bin width), trial after trial in order of window start; the three series of a split
    share one timestamps array.
  - ``{s}_windows``: a TimeIntervals table, one row per trial of the split in the order of
    the series: the window (``start_time``, ``stop_time``), ``trial_id`` (source id),
    ``trial_row`` (row in ``intervals/trials``) and ``timeseries`` (the first sample and
    sample count of the trial in each series), so trials can be split back.

If two windows of a split overlap, the timestamps cannot be ascending and a warning is
issued (NWB best practice asks for ascending timestamps); the file is still complete.
"""

from __future__ import annotations

import datetime
import json
import uuid
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from ..fileio import atomic_path, sha256sum

MODULE = "lfads"
SPLITS = ("train", "valid", "test")
SERIES = {  # name -> (posterior key, unit, description)
    "factors": ("factors", "a.u.",
                "LFADS latent factors (posterior mean over samples): the low-dimensional "
                "readout of the generator from which the rates are computed"),
    "rates": ("rates", "Hz",
              "LFADS inferred firing rate of every channel (posterior mean over samples), in "
              "spikes per second; columns follow the rows of processing/lfads/channels"),
    "inferred_inputs": ("inputs", "a.u.",
                        "LFADS inferred inputs: mean of the controller's output distribution "
                        "(posterior mean over samples)"),
}
_SUBJECT_FIELDS = ("age", "age__reference", "description", "genotype", "sex", "species",
                   "subject_id", "weight", "strain", "date_of_birth")
_FILE_FIELDS = ("session_id", "experimenter", "institution", "lab", "experiment_description",
                "protocol", "related_publications")


def _window_layout(window_starts: np.ndarray, n_bins: int, bin_width_s: float, split: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Order of a split's trials by window start, and the bin-centre timestamps in that
    order (trials x bins, s)."""
    order = np.argsort(window_starts, kind="stable")
    starts = window_starts[order]
    stamps = starts[:, None] + (np.arange(n_bins) + 0.5) * bin_width_s
    if len(starts) > 1 and np.any(starts[1:] < starts[:-1] + n_bins * bin_width_s - 1e-9):
        warnings.warn(f"{split}: some LFADS windows overlap, so the NWB timestamps are not "
                      "ascending; trials remain separable through the windows table",
                      stacklevel=3)
    return order, stamps


def _copy_subject(src):
    from pynwb.file import Subject

    if src.subject is None:
        return None
    fields = {k: getattr(src.subject, k, None) for k in _SUBJECT_FIELDS}
    return Subject(**{k: v for k, v in fields.items() if v is not None})


def write_factors_nwb(source_nwb: str | Path, lfads_input_json: str | Path,
                      posterior_h5: str | Path, out_nwb: str | Path,
                      bin_width_s: float) -> Path:
    """Write the LFADS posterior of one dataset as an NWB file (layout in the module doc).

    source_nwb: the recording the dataset came from; lfads_input_json: the metadata written
    with ``lfads_input.h5`` (unit ids, trial ids and window start times per split);
    posterior_h5: ``{split}_rates`` (expected counts per bin, trials x bins x channels),
    ``{split}_factors`` and ``{split}_inputs`` (trials x bins x dims); bin_width_s: the bin
    width (s), checked against the metadata's. Written atomically; returns ``out_nwb``.
    """
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.epoch import TimeIntervals
    from hdmf.common import DynamicTable, VectorData

    out_nwb = Path(out_nwb)
    meta = json.loads(Path(lfads_input_json).read_text())
    bin_width_s = float(bin_width_s)
    if not bin_width_s > 0:
        raise ValueError(f"bin_width_s must be > 0, got {bin_width_s}")
    if "bin_width_s" in meta and abs(float(meta["bin_width_s"]) - bin_width_s) > 1e-9:
        raise ValueError(f"bin_width_s {bin_width_s} differs from {lfads_input_json}'s "
                         f"{meta['bin_width_s']}")
    unit_ids = np.asarray(meta["unit_ids"], dtype=np.int64)
    heldout = np.asarray(meta.get("heldout", [False] * len(unit_ids)), dtype=bool)
    if len(heldout) != len(unit_ids):
        raise ValueError(f"{lfads_input_json}: {len(heldout)} heldout flags for "
                         f"{len(unit_ids)} unit ids")

    with h5py.File(posterior_h5, "r") as f:
        post = {k: f[k][()] for k in f.keys()}

    splits = {}
    for split in SPLITS:
        if f"{split}_rates" not in post:
            continue
        rates = post[f"{split}_rates"]
        try:
            trial_ids = np.asarray(meta["trial_ids"][split], dtype=np.int64)
            starts = np.asarray(meta["window_start_times_s"][split], dtype=np.float64)
        except KeyError as err:
            raise ValueError(f"{lfads_input_json} lacks {err} for the {split} trials of "
                             f"{posterior_h5}") from None
        if rates.ndim != 3 or not len(trial_ids) == len(starts) == len(rates):
            raise ValueError(f"{split}: {len(rates)} trials of rates {rates.shape} in "
                             f"{posterior_h5} but {len(trial_ids)} trial ids and "
                             f"{len(starts)} window starts in {lfads_input_json}")
        if rates.shape[2] != len(unit_ids):
            raise ValueError(f"{split}: rates have {rates.shape[2]} channels, "
                             f"{lfads_input_json} lists {len(unit_ids)} unit ids")
        for name, (key, _, _) in SERIES.items():
            values = post.get(f"{split}_{key}")
            if values is not None and values.shape[:2] != rates.shape[:2]:
                raise ValueError(f"{split}_{key} {values.shape} does not match the trials x "
                                 f"bins of {split}_rates {rates.shape}")
        if len(rates):
            splits[split] = (trial_ids, starts)

    io_src = NWBHDF5IO(str(source_nwb), "r")
    try:
        src = io_src.read()
        if src.trials is None or len(src.trials) == 0:
            raise ValueError(f"{source_nwb} has no trials table")
        source_ids = np.asarray(src.trials.id.data[:], dtype=np.int64)
        row_of = pd.Series(np.arange(len(source_ids)), index=source_ids)
        if not row_of.index.is_unique:
            raise ValueError(f"{source_nwb}: trial ids are not unique")
        trial_start = np.asarray(src.trials["start_time"].data[:], dtype=np.float64)
        trial_stop = np.asarray(src.trials["stop_time"].data[:], dtype=np.float64)
        used = np.full(len(source_ids), "none", dtype=object)
        for split, (trial_ids, _) in splits.items():
            missing = np.setdiff1d(trial_ids, source_ids)
            if missing.size:
                raise ValueError(f"{split}: trial ids {missing[:5].tolist()} of "
                                 f"{lfads_input_json} are not in {source_nwb}'s trials table")
            rows = row_of[trial_ids].to_numpy()
            inds = post.get(f"{split}_inds")
            if inds is not None and not np.array_equal(np.asarray(inds), rows):
                raise ValueError(f"{split}: {posterior_h5}'s {split}_inds are not the source "
                                 f"rows of {lfads_input_json}'s trial ids (files of different "
                                 f"runs?)")
            used[rows] = split

        sha = meta.get("source_sha256", "unknown")
        source_name = Path(meta.get("source", source_nwb)).name
        posterior_sha = sha256sum(posterior_h5)
        extra = {k: getattr(src, k) for k in _FILE_FIELDS if getattr(src, k, None) is not None}
        extra = {k: (list(v) if isinstance(v, (tuple, np.ndarray)) else v)
                 for k, v in extra.items()}
        keywords = [k.decode() if isinstance(k, bytes) else str(k)
                    for k in (src.keywords[:] if src.keywords is not None else [])]
        provenance = {"source": str(meta.get("source", source_nwb)), "source_sha256": sha,
                      "source_identifier": src.identifier,
                      "lfads_input_json": str(lfads_input_json),
                      "posterior_h5": str(posterior_h5), "posterior_sha256": posterior_sha,
                      "bin_width_s": bin_width_s}
        nwb = NWBFile(
            session_description=(
                f"LFADS output (latent factors, inferred firing rates and inferred inputs) "
                f"of the recording {source_name} (sha256 {sha}, identifier {src.identifier}). "
                f"The recording's description: {src.session_description}"),
            # the module's first name: the same inputs keep the same identifier across versions
            identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lfads_core.nwb_export:"
                                      f"{src.identifier}:{posterior_sha}")),
            session_start_time=src.session_start_time,
            timestamps_reference_time=src.timestamps_reference_time,
            file_create_date=datetime.datetime.now(datetime.timezone.utc),
            keywords=list(dict.fromkeys(keywords + ["LFADS", "latent dynamics"])),
            subject=_copy_subject(src),
            was_generated_by=[["lfads_core", __version__]],
            source_script=f"lfads_core.nwb.export.write_factors_nwb (lfads_core {__version__})",
            source_script_file_name="lfads_core/nwb/export.py",
            data_collection="Provenance of this file: " + json.dumps(provenance),
            **extra,
        )
    finally:
        io_src.close()

    nwb.add_trial_column("source_trial_id", "id of the trial in the source recording's "
                         "trials table")
    nwb.add_trial_column("lfads_split", "LFADS data split of the trial: 'train' (trained on), "
                         "'valid' (read by early stopping and model selection), 'test' (seen by "
                         "no training or selection), or 'none' when the trial was not modelled")
    for i in range(len(source_ids)):
        nwb.add_trial(start_time=trial_start[i], stop_time=trial_stop[i], id=i,
                      source_trial_id=int(source_ids[i]), lfads_split=str(used[i]))

    module = nwb.create_processing_module(
        MODULE, f"Output of an LFADS model fitted to {source_name}: posterior means of the "
                f"factors, rates and inferred inputs of every modelled trial, at "
                f"{bin_width_s * 1e3:g} ms bins on the recording's clock")
    module.add(DynamicTable(
        name="channels",
        description="LFADS channels in model order (held-in first, then held-out); row i is "
                    "column i of the rates series. unit_id is the id in the source "
                    "recording's Units table.",
        id=np.arange(len(unit_ids)),
        columns=[VectorData(name="unit_id", data=unit_ids,
                            description="id of the unit in the source recording"),
                 VectorData(name="heldout", data=heldout,
                            description="True if the unit was held out of the model's input "
                                        "(its rates are predicted, not reconstructed)")]))

    for split, (trial_ids, starts) in splits.items():
        rates = post[f"{split}_rates"]
        n_trials, n_bins = rates.shape[:2]
        order, stamps = _window_layout(starts, n_bins, bin_width_s, split)
        first = None
        written = []
        for name, (key, unit, description) in SERIES.items():
            values = post.get(f"{split}_{key}")
            if values is None or values.shape[2] == 0:
                continue
            values = values[order].astype(np.float32)
            if name == "rates":
                values = values / np.float32(bin_width_s)
            flat = values.reshape(n_trials * n_bins, values.shape[2])
            data = H5DataIO(flat, compression="gzip", compression_opts=4, shuffle=True)
            series = TimeSeries(
                name=f"{split}_{name}", data=data, unit=unit,
                timestamps=stamps.reshape(-1) if first is None else first,
                description=f"{description}. {split} trials, concatenated in order of window "
                            f"start; {split}_windows gives each trial's samples.",
                comments=f"Bin width {bin_width_s:g} s; time stamps are bin centres.")
            module.add(series)
            first = series if first is None else first
            written.append(series)

        windows = TimeIntervals(
            name=f"{split}_windows",
            description=f"LFADS window of each {split} trial, in the order of the {split}_* "
                        f"series; timeseries gives its first sample and sample count")
        windows.add_column("trial_id", "id of the trial in the source recording")
        windows.add_column("trial_row", "row of the trial in intervals/trials")
        rows = row_of[trial_ids[order]].to_numpy()
        for k in range(n_trials):
            start = float(starts[order][k])
            windows.add_row(start_time=start, stop_time=start + n_bins * bin_width_s,
                            trial_id=int(trial_ids[order][k]), trial_row=int(rows[k]),
                            timeseries=[_reference(k * n_bins, n_bins, s) for s in written])
        module.add(windows)

    with atomic_path(out_nwb) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return out_nwb


def _reference(first: int, count: int, series):
    from pynwb.base import TimeSeriesReference

    return TimeSeriesReference(first, count, series)


def read_factors_nwb(path: str | Path) -> dict:
    """Read a file of :func:`write_factors_nwb` back into arrays.

    Returns ``identifier``, ``session_start_time``, ``session_description``,
    ``unit_ids``, ``heldout`` (channels), ``trials`` (DataFrame of intervals/trials),
    ``splits`` (those present) and, per split ``s``: ``{s}_factors``, ``{s}_rates`` (Hz),
    ``{s}_inferred_inputs`` (trials x bins x dims; 0 columns when absent), ``{s}_timestamps``
    (trials x bins, s), ``{s}_trial_ids`` (source ids), ``{s}_trial_rows`` and
    ``{s}_window_start_times_s``; trials in the file's order (by window start).
    """
    from pynwb import NWBHDF5IO

    out: dict = {}
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        module = nwb.processing[MODULE]
        channels = module["channels"]
        out.update(identifier=nwb.identifier, session_start_time=nwb.session_start_time,
                   session_description=nwb.session_description,
                   unit_ids=np.asarray(channels["unit_id"].data[:]),
                   heldout=np.asarray(channels["heldout"].data[:], dtype=bool),
                   trials=nwb.trials.to_dataframe(), splits=[])
        for split in SPLITS:
            if f"{split}_windows" not in module.data_interfaces:
                continue
            out["splits"].append(split)
            windows = module[f"{split}_windows"]
            refs = windows["timeseries"]
            n_trials = len(windows)
            out[f"{split}_trial_ids"] = np.asarray(windows["trial_id"].data[:])
            out[f"{split}_trial_rows"] = np.asarray(windows["trial_row"].data[:])
            out[f"{split}_window_start_times_s"] = np.asarray(windows["start_time"].data[:])
            stamps = None
            for name in SERIES:
                key = f"{split}_{name}"
                if key not in module.data_interfaces:
                    continue
                series = module[key]
                data = np.asarray(series.data[:])
                trials = []
                for k in range(n_trials):
                    ref = next(r for r in refs[k] if r.timeseries.name == key)
                    trials.append(data[ref.idx_start:ref.idx_start + ref.count])
                out[key] = np.stack(trials)
                if stamps is None:
                    ts = np.asarray(series.timestamps[:])
                    stamps = np.stack([ts[r.idx_start:r.idx_start + r.count]
                                       for r in (refs[k][0] for k in range(n_trials))])
            out[f"{split}_timestamps"] = stamps
            if f"{split}_inferred_inputs" not in out:
                out[f"{split}_inferred_inputs"] = np.zeros(stamps.shape + (0,), np.float32)
    return out


def write_factors_h5(posterior_h5: str | Path, lfads_input_json: str | Path,
                     out_h5: str | Path) -> None:
    """LFADS output for Python users: per split ``{split}_factors``, ``{split}_rates``
    (expected counts per bin), ``{split}_inputs`` (trials x bins x dims), ``{split}_trial_ids``
    (source trial ids) and ``{split}_window_start_s`` (s, recording clock); attrs give the bin
    width, channel unit ids and held-out flags and the source checksum."""
    meta = json.loads(Path(lfads_input_json).read_text())
    with h5py.File(posterior_h5, "r") as post, atomic_path(out_h5) as tmp, \
            h5py.File(tmp, "w") as out:
        for split in SPLITS:
            if f"{split}_rates" not in post:
                continue
            for key in ("factors", "rates", "inputs"):
                out.create_dataset(f"{split}_{key}", data=post[f"{split}_{key}"][()],
                                   compression="gzip", compression_opts=1)
            out[f"{split}_trial_ids"] = np.asarray(meta["trial_ids"][split])
            out[f"{split}_window_start_s"] = np.asarray(meta["window_start_times_s"][split])
        out.attrs.update(bin_width_s=meta["bin_width_s"], unit_ids=meta["unit_ids"],
                         heldout=meta["heldout"], source=meta["source"],
                         source_sha256=meta["source_sha256"],
                         rates_unit="expected counts per bin")
