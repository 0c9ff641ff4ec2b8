"""Time intervals (n x 2 arrays of [start, stop] in seconds): union and intersection."""

from __future__ import annotations

import numpy as np

TOLERANCE_S = 1e-9


def merge_intervals(intervals: np.ndarray) -> np.ndarray:
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


def intersect_intervals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def inside_intervals(starts: np.ndarray, stops: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """True where ``[start, stop]`` lies inside one of the (sorted, disjoint) ``intervals``."""
    if len(intervals) == 0:
        return np.zeros(len(starts), dtype=bool)
    i = np.searchsorted(intervals[:, 0], starts + TOLERANCE_S, side="right") - 1
    ok = i >= 0
    i = np.clip(i, 0, None)
    return ok & (starts >= intervals[i, 0] - TOLERANCE_S) & \
        (stops <= intervals[i, 1] + TOLERANCE_S)
