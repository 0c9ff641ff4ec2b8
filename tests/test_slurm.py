"""The simulated workflow through the SLURM profile on a real one-node SLURM cluster.

`tests/slurm/cluster.sh` brings the cluster up (Debian's slurm-wlm and munge; partitions cpu
and gpu, a node with one GPU backed by /dev/null; no accounting database). Every job of these
tests is checked in SLURM's own records (its job-completion log and `scontrol show job`): its
rule, partition, GPUs and account. The profile is the shipped one with small requests and an
account set once, in its default-resources.

- A 2-point hyperparameter sweep: train_lfads (once per point) and sample_posterior ran as batch
  jobs on the gpu partition with a GPU allocated, no light rule went through sbatch, and the
  results match a local run.
- A tiny population-based training, whose members (population x generations jobs) run the
  same way.
- A stitched group of two sessions: its training and each session's sample_stitched_posterior
  on the gpu partition with a GPU.
- With config `submit_light_rules`, on a cluster without `sacct` (hidden from the run): the
  light rules are batch jobs on the cpu partition, with no GPU.
"""

import os
import re
import shutil
import subprocess
import sys
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


ACCOUNT = "lfads_lab"  # accounts are not checked without an accounting database


def small_node_profile(directory: Path, training_threads: int = 1, **settings) -> Path:
    """The shipped SLURM profile, with requests that fit the test node (2 CPUs: one thread a
    job, ``training_threads`` for train_lfads), an account, job status from `squeue` (the test
    cluster's `sacct` has no accounting database behind it), a short first status check, and
    ``settings`` (None removes a key)."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(mem_mb=1000, runtime=10, slurm_account=ACCOUNT)
    for resources in profile["set-resources"].values():
        resources.update(mem_mb=2000)
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["set-threads"]["train_lfads"] = training_threads
    # a tiny job takes seconds: ask SLURM after 2 s, not the plugin's default 40
    profile.update({"slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 2})
    profile.update(settings)
    profile = {key: value for key, value in profile.items() if value is not None}
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def sweep_config() -> str:
    """The tiny workflow with a 2-point sweep: two training jobs, one selection."""
    config = yaml.safe_load(tiny_config())
    config["lfads"]["sweep"] = {"method": "grid", "parameters": {"training.lr": [0.004, 0.02]}}
    return yaml.safe_dump(config)


def slurm_jobs(cluster) -> list[dict]:
    """Every job in SLURM's job-completion records, in order: its rule, final state, partition,
    account, whether it ran as a batch job (sbatch), its GPUs (`JOB_GRES`) and CPUs."""
    completions = cluster / "jobcomp.txt"
    records = completions.read_text().strip().splitlines() if completions.exists() else []
    jobs = []
    for record in (dict(re.findall(r"(\w+)=(\S*)", line)) for line in records):
        detail = subprocess.run(["scontrol", "-d", "show", "job", record["JobId"]],
                                capture_output=True, text=True, check=True).stdout
        jobs.append({"rule": re.search(r"Comment=rule_(\w+?)(_wildcards\S*)?\s", detail)[1],
                     "state": record["JobState"], "partition": record["Partition"],
                     "account": record["Account"], "batch": "BatchFlag=1" in detail,
                     "gres": re.search(r"JOB_GRES=(\S+)", detail)[1],
                     "cpus": int(re.search(r"NumCPUs=(\d+)", detail)[1])})
    return jobs


def gpu_rules(jobs: list[dict]) -> list[str]:
    """The rules of ``jobs``, sorted, after checking that each ran as a batch job on the gpu
    partition with one GPU, charged to the profile's account, and completed."""
    for job in jobs:
        assert (job["state"], job["partition"], job["gres"], job["batch"], job["account"]) == \
            ("COMPLETED", "gpu", "gpu:1", True, ACCOUNT), job
    return sorted(job["rule"] for job in jobs)


def test_training_runs_on_the_gpu_partition_and_matches_a_local_run(cluster, tmp_path):
    done = len(slurm_jobs(cluster))  # jobs of other tests
    on_slurm = workflow_dir(tmp_path / "slurm", TINY_SHEET, sweep_config())
    run_snakemake(on_slurm, "--workflow-profile", str(small_node_profile(tmp_path / "profile")))
    local = workflow_dir(tmp_path / "local", TINY_SHEET, sweep_config())
    run_snakemake(local, "--set-threads", "train_lfads=1", "sample_posterior=1")

    # one training job per sweep point, one posterior job for the selected run; the light
    # rules (the selection among them) ran locally
    assert gpu_rules(slurm_jobs(cluster)[done:]) == [
        "sample_posterior", "train_lfads", "train_lfads"]

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
    done = len(slurm_jobs(cluster))  # jobs of other tests
    config = yaml.safe_load(tiny_config())
    config["lfads"]["pbt"].update(enabled=True, population=2, generations=2,
                                  epochs_per_generation=2)
    work = workflow_dir(tmp_path / "slurm", TINY_SHEET, yaml.safe_dump(config))
    run_snakemake(work, "--workflow-profile", str(small_node_profile(tmp_path / "profile")))
    assert gpu_rules(slurm_jobs(cluster)[done:]) == \
        ["sample_posterior"] + ["train_pbt_member"] * 4
    table = (work / "results/tiny/lfads/pbt/generations.tsv").read_text().splitlines()
    assert len(table) == 1 + 4


