"""Peak memory and time of ingest -> bin -> align into segments, and of the merge back, on a
long continuous recording.

    python benchmarks/bench_segments_memory.py [--hours 2] [--units 1000] [--bin-ms 5]
                                               [--keep PATH]

Writes a simulated NWB file without trials (``--hours`` of recording, ``--units`` units firing
at 1-20 Hz (log-uniform, Poisson), 20% held out, a 2-D hand velocity at 1 kHz; the writer of
``bench_windows_memory.py``), then runs each data stage of a continuous dataset
(``segment_length_ms`` 500, overlap auto, 10 blocks of time) in a fresh subprocess, as the
workflow does, and reports its time (imports excluded) and peak resident memory (VmHWM,
imports included). Then the merge of ``extract_factors`` on a posterior of that many segments
(random rates of every unit, 8 factors): ``factors.h5`` written block by block
(:func:`lfads_core.nwb.export_continuous.write_continuous_factors_h5`), in a fresh process
too. A dense count matrix of the whole recording (bins x units, int32) is printed for
comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_windows_memory import PEAK, RUNNER, write_recording  # noqa: E402

STAGES = {
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
    "align (segments)": """
from lfads_core.nwb.alignment import AlignSettings
from lfads_core.nwb.segments import align_windows
s = align_windows(tmp + "/binned.h5", tmp + "/lfads_input.h5", AlignSettings.from_settings(settings),
                  tmp + "/lfads_input.json")
result = {"train": s["train_segments"], "valid": s["valid_segments"], "test": s["test_segments"], "spikes": s["spikes_in_segments"]}
""",
    "posterior (made up)": """
import h5py, numpy as np
rng = np.random.default_rng(0)
with h5py.File(tmp + "/lfads_input.h5", "r") as src, h5py.File(tmp + "/posterior.h5", "w") as out:
    for split in ("train", "valid", "test"):
        if split + "_recon_data" not in src:
            continue
        n, bins, units = src[split + "_recon_data"].shape
        for key, dims in (("rates", units), ("factors", 8)):
            ds = out.create_dataset(f"{split}_{key}", (n, bins, dims), np.float32, chunks=(16, bins, dims))
            for lo in range(0, n, 256):
                hi = min(n, lo + 256)
                ds[lo:hi] = rng.random((hi - lo, bins, dims), dtype=np.float32)
result = {}
""",
    "merge (factors.h5)": """
from lfads_core.nwb.export_continuous import write_continuous_factors_h5
write_continuous_factors_h5(tmp + "/posterior.h5", tmp + "/lfads_input.json", tmp + "/factors.h5")
import h5py
with h5py.File(tmp + "/factors.h5", "r") as f:
    result = {"rates": list(f["rates"].shape), "factors": list(f["factors"].shape)}
""",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--bin-ms", type=float, default=5.0)
    parser.add_argument("--keep", type=Path, help="write the NWB file here and keep it")
    parser.add_argument("--tmp", type=Path, help="folder of the work files (default: a temp dir)")
    parser.add_argument("--no-merge", action="store_true",
                        help="stop after the segments (the made-up posterior of a long "
                             "recording takes disk: segments x bins x units float32)")
    args = parser.parse_args()
    import yaml

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        nwb = args.keep or Path(tmp) / "long.nwb"
        if not nwb.exists():
            start = time.perf_counter()
            n = write_recording(nwb, args.hours, args.units, 0)
            print(f"wrote {nwb} ({n:,} spikes) in {time.perf_counter() - start:.0f} s")
        settings = {**config["defaults"], "dataset": "bench", "nwb": str(nwb),
                    "bin_width_ms": args.bin_ms, "segment_length_ms": 500,
                    "segment_overlap_ms": "auto", "split_blocks": 10, "test_fraction": 0.1,
                    "behavior": "hand_vel"}
        dense_gb = args.hours * 3600 / (args.bin_ms / 1e3) * args.units * 4 / 1e9
        print(f"NWB file {nwb.stat().st_size / 1e9:.2f} GB; {args.hours:g} h, {args.units} units,"
              f" no trials, {args.bin_ms:g} ms bins, 500 ms segments (a dense bins x units "
              f"int32 matrix of the recording would take {dense_gb:.1f} GB)")
        total = 0.0
        for stage, code in STAGES.items():
            if args.no_merge and stage in ("posterior (made up)", "merge (factors.h5)"):
                continue
            out = subprocess.run(
                [sys.executable, "-c", RUNNER.format(imports=code.strip().split("\n")[0],
                                                     code=code, peak=PEAK), str(nwb), tmp,
                 json.dumps(settings), json.dumps(config)],
                capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{stage} failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            total += result["seconds"] if stage in ("ingest", "bin_spikes", "align (segments)") \
                else 0.0
            extra = {k: v for k, v in result.items() if k not in ("seconds", "peak_rss_mb")}
            print(f"{stage:20s} {result['seconds']:7.2f} s  peak RSS "
                  f"{result['peak_rss_mb']:6.0f} MB  {extra}", flush=True)
        sizes = {p.name: p.stat().st_size / 1e6 for p in Path(tmp).glob("*.h5")}
        print(f"ingest to segments: {total:.1f} s; files (MB): "
              + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
