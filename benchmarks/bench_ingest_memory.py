"""Peak memory of ingesting a large NWB file (>= 1 GB of spike times).

    python benchmarks/bench_ingest_memory.py [--gigabytes 1.0] [--repeats 3] [--keep PATH]

Writes a simulated NWB file whose spike times take the given size (float64), then ingests it
in a fresh subprocess and reports that process's peak resident memory (VmHWM) and time.
Ingestion streams spike times unit by unit, so its peak should be far below the file size.
Also times the workflow's parse-time check of the file (lfads_core.workflow.preflight, metadata only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Peak resident memory of this process: VmHWM, which (unlike ru_maxrss) starts afresh at exec.
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"

INGEST = f"""
import json, sys, time
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
start = time.perf_counter()
summary = ingest_nwb(sys.argv[1], sys.argv[2], IngestSettings())
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mb": {PEAK}, "spikes": summary["spikes_kept"]}}))
"""

CHECK = f"""
import json, sys, time
from pathlib import Path
import yaml
from lfads_core.workflow.preflight import check_dataset
config = yaml.safe_load((Path(sys.argv[2]) / "config" / "config.yaml").read_text())
settings = {{**config["defaults"], "dataset": "bench", "nwb": sys.argv[1], "split": "random"}}
start = time.perf_counter()
found = check_dataset("bench", settings, "bench.tsv", config)
print(json.dumps({{"seconds": time.perf_counter() - start, "trials": found["all"]}}))
"""

BASELINE = f"""
import lfads_core.nwb.ingest, pynwb, h5py, pandas
print({PEAK})
"""


def write_large_nwb(path: Path, gigabytes: float, n_units: int = 200) -> int:
    """Spike times of ``n_units`` units totalling ``gigabytes`` of float64, with 1000 trials."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common.table import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    per_unit = int(gigabytes * 1e9 / 8) // n_units
    duration = 4000.0
    nwb = NWBFile(session_description="ingest memory benchmark", identifier="bench-ingest",
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    nwb.add_trial_column("move_onset_time", "movement onset (s)")
    for start in np.linspace(1.0, duration - 2.0, 1000):
        nwb.add_trial(start_time=start, stop_time=start + 1.0, move_onset_time=start + 0.3)
    rng = np.random.default_rng(0)
    flat = np.sort(rng.uniform(0, duration, (n_units, per_unit)), axis=1).ravel()
    times = VectorData(name="spike_times", description="spike times (s)",
                       data=H5DataIO(flat, chunks=(1 << 20,)))
    index = VectorIndex(name="spike_times_index", target=times,
                        data=(np.arange(n_units) + 1) * per_unit)
    nwb.units = Units(name="units", description="benchmark units", id=list(range(n_units)),
                      columns=[times, index])
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return per_unit * n_units


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the NWB file here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nwb = args.keep or Path(tmp) / "large.nwb"
        if not nwb.exists():
            start = time.perf_counter()
            write_large_nwb(nwb, args.gigabytes)
            print(f"wrote {nwb} in {time.perf_counter() - start:.0f} s")
        size_gb = nwb.stat().st_size / 1e9
        baseline = float(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True,
                                        text=True, check=True).stdout)
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", INGEST, str(nwb),
                                  str(Path(tmp) / "s.h5")], capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        root = Path(__file__).resolve().parent.parent
        checks = [json.loads(subprocess.run([sys.executable, "-c", CHECK, str(nwb), str(root)],
                                            capture_output=True, text=True, check=True
                                            ).stdout.strip().splitlines()[-1])
                  for _ in range(args.repeats)]
        print(f"NWB file {size_gb:.2f} GB, {runs[0]['spikes']:,} spikes")
        print(f"parse-time check, median of {args.repeats} runs: "
              f"{statistics.median(c['seconds'] for c in checks) * 1e3:.0f} ms "
              f"({checks[0]['trials']} usable trials)")
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak_rss_mb"] for r in runs)
        print(f"ingest, median of {args.repeats} runs: {seconds:.1f} s, peak RSS {peak:.0f} MB "
              f"(imports alone: {baseline:.0f} MB)")


if __name__ == "__main__":
    main()
