"""Corrupt or hostile NWB content: refused by name (file and field) before anything is read,
by ingestion and by the parse-time check alike, leaving no output and no traceback."""

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, regular_trials, replace_dataset, run_snakemake, workflow_dir
from lfads_core.errors import InputDataError
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.workflow.preflight import check_dataset

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.fixture
def good(make_nwb):
    rng = np.random.default_rng(0)
    trials = regular_trials(10, split=["train"] * 8 + ["val"] * 2)
    t = np.arange(0, 13, 1e-3)
    return make_nwb(spike_times=[np.sort(rng.uniform(0, 12, 50)) for _ in range(3)],
                    trials=trials, behavior={"hand_vel": np.column_stack([np.sin(t), t])})


def refused(nwb, tmp_path, field, *words, behavior=()):
    """Ingestion and the parse-time check both refuse ``nwb`` naming the file and ``field``."""
    out = tmp_path / "out" / "session.h5"
    with pytest.raises(InputDataError) as err:
        ingest_nwb(nwb, out, IngestSettings(behavior=list(behavior)))
    assert err.value.field == field, str(err.value)
    for word in (str(nwb), f"field '{field}'", *words):
        assert word in str(err.value), (word, str(err.value))
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
    settings = {**CONFIG["defaults"], "dataset": "lab", "nwb": str(nwb),
                "behavior": ",".join(behavior)}
    with pytest.raises(InputDataError) as at_parse:
        check_dataset("lab", settings, "config/datasets.tsv", CONFIG)
    assert at_parse.value.field == field
    assert "config/datasets.tsv (dataset 'lab')" in str(at_parse.value)
    return str(err.value)


@pytest.mark.parametrize("last", [2**40, 999_999_999])
def test_spike_index_pointing_past_the_data(good, tmp_path, last):
    with h5py.File(good, "r") as f:
        index = f["units/spike_times_index"][()].astype(np.uint64)
    index[-1] = last
    replace_dataset(good, "units/spike_times_index", index)
    refused(good, tmp_path, "units.spike_times_index", f"ends at {last:,}", "holds 150 values")


def test_spike_index_going_backwards(good, tmp_path):
    replace_dataset(good, "units/spike_times_index", np.array([50, 20, 150], np.uint32))
    refused(good, tmp_path, "units.spike_times_index", "non-decreasing")


def test_spike_index_of_the_wrong_length(good, tmp_path):
    replace_dataset(good, "units/spike_times_index", np.array([50, 150], np.uint32))
    refused(good, tmp_path, "units.spike_times_index", "the table has 3 rows")


def test_text_spike_times(good, tmp_path):
    replace_dataset(good, "units/spike_times", np.array([b"0.5"] * 150))
    refused(good, tmp_path, "units.spike_times", "text values, not numbers")


def test_text_spike_index(good, tmp_path):
    replace_dataset(good, "units/spike_times_index", np.array([1.5, 2.5, 150.0]))
    refused(good, tmp_path, "units.spike_times_index", "not numbers")


def test_spike_times_declared_longer_than_stored(good, tmp_path):
    """10^9 spike times declared, one chunk of 1,000 stored: the rest would read as zeros."""
    n = 10**9
    replace_dataset(good, "units/spike_times", shape=(n,), dtype="f8", chunks=(1000,))
    with h5py.File(good, "r+") as f:
        f["units/spike_times"][:1000] = np.linspace(0, 10, 1000)
    replace_dataset(good, "units/spike_times_index", np.array([500, 1000, n], np.uint64))
    refused(good, tmp_path, "units.spike_times", "declares 1,000,000,000 values",
            "only 1 of its 1,000,000 chunks")


def test_alignment_column_of_text(good, tmp_path):
    replace_dataset(good, "intervals/trials/move_onset_time", np.array([b"soon"] * 10))
    refused(good, tmp_path, "trials.move_onset_time", "text values, not times")


def test_trials_column_of_the_wrong_length(good, tmp_path):
    replace_dataset(good, "intervals/trials/stop_time", np.arange(4.0))
    refused(good, tmp_path, "trials.stop_time", "has 4 values but the table has 10 rows")


def test_behaviour_declared_longer_than_stored(good, tmp_path):
    replace_dataset(good, "processing/behavior/hand_vel/data", shape=(10**9, 2), dtype="f8",
                    chunks=(10**5, 2))
    refused(good, tmp_path, "processing/behavior/hand_vel.data", "chunks",
            behavior=["hand_vel"])


def test_behaviour_timestamps_not_matching_the_data(good, tmp_path):
    with h5py.File(good, "r+") as f:
        del f["processing/behavior/hand_vel/starting_time"]
        f["processing/behavior/hand_vel/timestamps"] = np.arange(100) / 1000
    refused(good, tmp_path, "processing/behavior/hand_vel.timestamps", "13000 samples",
            behavior=["hand_vel"])


def test_obs_intervals_of_the_wrong_shape(make_nwb, tmp_path):
    nwb = make_nwb(spike_times=[[0.5, 1.5], [0.7]], trials=regular_trials(3),
                   obs_intervals=[[[0.0, 4.0]], [[0.0, 4.0]]])
    replace_dataset(nwb, "units/obs_intervals", np.zeros((2, 3)))
    refused(nwb, tmp_path, "units.obs_intervals", "(intervals, 2) expected")


@pytest.mark.workflow
def test_workflow_refuses_at_parse_time_without_traceback(good, tmp_path):
    replace_dataset(good, "units/spike_times_index", np.array([50, 100, 999_999_999], np.uint64))
    work = workflow_dir(tmp_path, f"dataset\tnwb\nlab\t{good}\n")
    result = run_snakemake(work, check=False)
    assert result.returncode != 0
    assert f"{good}: field 'units.spike_times_index': points past the data" in result.stdout
    assert "config/datasets.tsv (dataset 'lab')" in result.stdout
    assert "Traceback" not in result.stdout and not (work / "results").exists()


@pytest.mark.workflow
def test_workflow_ingest_failure_shows_the_message_and_logs_the_traceback(make_nwb, tmp_path):
    """Negative spike times are only seen once the spikes are read (in the ingest job)."""
    nwb = make_nwb(spike_times=[[0.2, 0.4], [-0.1, 0.3], [0.5]] * 2,
                   trials=regular_trials(10, split=["train"] * 8 + ["val"] * 2))
    work = workflow_dir(tmp_path, f"dataset\tnwb\nlab\t{nwb}\n")
    result = run_snakemake(work, check=False)
    assert result.returncode != 0
    assert f"{nwb}: field 'units.spike_times': unit id 1 has negative spike times" in result.stdout
    assert "Traceback" not in result.stdout
    log = (work / "logs" / "lab" / "ingest.log").read_text()
    assert "Traceback" in log and "negative spike times" in log
    assert not list((work / "results").rglob("*.h5"))
