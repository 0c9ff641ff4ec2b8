#!/usr/bin/env bash
# The GPU run of issue 16, in one go (under 8 minutes on one H200): the CUDA tests, then the
# GPU benchmark; figures and logs as files in the output folder.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]      # default: $OUT, else ./gpu_check_out
#
# Runs from the checkout with PYTHONPATH=. and needs only torch, h5py and numpy (no pynwb,
# no snakemake, no network); Triton too for the `triton_decoder` rows (PyTorch's CUDA wheels
# bring it; without it those tests skip and those rows report the error). pytest is installed from a wheel folder if missing:
# benchmarks/wheels/ (or $WHEELS), filled beforehand on a machine with network access by
#   pip download pytest -d benchmarks/wheels
# (the folder is ignored by git; carry it with the checkout). Without a GPU the CUDA tests
# skip and the benchmark says so; the script still exits 0.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
WHEELS="${WHEELS:-benchmarks/wheels}"
# The whole run stays under 8 minutes: the CUDA tests get at most 220 s (Triton compiles there),
# the benchmark what is left of TOTAL_S; its last part, the tuning sweep, starts no new row
# in the last 60 s of that.
TOTAL_S="${TOTAL_S:-465}"
status=0

{
  echo "date: $(date -u +%FT%TZ)"
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print('device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  git rev-parse HEAD 2>/dev/null
} 2>&1 | tee "$OUT_DIR/environment.txt"

if ! "$PY" -c "import pytest" 2>/dev/null; then
  if [ -d "$WHEELS" ]; then
    echo "installing pytest from $WHEELS"
    "$PY" -m pip install --no-index --find-links "$WHEELS" pytest 2>&1 | tail -2
  else
    echo "pytest missing and no wheel folder $WHEELS (fill it with: pip download pytest -d $WHEELS)"
  fi
fi

echo "== CUDA tests"
if "$PY" -c "import pytest" 2>/dev/null; then
  # --noconftest: tests/conftest.py imports pynwb, pandas and yaml, which the GPU machine lacks;
  # tests/test_cuda.py needs none of its fixtures.
  timeout 220 "$PY" -m pytest --noconftest -m cuda -q -rA tests/test_cuda.py \
    --junitxml="$OUT_DIR/cuda_tests.xml" 2>&1 | tee "$OUT_DIR/cuda_tests.txt"
  rc=${PIPESTATUS[0]}
  echo "pytest exit status $rc" | tee -a "$OUT_DIR/cuda_tests.txt"
  [ "$rc" -ne 0 ] && status=1
else
  echo "CUDA tests not run: no pytest" | tee "$OUT_DIR/cuda_tests.txt"
  status=1
fi

left=$(( TOTAL_S - SECONDS > 30 ? TOTAL_S - SECONDS : 30 ))
echo "== GPU benchmark (at most $left s)"
timeout "$left" "$PY" benchmarks/bench_gpu.py --out "$OUT_DIR" --budget-s $(( left - 60 )) 2>&1 \
  | tee "$OUT_DIR/gpu_bench.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && { echo "benchmark exit status $rc"; status=1; }

echo "== done: results in $OUT_DIR (environment.txt, cuda_tests.txt/.xml, gpu_bench.json/.txt, gpu_profile.txt)"
exit $status
