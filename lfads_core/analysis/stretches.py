"""A continuous recording's segments merged back into stretches of its bin grid, for scoring.

A continuous recording (``segment_length_ms``) reaches the scores as overlapping segments
(``lfads_input.h5``: segments x bins x channels, with ``{split}_start_bins``, each segment's
first bin on the recording's grid, and ``{split}_block``, its block of time). Scoring the
segments as trials would count a bin two or more times, so :func:`stretch_view` merges every
array of a split back onto the grid first (:func:`lfads_core.nwb.merge.merge_segments`: linear
cross-fades over the overlaps, a block of time at a time), over the segments' windows only
(not their forward-prediction bins), and cuts the result into **stretches**: the runs of
consecutive bins the segments cover inside one block (one per block of time, more where a
block holds a gap of unobserved time). A bin belongs to exactly one stretch; no stretch
bridges a gap or a block's edge.

The stretches then take the place of trials: arrays are stretches x bins x channels, every
stretch padded with NaN after its last bin to the longest one's length (all splits alike), so
the scores, which leave NaN bins out, see each bin once; a lag between neural data and
behaviour shifts within a stretch and never pairs bins across a gap. Merged spike counts are
the counts (every segment covering a bin holds the same count), and merged behaviour and
ground truth are their values on the bins.

numpy only (with :mod:`lfads_core.nwb.merge`).
"""

from __future__ import annotations

import numpy as np

from ..merge import covered_runs, merge_segments

SPLITS = ("train", "valid", "test")
#: arrays of ``lfads_input.h5`` merged per split (``{split}_{key}``) and whether they are counts
DATA_KEYS = {"encod_data": True, "recon_data": True, "behavior": False, "truth_rates": False,
             "truth_latents": False}
#: arrays of ``posterior.h5`` merged per split
POSTERIOR_KEYS = ("rates", "factors", "inferred_inputs", "inputs")


def is_segmented(data: dict) -> bool:
    """Whether arrays loaded from an ``lfads_input.h5`` (:func:`load_arrays`: attrs under
    ``attrs``) hold segments of a continuous recording rather than trials."""
    return "segment_length_bins" in data.get("attrs", {})


def merge_split(arrays: dict[str, np.ndarray], start_bins: np.ndarray, blocks: np.ndarray,
                n_window: int, overlap_bins: int) -> list[dict]:
    """Merge one split's segment arrays (name -> segments x bins x dims; the first
    ``n_window`` bins of each are merged) into stretches, in time order: a list of dicts with
    ``first_bin`` (on the recording's grid), ``block``, ``n_bins`` and ``arrays`` (name ->
    n_bins x dims, float64). A block of segments is merged at a time."""
    start_bins = np.asarray(start_bins, dtype=np.int64)
    blocks = np.asarray(blocks, dtype=np.int64)
    out = []
    order = sorted(np.unique(blocks), key=lambda b: start_bins[blocks == b].min())
    for block in order:
        rows = np.flatnonzero(blocks == block)
        starts = start_bins[rows]
        lo = int(starts.min())
        span = int(starts.max()) + n_window - lo
        merged = {name: merge_segments(np.asarray(values[rows][:, :n_window], np.float64),
                                       starts - lo, span, overlap_bins).astype(np.float64)
                  for name, values in arrays.items()}
        for a, b in covered_runs(starts - lo, n_window):
            out.append({"first_bin": lo + int(a), "block": int(block), "n_bins": int(b - a),
                        "arrays": {name: m[a:b] for name, m in merged.items()}})
    return out


def _padded(parts: list[np.ndarray], length: int, dims: int) -> np.ndarray:
    out = np.full((len(parts), length, dims), np.nan)
    for k, p in enumerate(parts):
        out[k, :len(p)] = p
    return out


def stretch_view(data: dict, posterior: dict | None = None) -> tuple[dict, dict | None]:
    """``(data, posterior)`` of a segmented recording as stretches (module docstring): the
    same keys as the segments' (``{split}_encod_data``, ``_recon_data`` (window bins only),
    ``_behavior``, ``_truth_rates``, ``_truth_latents``; the posterior's ``_rates``,
    ``_factors``, ``_inferred_inputs``), stretches x bins x dims padded with NaN, plus
    ``{split}_cond_idx`` (0), ``{split}_inds`` (stretch numbers in time order),
    ``{split}_start_bins`` (each stretch's first bin), ``{split}_block``,
    ``{split}_lengths`` (its bins). ``attrs`` are the data's with ``fp_bins`` 0 (stretches
    have no forward-prediction bins; score those on the segments) and ``stretches`` True."""
    attrs = dict(data["attrs"])
    n_window = int(attrs["segment_length_bins"])
    overlap = int(attrs["segment_overlap_bins"])
    splits = [s for s in SPLITS if f"{s}_encod_data" in data]
    merged = {}
    for split in splits:
        arrays = {f"d:{k}": data[f"{split}_{k}"] for k in DATA_KEYS if f"{split}_{k}" in data}
        if posterior is not None:
            arrays.update({f"p:{k}": posterior[f"{split}_{k}"] for k in POSTERIOR_KEYS
                           if f"{split}_{k}" in posterior
                           and posterior[f"{split}_{k}"].shape[2]})
        merged[split] = merge_split(arrays, data[f"{split}_start_bins"], data[f"{split}_block"],
                                    n_window, overlap)
    length = max(s["n_bins"] for split in splits for s in merged[split])
    out_data = {"attrs": {**attrs, "fp_bins": 0, "stretches": True}}
    out_post = None if posterior is None else {}
    order = sorted(((s["first_bin"], split, k) for split in splits
                    for k, s in enumerate(merged[split])))
    numbers = {(split, k): i for i, (_, split, k) in enumerate(order)}
    for split in splits:
        parts = merged[split]
        for name in parts[0]["arrays"]:
            kind, key = name.split(":")
            values = _padded([p["arrays"][name] for p in parts], length,
                             parts[0]["arrays"][name].shape[1])
            if kind == "d" and DATA_KEYS[key]:
                values = np.rint(values)  # counts: every covering segment holds the same
            (out_data if kind == "d" else out_post)[f"{split}_{key}"] = values
        out_data[f"{split}_cond_idx"] = np.zeros(len(parts), np.int64)
        out_data[f"{split}_inds"] = np.array([numbers[(split, k)] for k in range(len(parts))],
                                             np.int64)
        out_data[f"{split}_start_bins"] = np.array([p["first_bin"] for p in parts], np.int64)
        out_data[f"{split}_block"] = np.array([p["block"] for p in parts], np.int64)
        out_data[f"{split}_lengths"] = np.array([p["n_bins"] for p in parts], np.int64)
    return out_data, out_post


def stretch_times(data: dict, split: str) -> np.ndarray:
    """Start time (s, the recording's clock) of each stretch of ``split`` in a
    :func:`stretch_view`."""
    attrs = data["attrs"]
    return float(attrs["t_start_s"]) + data[f"{split}_start_bins"] * float(attrs["bin_width_s"])


__all__ = ["is_segmented", "merge_split", "stretch_times", "stretch_view"]
