"""Peak memory and time of merging LFADS's per-segment output of a long continuous recording.

    python benchmarks/bench_merge_memory.py [--hours 2 0.5] [--units 1000] [--bin-ms 5]
                                            [--segment-ms 1000] [--overlap-ms 200]
                                            [--block-minutes 10] [--gap-s 2]
                                            [--compression none] [--tmp DIR]

For each recording length (``--hours``, several to compare), writes synthetic per-segment
rates as ``posterior.h5`` holds them (segments x bins x units, float32, one chunk per
segment) to a temporary HDF5 file, a block of segments at a time: the recording is
``--block-minutes`` blocks of observed time separated by ``--gap-s`` gaps, each cut into
``--segment-ms`` segments overlapping by ``--overlap-ms`` (the last one of a block flush with
its end). The rates are a smooth function of the grid bin (a few sinusoids mixed per unit), so
every segment agrees with its neighbours and the merged output must equal the function. Then
merges them with ``lfads_core.merge.merge_segments`` into a chunked HDF5 dataset in a
fresh subprocess, as the workflow would, and reports its time (imports excluded) and peak
resident memory (VmHWM, imports included; the imports alone are printed too), the largest
error against the function on 2,000 random covered bins and the NaN count of the gaps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"
N_WAVES = 8

RUNNER = """
import json, sys, time
import h5py, numpy as np
from lfads_core.merge import create_merged_dataset, merge_segments
imports_mb = {peak}
src, dst, n_grid, overlap = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    seg = f["rates"]
    out = create_merged_dataset(g, "rates", n_grid, seg.shape[2])
    merge_segments(seg, f["start_bins"][()], n_grid, overlap, out)
    chunks = out.chunks
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mb": {peak}, "imports_rss_mb": imports_mb,
                  "chunks": chunks}}))
