"""Shared fixtures: a small NWB writer for edge cases, paths of the project and shared data."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MC_MAZE_SMALL = ROOT.parent / "shared" / "data" / "mc_maze_small" / \
    "sub-Jenkins_ses-small_desc-test_ecephys.nwb"


def write_test_nwb(path, spike_times=None, trials=None, obs_intervals=None, heldout=None,
                   behavior=None, behavior_rate=1000.0, with_units=True, with_trials=True,
                   unit_columns=None, behavior_container=None):
    """Write a small NWB file with pynwb.

    spike_times: list of arrays (s), one per unit. trials: DataFrame with start_time,
    stop_time and any extra columns. behavior: dict name -> (samples x dims) array sampled at
    ``behavior_rate`` from t=0, stored in processing/behavior (inside a BehavioralTimeSeries
    named ``behavior_container`` if given, as many labs' tools write it). unit_columns: dict
    name -> one value per unit (e.g. a spike sorter's ``quality``).
    """
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries

    nwb = NWBFile(session_description="test", identifier=str(uuid.uuid4()),
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    if with_units:
        if heldout is not None:
            nwb.add_unit_column("heldout", "held-out unit")
        for column in unit_columns or {}:
            nwb.add_unit_column(column, f"{column} of the unit")
        for i, times in enumerate(spike_times):
            kwargs = {"spike_times": np.asarray(times, dtype=float),
                      **{column: values[i] for column, values in (unit_columns or {}).items()}}
            if obs_intervals is not None:
                kwargs["obs_intervals"] = np.asarray(obs_intervals[i], dtype=float)
            if heldout is not None:
                kwargs["heldout"] = bool(heldout[i])
            nwb.add_unit(**kwargs)
    if with_trials:
        extra = [c for c in trials.columns if c not in ("start_time", "stop_time")]
        for column in extra:
            nwb.add_trial_column(column, f"{column} of the trial")
        for _, row in trials.iterrows():
            nwb.add_trial(**row.to_dict())
    if behavior:
        module = nwb.create_processing_module("behavior", "behaviour")
        container = BehavioralTimeSeries(name=behavior_container) if behavior_container else module
        for name, data in behavior.items():
            series = TimeSeries(name=name, data=np.asarray(data), unit="m/s", rate=behavior_rate,
                                starting_time=0.0)
            (container.add_timeseries if behavior_container else container.add)(series)
        if behavior_container:
            module.add(container)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return Path(path)


def regular_trials(n, start=0.1, duration=1.0, gap=0.2, event_offset=0.3, **columns):
    """A trials table of ``n`` back-to-back trials with ``move_onset_time``."""
    starts = start + np.arange(n) * (duration + gap)
    table = pd.DataFrame({"start_time": starts, "stop_time": starts + duration,
                          "move_onset_time": starts + event_offset})
    for name, values in columns.items():
        table[name] = values
    return table


@pytest.fixture
def make_nwb(tmp_path):
    def make(name="test.nwb", **kwargs):
        return write_test_nwb(tmp_path / name, **kwargs)
    return make


@pytest.fixture
def small_recording(make_nwb):
    """10 trials, 6 units with random spikes inside the trials, 2-D behaviour at 1 kHz."""
    rng = np.random.default_rng(1)
    trials = regular_trials(10, split=["train"] * 8 + ["val"] * 2,
                            condition=np.arange(10) % 3)
    spikes = []
    for _ in range(6):
        times = np.concatenate([np.sort(rng.uniform(s, e, rng.integers(5, 30)))
                                for s, e in zip(trials.start_time, trials.stop_time)])
        spikes.append(times)
    t = np.arange(0, trials.stop_time.iloc[-1] + 0.2, 1e-3)
    behavior = {"hand_vel": np.column_stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])}
    return make_nwb(spike_times=spikes, trials=trials, heldout=[0, 0, 0, 0, 1, 1],
                    behavior=behavior)


def hide_packages(folder: Path, packages: list[str]) -> Path:
    """Write into ``folder`` a ``sitecustomize.py`` that makes ``packages`` unfindable (for
    imports and ``importlib.util.find_spec`` alike) in a Python started with ``folder`` on
    PYTHONPATH, as on a machine without them; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"""
import importlib.machinery, sys

class _Hidden(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in {sorted(packages)!r}:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[:] = [_Hidden if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
""")
    return folder


def step_gradients(model, x, y, ext=None, seed: int = 123, **forward):
    """One training step's loss (reconstruction NLL + both KLs, summed) of ``model`` on encoder
    input ``x`` and targets ``y``, its random draws seeded with ``seed``: returns (the model's
    output, each parameter's gradient by name). ``forward``: more arguments of the forward
    pass (``impl``, ``sample_posteriors``)."""
    import torch

    torch.manual_seed(seed)
    model.zero_grad()
    out = model(x, ext_input=ext, **forward)
    (model.recon_nll(out, y).sum() + model.kl_ic(out).sum() + model.kl_co(out).sum()).backward()
    return out, {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.grad is not None and p.numel()}


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow's Snakefile with ``workdir`` as working directory (CLI, real run).

    ``result.stdout`` holds stdout and stderr together, as a user sees them."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", *args]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout}")
    return result


