"""The prepared GPU run (issue 16) exercised where there is no GPU: ``benchmarks/bench_gpu.py``
measures the same code paths on the CPU, and ``benchmarks/gpu_check.sh`` runs end to end,
skipping the CUDA tests cleanly.

Both run as on the GPU machine, which has torch, h5py and numpy but none of the project's
other dependencies: a ``sitecustomize`` on the path hides those (``conftest.hide_packages``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import hide_packages

ROOT = Path(__file__).resolve().parent.parent
# The project's dependencies that the GPU machine lacks (pyproject.toml less torch, h5py, numpy).
ABSENT_ON_GPU_MACHINE = ["snakemake", "pynwb", "hdmf", "pandas", "scipy", "sklearn", "yaml",
                         "jsonschema", "matplotlib"]


@pytest.fixture
def env(tmp_path):
    """The environment of a bare GPU machine: the checkout on PYTHONPATH, the other
    dependencies unimportable."""
    bare = hide_packages(tmp_path / "bare", ABSENT_ON_GPU_MACHINE)
    return {**os.environ, "PYTHONPATH": f"{bare}{os.pathsep}{ROOT}"}


def test_the_bare_environment_lacks_the_other_dependencies(env):
    probe = subprocess.run([sys.executable, "-c", "import scipy.ndimage"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'scipy'" in probe.stderr


def test_gpu_benchmark_runs_its_measurements_on_cpu(tmp_path, env):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--quick",
                    "--steps", "1", "--batches", "4", "--sample-batches", "4", "--samples", "3", "--profile-batch", "4",
                    "--out", str(tmp_path)], check=True, env=env, capture_output=True, text=True)
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert report["device"] == "cpu" and report["peak_matmul_flops"]["fp32"] > 0
    (train,) = report["train"]
    assert "error" not in train and train["batch"] == 4 and train["finite_loss"]
    assert train["trials_per_s"] > 0 and 0 < train["fraction_of_peak"] < 1
    assert [(r["method"], r["n_samples"]) for r in report["sample"]] == [("batched", 3), ("sequential", 1)]
    assert all("error" not in r and r["trial_samples_per_s"] > 0 for r in report["sample"])
    (profile,) = report["profile"]
    assert "error" not in profile and profile["batch"] == 4 and profile["step_s"] > 0
    assert "GRUScanBackward" in (tmp_path / profile["table"]).read_text()  # the operator table, by name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without a GPU")
def test_gpu_check_script_without_gpu_skips_and_succeeds(tmp_path, env):
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    tests = (tmp_path / "cuda_tests.txt").read_text()
    assert "skipped" in tests and "failed" not in tests and "pytest exit status 0" in tests
    assert json.loads((tmp_path / "gpu_bench.json").read_text())["skipped"] == "no CUDA GPU"
    assert "torch" in (tmp_path / "environment.txt").read_text()
