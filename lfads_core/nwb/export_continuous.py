"""LFADS output of a continuous recording on its own clock (``extract_factors`` of a dataset
cut into segments, ``segment_length_ms``).

The posterior's overlapping segments are merged back onto the recording's bin grid
(:func:`lfads_core.nwb.merge.merge_segments`: over each segment's window, not its
forward-prediction bins; linear cross-fades where segments overlap), a block of segments at
a time, straight into the output file: memory follows a block of segments, not the
recording. The result is one continuous series per output, a value at every bin of the grid
from the recording's first bin to its last, time-stamped at bin centres (bin ``k``:
``t_start_s + (k + 0.5) x bin width``).

**Gaps.** Bins no segment covers (unobserved time, a block too short for one segment, the
last ``fp_bins`` bins of each stretch, which only a segment's forward prediction reaches)
are NaN in every series. Which bins are covered is also written as intervals: a reader
never has to infer gaps from NaN, and :meth:`LfadsContinuousFactors.to_pynapple` gives
series restricted to them (``time_support``).

``factors.h5`` (attr ``layout_kind`` ``continuous``):

- ``factors`` (a.u.), ``rates`` (Hz), ``inferred_inputs`` (a.u.; absent without a
  controller): grid bins x dims, float32, NaN where no segment covers a bin; attrs ``unit``.
- ``intervals/``: the covered stretches, one row each in time order: ``start_time``,
  ``stop_time`` (s), ``block``, ``lfads_split``.
- ``blocks/``: every block of time: ``block``, ``lfads_split`` (``train`` trained on,
  ``valid`` read by early stopping and model selection, ``test`` held out from both),
  ``start_time``, ``stop_time`` (s; its observed time), ``n_segments``.
- ``channels/``: ``unit_id``, ``heldout`` per rate column.
- attrs: ``bin_width_s``, ``t_start_s`` (the grid's first bin edge), ``n_bins``, the segments'
  ``segment_length_bins``, ``segment_overlap_bins``, ``fp_bins``, the source and its
  SHA-256, the posterior's SHA-256, ``lfads_core_version``, ``layout``.

``factors.nwb``: the recording's identity (as for trials, :mod:`.export`) and, in
``processing/misc``, ``lfads_factors``, ``lfads_rates``, ``lfads_inferred_inputs``:
TimeSeries of every grid bin with ``starting_time`` (the first bin's centre) and ``rate``
(1 / bin width) on the recording's clock, NaN in gaps; ``lfads_intervals`` (TimeIntervals:
the covered stretches with ``block`` and ``lfads_split``), ``lfads_blocks`` (TimeIntervals:
every block with ``block``, ``lfads_split``, ``n_segments``) and ``lfads_channels``. The series
are written from ``factors.h5`` a chunk of rows at a time.

Read either with :func:`lfads_core.nwb.export.load_factors`, which returns an
:class:`LfadsContinuousFactors` for these files.
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
from ..merge import (SegmentView, chunk_bins_for, covered_runs, create_merged_dataset,
                    merge_segments, start_bins_from_times)

log = logging.getLogger(__name__)

LAYOUT_KIND = "continuous"
SPLITS = ("train", "valid", "test")
SPLIT_COLUMN = "lfads_split"
BLOCK_SPLIT_DESCRIPTION = ("LFADS data split of the block of time: 'train' (trained on), "
                           "'valid' (read by early stopping and model selection), 'test' (held "
                           "out from all training and selection)")


@dataclass
class LfadsContinuousFactors:
    """The LFADS output of a continuous recording on its bin grid.

    ``factors`` (a.u.), ``rates`` (Hz), ``inferred_inputs`` (a.u.; 0 columns without a
    controller): float32, grid bins x dims, NaN where no segment covers a bin.
    ``intervals``: the covered stretches (``start_time``, ``stop_time`` in s, ``block``,
    ``lfads_split``); ``blocks``: every block of time (``block``, ``lfads_split``,
    ``start_time``, ``stop_time``, ``n_segments``); ``channels``: ``unit_id``, ``heldout`` per
    rate column. ``t_start_s``: the first bin's start on the recording's clock.
    """

    factors: np.ndarray
    rates: np.ndarray
    inferred_inputs: np.ndarray
    intervals: pd.DataFrame
    blocks: pd.DataFrame
    channels: pd.DataFrame
    bin_width_s: float
    t_start_s: float
    segments: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    layout = LAYOUT_KIND

    @property
    def units(self) -> dict[str, str]:
        return {"factors": "a.u.", "rates": "Hz", "inferred_inputs": "a.u."}

    @property
    def timestamps(self) -> np.ndarray:
        """Every bin's centre on the recording's clock (s)."""
        return self.t_start_s + (np.arange(len(self.factors)) + 0.5) * self.bin_width_s

    def covered(self) -> np.ndarray:
        """Whether a segment covers each bin (bins,): the bins of ``intervals``."""
        out = np.zeros(len(self.factors), bool)
        for a, b in self._interval_bins():
            out[a:b] = True
        return out

    def _interval_bins(self) -> np.ndarray:
        edges = self.intervals[["start_time", "stop_time"]].to_numpy(float)
        return np.rint((edges - self.t_start_s) / self.bin_width_s).astype(np.int64)

    def to_pynapple(self) -> dict:
        """``factors``, ``rates`` (columns: unit ids, ``heldout`` metadata) and
        ``inferred_inputs`` (None without a controller) as ``TsdFrame`` on the recording's
        clock over the covered bins only (``time_support``: ``intervals``, the gaps left
        out), ``intervals`` (an ``IntervalSet`` of the covered stretches with ``block`` and
        ``lfads_split``) and ``blocks`` (an ``IntervalSet`` of the blocks of time with their
        split). Needs pynapple (``pip install pynapple``)."""
        try:
            import pynapple as nap
        except ImportError:
            raise ImportError("LfadsContinuousFactors.to_pynapple needs pynapple, an optional "
                              "dependency: pip install pynapple") from None
        keep = self.covered()
        with warnings.catch_warnings():  # blocks that touch: pynapple separates them by 1 us
            warnings.filterwarnings("ignore", "Some starts and ends are equal")
            return self._pynapple(nap, keep)

    def _pynapple(self, nap, keep) -> dict:
        support = nap.IntervalSet(start=self.intervals["start_time"].to_numpy(float),
                                  end=self.intervals["stop_time"].to_numpy(float),
                                  metadata=self.intervals[["block", SPLIT_COLUMN]]
                                  .reset_index(drop=True))
        blocks = self.blocks.dropna(subset=["start_time", "stop_time"])
        block_set = nap.IntervalSet(start=blocks["start_time"].to_numpy(float),
                                    end=blocks["stop_time"].to_numpy(float),
                                    metadata=blocks[["block", SPLIT_COLUMN, "n_segments"]]
                                    .reset_index(drop=True))
        times = self.timestamps[keep]

        def frame(values, columns, metadata=None):
            return nap.TsdFrame(t=times, d=values[keep], time_support=support,
                                columns=columns, metadata=metadata)

        channels = self.channels.set_index("unit_id", drop=False)
        n_inputs = self.inferred_inputs.shape[1]
        return {
            "factors": frame(self.factors, [f"factor_{k}" for k in range(self.factors.shape[1])]),
            "rates": frame(self.rates, channels.index.to_list(), channels[["heldout"]]),
            "inferred_inputs": frame(self.inferred_inputs,
                                     [f"input_{k}" for k in range(n_inputs)]) if n_inputs else None,
            "intervals": support,
            "blocks": block_set,
        }


# ------------------------------------------------------------------ the merge

def _posterior_key(post, split: str, name: str) -> str | None:
    for key in (f"{split}_{name}", f"{split}_inputs" if name == "inferred_inputs" else None):
        if key and key in post and len(post[key]) and post[key].shape[2]:
            return key
    return None


def continuous_layout(meta: dict) -> dict:
    """What a continuous merge needs from ``lfads_input.json``'s metadata: the grid
    (``t_start_s``, ``n_grid_bins``, ``bin_width_s``), the segments' window and overlap, and
    each split's segments' first bins and blocks."""
    seg = meta["segments"]
    width = float(meta["bin_width_s"])
    t_start = float(meta["t_start_s"])
    starts = {s: start_bins_from_times(meta["window_start_times_s"][s], t_start, width)
              for s in SPLITS if s in meta.get("window_start_times_s", {})}
    return {"bin_width_s": width, "t_start_s": t_start, "n_grid_bins": int(meta["n_grid_bins"]),
            "n_window": int(seg["length_bins"]), "overlap_bins": int(seg["overlap_bins"]),
            "fp_bins": int(seg["fp_bins"]), "start_bins": starts,
            "block": {s: np.asarray(seg["block"][s], np.int64) for s in starts},
            "blocks": seg["blocks"]}


def interval_table(layout: dict) -> pd.DataFrame:
    """The covered stretches (start_time, stop_time, block, lfads_split) in time order: per
    block, the runs of bins its segments' windows cover."""
    rows = []
    split_of = {b["block"]: b["split"] for b in layout["blocks"]}
    for split, starts in layout["start_bins"].items():
        blocks = layout["block"][split]
        for block in np.unique(blocks):
            for a, b in covered_runs(starts[blocks == block], layout["n_window"]):
                rows.append((int(a), int(b), int(block), split_of.get(int(block), split)))
    rows.sort()
    w, t0 = layout["bin_width_s"], layout["t_start_s"]
    return pd.DataFrame({"start_time": [t0 + a * w for a, _, _, _ in rows],
                         "stop_time": [t0 + b * w for _, b, _, _ in rows],
                         "block": np.array([r[2] for r in rows], np.int64),
                         SPLIT_COLUMN: [r[3] for r in rows]})