def workflow_dir(tmp_path: Path, sheet: str, config_text: str | None = None) -> Path:
    """A working directory with config/ (the project's, or the given text) and a sheet."""
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
    if config_text is not None:
        (work / "config" / "config.yaml").write_text(config_text)
    (work / "config" / "datasets.tsv").write_text(sheet)
    return work


# The figures of a simulated dataset with behaviour, and the rules that draw them.
FIGURES = ["training_curves", "raster_rates", "factor_trajectories", "method_comparison",
           "decoded_behavior", "latents_vs_truth"]
PLOT_RULES = ["plot_training", "plot_metrics", "plot_decoding", "plot_latents"]

# The tiny workflow configuration (.test/config/: a 30-neuron simulated recording and a small,
# quick model), and the project's configuration.
TEST_CONFIG = ROOT / ".test" / "config"
TINY_SHEET = (TEST_CONFIG / "datasets.tsv").read_text()
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def tiny_config(**changes) -> str:
    """The tiny configuration (.test/config/config.yaml with the workflow's defaults filled in,
    as the workflow fills them) with top-level keys replaced by ``changes``."""
    from lfads_core.workflow.settings import fill_defaults

    config = fill_defaults(yaml.safe_load((TEST_CONFIG / "config.yaml").read_text()),
                           yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config.update(changes)
    return yaml.safe_dump(config)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One complete run of the tiny workflow, under umask 022 (as most users have)."""
    work = workflow_dir(tmp_path_factory.mktemp("tiny"), TINY_SHEET, tiny_config())
    umask = os.umask(0o022)
    try:
        result = run_snakemake(work)
    finally:
        os.umask(umask)
    return work, result


def replace_dataset(path, name, data=None, **create):
    """Replace dataset ``name`` of an HDF5 (NWB) file by ``data`` (or by an empty dataset made
    with ``create``, e.g. ``shape=..., chunks=...``), keeping its attributes: a way to write
    the corrupt or hostile files some labs' tools produce."""
    import h5py

    with h5py.File(path, "r+") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, data=data, **create)
        for key, value in attrs.items():
            ds.attrs[key] = value
        return ds.shape


def readme_commands(*docs: str) -> list[str]:
    """Every ``snakemake ...`` command of the given Markdown files (README.md by default): the
    lines of fenced code blocks and inline code spans, whitespace normalised, from
    ``snakemake`` on (a leading ``pip install ... &&`` left out)."""
    import re

    commands = []
    for doc in docs or ("README.md",):
        text = (ROOT / doc).read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        pieces = [line for block in blocks for line in block.splitlines()]
        pieces += re.findall(r"(?<!`)`([^`]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
        for piece in pieces:
            piece = " ".join(piece.split())
            if piece.startswith("#") or "snakemake " not in piece and piece != "snakemake":
                continue
            command = piece[piece.index("snakemake"):]
            if re.match(r"snakemake( |$)", command):
                commands.append(command)
    return commands


def readme_command_args(containing: str) -> list[str]:
    """The arguments of the one README command containing ``containing``, ready for
    :func:`run_snakemake` (the default profile given by its absolute path)."""
    import shlex

    found = [c for c in readme_commands() if containing in c]
    assert len(found) == 1, f"README has {len(found)} commands with {containing!r}: {found}"
    args = shlex.split(found[0])[1:]
    return [str(ROOT / a) if a.startswith("workflow/profiles/") else a for a in args]
