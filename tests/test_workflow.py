"""Real Snakemake runs of the data stages (CLI), on a tiny simulated recording."""

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FIGURES, PLOT_RULES, ROOT, TINY_SHEET, run_snakemake, tiny_config, workflow_dir

pytestmark = pytest.mark.workflow


def test_dry_run_lists_the_stages():
    result = run_snakemake(ROOT, "-n", "--forceall")
    for rule in ("simulate", "ingest", "bin_spikes", "align_trials", "train_lfads",
                 "sample_posterior"):
        assert f"rule {rule}:" in result.stdout or f"localrule {rule}:" in result.stdout


def test_snakemake_files_are_snakefmt_clean():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile",
                             "workflow/rules"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_lint_is_clean():
    result = run_snakemake(ROOT, "--lint", check=False)
    assert result.returncode == 0, result.stdout
    assert "Congratulations" in result.stdout


def test_data_stages_run_end_to_end(tiny_run):
    work, _ = tiny_run
    out = work / "results" / "tiny"
    with h5py.File(out / "lfads_input.h5", "r") as h5:
        n_train, n_valid, n_test = (len(h5[f"{s}_inds"]) for s in ("train", "valid", "test"))
        assert (n_train, n_valid, n_test) == (12, 4, 4)  # the sheet's test_fraction 0.2
        assert h5["test_recon_data"].shape == (n_test, 150, 30)
        assert h5["train_encod_data"].shape[1:] == (140, 24)  # 20% of 30 held out
        assert h5["train_recon_data"].shape[1:] == (150, 30)
        assert h5["train_behavior"].shape == (n_train, 140, 2)
        assert h5["train_truth_rates"].shape == (n_train, 150, 30)
        assert h5["train_truth_latents"].shape[:2] == (n_train, 150)
        assert np.isfinite(h5["train_truth_rates"][()]).all()
        # truth rates are expected counts per 5 ms bin: they match the spike counts on average
        rates, counts = h5["train_truth_rates"][()], h5["train_recon_data"][()]
        assert rates.sum() == pytest.approx(counts.sum(), rel=0.1)
    summary = json.loads((out / "align" / "summary.json").read_text())
    assert summary["dropped_trials"] == 0
    assert (work / "logs" / "tiny" / "ingest.log").read_text().strip()


