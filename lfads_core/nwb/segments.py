"""Continuous recordings without trials: overlapping segments of the observed time.

A dataset with ``segment_length_ms`` set is cut into segments instead of trial windows. The
segments go to ``lfads_input.h5`` in the same layout as trials (segments x time x channels),
so training, posterior sampling and everything after see trials; ``lfads_input.json`` notes
where each segment sits on the recording's clock, so that a merge can put them back
(``lfads_input.h5`` too: ``{split}_start_bins``, each segment's first bin on the grid, and
``{split}_block``, its block; attrs ``t_start_s``, the grid's first bin edge, and
``n_grid_bins``).

Bins (``bin_width_ms``) are the unit of everything here:

- A segment is ``n_window + fp_bins`` bins long: ``n_window = segment_length_ms / bin_width``
  bins of model input, then the forward-prediction bins; all of them lie inside one observed
  interval (the recording's extent, and where the file has ``obs_intervals`` the time every
  kept unit was observed). A segment never bridges a gap.
- Consecutive segments start ``step = n_window - n_overlap`` bins apart
  (``n_overlap = segment_overlap_ms / bin_width``; ``auto``: a fifth of the segment, rounded
  down to whole bins), so their windows overlap by ``n_overlap`` bins. Where a stretch of
  observed time does not end on a step, one more segment ends at its last bin, so every
  observed bin of a stretch long enough for one segment is covered.
- The split into train / valid / test is by contiguous blocks of time: the observed bins are
  cut into ``split_blocks`` blocks of equal observed duration, a seeded draw (``seed``) makes
  ``valid_fraction`` of them valid and ``test_fraction`` of them test (at least one block each
  where the fraction is above 0), the others train. Segments are tiled within each block (a
  block's stretches are its part of each observed interval), so no segment crosses a block's
  edge and no validation or test bin is seen in training through an overlap.

Metadata (``lfads_input.json``) of a segmented dataset, besides the keys trials have:

- ``window_start_times_s``: each split's segments' start times on the recording's clock (s),
  in the order of its arrays; ``trial_ids`` and ``{split}_inds``: the segments' numbers in
  time order (0, 1, ... over all splits).
- ``t_start_s`` and ``n_grid_bins``: the recording's bin grid (bin ``k`` is
  ``[t_start_s + k w, t_start_s + (k + 1) w)``).
- ``segments``: ``length_bins`` (``n_window``), ``overlap_bins``, ``step_bins``, ``fp_bins``,
  ``length_ms``, ``overlap_ms``, ``block`` (each split's segments' block numbers), and
  ``blocks``: one entry per block in time order with its ``block`` number, ``split``,
  ``start_s`` and ``stop_s`` (its first and last observed time), ``observed_s``,
  ``longest_stretch_s`` (its longest stretch without a gap) and ``n_segments``.

This module needs no torch; the writer is :func:`lfads_core.nwb.alignment.write_windows`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..fileio import read_table
from ..values import ms_to_bins
from . import alignment as al
from .binning import bin_centres, sample_series

log = logging.getLogger(__name__)

#: ``segment_overlap_ms: auto``: this fraction of the segment, rounded down to whole bins
AUTO_OVERLAP_FRACTION = 0.2
#: ``split_blocks`` where a setting gives none
DEFAULT_SPLIT_BLOCKS = 10
#: ``align_event`` of a segmented dataset's files: times in a segment count from its start
SEGMENT_EVENT = "segment_start"
_WHOLE = 1e-6  # tolerance of "a whole number of bins"


def is_continuous(settings) -> bool:
    """Whether a dataset's settings (a dict or :class:`AlignSettings`) ask for segments."""
    value = settings.get("segment_length_ms") if isinstance(settings, dict) else \
        getattr(settings, "segment_length_ms", None)
    return value not in (None, "")


def _whole_bins(ms: float, bin_width: float, where, field: str, what: str) -> int:
    n = ms_to_bins(ms, bin_width)
    if abs(n - round(n)) > _WHOLE:
        raise InputDataError(where, field, f"{what} {ms:g} ms is not a whole number of "
                             f"{bin_width * 1e3:g} ms bins")
    return int(round(n))


