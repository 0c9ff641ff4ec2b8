"""The simulated workflow through the SLURM profile on a real one-node SLURM cluster.

`tests/slurm/cluster.sh` brings the cluster up (Debian's slurm-wlm and munge; partitions cpu
and gpu, a node with one GPU backed by /dev/null). The test runs a 2-point
hyperparameter sweep and checks from SLURM's own records that train_lfads (once per point) and
sample_posterior ran as batch jobs on the gpu partition with a GPU allocated, that no light rule
went through sbatch, and that the results match a local run; then a tiny population-based
training, whose members (population x generations jobs) run the same way.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, TINY_SHEET, run_snakemake, tiny_config, workflow_dir

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"


def slurm_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "bringing up a SLURM cluster needs root"
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        return "SLURM is not installed and apt-get is not available to install it"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "ClusterName=lfadsci" not in conf.read_text():
        return "this machine has a SLURM configuration of its own; not replacing it"
    return None


pytestmark = [pytest.mark.workflow,
              pytest.mark.skipif(slurm_unavailable() is not None, reason=str(slurm_unavailable()))]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    subprocess.run(["bash", str(CLUSTER), "up", str(state)], check=True)
    yield state
    subprocess.run(["bash", str(CLUSTER), "down", str(state)], check=False)


def small_node_profile(directory: Path) -> Path:
    """The shipped SLURM profile, with requests that fit the test node (2 CPUs), the
    flags a cluster without accounting needs and a short first status check."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(mem_mb=1000, runtime=10)
    for rule in ("train_lfads", "train_pbt_member", "sample_posterior"):
        profile["set-resources"][rule].update(cpus_per_gpu=1, mem_mb=2000)
        profile["set-threads"][rule] = 1
    # a tiny job takes seconds: ask SLURM after 2 s, not the plugin's default 40
    profile.update({"slurm-status-command": "squeue", "slurm-no-account": True,
                    "slurm-init-seconds-before-status-checks": 2})
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def sweep_config() -> str:
    """The tiny workflow with a 2-point sweep: two training jobs, one selection."""
    config = yaml.safe_load(tiny_config())
    config["lfads"]["sweep"] = {"method": "grid", "parameters": {"training.lr": [0.004, 0.02]}}
    return yaml.safe_dump(config)


def slurm_rules(cluster) -> list[str]:
    """The rule of every job in SLURM's job-completion records, after checking that each ran
    as a batch job on the gpu partition with one GPU and completed."""
    completions = cluster / "jobcomp.txt"
    records = completions.read_text().strip().splitlines() if completions.exists() else []
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in records]
    rules = []
    for job in jobs:
        detail = subprocess.run(["scontrol", "-d", "show", "job", job["JobId"]],
                                capture_output=True, text=True, check=True).stdout
        rule = re.search(r"Comment=rule_(\w+?)_wildcards", detail).group(1)
        rules.append(rule)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == "gpu", rule
        assert "BatchFlag=1" in detail and "JOB_GRES=gpu:1" in detail, rule
    return rules


def test_training_runs_on_the_gpu_partition_and_matches_a_local_run(cluster, tmp_path):
    done = len(slurm_rules(cluster))  # jobs of other tests
    on_slurm = workflow_dir(tmp_path / "slurm", TINY_SHEET, sweep_config())
    run_snakemake(on_slurm, "--workflow-profile", str(small_node_profile(tmp_path / "profile")))
    local = workflow_dir(tmp_path / "local", TINY_SHEET, sweep_config())
    run_snakemake(local, "--set-threads", "train_lfads=1", "sample_posterior=1")

    rules = slurm_rules(cluster)[done:]
    # one training job per sweep point, one posterior job for the selected run; the light
    # rules (the selection among them) ran locally
    assert sorted(rules) == ["sample_posterior", "train_lfads", "train_lfads"]

    for name in ("lfads_input.h5", "lfads/selected/posterior.h5"):
        with h5py.File(on_slurm / "results/tiny" / name) as a, \
                h5py.File(local / "results/tiny" / name) as b:
            assert set(a) == set(b)
            for key in a:
                np.testing.assert_allclose(a[key][()], b[key][()], rtol=1e-5, atol=1e-7,
                                           err_msg=f"{name}:{key}")
    for name in ("metrics.tsv", "lfads/selection.tsv"):
        assert (on_slurm / "results/tiny" / name).read_text() == \
            (local / "results/tiny" / name).read_text(), name


def test_pbt_members_run_on_the_gpu_partition(cluster, tmp_path):
    """Population 2, 2 generations: 4 member jobs and the posterior through sbatch; the plans,
    tables and selection ran locally."""
    done = len(slurm_rules(cluster))  # jobs of other tests
    config = yaml.safe_load(tiny_config())
    config["lfads"]["pbt"].update(enabled=True, population=2, generations=2,
                                  epochs_per_generation=2)
    work = workflow_dir(tmp_path / "slurm", TINY_SHEET, yaml.safe_dump(config))
    run_snakemake(work, "--workflow-profile", str(small_node_profile(tmp_path / "profile")))
    rules = slurm_rules(cluster)[done:]
    assert sorted(rules) == ["sample_posterior"] + ["train_pbt_member"] * 4
    table = (work / "results/tiny/lfads/pbt/generations.tsv").read_text().splitlines()
    assert len(table) == 1 + 4
