"""Trials from any table under intervals/ (the setting `trials_table`): ingestion, alignment,
the start-up checks, columns a file leaves out of `colnames`, bad event times and the LFADS
output, on real NWB files written with pynwb."""

from __future__ import annotations

import datetime
import json
import uuid

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, regular_trials, run_snakemake, workflow_dir
from lfads_core.errors import InputDataError
from lfads_core.fileio import read_table, write_json
from lfads_core.nwb.alignment import AlignSettings, align_trials
from lfads_core.nwb.binning import bin_session
from lfads_core.nwb.export import collect_factors, load_factors, write_factors_h5, write_factors_nwb
from lfads_core.nwb.ingest import IngestSettings, ingest_nwb
from lfads_core.workflow.preflight import check_dataset
from lfads_core.workflow.startup import startup_summary

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SHEET = "config/datasets.tsv"
TABLE = "encoding_table"
N_TRIALS = 20


def lab_trials(n=N_TRIALS, **columns):
    """Back-to-back trials with NLB split labels (4 train : 1 val) and two conditions."""
    return regular_trials(n, split=(["train"] * 4 + ["val"]) * (n // 5),
                          condition=np.arange(n) % 2, **columns)


def write_interval_nwb(path, trials, table=TABLE, n_units=5, epochs=True, hide=(), seed=0):
    """An NWB file (pynwb) whose trials are the TimeIntervals ``intervals/{table}`` (no
    ``intervals/trials`` unless ``table`` is ``trials``), with ``epochs`` beside it; the
    columns in ``hide`` stay in the table's group but are removed from its ``colnames``
    attribute (as some tools write them), so that pynwb no longer shows them."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals

    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="lab", identifier=str(uuid.uuid4()),
                  session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    stop = float(np.nanmax(trials["stop_time"]))
    for _ in range(n_units):
        nwb.add_unit(spike_times=np.sort(rng.uniform(0, stop, 300)))
    intervals = TimeIntervals(name=table, description=f"{table} of the lab's task")
    for column in trials.columns:
        if column not in ("start_time", "stop_time"):
            intervals.add_column(column, f"{column} of the trial")
    for _, row in trials.iterrows():
        intervals.add_row(**row.to_dict())
    nwb.add_time_intervals(intervals)
    if epochs:
        nwb.add_epoch(0.0, stop)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    if hide:
        with h5py.File(path, "r+") as f:
            group = f[f"intervals/{table}"]
            names = [c.decode() if isinstance(c, bytes) else str(c)
                     for c in group.attrs["colnames"]]
            group.attrs["colnames"] = np.array([c for c in names if c not in hide], dtype=object)
    return path


def settings_for(nwb, **changes):
    return {**CONFIG["defaults"], "dataset": "lab", "nwb": str(nwb), "trials_table": TABLE,
            **changes}


def ingest(nwb, folder, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    summary = ingest_nwb(nwb, folder / "session.h5", IngestSettings(**settings))
    write_json(summary, folder / "summary.json")
    return folder / "session.h5", summary


def align(session, folder, bin_s=0.005, **settings):
    bin_session(session, folder / "binned.h5", bin_s)
    summary = align_trials(folder / "binned.h5", folder / "lfads_input.h5",
                           AlignSettings(**settings), folder / "lfads_input.json")
    return summary, json.loads((folder / "lfads_input.json").read_text())


@pytest.fixture
def encoding_nwb(tmp_path):
    return write_interval_nwb(tmp_path / "lab.nwb", lab_trials())


# ------------------------------------------------------------------ ingestion and alignment

def test_trials_only_in_another_table_go_through_ingestion_and_alignment(encoding_nwb, tmp_path):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(encoding_nwb), "r") as io:  # the file really has no trials table
        assert io.read().trials is None
    folder = tmp_path / "results"
    session, summary = ingest(encoding_nwb, folder, trials_table=TABLE,
                              trial_filter="condition == 1")
    assert summary["trials_table"] == TABLE and summary["trials_in_file"] == N_TRIALS
    assert summary["trial_drop_reasons"] == {"trial_filter": N_TRIALS // 2}
    assert summary["warnings"] == []
    with h5py.File(session, "r") as f:
        assert f.attrs["trials_table"] == TABLE
        trials = read_table(f["trials"])
    expected = lab_trials()
    np.testing.assert_allclose(trials["move_onset_time"], expected["move_onset_time"])
    assert trials["split"].tolist() == expected["split"].tolist()

    # the split comes from the table's split column (auto), conditions from its columns
    result, meta = align(session, folder, condition_columns=("condition",))
    assert meta["trials_table"] == TABLE and meta["split_mode"] == "file"
    assert (result["train_trials"], result["valid_trials"]) == (8, 2)
    assert result["trials_table"] == TABLE
    kept = expected.index[expected.condition == 1]
    assert sorted(meta["trial_ids"]["train"] + meta["trial_ids"]["valid"]) == kept.tolist()
    assert meta["trial_ids"]["valid"] == [k for k in kept if expected.split[k] == "val"]
    assert meta["conditions"]["values"] == [[0], [1]]
    with h5py.File(folder / "lfads_input.h5", "r") as f:
        assert (f["train_cond_idx"][()] == 1).all()
        assert f["train_encod_data"].shape[:2] == (8, 140)

    # outside_trial reads the same table's start and stop times: a window that runs 200 ms
    # past every trial's stop_time leaves each of the 10 kept trials (the last one also leaves
    # the recording, and is dropped for that)
    result, _ = align(session, folder, window_start_ms=-250, window_end_ms=900)
    assert result["windows_outside_trial"] == N_TRIALS // 2 - 1
    assert result["drop_reasons"]["window outside recording"] == 1


def test_the_default_table_is_trials_and_names_the_tables_there_are(encoding_nwb, tmp_path):
    with pytest.raises(InputDataError) as err:
        ingest_nwb(encoding_nwb, tmp_path / "session.h5", IngestSettings())
    message = str(err.value)
    assert err.value.field == "trials_table" and str(encoding_nwb) in message
    assert "no table 'trials' under intervals/" in message
    assert f"['{TABLE}', 'epochs']" in message
    assert not (tmp_path / "session.h5").exists()


# ------------------------------------------------------------------ start-up checks

def test_startup_check_reads_the_named_table(encoding_nwb):
    found = check_dataset("lab", settings_for(encoding_nwb, condition_columns="condition"),
                          SHEET, CONFIG)
    assert found["trials_table"] == TABLE and found["split"] == "file"
    assert (found["train"], found["valid"], found["test"]) == (16, 4, 0)
    assert found["warnings"] == []
    line = startup_summary({"lab": settings_for(encoding_nwb)}, {"lab": found}, {},
                           {"lab": ["default"]}, [], None)
    assert f"(split file, from intervals/{TABLE})" in line


def test_a_wrong_name_is_named_at_startup_with_the_tables_there_are(encoding_nwb, tmp_path):
    for settings in (settings_for(encoding_nwb, trials_table="trials"),
                     {**CONFIG["defaults"], "dataset": "lab", "nwb": str(encoding_nwb)}):
        with pytest.raises(InputDataError) as err:
            check_dataset("lab", settings, SHEET, CONFIG)
        message = str(err.value)
        assert err.value.field == "trials_table", message
        for words in (SHEET, "dataset 'lab'", "field 'trials_table'", str(encoding_nwb),
                      "no table 'trials' under intervals/", f"'{TABLE}'", "'epochs'"):
            assert words in message, (words, message)
    bare = write_interval_nwb(tmp_path / "bare.nwb", lab_trials(), epochs=False)
    with h5py.File(bare, "r+") as f:
        del f[f"intervals/{TABLE}"]
    with pytest.raises(InputDataError) as err:
        check_dataset("lab", settings_for(bare), SHEET, CONFIG)
    assert err.value.field == "trials_table"
    assert "no tables under intervals/" in str(err.value) and SHEET in str(err.value)


def test_a_table_without_a_condition_column_names_it(encoding_nwb):
    with pytest.raises(InputDataError) as err:
        check_dataset("lab", settings_for(encoding_nwb, condition_columns="target"), SHEET,
                      CONFIG)
    assert err.value.field == "condition_columns"
    assert f"trials table '{TABLE}' has no column 'target'" in str(err.value)


# ------------------------------------------------------------------ a column left out of colnames

def test_a_column_left_out_of_colnames_is_read_with_a_warning(tmp_path):
    reward = np.round(np.linspace(0.1, 2.0, N_TRIALS), 3)
    nwb = write_interval_nwb(tmp_path / "lab.nwb", lab_trials(reward=reward), hide=("reward",))
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(nwb), "r") as io:  # hidden from pynwb
        assert "reward" not in io.read().get_time_intervals(TABLE).colnames
    with pytest.warns(UserWarning, match=r"\['reward'\] is stored in its group but not listed"):
        session, summary = ingest(nwb, tmp_path / "results", trials_table=TABLE)
    assert summary["columns_not_in_colnames"] == {"units": [], "trials": ["reward"]}
    assert any("reward" in w and TABLE in w for w in summary["warnings"])
    with h5py.File(session, "r") as f:
        np.testing.assert_allclose(read_table(f["trials"])["reward"], reward)

    # the start-up check reads it too (a condition column), and says so in a warning
    found = check_dataset("lab", settings_for(nwb, condition_columns="reward"), SHEET, CONFIG)
    assert len(found["warnings"]) == 1 and "'reward'" in found["warnings"][0]
    line = startup_summary({"lab": settings_for(nwb)}, {"lab": found}, {}, {"lab": ["default"]},
                           [], None)
    assert "warning: lab: table 'encoding_table': column ['reward']" in line


def test_a_ragged_hidden_column_is_named_not_lost(tmp_path):
    """A hidden column that is not one value per trial cannot be read; it is named, with why."""
    nwb = write_interval_nwb(tmp_path / "lab.nwb", lab_trials())
    with h5py.File(nwb, "r+") as f:
        group = f[f"intervals/{TABLE}"]
        group["licks"] = np.arange(3 * N_TRIALS, dtype=float)
        group["licks_index"] = np.arange(1, N_TRIALS + 1) * 3
    with pytest.warns(UserWarning, match="not read: .*licks.*ragged"):
        _, summary = ingest(nwb, tmp_path / "results", trials_table=TABLE)
    assert "licks" in summary["columns_not_ingested"]["trials"]
    assert "not listed in 'colnames'" in summary["columns_not_ingested"]["trials"]["licks"]


# ------------------------------------------------------------------ event times

def test_negative_event_times_are_an_error_naming_table_column_and_count(tmp_path):
    trials = lab_trials()
    trials.loc[[2, 7, 11], "move_onset_time"] = -1.5
    nwb = write_interval_nwb(tmp_path / "lab.nwb", trials)
    with pytest.raises(InputDataError) as err:
        ingest_nwb(nwb, tmp_path / "session.h5", IngestSettings(trials_table=TABLE))
    message = str(err.value)
    assert err.value.field == f"{TABLE}.move_onset_time" and str(nwb) in message
    assert f"3 of the {N_TRIALS} trials of table '{TABLE}' have a negative 'move_onset_time'" \
        in message
    with pytest.raises(InputDataError) as err:  # at start-up too, named with the sheet
        check_dataset("lab", settings_for(nwb), SHEET, CONFIG)
    assert err.value.field == f"{TABLE}.move_onset_time"
    assert SHEET in str(err.value) and "3 of the" in str(err.value)


def test_nan_and_late_event_times_are_warned_and_dropped(tmp_path):
    trials = lab_trials()
    trials.loc[[1, 4], "move_onset_time"] = np.nan
    end = float(trials["stop_time"].max())
    trials.loc[[6, 8, 13], "move_onset_time"] = end + 5.0  # after the last trial and spike
    nwb = write_interval_nwb(tmp_path / "lab.nwb", trials)
    folder = tmp_path / "results"
    with pytest.warns(UserWarning) as caught:
        session, summary = ingest(nwb, folder, trials_table=TABLE)
    said = [str(w.message) for w in caught]
    assert any("2 of the 20 trials have no 'move_onset_time' time (NaN)" in s for s in said), said
    assert any("3 of the 20 trials have a 'move_onset_time' time after the recording's end" in s
               for s in said), said
    assert summary["trial_drop_reasons"] == {"move_onset_time is NaN": 2,
                                             "move_onset_time after recording end": 3}
    assert len(summary["warnings"]) == 2
    result, meta = align(session, folder, split="random")
    assert result["drop_reasons"] == summary["trial_drop_reasons"]
    modelled = sorted(sum(meta["trial_ids"].values(), []))
    assert modelled == [k for k in range(N_TRIALS) if k not in (1, 4, 6, 8, 13)]
    # the start-up check warns about the NaN events (the recording's end needs the spikes)
    found = check_dataset("lab", settings_for(nwb), SHEET, CONFIG)
    assert any("2 of the 20 trials have no 'move_onset_time'" in w for w in found["warnings"])


# ------------------------------------------------------------------ the LFADS output

def test_factors_nwb_writes_the_chosen_tables_trials_as_trials(tmp_path):
    reward = np.round(np.linspace(0.1, 2.0, N_TRIALS), 3)
    nwb = write_interval_nwb(tmp_path / "lab.nwb", lab_trials(reward=reward), hide=("reward",))
    folder = tmp_path / "results"
    with pytest.warns(UserWarning, match="reward"):
        session, _ = ingest(nwb, folder, trials_table=TABLE)
    align(session, folder, bin_s=0.01, window_start_ms=-200, window_end_ms=400)
    with h5py.File(folder / "lfads_input.h5", "r") as data, \
            h5py.File(folder / "posterior.h5", "w") as post:
        for split in ("train", "valid"):
            counts = data[f"{split}_recon_data"][()]
            post[f"{split}_rates"] = (counts + 0.5).astype(np.float32)
            post[f"{split}_factors"] = np.repeat(data[f"{split}_inds"][()][:, None, None],
                                                 counts.shape[1], axis=1).astype(np.float32)
            post[f"{split}_inferred_inputs"] = np.zeros(counts.shape[:2] + (1,), np.float32)
            post[f"{split}_inds"] = data[f"{split}_inds"][()]
    output = collect_factors(folder / "posterior.h5", folder / "lfads_input.json", session,
                             folder / "summary.json", 0.01)
    out_nwb = write_factors_nwb(output, nwb, folder / "factors.nwb")
    out_h5 = write_factors_h5(output, folder / "factors.h5")

    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(out_nwb), "r") as io:
        written = io.read()
        assert list(written.intervals) == ["trials"]
        assert f"intervals/{TABLE}" in written.trials.description
        table = written.trials.to_dataframe()
        assert table.index.tolist() == list(range(N_TRIALS))
        np.testing.assert_allclose(table["reward"], reward)  # the hidden column, carried
        assert table["split"].tolist() == lab_trials()["split"].tolist()
        assert json.loads(written.data_collection.split(": ", 1)[1])["trials_table"] == TABLE
    with h5py.File(out_h5, "r") as f:
        assert f.attrs["trials_table"] == TABLE
    for path in (out_nwb, out_h5):
        back = load_factors(path)
        assert back.info["trials_table"] == TABLE
        np.testing.assert_allclose(back.all_trials["reward"], reward)
        np.testing.assert_array_equal(back.factors[:, 0, 0], back.trials["trial_row"])


# ------------------------------------------------------------------ through Snakemake

@pytest.mark.workflow
def test_snakemake_dry_run_and_run_through_alignment(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    nwb = write_interval_nwb(data / "lab.nwb", lab_trials())
    sheet = f"dataset\tnwb\ttrials_table\tcondition_columns\nlab\t{nwb}\t{TABLE}\tcondition\n"
    work = workflow_dir(tmp_path, sheet)
    dry = run_snakemake(work, "-n", "results/lab/lfads_input.h5")
    assert (f"lab: 5 units, 1 held out (a random 0.2); trials 16 train, 4 valid, 0 test "
            f"(split file, from intervals/{TABLE})") in dry.stdout, dry.stdout[-3000:]
    assert not (work / "results").exists()
    run_snakemake(work, "results/lab/lfads_input.h5")
    meta = json.loads((work / "results/lab/lfads_input.json").read_text())
    assert meta["trials_table"] == TABLE
    assert len(meta["trial_ids"]["train"]) == 16 and len(meta["trial_ids"]["valid"]) == 4
    summary = json.loads((work / "results/lab/ingest/summary.json").read_text())
    assert summary["trials_table"] == TABLE and summary["settings"]["trials_table"] == TABLE

    # a wrong name stops the run before any job, naming the tables there are
    (work / "config" / "datasets.tsv").write_text(
        f"dataset\tnwb\ttrials_table\nlab\t{nwb}\ttrial_table\n")
    wrong = run_snakemake(work, "-n", check=False)
    assert wrong.returncode != 0
    assert "config/datasets.tsv (dataset 'lab'): field 'trials_table'" in wrong.stdout
    assert f"['{TABLE}', 'epochs']" in wrong.stdout and "Traceback" not in wrong.stdout