def segment_bins(length_ms, overlap_ms, bin_width: float, where) -> tuple[int, int]:
    """``(n_window, n_overlap)``: the segment's and the overlap's length in bins of
    ``bin_width`` (s). Errors name ``segment_length_ms`` or ``segment_overlap_ms``: not whole
    bins, not above 0, an overlap not shorter than the segment."""
    length_ms = float(length_ms)
    if not length_ms > 0:
        raise InputDataError(where, "segment_length_ms", f"must be > 0 ms, got {length_ms:g}")
    n_window = _whole_bins(length_ms, bin_width, where, "segment_length_ms", "segment length")
    if overlap_ms in (None, "", "auto"):
        return n_window, int(math.floor(AUTO_OVERLAP_FRACTION * n_window + _WHOLE))
    overlap_ms = float(overlap_ms)
    if overlap_ms < 0:
        raise InputDataError(where, "segment_overlap_ms", f"must be >= 0 ms, got {overlap_ms:g}")
    n_overlap = _whole_bins(overlap_ms, bin_width, where, "segment_overlap_ms", "segment overlap")
    if n_overlap >= n_window:
        raise InputDataError(where, "segment_overlap_ms",
                             f"overlap {overlap_ms:g} ms ({n_overlap} bins) must be shorter than "
                             f"the segment, {length_ms:g} ms ({n_window} bins)")
    return n_window, n_overlap


def observed_bins(intervals_s: np.ndarray, t_start: float, bin_width: float,
                  n_bins: int) -> np.ndarray:
    """The whole bins inside each observed interval, as ``[first, stop)`` bin ranges (k x 2,
    int64, sorted, empty ones left out) on the grid ``t_start + k * bin_width``, ``n_bins``
    bins."""
    intervals_s = np.asarray(intervals_s, dtype=float).reshape(-1, 2)
    first = np.ceil((intervals_s[:, 0] - t_start) / bin_width - _WHOLE)
    stop = np.floor((intervals_s[:, 1] - t_start) / bin_width + _WHOLE)
    first, stop = np.clip(first, 0, n_bins), np.clip(stop, 0, n_bins)
    keep = stop > first
    out = np.column_stack([first[keep], stop[keep]]).astype(np.int64)
    return out[np.argsort(out[:, 0], kind="stable")]


def block_ranges(ranges: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    """Cut the bin ranges (k x 2) into ``n_blocks`` blocks of equal observed bins (to a bin):
    each block's part of each range, in time order (a block may hold several stretches where
    it spans a gap)."""
    lengths = ranges[:, 1] - ranges[:, 0]
    cum = np.concatenate([[0], np.cumsum(lengths)])
    total = int(cum[-1])
    edges = np.round(np.arange(n_blocks + 1) * total / n_blocks).astype(np.int64)
    blocks = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        parts = []
        for (start, stop), c0, c1 in zip(ranges, cum[:-1], cum[1:]):
            a, b = max(lo, c0), min(hi, c1)
            if b > a:
                parts.append((start + a - c0, start + b - c0))
        blocks.append(np.asarray(parts, dtype=np.int64).reshape(-1, 2))
    return blocks


def tile(start: int, stop: int, n_total: int, step: int) -> np.ndarray:
    """First bins of segments of ``n_total`` bins, ``step`` apart, inside ``[start, stop)``;
    one more ending at ``stop`` where the steps leave bins uncovered. Empty where the stretch
    is shorter than one segment."""
    if stop - start < n_total:
        return np.zeros(0, dtype=np.int64)
    firsts = np.arange(start, stop - n_total + 1, step, dtype=np.int64)
    if firsts[-1] + n_total < stop:
        firsts = np.append(firsts, stop - n_total)
    return firsts


def block_labels(n_blocks: int, valid_fraction: float, test_fraction: float, seed: int,
                 where) -> np.ndarray:
    """``"train"``, ``"valid"`` or ``"test"`` for each block, a seeded draw: ``valid_fraction``
    and ``test_fraction`` of the blocks, rounded, at least one where the fraction is above 0.
    Error (``split_blocks``) where no block is left for training."""
    def count(fraction):
        return max(1, int(round(fraction * n_blocks))) if fraction > 0 else 0

    n_valid, n_test = count(valid_fraction), count(test_fraction)
    if n_valid + n_test >= n_blocks:
        raise InputDataError(where, "split_blocks",
                             f"{n_blocks} blocks of time give {n_valid} valid and {n_test} test "
                             f"blocks (valid_fraction {valid_fraction:g}, test_fraction "
                             f"{test_fraction:g}), leaving none for training; raise split_blocks")
    labels = np.full(n_blocks, "train", dtype=object)
    order = np.random.default_rng(seed).permutation(n_blocks)
    labels[order[:n_valid]] = "valid"
    labels[order[n_valid:n_valid + n_test]] = "test"
    return labels


@dataclass
class Segmentation:
    """Every segment of a recording, in time order, and the blocks of time they lie in."""

    first_bin: np.ndarray  # (segments,) int64: each segment's first bin on the grid
    block: np.ndarray  # (segments,) int64: each segment's block
    split: np.ndarray  # (segments,) object: each segment's split (its block's)
    blocks: list[dict]  # per block: block, split, start_s, stop_s, observed_s, n_segments
    n_window: int
    n_overlap: int
    n_total: int

    @property
    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.split == name)) for name in ("train", "valid", "test")}