def block_table(layout: dict) -> pd.DataFrame:
    blocks = layout["blocks"]
    return pd.DataFrame({
        "block": np.array([b["block"] for b in blocks], np.int64),
        SPLIT_COLUMN: [b["split"] for b in blocks],
        "start_time": [np.nan if b["start_s"] is None else float(b["start_s"]) for b in blocks],
        "stop_time": [np.nan if b["stop_s"] is None else float(b["stop_s"]) for b in blocks],
        "n_segments": np.array([b["n_segments"] for b in blocks], np.int64)})


SERIES = {  # name -> (unit, description)
    "factors": ("a.u.", "LFADS latent factors (posterior mean over samples)"),
    "rates": ("Hz", "LFADS inferred firing rate of every channel (posterior mean over "
                    "samples), in spikes per second; columns follow the rows of channels"),
    "inferred_inputs": ("a.u.", "LFADS inferred inputs: mean of the controller's output "
                                "distribution (posterior mean over samples)"),
}
_MERGE_NOTE = ("overlapping segments merged onto the recording's bin grid (weighted mean of "
               "the segments' windows covering a bin, linear cross-fade over overlaps); NaN "
               "where no segment covers a bin (see the covered intervals)")


def write_continuous_factors_h5(posterior_h5, lfads_input_json, out_h5, *,
                                block_segments: int | None = None) -> Path:
    """Merge ``posterior.h5``'s segments onto the recording's grid into ``factors.h5``
    (module docstring), streaming a block of segments at a time; atomically."""
    meta = json.loads(Path(lfads_input_json).read_text())
    layout = continuous_layout(meta)
    width, n_grid = layout["bin_width_s"], layout["n_grid_bins"]
    with h5py.File(posterior_h5, "r") as post, atomic_path(out_h5) as tmp, \
            h5py.File(tmp, "w") as out:
        for split, starts in layout["start_bins"].items():
            key = f"{split}_rates"
            if key in post and len(post[key]) != len(starts):
                raise ValueError(f"{split}: {len(post[key])} segments in {posterior_h5} but "
                                 f"{len(starts)} segment starts in {lfads_input_json}")
        for name, (unit, description) in SERIES.items():
            present = [(s, k) for s in layout["start_bins"]
                       if (k := _posterior_key(post, s, name)) is not None]
            if not present:
                continue
            scale = 1.0 / width if name == "rates" else 1.0  # counts per bin -> Hz
            views = [SegmentView(post[k], layout["n_window"], scale) for _, k in present]
            dims = views[0].shape[2]
            ds = create_merged_dataset(out, name, n_grid, dims, compression="gzip",
                                       unit=unit, description=f"{description}; {_MERGE_NOTE}")
            merge_segments(views, [layout["start_bins"][s] for s, _ in present], n_grid,
                           layout["overlap_bins"], ds, block_segments=block_segments)
        write_table(out.create_group("intervals"), interval_table(layout))
        write_table(out.create_group("blocks"), block_table(layout))
        write_table(out.create_group("channels"), pd.DataFrame({
            "unit_id": np.asarray(meta["unit_ids"], np.int64),
            "heldout": np.asarray(meta.get("heldout", [False] * len(meta["unit_ids"])), bool)}))
        out.attrs.update({
            "layout_kind": LAYOUT_KIND, "bin_width_s": width, "t_start_s": layout["t_start_s"],
            "n_bins": n_grid, "segment_length_bins": layout["n_window"],
            "segment_overlap_bins": layout["overlap_bins"], "fp_bins": layout["fp_bins"],
            "source": str(meta.get("source", "")),
            "source_sha256": str(meta.get("source_sha256", "unknown")),
            "posterior_sha256": sha256sum(posterior_h5), "lfads_core_version": __version__,
            "layout": "factors, rates (Hz), inferred_inputs: grid bins x dims on the recording's "
                      "clock (bin k: [t_start_s + k bin_width_s, t_start_s + (k+1) bin_width_s)), "
                      "NaN where no segment covers a bin; intervals/: the covered stretches "
                      "(start_time, stop_time, block, lfads_split); blocks/: every block of time "
                      "with its split; channels/: unit_id and heldout per column of rates. Read "
                      "with lfads_core.nwb.export.load_factors."})
    return Path(out_h5)


