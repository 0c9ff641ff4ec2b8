"""A lab's own file and a project folder of its own, as the README shows them: the own-data
example runs as written on a file without the Neural Latents Benchmark's columns, the workflow
runs as a Snakemake module from a folder apart from the checkout, and a folder without a
configuration gets a message saying what to do."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TEST_CONFIG, readme_commands, run_snakemake, write_test_nwb

pytestmark = pytest.mark.workflow
README = (ROOT / "README.md").read_text()


def own_data_example() -> tuple[str, str]:
    """The README's own-data sheet (the tsv block of "Your own data") and its command."""
    section = README.split("## Your own data", 1)[1]
    sheet = re.search(r"```tsv\n(.*?)```", section, re.S).group(1)
    (command,) = [c for c in readme_commands() if "my_lab.tsv" in c]
    return sheet, command


def lab_recording(path):
    """A session as a lab's own tools write it: a spike sorter's `quality` column, no
    `heldout`; trials with `stim_on_time`, `contrast` and `choice`, no `split` and no
    `move_onset_time`; wheel velocity in a BehavioralTimeSeries."""
    rng = np.random.default_rng(0)
    n = 30
    starts = 0.5 + 1.5 * np.arange(n)
    trials = pd.DataFrame({"start_time": starts, "stop_time": starts + 1.2,
                           "stim_on_time": starts + 0.3, "contrast": rng.choice([0.0, 0.25, 1.0], n),
                           "choice": rng.choice(["left", "right"], n)})
    end = starts[-1] + 2
    spikes = [np.sort(rng.uniform(0, end, rng.integers(200, 600))) for _ in range(12)]
    t = np.arange(0, end, 1e-3)
    write_test_nwb(path, spike_times=spikes, trials=trials,
                   unit_columns={"quality": ["good"] * 10 + ["mua"] * 2},
                   behavior={"wheel_velocity": np.sin(t)[:, None]},
                   behavior_container="BehavioralTimeSeries")


def test_the_own_data_example_runs_as_written(tmp_path):
    sheet, command = own_data_example()
    work = tmp_path / "lab"
    shutil.copytree(ROOT / "config", work / "config")
    (work / "config" / "my_lab.tsv").write_text(sheet)
    (work / "data").mkdir()
    lab_recording(work / "data" / "mouse01.nwb")
    args = command.split()[1:]  # as written, from the project root, in the lab's folder
    result = subprocess.run([sys.executable, "-m", "snakemake", *args, "-n", "--directory", str(work)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("mouse01:"))
    assert "10 units, 2 held out (a random 0.2)" in line and "(split random)" in line
    assert "behaviour wheel_velocity" in line and "120 bins of 5 ms" in line
    assert "training: 1 job (one run for each of mouse01)" in result.stdout
    assert "Traceback" not in result.stdout


def test_a_project_folder_uses_the_workflow_as_a_module(tmp_path):
    project = tmp_path / "myproject"
    (project / "workflow").mkdir(parents=True)
    shutil.copytree(TEST_CONFIG, project / "config")
    (project / "workflow" / "Snakefile").write_text(f"""configfile: "config/config.yaml"


module lfads:
    snakefile:
        "{ROOT / 'Snakefile'}"
    config:
        config


use rule * from lfads
""")
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    for path in ("results/tiny/metrics.tsv", "results/tiny/factors.nwb", "results/tiny/settings.yaml",
                 "results/summary/datasets.tsv"):
        assert (project / path).is_file(), path
    assert not (ROOT / "results" / "tiny").exists()


def test_a_folder_without_configuration_is_told_what_to_do(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_snakemake(empty, "-n", check=False)
    assert result.returncode != 0
    assert "config/datasets.tsv: field 'datasets': dataset sheet not found" in result.stdout
    assert "--config datasets=" in result.stdout and "Traceback" not in result.stdout