def segment_recording(intervals_s: np.ndarray, t_start: float, bin_width: float, n_bins: int,
                      n_window: int, n_overlap: int, fp_bins: int, n_blocks: int,
                      valid_fraction: float, test_fraction: float, seed: int,
                      where) -> Segmentation:
    """Tile the observed time (``intervals_s``, s; sorted and disjoint) of a grid of
    ``n_bins`` bins from ``t_start`` into segments (module docstring). Errors name the setting:
    ``segment_length_ms`` where no observed interval holds one segment, ``split_blocks`` where
    the blocks leave no training block."""
    n_total = n_window + fp_bins
    ranges = observed_bins(intervals_s, t_start, bin_width, n_bins)
    longest = int((ranges[:, 1] - ranges[:, 0]).max()) if len(ranges) else 0
    if longest < n_total:
        raise InputDataError(where, "segment_length_ms",
                             f"segments of {n_window} bins + {fp_bins} forward bins "
                             f"({n_total * bin_width:g} s) are longer than every observed "
                             f"interval of the recording (the longest: {longest * bin_width:g} s "
                             f"of {len(ranges)})")
    labels = block_labels(n_blocks, valid_fraction, test_fraction, seed, where)
    step = n_window - n_overlap
    firsts, owners, blocks = [], [], []
    for k, parts in enumerate(block_ranges(ranges, n_blocks)):
        tiled = [tile(int(a), int(b), n_total, step) for a, b in parts]
        starts = np.concatenate(tiled) if tiled else np.zeros(0, np.int64)
        firsts.append(starts)
        owners.append(np.full(len(starts), k, dtype=np.int64))
        blocks.append({
            "block": k, "split": str(labels[k]),
            "start_s": float(t_start + parts[0, 0] * bin_width) if len(parts) else None,
            "stop_s": float(t_start + parts[-1, 1] * bin_width) if len(parts) else None,
            "observed_s": float(np.sum(parts[:, 1] - parts[:, 0]) * bin_width),
            "longest_stretch_s": float(np.max(parts[:, 1] - parts[:, 0], initial=0) * bin_width),
            "n_segments": int(len(starts))})
    block = np.concatenate(owners)
    return Segmentation(first_bin=np.concatenate(firsts), block=block,
                        split=labels[block].astype(object), blocks=blocks, n_window=n_window,
                        n_overlap=n_overlap, n_total=n_total)


def check_split_counts(seg: Segmentation, needs: list[tuple[str, int, str]], bin_width: float,
                       where) -> None:
    """Each ``(split, n, why)`` of ``needs`` must have at least ``n`` segments; else an error
    (``split_blocks``) that names the blocks of that split and how long they are."""
    counts = seg.counts
    for split, need, why in needs:
        if counts[split] >= need:
            continue
        theirs = [b for b in seg.blocks if b["split"] == split]
        numbers = [b["block"] for b in theirs]
        shown = numbers if len(numbers) <= 5 else f"{numbers[:5]}".rstrip("]") + ", ...]"
        longest = max(b["longest_stretch_s"] for b in theirs)
        raise InputDataError(where, "split_blocks",
                             f"{need} {split} segments needed {why}, but the {len(theirs)} "
                             f"{split} blocks of {len(seg.blocks)} (blocks {shown}) hold "
                             f"{counts[split]}: their longest stretch of observed time is "
                             f"{longest:g} s and a segment {seg.n_total} bins "
                             f"({seg.n_total * bin_width:g} s); use fewer split_blocks or shorter "
                             "segments")


