"""Binning throughput: lfads_core.nwb.binning.bin_spikes vs a plain np.histogram loop per unit.

    python benchmarks/bench_binning.py [--spikes 100000000] [--repeats 3]

Prints the median wall time and spikes/s of each over several runs, back to back in one
process, and checks that both give the same counts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lfads_core.nwb.binning import bin_edges, bin_spikes, make_grid


def histogram_loop(times, offsets, t_start, bin_width, n_bins):
    edges = bin_edges(t_start, bin_width, n_bins)
    counts = np.zeros((n_bins, len(offsets) - 1), dtype=np.int32)
    for u in range(len(offsets) - 1):
        counts[:, u] = np.histogram(times[offsets[u]:offsets[u + 1]], edges)[0]
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spikes", type=float, default=1e8)
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--rate-hz", type=float, default=100.0)
    parser.add_argument("--bin-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    per_unit = int(args.spikes // args.units)
    duration = per_unit / args.rate_hz
    times = np.sort(rng.uniform(0, duration, (args.units, per_unit)), axis=1).ravel()
    offsets = np.arange(args.units + 1, dtype=np.int64) * per_unit
    t_start, n_bins = make_grid(0.0, duration, args.bin_ms / 1e3)
    print(f"{len(times):,} spikes, {args.units} units, {duration:,.0f} s, "
          f"{n_bins:,} bins of {args.bin_ms:g} ms")

    results = {}
    for name, fn in (("bin_spikes", bin_spikes), ("np.histogram loop", histogram_loop)):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            counts = fn(times, offsets, t_start, args.bin_ms / 1e3, n_bins)
            seconds.append(time.perf_counter() - start)
        results[name] = counts
        median = statistics.median(seconds)
        print(f"{name:>18}: median {median:6.2f} s over {args.repeats} runs "
              f"({len(times) / median / 1e6:6.1f} M spikes/s)")
    same = np.array_equal(results["bin_spikes"], results["np.histogram loop"])
    print(f"identical counts: {same}")


if __name__ == "__main__":
    main()
