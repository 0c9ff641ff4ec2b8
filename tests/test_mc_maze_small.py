"""The data stages on a real recording: MC_Maze_Small's test split (DANDI:000140; Churchland &
Kaufman; Neural Latents Benchmark, Pei et al. 2021), read from ../shared/ beside the project."""

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import MC_MAZE_SMALL, ROOT, readme_command_args, run_snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.skipif(
    not MC_MAZE_SMALL.is_file(),
    reason=f"the shared MC_Maze_Small recording is not at {MC_MAZE_SMALL}")]

SHA256 = "ca8a0bef5f189eafb9db1961d617e065cb461360718fde1c16a538922a6fa5fe"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """Run the workflow with the project's MC_Maze_Small sheet row, from a working directory
    laid out like the project (so the row's ../shared/ path resolves as it does there)."""
    base = tmp_path_factory.mktemp("mc_maze")
    (base / "shared").symlink_to(ROOT.parent / "shared")
    work = base / "work"
    shutil.copytree(ROOT / "config", work / "config")
    # README's command for the data stages, as written there
    run_snakemake(work, *readme_command_args("results/mc_maze_small/lfads_input.h5"))
    return work / "results" / "mc_maze_small"


def count_in_bins(spikes, edges):
    """bins x units counts with bins [edges[k], edges[k+1])."""
    counts = []
    for times in spikes:
        k = np.searchsorted(edges, times, side="right") - 1
        counts.append(np.bincount(k[(k >= 0) & (k < len(edges) - 1)], minlength=len(edges) - 1))
    return np.stack(counts, axis=1)


def file_spikes_and_trials():
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(MC_MAZE_SMALL), "r") as io:
        nwb = io.read()
        spikes = [np.asarray(nwb.units["spike_times"][k]) for k in range(len(nwb.units))]
        onsets = nwb.trials["move_onset_time"][:]
        ids = nwb.units.id[:]
    return spikes, onsets, ids


def test_every_spike_of_the_file_lands_in_a_trial(aligned):
    spikes, _, _ = file_spikes_and_trials()
    with h5py.File(aligned / "lfads_input.h5", "r") as h5:
        # every unit, held-in then held-out, over the window (recon data adds fp bins after it)
        total = sum(h5[f"{s}_recon_data"][:, :140].sum() for s in ("train", "valid"))
        assert h5["train_encod_data"].shape[1:] == (140, 86)  # 21 of 107 units held out
        assert h5["train_recon_data"].shape[2] == 107
        assert len(h5["train_inds"]) + len(h5["valid_inds"]) == 100
    assert sum(len(s) for s in spikes) == 32_897
    assert total == 32_897


def test_aligned_counts_equal_the_file_per_trial_and_unit(aligned):
    spikes, onsets, unit_ids = file_spikes_and_trials()
    meta = json.loads((aligned / "lfads_input.json").read_text())
    assert meta["source_sha256"] == SHA256
    assert sorted(meta["unit_ids"]) == sorted(unit_ids.tolist())  # held-in, then held-out
    assert sum(meta["heldout"]) == 21 and meta["heldout"][-21:] == [True] * 21
    column_of = [unit_ids.tolist().index(u) for u in meta["unit_ids"]]
    spikes = [spikes[k] for k in column_of]
    with h5py.File(aligned / "lfads_input.h5", "r") as h5:
        for split in ("train", "valid"):
            data, inds = h5[f"{split}_recon_data"][:, :140], h5[f"{split}_inds"][()]
            for counts, row in zip(data, inds):
                # the documented grid: edges at whole multiples of 5 ms from t = 0 s,
                # bins closed on the left, the window starting at the edge nearest onset - 250 ms
                first = round((onsets[row] - 0.25) / 0.005)
                direct = count_in_bins(spikes, (first + np.arange(141)) * 0.005)
                np.testing.assert_array_equal(counts, direct)


def test_summaries_report_what_was_kept(aligned):
    ingest = json.loads((aligned / "ingest" / "summary.json").read_text())
    align = json.loads((aligned / "align" / "summary.json").read_text())
    assert ingest["units_kept"] == 107 and ingest["trials_kept"] == 100
    assert align["dropped_trials"] == 0 and align["valid_trials"] == 20