def block_warnings(seg: Segmentation) -> list[str]:
    """Blocks that hold no segment (their time is modelled by none)."""
    empty = [b["block"] for b in seg.blocks if b["n_segments"] == 0]
    if not empty:
        return []
    return [f"{len(empty)} of the {len(seg.blocks)} blocks of time hold no segment "
            f"(blocks {empty}): their observed stretches are shorter than one segment"]


def segment_summary(seg: Segmentation, bin_width: float) -> dict:
    """What a segmentation is, in the words of the align summary and the metadata."""
    return {"length_bins": seg.n_window, "overlap_bins": seg.n_overlap,
            "step_bins": seg.n_window - seg.n_overlap, "fp_bins": seg.n_total - seg.n_window,
            "length_ms": seg.n_window * bin_width * 1e3,
            "overlap_ms": seg.n_overlap * bin_width * 1e3, "blocks": seg.blocks}


def align_windows(binned_h5, out_h5, settings, metadata_json=None) -> dict:
    """The align stage: trial windows (:func:`lfads_core.nwb.alignment.align_trials`) or, with
    ``segment_length_ms`` set, the segments of a continuous recording (:func:`align_segments`);
    same arguments and files either way."""
    align = align_segments if settings.segment_length_ms is not None else al.align_trials
    return align(binned_h5, out_h5, settings, metadata_json)