"""


def waves(n_units: int, seed: int = 0):
    """Periods (bins) and per-unit mixing of the smooth synthetic rates."""
    rng = np.random.default_rng(seed)
    periods = np.exp(rng.uniform(np.log(20), np.log(4000), N_WAVES))
    phases = rng.uniform(0, 2 * np.pi, N_WAVES)
    mixing = (rng.uniform(-1, 1, (N_WAVES, n_units)) / N_WAVES).astype(np.float32)
    base = rng.uniform(0.01, 0.1, n_units).astype(np.float32)  # 2-20 Hz at 5 ms bins
    return periods, phases, mixing, base


def rates_at(bins: np.ndarray, params) -> np.ndarray:
    """Expected counts per bin of every unit at grid ``bins`` (any shape): shape + (units,)."""
    periods, phases, mixing, base = params
    f = np.sin(2 * np.pi * bins[..., None] / periods + phases).astype(np.float32)
    return base * (1 + 0.5 * (f @ mixing))


def segment_starts(n_grid: int, n_bins: int, overlap: int, block: int, gap: int) -> np.ndarray:
    starts = []
    for a in range(0, n_grid, block + gap):
        b = min(n_grid, a + block)
        if b - a < n_bins:
            continue
        s = list(range(a, b - n_bins + 1, n_bins - overlap))
        if s[-1] != b - n_bins:
            s.append(b - n_bins)
        starts += s
    return np.asarray(starts, dtype=np.int64)


def write_segments(path: Path, starts: np.ndarray, n_bins: int, params, compression) -> None:
    n_units = params[2].shape[1]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("rates", (len(starts), n_bins, n_units), np.float32,
                              chunks=(1, n_bins, n_units), compression=compression)
        f["start_bins"] = starts
        step = 32
        for i in range(0, len(starts), step):
            j = min(len(starts), i + step)
            ds[i:j] = rates_at(starts[i:j, None] + np.arange(n_bins), params)


def check(path: Path, starts: np.ndarray, n_bins: int, n_grid: int, params) -> dict:
    covered = np.zeros(n_grid, bool)
    for s in starts:
        covered[s:s + n_bins] = True
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(np.flatnonzero(covered), 2000, replace=False))
    gaps = np.flatnonzero(~covered)
    with h5py.File(path, "r") as f:
        got = f["rates"][sample.tolist()]
        gap_sample = gaps[np.linspace(0, len(gaps) - 1, min(len(gaps), 2000)).astype(int)]
        gap_nan = bool(np.isnan(f["rates"][np.unique(gap_sample).tolist()]).all()) \
            if len(gaps) else True
        storage_gb = f["rates"].id.get_storage_size() / 1e9
    error = float(np.max(np.abs(got - rates_at(sample, params)) / rates_at(sample, params)))
    return {"max_rel_error": error, "gap_bins": int(len(gaps)), "gaps_nan": gap_nan,
            "output_gb": storage_gb}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[2.0, 0.5])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--bin-ms", type=float, default=5.0)
    parser.add_argument("--segment-ms", type=float, default=1000.0)
    parser.add_argument("--overlap-ms", type=float, default=200.0)
    parser.add_argument("--block-minutes", type=float, default=10.0)
    parser.add_argument("--gap-s", type=float, default=2.0)
    parser.add_argument("--compression", default="none", choices=["none", "lzf", "gzip"])
    parser.add_argument("--tmp", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()

    width = args.bin_ms / 1e3
    n_bins = round(args.segment_ms / args.bin_ms)
    overlap = round(args.overlap_ms / args.bin_ms)
    compression = None if args.compression == "none" else args.compression
    params = waves(args.units)
    rows = []
    for hours in args.hours:
        n_grid = round(hours * 3600 / width)
        starts = segment_starts(n_grid, n_bins, overlap, round(args.block_minutes * 60 / width),
                                round(args.gap_s / width))
        seg_gb = len(starts) * n_bins * args.units * 4 / 1e9
        dense_gb = n_grid * args.units * 4 / 1e9
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            free_gb = shutil.disk_usage(tmp).free / 1e9
            if free_gb < 1.2 * (seg_gb + dense_gb):
                raise SystemExit(f"{free_gb:.1f} GB free in {tmp}, need about "
                                 f"{seg_gb + dense_gb:.1f} GB: use --tmp, --units or "
                                 f"--compression lzf")
            src, dst = Path(tmp) / "segments.h5", Path(tmp) / "merged.h5"
            t = time.perf_counter()
            write_segments(src, starts, n_bins, params, compression)
            write_s = time.perf_counter() - t
            print(f"{hours:g} h: {n_grid:,} bins of {args.bin_ms:g} ms x {args.units} units; "
                  f"{len(starts):,} segments of {n_bins} bins, overlap {overlap}; segment file "
                  f"{src.stat().st_size / 1e9:.2f} GB ({seg_gb:.2f} GB of float32) written in "
                  f"{write_s:.0f} s; the merged recording is {dense_gb:.2f} GB of float32",
                  flush=True)
            out = subprocess.run(
                [sys.executable, "-c", RUNNER.format(peak=PEAK), str(src), str(dst),
                 str(n_grid), str(overlap)],
                capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                raise SystemExit(f"merge failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(check(dst, starts, n_bins, n_grid, params), hours=hours,
                          segments=len(starts), n_grid=n_grid, segments_gb=seg_gb)
            rows.append(result)
            print(f"  merge {result['seconds']:6.1f} s ({n_grid / result['seconds'] / 1e3:,.0f} k "
                  f"bins/s, {seg_gb / result['seconds'] * 1e3:,.0f} MB/s of segments)  peak RSS "
                  f"{result['peak_rss_mb']:5.0f} MB (imports {result['imports_rss_mb']:.0f} MB)  "
                  f"output chunks {tuple(result['chunks'])}, {result['output_gb']:.2f} GB on "
                  f"disk; max relative error {result['max_rel_error']:.1e}; "
                  f"{result['gap_bins']:,} gap bins, NaN: {result['gaps_nan']}", flush=True)
    if len(rows) > 1:
        print("peak RSS by recording length: " + ", ".join(
            f"{r['hours']:g} h {r['peak_rss_mb']:.0f} MB" for r in rows))


if __name__ == "__main__":
    main()