def test_lfads_stages_train_and_sample(tiny_run):
    work, _ = tiny_run
    run = work / "results" / "tiny" / "lfads" / "default"
    log = (run / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 3  # header + one row per epoch
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["gen_dim"] == 16 and resolved["training"]["max_epochs"] == 3
    assert resolved["model"]["fac_dim"] == 4 and resolved["device"] == "cpu"
    with h5py.File(run / "posterior.h5", "r") as post, \
            h5py.File(work / "results" / "tiny" / "lfads_input.h5", "r") as data:
        for split in ("train", "valid", "test"):
            n = len(data[f"{split}_inds"])
            assert post[f"{split}_rates"].shape == (n, 150, 30)
            assert post[f"{split}_factors"].shape == (n, 150, 4)
            assert np.all(post[f"{split}_rates"][()] > 0)
            np.testing.assert_array_equal(post[f"{split}_inds"][()], data[f"{split}_inds"][()])
    train_log = (work / "logs" / "tiny" / "train_lfads_default.log").read_text()
    # one progress line per epoch: epoch N/max, elapsed and left
    assert [f"epoch {n}/3 |" in train_log for n in (1, 2, 3)] == [True] * 3
    assert re.search(r"epoch 3/3 \|.*\| elapsed \d:\d\d:\d\d, left at most 0:00:00", train_log)


def test_rerun_has_nothing_to_do(tiny_run):
    work, _ = tiny_run
    result = run_snakemake(work, "-n")
    assert "Nothing to be done" in result.stdout


# Bad settings, each stopped before any job with an error naming the field (and the sheet).
BAD_SETTINGS = {
    "unknown config key": (TINY_SHEET, {"bin_size": 5}, ["bin_size"]),
    "bad sheet value": ("dataset\tnwb\tbin_width_ms\ntiny\tresources/simulated/tiny.nwb\t0\n", {},
                        ["field 'bin_width_ms'", "datasets.tsv"]),
    "unknown sheet column": ("dataset\tnwb\twindow_ms\ntiny\tresources/simulated/tiny.nwb\t700\n",
                             {}, ["field 'window_ms'"]),
    "missing NWB file": ("dataset\tnwb\nlost\tdata/lost.nwb\n", {},
                         ["field 'nwb'", "data/lost.nwb"]),
}


@pytest.mark.parametrize("sheet, changes, named", BAD_SETTINGS.values(), ids=BAD_SETTINGS)
def test_bad_setting_is_named_before_any_job(tmp_path, sheet, changes, named):
    work = workflow_dir(tmp_path, sheet, tiny_config(**changes))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0
    assert all(text in result.stdout for text in named), result.stdout[-2000:]
    assert not (work / "results").exists()


def test_malformed_nwb_stops_the_run_before_any_job(tmp_path):
    sheet = "dataset\tnwb\nbroken\tdata/broken.nwb\n"
    work = workflow_dir(tmp_path, sheet, tiny_config())
    (work / "data").mkdir()
    (work / "data" / "broken.nwb").write_text("this is not HDF5\n")
    result = run_snakemake(work, check=False)
    assert result.returncode != 0
    # named when the workflow starts (lfads_core/workflow/preflight.py), before any job
    assert "data/broken.nwb: field 'file': not an HDF5 file" in result.stdout
    assert "datasets.tsv (dataset 'broken')" in result.stdout and "Traceback" not in result.stdout
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_bad_lfads_setting_is_named(tmp_path):
    config = yaml.safe_load(tiny_config())
    config["lfads"]["overrides"]["tiny"]["model"]["dropout_rate"] = 1.5
    work = workflow_dir(tmp_path, TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0
    assert "field 'lfads.model'" in result.stdout and "dropout_rate" in result.stdout
    config["lfads"]["model"]["gen_size"] = 100  # not a key: the schema names it
    work = workflow_dir(tmp_path / "again", TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, "-n", check=False)
    assert result.returncode != 0 and "gen_size" in result.stdout


def test_bad_simulation_parameter_is_named(tmp_path):
    config = yaml.safe_load(tiny_config())
    config["simulations"]["tiny"]["n_neurons_total"] = 30
    work = workflow_dir(tmp_path, TINY_SHEET, yaml.safe_dump(config))
    result = run_snakemake(work, check=False)
    assert result.returncode != 0
    assert "field 'simulations.tiny'" in result.stdout and "n_neurons_total" in result.stdout
    assert not (work / "resources" / "simulated" / "tiny.nwb").exists()




def test_factors_metrics_decoding_and_figures(tiny_run):
    work, _ = tiny_run
    out = work / "results" / "tiny"
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    from lfads_core.nwb.export import load_factors

    meta = json.loads((out / "lfads_input.json").read_text())
    nwb, h5 = load_factors(out / "factors.nwb"), load_factors(out / "factors.h5")
    for exported in (nwb, h5):
        # every trial of the recording in its order, the split a column
        assert exported.trials.index.tolist() == sorted(exported.trials.index)
        for split in ("train", "valid", "test"):
            in_split = exported.trials[exported.trials["lfads_split"] == split]
            assert sorted(in_split.index) == sorted(meta["trial_ids"][split])
        assert {"condition", "move_onset_time", "split"} <= set(exported.trials.columns)
        assert exported.rates.shape == (20, 150, 30) and exported.units["rates"] == "Hz"
    np.testing.assert_array_equal(nwb.rates, h5.rates)
    pd.testing.assert_frame_equal(nwb.trials, h5.trials)
    with h5py.File(out / "lfads" / "default" / "posterior.h5", "r") as post:
        k = nwb.trials["trial_row"].tolist().index(int(post["test_inds"][0]))
        np.testing.assert_allclose(nwb.rates[k], post["test_rates"][0] / 0.005, rtol=1e-5)

    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert {"lfads", "smoothing"} <= set(metrics["method"])
    assert {"co-bps", "fp-bps", "vel R2", "psth R2", "rate R2 (truth)"} <= set(metrics["metric"])
    for split, seen in (("valid", "early stopping; learning-rate plateau"), ("test", "none")):
        rows = metrics[metrics["split"] == split]  # every metric on both splits, each named
        assert set(rows["metric"]) == set(metrics["metric"]) and (rows["seen_by"] == seen).all()
    decoding = pd.read_csv(out / "decoding" / "scores.tsv", sep="\t")
    assert {"lfads_rates", "lfads_factors", "smoothed_spikes", "binned_spikes"} <= \
        set(decoding["method"])
    assert all(sorted(v) == ["test", "valid"] for v in decoding.groupby("method")["split"].unique())
    summary = pd.read_csv(out / "decoding" / "summary.tsv", sep="\t")
    assert (summary["split"] == "test").all() and (summary["seen_by"] == "none").all()
    assert (summary["n_trials"] == 4).all() and summary["r2_sem"].notna().all()


def test_report_builds(tiny_run):
    work, _ = tiny_run
    run_snakemake(work, "--report", "report.html")
    html = (work / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for name in ("training_curves.png", "method_comparison.png", "metrics.tsv", "config.yaml"):
        assert name in html, name


def test_figures_rebuild_from_results_only(tiny_run):
    work, _ = tiny_run
    out = work / "results" / "tiny"
    model_mtime = (out / "lfads" / "default" / "model.pt").stat().st_mtime
    for figure in (out / "figures").iterdir():
        figure.unlink()
    result = run_snakemake(work, "figures", "--forceall", "--allowed-rules", *PLOT_RULES)
    assert "train_lfads" not in result.stdout
    assert all((out / "figures" / f"{name}.png").exists() for name in FIGURES)
    assert (out / "lfads" / "default" / "model.pt").stat().st_mtime == model_mtime


def test_readme_python_examples_of_the_output_run(tiny_run):
    """The README's examples of reading factors.nwb, as written there, on the tiny run."""
    import subprocess
    import sys

    work, _ = tiny_run
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    code = "\n".join(b for b in blocks if "load_factors" in b or "to_pynapple" in b)
    assert "to_pynapple" in code
    code = code.replace("results/lorenz/", "results/tiny/")
    result = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "Hz" in result.stdout and "Warning" not in result.stderr


def test_the_methods_text_is_written_from_the_run(tiny_run):
    """results/{dataset}/methods.md: what the run did, from its own settings and records."""
    work, _ = tiny_run
    out = work / "results" / "tiny"
    text = (out / "methods.md").read_text()
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    meta = json.loads((out / "lfads_input.json").read_text())
    versions = json.loads((out / "provenance" / "evaluate.json").read_text())["versions"]
    test = metrics[(metrics["split"] == "test") & (metrics["method"] == "lfads")]
    co_bps = test[test["metric"] == "co-bps"].iloc[0]
    for words in [
        "# Methods: tiny", "tiny.nwb", meta["source_sha256"],
        "All 30 of its units were kept", "6 of them were held out", "24 held-in units",
        "5 ms bins", "from -250 to 450 ms around its `move_onset_time`", "140 bins",
        "10 forward-prediction bins", "12 training, 4 validation and 4 test trials",
        "4 combinations of `condition`", "`hand_vel_x` and `hand_vel_y`",
        "generator GRU of 16 units read out to 4 factors", "8 units inferring 2 inputs",
        "at most 3 epochs on the CPU", "It ran 3 epochs (max_epochs reached)",
        "the test trials were read by no training or selection step",
        "Scores are on the 4 test trials, which no training or selection step saw",
        f"co-bps {co_bps['value']:.3f} ± {co_bps['err']:.3f}",
        "R^2 over all behaviour dimensions on the test trials",
        f"PyTorch {versions['torch']}", f"PyNWB {versions['pynwb']}",
        f"Snakemake {versions['snakemake']}", "Sussillo D", "arXiv:2109.04463",
    ]:
        assert words in text, words
    record = json.loads((out / "provenance" / "methods_text.json").read_text())
    assert record["outputs"]["methods"]["path"] == "results/tiny/methods.md"
