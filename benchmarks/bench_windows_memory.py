"""Peak memory and time of ingest -> bin -> align on a long recording with few trials.

    python benchmarks/bench_windows_memory.py [--hours 2] [--units 1000] [--trials 500]
                                              [--bin-ms 1] [--keep PATH]

Writes a simulated NWB file (``--hours`` of recording, ``--units`` units firing at 1-20 Hz
(log-uniform, Poisson), ``--trials`` one-second trials spread over the recording, 20% of the
units held out, a 2-D hand velocity at 1 kHz), then runs each data stage in a fresh
subprocess, as the workflow does, and reports its time (imports excluded) and peak
resident memory (VmHWM, imports included). A
dense count matrix of the whole recording (bins x units, int32) is printed for comparison:
the stages never make one, so their memory follows the trials used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"

STAGES = {
    "parse-time check": """
from lfads_core.workflow.preflight import check_dataset
found = check_dataset("bench", settings, "bench.tsv", config)
result = {"train": found["train"], "valid": found["valid"]}
""",
    "ingest": """
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
s = ingest_nwb(nwb, tmp + "/session.h5", IngestSettings.from_settings(settings))
result = {"spikes": s["spikes_kept"]}
""",
    "bin_spikes": """
from lfads_core.nwb.binning import bin_session
s = bin_session(tmp + "/session.h5", tmp + "/binned.h5", settings["bin_width_ms"] / 1e3)
result = {"n_bins": s["n_bins"]}
""",
    "align_trials": """
from lfads_core.nwb.alignment import AlignSettings, align_trials
s = align_trials(tmp + "/binned.h5", tmp + "/lfads_input.h5", AlignSettings.from_settings(settings))
result = {"train": s["train_trials"], "valid": s["valid_trials"], "spikes": s["spikes_in_trials"]}
""",
}

RUNNER = """
import json, sys, time
nwb, tmp, settings, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
{imports}
start = time.perf_counter()
{code}
result.update(seconds=time.perf_counter() - start, peak_rss_mb={peak})
print(json.dumps(result))
"""


def write_recording(path: Path, hours: float, n_units: int, n_trials: int, seed: int = 0) -> int:
    """The simulated long recording; returns its number of spikes."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common.table import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.misc import Units

    duration = hours * 3600.0
    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="long recording, few trials", identifier="bench-windows",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    if n_trials:  # none: a continuous recording without a trials table
        nwb.add_trial_column("move_onset_time", "movement onset (s)")
    for start in np.linspace(5.0, duration - 5.0, n_trials):
        nwb.add_trial(start_time=start, stop_time=start + 1.0, move_onset_time=start + 0.25)
    rates = np.exp(rng.uniform(np.log(1.0), np.log(20.0), n_units))
    counts = rng.poisson(rates * duration)
    flat = np.concatenate([np.sort(rng.uniform(0, duration, c)) for c in counts])
    times = VectorData(name="spike_times", description="spike times (s)",
                       data=H5DataIO(flat, chunks=(1 << 20,)))
    index = VectorIndex(name="spike_times_index", target=times, data=np.cumsum(counts))
    heldout = VectorData(name="heldout", description="held-out units",
                         data=rng.permutation(n_units) < n_units // 5)
    nwb.units = Units(name="units", description="benchmark units", id=list(range(n_units)),
                      columns=[times, index, heldout])
    t = np.arange(int(duration * 1000)) / 1000.0
    velocity = np.column_stack([np.sin(t), np.cos(0.7 * t)]).astype(np.float32)
    nwb.create_processing_module("behavior", "behaviour").add(TimeSeries(
        name="hand_vel", data=H5DataIO(velocity, compression="gzip", compression_opts=1),
        unit="m/s", rate=1000.0, starting_time=0.0))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return int(counts.sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--bin-ms", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="write the NWB file here and keep it")
    args = parser.parse_args()
    import yaml

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        nwb = args.keep or Path(tmp) / "long.nwb"
        if not nwb.exists():
            start = time.perf_counter()
            n = write_recording(nwb, args.hours, args.units, args.trials)
            print(f"wrote {nwb} ({n:,} spikes) in {time.perf_counter() - start:.0f} s")
        settings = {**config["defaults"], "dataset": "bench", "nwb": str(nwb),
                    "bin_width_ms": args.bin_ms, "window_start_ms": -250,
                    "window_end_ms": 750, "behavior": "hand_vel", "split": "random"}
        dense_gb = args.hours * 3600 / (args.bin_ms / 1e3) * args.units * 4 / 1e9
        print(f"NWB file {nwb.stat().st_size / 1e9:.2f} GB; {args.hours:g} h, {args.units} units,"
              f" {args.trials} trials of 1 s, {args.bin_ms:g} ms bins (a dense bins x units "
              f"int32 matrix of the recording would take {dense_gb:.1f} GB)")
        total = 0.0
        for stage, code in STAGES.items():
            out = subprocess.run(
                [sys.executable, "-c", RUNNER.format(imports=code.strip().split("\n")[0],
                                                     code=code, peak=PEAK), str(nwb), tmp,
                 json.dumps(settings), json.dumps(config)],
                capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{stage} failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            total += result["seconds"] if stage != "parse-time check" else 0.0
            extra = {k: v for k, v in result.items() if k not in ("seconds", "peak_rss_mb")}
            print(f"{stage:17s} {result['seconds']:7.2f} s  peak RSS {result['peak_rss_mb']:6.0f} MB"
                  f"  {extra}")
        sizes = {p.name: p.stat().st_size / 1e6 for p in Path(tmp).glob("*.h5")}
        print(f"ingest to alignment: {total:.1f} s; files (MB): "
              + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