def align_segments(binned_h5, out_h5, settings, metadata_json=None) -> dict:
    """Cut ``binned.h5`` of a continuous recording into overlapping segments (module
    docstring), written as :func:`lfads_core.nwb.alignment.align_trials` writes trials.
    Returns the align summary: segments per split, the blocks, dropped segments and why."""
    with h5py.File(binned_h5, "r") as src:
        source = str(src.attrs["source"])

        def fail(field, message):
            return InputDataError(source, field, f"{message} (aligning {binned_h5})")

        if settings.split == "file":
            raise fail("split", "split 'file' reads a trials table; a continuous dataset "
                       "(segment_length_ms) is split by blocks of time: set split to auto")
        bin_width = float(src.attrs["bin_width_s"])
        t_start = float(src.attrs["t_start_s"])
        n_bins = int(src.attrs["n_bins"])
        units = read_table(src["units"])
        n_window, n_overlap = segment_bins(settings.segment_length_ms,
                                           settings.segment_overlap_ms, bin_width, source)
        seg = segment_recording(src["observed_intervals"][()], t_start, bin_width, n_bins,
                                n_window, n_overlap, settings.fp_bins, settings.split_blocks,
                                settings.valid_fraction, settings.test_fraction, settings.seed,
                                source)
        warns = block_warnings(seg)
        reason = np.full(len(seg.first_bin), "", dtype=object)
        series = {name: (g["timestamps_s"][()], g["data"][()])
                  for name, g in src.get("behavior", {}).items()}
        behavior_columns = [c for g in src.get("behavior", {}).values() for c in g.attrs["columns"]]
        beh = None
        if series:
            centres = bin_centres(seg.first_bin, n_window, t_start, bin_width)
            beh = np.concatenate([sample_series(ts, d, centres).astype(np.float32)
                                  for ts, d in series.values()], axis=2)
            reason[np.any(np.isnan(beh), axis=(1, 2))] = "NaN behaviour in window"
        drops = pd.Series(reason[reason != ""]).value_counts().to_dict()
        kept = reason == ""
        rows = {name: np.flatnonzero(kept & (seg.split == name)) for name in al.SPLITS}
        needs = [("train", 1, "to train on"), ("valid", 1, "for the validation loss")]
        if settings.test_fraction > 0:
            needs.append(("test", 1, f"(test_fraction {settings.test_fraction:g})"))
        kept_seg = Segmentation(seg.first_bin[kept], seg.block[kept], seg.split[kept],
                                seg.blocks, n_window, n_overlap, seg.n_total)
        check_split_counts(kept_seg, needs, bin_width, source)

        heldout_column = bool(src.attrs.get("heldout_column", True))
        heldout_mode, heldout = al._held_out_units(units, settings, heldout_column, warns, fail)
        channel_order = np.concatenate([np.flatnonzero(~heldout), np.flatnonzero(heldout)])
        for message in warns:
            log.warning("%s: %s", source, message)
        splits = [name for name in al.SPLITS if len(rows[name])]
        segments = segment_summary(seg, bin_width)
        attrs = {
            "bin_width_s": bin_width,
            "window_start_offset_s": 0.0,  # each segment's own start
            "window_end_offset_s": n_window * bin_width,
            "fp_bins": settings.fp_bins,
            "n_heldin": int((~heldout).sum()),
            "n_heldout": int(heldout.sum()),
            "align_event": SEGMENT_EVENT,
            "trials_table": "",
            "source_sha256": src.attrs["source_sha256"],
            "segment_length_bins": n_window,
            "segment_overlap_bins": n_overlap,
            "t_start_s": t_start,  # the grid's first bin edge
            "n_grid_bins": n_bins,
        }
        starts = t_start + seg.first_bin * bin_width
        metadata = {
            **attrs,
            "source": src.attrs["source"],
            "lfads_core_version": src.attrs["lfads_core_version"],
            "unit_ids": units["id"].to_numpy()[channel_order].tolist(),
            "heldout": heldout[channel_order].tolist(),
            "behavior_columns": behavior_columns,
            "split_mode": "blocks",
            "heldout_mode": heldout_mode,
            "trial_ids": {name: rows[name].tolist() for name in splits},
            "window_start_times_s": {name: starts[rows[name]].tolist() for name in splits},
            "conditions": {"columns": [], "values": [[]]},
            "segments": {**segments,
                         "block": {name: seg.block[rows[name]].tolist() for name in splits}},
        }
        behavior = None if beh is None else {name: beh[rows[name]] for name in splits}
        truth = {name: (g["timestamps_s"][()], g["data"][()], g.attrs["unit"])
                 for name, g in src.get("truth", {}).items()}
        n_spikes = al.write_windows(
            src, out_h5, {name: rows[name] for name in splits}, seg.first_bin, n_window,
            seg.n_total, channel_order, np.zeros(len(seg.first_bin), np.int64), behavior, attrs,
            behavior_columns, truth, metadata, metadata_json,
            per_window={"start_bins": seg.first_bin.astype(np.int64),
                        "block": seg.block.astype(np.int64)})

    summary = {
        "mode": "segments",
        "segments_in_recording": int(len(seg.first_bin)),
        "train_segments": int(len(rows["train"])),
        "valid_segments": int(len(rows["valid"])),
        "test_segments": int(len(rows["test"])),
        "dropped_segments": int(sum(drops.values())),
        "drop_reasons": drops,
        "segment_length_bins": n_window,
        "segment_overlap_bins": n_overlap,
        "n_bins_window": n_window,
        "fp_bins": settings.fp_bins,
        "split_blocks": settings.split_blocks,
        "blocks": seg.blocks,
        "warnings": warns,
        "n_heldin": attrs["n_heldin"],
        "n_heldout": attrs["n_heldout"],
        "spikes_in_segments": n_spikes,
    }
    log.info("align: %d train, %d valid, %d test segments of %d bins (+%d forward, overlap %d) "
             "in %d blocks; dropped %s", summary["train_segments"], summary["valid_segments"],
             summary["test_segments"], n_window, settings.fp_bins, n_overlap,
             len(seg.blocks), drops or "none")
    return summary


__all__ = ["AUTO_OVERLAP_FRACTION", "DEFAULT_SPLIT_BLOCKS", "Segmentation", "align_segments",
           "block_labels", "block_ranges", "check_split_counts", "is_continuous", "observed_bins",
           "segment_bins", "segment_recording", "tile"]