# ------------------------------------------------------------------ factors.nwb

def _row_chunks(dataset: h5py.Dataset):
    """An hdmf iterator over ``dataset`` (bins x dims), a chunk of rows at a time."""
    from hdmf.data_utils import GenericDataChunkIterator

    class RowChunks(GenericDataChunkIterator):
        def __init__(self, ds, **kwargs):
            self._ds = ds
            super().__init__(**kwargs)

        def _get_data(self, selection):
            return self._ds[selection]

        def _get_maxshape(self):
            return self._ds.shape

        def _get_dtype(self):
            return self._ds.dtype

    rows = max(1, min(len(dataset), chunk_bins_for(dataset.shape[1])))
    return RowChunks(dataset, chunk_shape=(rows, dataset.shape[1]),
                     buffer_shape=(min(len(dataset), rows * 8), dataset.shape[1]),
                     display_progress=False)


def write_continuous_factors_nwb(factors_h5, source_nwb, out_nwb) -> Path:
    """Write ``factors.nwb`` (module docstring) from ``factors.h5`` with the identity of the
    recording ``source_nwb``, streaming the series; atomically."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import DynamicTable, VectorData
    from pynwb import NWBHDF5IO, TimeSeries
    from pynwb.epoch import TimeIntervals

    from .nwb_output import MODULE, PREFIX, new_nwb_file

    with h5py.File(factors_h5, "r") as f:
        settings = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()
                    if k != "layout"}
        settings["units"] = {name: unit for name, (unit, _) in SERIES.items()}
        intervals, blocks = read_table(f["intervals"]), read_table(f["blocks"])
        channels = read_table(f["channels"])
        width, t0 = float(settings["bin_width_s"]), float(settings["t_start_s"])
        with NWBHDF5IO(str(source_nwb), "r") as io_src:
            nwb, source_name = new_nwb_file(io_src.read(), settings)
        module = nwb.create_processing_module(
            MODULE, f"Output of an LFADS model fitted to {source_name} (lfads_* objects): "
                    f"posterior means of the factors, rates and inferred inputs, overlapping "
                    f"segments merged onto the recording's {width * 1e3:g} ms bins, on its "
                    "clock; NaN where no segment covers a bin (lfads_intervals: the covered "
                    "time)")
        module.add(DynamicTable(
            name=f"{PREFIX}channels",
            description="LFADS channels in model order (held-in first, then held-out); row i "
                        "is column i of lfads_rates. unit_id is the id in the recording's "
                        "Units table.",
            id=np.arange(len(channels)),
            columns=[VectorData(name="unit_id", data=channels["unit_id"].to_numpy(np.int64),
                                description="id of the unit in the recording's Units table"),
                     VectorData(name="heldout", data=channels["heldout"].to_numpy(bool),
                                description="True if the unit was held out of the model's "
                                            "input")]))
        for name, (unit, description) in SERIES.items():
            if name not in f:
                continue
            module.add(TimeSeries(
                name=PREFIX + name, unit=unit,
                data=H5DataIO(_row_chunks(f[name]), compression="gzip", compression_opts=4,
                              shuffle=True),
                starting_time=t0 + width / 2, rate=1.0 / width,
                description=f"{description}. {_MERGE_NOTE}.",
                comments=f"One sample per {width:g} s bin of the recording, stamped at bin "
                         "centres; NaN in gaps (lfads_intervals lists the covered time)."))
        covered = TimeIntervals(name=f"{PREFIX}intervals",
                                description="the stretches of time the merged LFADS output "
                                            "covers (outside them the series are NaN), with "
                                            "their block of time and its split")
        covered.add_column("block", "the block of time (row of lfads_blocks' block)")
        covered.add_column(SPLIT_COLUMN, BLOCK_SPLIT_DESCRIPTION)
        for row in intervals.itertuples(index=False):
            covered.add_row(start_time=float(row.start_time), stop_time=float(row.stop_time),
                            block=int(row.block), lfads_split=str(getattr(row, SPLIT_COLUMN)))
        module.add(covered)
        table = TimeIntervals(name=f"{PREFIX}blocks",
                              description="the blocks of observed time the recording was "
                                          "split by (train / valid / test), with the number of "
                                          "segments each holds")
        table.add_column("block", "block number, in time order")
        table.add_column(SPLIT_COLUMN, BLOCK_SPLIT_DESCRIPTION)
        table.add_column("n_segments", "segments cut from the block")
        for row in blocks.dropna(subset=["start_time", "stop_time"]).itertuples(index=False):
            table.add_row(start_time=float(row.start_time), stop_time=float(row.stop_time),
                          block=int(row.block), lfads_split=str(getattr(row, SPLIT_COLUMN)),
                          n_segments=int(row.n_segments))
        module.add(table)
        with atomic_path(out_nwb) as tmp, NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return Path(out_nwb)


# ------------------------------------------------------------------ reading back

def load_continuous_h5(path: Path) -> LfadsContinuousFactors:
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_bins"])
        arrays = {name: f[name][()] if name in f else np.zeros((n, 0), np.float32)
                  for name in SERIES}
        intervals, blocks = read_table(f["intervals"]), read_table(f["blocks"])
        channels = read_table(f["channels"])
        attrs = dict(f.attrs)
    return _assemble(arrays, intervals, blocks, channels, attrs)


def _assemble(arrays, intervals, blocks, channels, attrs) -> LfadsContinuousFactors:
    segments = {k: int(attrs[k]) for k in ("segment_length_bins", "segment_overlap_bins",
                                            "fp_bins") if k in attrs}
    info = {k: attrs[k] for k in ("source", "source_sha256", "posterior_sha256",
                                  "lfads_core_version", "source_identifier", "identifier")
            if k in attrs}
    return LfadsContinuousFactors(
        factors=arrays["factors"], rates=arrays["rates"],
        inferred_inputs=arrays["inferred_inputs"], intervals=intervals, blocks=blocks,
        channels=channels, bin_width_s=float(attrs["bin_width_s"]),
        t_start_s=float(attrs["t_start_s"]), segments=segments, info=info)


def load_continuous_nwb(nwb, settings: dict, module) -> LfadsContinuousFactors:
    """From an open ``factors.nwb`` (its settings and processing module)."""
    arrays = {}
    n = None
    for name in SERIES:
        key = PREFIX_NAME + name
        if key in module.data_interfaces:
            arrays[name] = np.asarray(module[key].data[:])
            n = len(arrays[name])
    arrays.setdefault("inferred_inputs", np.zeros((n, 0), np.float32))
    channels = module[f"{PREFIX_NAME}channels"]
    frame = module[f"{PREFIX_NAME}intervals"].to_dataframe()
    intervals = frame[["start_time", "stop_time", "block", SPLIT_COLUMN]].reset_index(drop=True)
    blocks = module[f"{PREFIX_NAME}blocks"].to_dataframe()
    blocks = blocks[["block", SPLIT_COLUMN, "start_time", "stop_time", "n_segments"]] \
        .reset_index(drop=True)
    series = module[f"{PREFIX_NAME}factors"]
    width = 1.0 / float(series.rate)
    attrs = {**settings, "bin_width_s": width,
             "t_start_s": float(series.starting_time) - width / 2,
             "identifier": nwb.identifier}
    return _assemble(arrays, intervals, blocks, pd.DataFrame({
        "unit_id": np.asarray(channels["unit_id"].data[:]),
        "heldout": np.asarray(channels["heldout"].data[:], bool)}), attrs)


PREFIX_NAME = "lfads_"

__all__ = ["LfadsContinuousFactors", "block_table", "continuous_layout", "interval_table",
           "write_continuous_factors_h5", "write_continuous_factors_nwb"]