def stitched_config() -> str:
    """The tiny model on one simulated latent system seen in two sessions (own neurons and
    trial counts), trained together only (no single-session baselines)."""
    config = yaml.safe_load(tiny_config())
    tiny = config["simulations"].pop("tiny")
    config["simulations"]["pair"] = {**tiny, "n_neurons": 40, "sessions": 2,
                                     "neurons_per_session": 24,
                                     "session_trials_per_condition": [4, 6]}
    overrides = config["lfads"]["overrides"].pop("tiny")
    config["lfads"]["overrides"] = {name: overrides for name in ["s_a", "s_b", "pair_group"]}
    config["lfads"]["stitching"]["single_session_baseline"] = False
    return yaml.safe_dump(config)


STITCHED_SHEET = "dataset\tnwb\tbehavior\tcondition_columns\tfp_bins\tgroup\n" + "".join(
    f"{name}\tresources/simulated/pair_session{k}.nwb\thand_vel\tcondition\t10\tpair_group\n"
    for k, name in enumerate(["s_a", "s_b"]))


def test_a_stitched_group_trains_and_samples_on_the_gpu_partition(cluster, tmp_path):
    """Two sheet rows with the same group, up to each session's posterior: one training job
    for the group and each session's sample_stitched_posterior go through sbatch to the gpu
    partition; the data stages before them ran locally. Each GPU job gets as many CPUs as
    threads (2 for training here)."""
    done = len(slurm_jobs(cluster))  # jobs of other tests
    work = workflow_dir(tmp_path / "slurm", STITCHED_SHEET, stitched_config())
    posteriors = [f"results/{name}/lfads/stitched/default/posterior.h5" for name in ["s_a", "s_b"]]
    profile = small_node_profile(tmp_path / "profile", training_threads=2)
    run_snakemake(work, "--workflow-profile", str(profile), *posteriors)
    jobs = slurm_jobs(cluster)[done:]
    assert gpu_rules(jobs) == ["sample_stitched_posterior"] * 2 + ["train_lfads"]
    assert sorted((job["rule"], job["cpus"]) for job in jobs) == \
        [("sample_stitched_posterior", 1)] * 2 + [("train_lfads", 2)]
    for k, posterior in enumerate(posteriors):
        with h5py.File(work / posterior) as post:
            assert post.attrs["session"] == k


def without_programs(programs: list[str], folder: Path) -> list[str]:
    """A command prefix: the command runs in a mount namespace of its own in which each of
    ``programs`` is covered by an empty file that cannot be run, so that `which` (how the SLURM
    executor plugin looks for `sacct`) does not find it and running it fails, as on a machine
    without it."""
    folder.mkdir(parents=True)
    blank = folder / "blank"
    blank.write_text("")
    blank.chmod(0o644)
    mounts = [f"mount --bind {blank} {path}" for path in map(shutil.which, programs) if path]
    return ["unshare", "--mount", "bash", "-c", " && ".join([*mounts, 'exec "$@"']), "bash"]


def test_light_rules_run_as_cpu_jobs_on_a_cluster_without_sacct(cluster, tmp_path):
    """Config `submit_light_rules`, for clusters whose login node may not run work: the light
    rules (here the simulation and its ingestion) are batch jobs on
    the cpu partition, without a GPU. `sacct` is hidden from the run, as on a cluster without
    it, and the profile names no status command: the plugin asks `squeue` by itself (with
    `sacct` there it would ask `sacct`, which has no accounting database here, and wait for
    ever), and every job is charged to the account of the profile's default-resources."""
    hide = without_programs(["sacct"], tmp_path / "bin")
    if subprocess.run([*hide, "true"], capture_output=True).returncode != 0:
        pytest.skip("hiding sacct needs a mount namespace (unshare --mount)")
    done = len(slurm_jobs(cluster))  # jobs of other tests
    work = workflow_dir(tmp_path / "slurm", TINY_SHEET, tiny_config(submit_light_rules=True))
    profile = small_node_profile(tmp_path / "profile", **{"slurm-status-command": None})
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", str(work), "--cores", "2", "--workflow-profile", str(profile),
               "results/tiny/ingest/summary.json"]
    checked = subprocess.run([*hide, "which", "sacct"], capture_output=True)
    assert checked.returncode != 0, "sacct is still there"
    # a plugin that cannot learn the jobs' states waits for ever: give up after 5 minutes
    result = subprocess.run([*hide, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout
    jobs = slurm_jobs(cluster)[done:]
    assert sorted(job["rule"] for job in jobs) == ["ingest", "simulate"]
    for job in jobs:
        assert (job["state"], job["partition"], job["gres"], job["batch"], job["account"]) == \
            ("COMPLETED", "cpu", "(null)", True, ACCOUNT), job
