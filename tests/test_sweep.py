"""Sweep points from config, and the choice of the best run."""

import math

import pytest
import yaml

from lfads_core.errors import InputDataError
from lfads_core.workflow.settings import lfads_settings_for
from lfads_core.workflow.sweep import selection_table, sweep_points

from conftest import CONFIG


def test_no_sweep_is_one_default_run():
    assert sweep_points(None) == {"default": {"model": {}, "training": {}}}
    assert sweep_points({"method": "none", "parameters": {"training.lr": [1]}}) == \
        {"default": {"model": {}, "training": {}}}


def test_grid_is_the_product_with_the_last_parameter_fastest():
    runs = sweep_points({"method": "grid", "parameters": {
        "training.lr": [0.001, 0.01], "model.gen_dim": [32, 64, 128]}})
    assert list(runs) == [f"sweep_{i:03d}" for i in range(6)]
    assert [(r["training"]["lr"], r["model"]["gen_dim"]) for r in runs.values()] == [
        (0.001, 32), (0.001, 64), (0.001, 128), (0.01, 32), (0.01, 64), (0.01, 128)]


def test_random_points_are_seeded_and_inside_their_ranges():
    sweep = {"method": "random", "n_runs": 50, "seed": 3, "parameters": {
        "training.lr": {"low": 1e-4, "high": 1e-2, "scale": "log"},
        "model.dropout_rate": {"low": 0.0, "high": 0.3, "scale": "linear"},
        "model.gen_dim": {"low": 16, "high": 20, "scale": "linear"},
        "model.co_prior": ["ar1", "gaussian"]}}
    runs = sweep_points(sweep)
    assert runs == sweep_points(sweep) and runs != sweep_points({**sweep, "seed": 4})
    lrs = [r["training"]["lr"] for r in runs.values()]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    # log-uniform: about half the draws below the geometric mean of the ends
    assert 15 <= sum(lr < 1e-3 for lr in lrs) <= 35
    dims = {r["model"]["gen_dim"] for r in runs.values()}
    assert dims == {16, 17, 18, 19, 20} and all(isinstance(d, int) for d in dims)
    assert {r["model"]["co_prior"] for r in runs.values()} == {"ar1", "gaussian"}
    assert all(0.0 <= r["model"]["dropout_rate"] <= 0.3 for r in runs.values())


@pytest.mark.parametrize("sweep, field", [
    ({"method": "bayes"}, "lfads.sweep.method"),
    ({"method": "grid"}, "lfads.sweep.parameters"),
    ({"method": "grid", "parameters": {"lr": [0.1]}}, "lfads.sweep.parameters"),
    ({"method": "grid", "parameters": {"training.lr": []}}, "lfads.sweep.parameters.training.lr"),
    ({"method": "grid", "parameters": {"training.lr": {"low": 0.1, "high": 1, "scale": "log"}}},
     "lfads.sweep.parameters.training.lr"),
    ({"method": "random", "parameters": {"training.lr": [0.1]}}, "lfads.sweep.n_runs"),
    ({"method": "random", "n_runs": 2,
      "parameters": {"training.lr": {"low": 1, "high": 0.1, "scale": "linear"}}},
     "lfads.sweep.parameters.training.lr"),
    ({"method": "random", "n_runs": 2,
      "parameters": {"training.lr": {"low": 0, "high": 1, "scale": "log"}}},
     "lfads.sweep.parameters.training.lr"),
    ({"method": "random", "n_runs": 2,
      "parameters": {"training.lr": {"low": 0.1, "high": 1, "log": True}}},
     "lfads.sweep.parameters.training.lr"),
])
def test_malformed_sweep_names_the_field(sweep, field):
    with pytest.raises(InputDataError, match=f"field '{field}'"):
        sweep_points(sweep)


def test_a_swept_value_is_checked_like_any_setting():
    point = sweep_points({"method": "grid", "parameters": {"model.dropout_rate": [0.1, 1.5]}})
    ok = lfads_settings_for(CONFIG["lfads"], "lorenz", "sweep_000", point["sweep_000"])
    assert ok["model"]["dropout_rate"] == 0.1
    override = CONFIG["lfads"]["overrides"]["lorenz"]["training"]["max_epochs"]
    assert override != CONFIG["lfads"]["training"]["max_epochs"]
    assert ok["training"]["max_epochs"] == override  # the dataset's override is kept
    with pytest.raises(InputDataError, match="lfads.sweep.parameters.*sweep run 'sweep_001'"):
        lfads_settings_for(CONFIG["lfads"], "lorenz", "sweep_001", point["sweep_001"])


def write_run(tmp_path, run, loss):
    path = tmp_path / run / "config.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"best_epoch": 7, "epochs_run": 9,
                                    "best_valid_loss_smooth": loss}))
    return path


def test_selection_picks_the_lowest_finite_loss(tmp_path):
    points = sweep_points({"method": "grid", "parameters": {"training.lr": [1, 2, 3]}})
    configs = {run: write_run(tmp_path, run, loss)
               for run, loss in zip(points, [0.52, math.nan, 0.47])}
    table = selection_table(configs, points)
    assert table["run"].tolist() == ["sweep_000", "sweep_001", "sweep_002"]
    assert table["selected"].tolist() == [False, False, True]
    assert table["training.lr"].tolist() == [1, 2, 3]
    assert table["best_epoch"].tolist() == [7, 7, 7]


def test_selection_fails_when_every_run_diverged(tmp_path):
    points = sweep_points({"method": "grid", "parameters": {"training.lr": [1, 2]}})
    configs = {run: write_run(tmp_path, run, math.nan) for run in points}
    with pytest.raises(ValueError, match="no run has a finite"):
        selection_table(configs, points)
