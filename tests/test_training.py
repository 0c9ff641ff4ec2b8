"""Training, checkpoint/resume, NaN guard and posterior sampling on tiny synthetic data."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.data import SessionBatcher, load_lfads_h5
from lfads_core.lfads.posterior import run_posterior
from lfads_core.lfads.devices import select_device
from lfads_core.lfads.schedules import PlateauScheduler, ramp_weight
from lfads_core.lfads.training import NonFiniteLossError, train

torch.set_num_threads(1)

T, FP, N_IN, N_OUT, N_TRAIN, N_VALID = 40, 5, 24, 6, 160, 40


def write_lfads_h5(path, n_train=N_TRAIN, n_valid=N_VALID, T=T, fp=FP, n_in=N_IN, n_out=N_OUT, seed=0):
    """Synthetic lfads_input.h5: rates = exp(b + C z) with z a 2-d rotation of
    trial-specific phase and amplitude; Poisson counts.  Returns the truth rates."""
    rng = np.random.default_rng(seed)
    n, Tr = n_train + n_valid, T + fp
    t = np.arange(Tr)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.6, 1.4, n)
    ang = 2 * np.pi / 25.0 * t[None] + phase[:, None]
    z = amp[:, None, None] * np.stack([np.sin(ang), np.cos(ang)], -1)
    C = rng.normal(0, 0.8, (2, n_in + n_out))
    b = np.log(rng.uniform(0.15, 0.4, n_in + n_out))
    rates = np.exp(b + z @ C).astype(np.float32)  # expected counts per bin
    spikes = rng.poisson(rates).astype(np.int32)
    with h5py.File(path, "w") as f:
        for s, sl in (("train", slice(0, n_train)), ("valid", slice(n_train, None))):
            f[f"{s}_encod_data"] = spikes[sl, :T, :n_in]
            f[f"{s}_recon_data"] = spikes[sl]
            f[f"{s}_inds"] = np.arange(n, dtype=np.int64)[sl]
            f[f"{s}_truth_rates"] = rates[sl]
            f[f"{s}_truth_latents"] = z[sl].astype(np.float32)
        f.attrs.update(bin_width_s=0.01, n_heldin=n_in, n_heldout=n_out, fp_bins=fp)
    return spikes, rates


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "lfads_input.h5"
    spikes, rates = write_lfads_h5(path)
    return path, spikes, rates


def tiny_model(**kw):
    base = dict(ic_enc_dim=16, ci_enc_dim=6, con_dim=6, co_dim=1, ic_dim=8, gen_dim=24, fac_dim=6,
                dropout_rate=0.05, cd_rate=0.3)
    base.update(kw)
    return ModelConfig(**base)


def tiny_train(**kw):
    base = dict(lr=1e-2, batch_size=32, max_epochs=4, kl_ic_ramp_epochs=10, kl_co_ramp_epochs=10,
                l2_gen_ramp_epochs=10, l2_con_ramp_epochs=10, early_stop_burn_in=10, lr_patience=5)
    base.update(kw)
    return TrainConfig(**base)


def r2(pred, true):
    return 1.0 - float(((pred - true) ** 2).sum() / ((true - true.mean()) ** 2).sum())


def read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ data
def test_load_and_batches(dataset):
    path, spikes, _ = dataset
    d = load_lfads_h5(path, sv_rate=0.2, sv_seed=1)
    assert d.train.encod.shape == (N_TRAIN, T, N_IN) and d.valid.recon.shape == (N_VALID, T + FP, N_IN + N_OUT)
    assert d.n_heldin == N_IN and d.recon_seq_len == T + FP and d.attrs["fp_bins"] == FP
    assert torch.equal(d.train.encod, torch.from_numpy(spikes[:N_TRAIN, :T, :N_IN]).float())
    assert torch.equal(d.train.sv_mask, load_lfads_h5(path, 0.2, 1).train.sv_mask)  # fixed, seeded
    b = SessionBatcher([N_TRAIN], 32, seed=0)
    e3 = torch.cat([idx for _, idx in b.batches(3)])
    assert sorted(e3.tolist()) == list(range(N_TRAIN))
    again = SessionBatcher([N_TRAIN], 32, 0).batches(3)  # resumable order
    assert torch.equal(e3, torch.cat([idx for _, idx in again]))
    assert not torch.equal(e3, torch.cat([idx for _, idx in b.batches(4)]))
    assert ramp_weight(0, 0, 10) == 0 and ramp_weight(5, 0, 10) == 0.5 and ramp_weight(20, 0, 10) == 1
    assert ramp_weight(3, 5, 10) == 0 and ramp_weight(0, 0, 0) == 1
    assert select_device("cpu").type == "cpu"


# ------------------------------------------------------------------ schedule
def lr_after_each_step(values, patience=2, factor=0.5, min_lr=1e-3):
    """Step a PlateauScheduler (lr 1.0) through ``values``; the lr after each step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PlateauScheduler(opt, factor=factor, patience=patience, min_lr=min_lr)
    lrs = []
    for v in values:
        sched.step(v)
        lrs.append(sched.lr)
    return lrs


def test_plateau_schedule_follows_the_loss():
    # a falling loss never lowers the rate: the first epoch sets the reference
    assert lr_after_each_step([10.0 - i for i in range(20)]) == [1.0] * 20
    # a flat loss: the first value is the reference, then a drop after every 3 (patience + 1)
    # epochs without improvement
    assert lr_after_each_step([5.0] * 10) == [1, 1, 1, .5, .5, .5, .25, .25, .25, .125]
    # noisy: improvements reset the count, a relative change below 1e-4 is no improvement
    noisy = [10, 9, 9.5, 9.2, 9.1, 8.0, 8.5, 8.6, 7.9996, 8.9]
    assert lr_after_each_step(noisy) == [1, 1, 1, 1, .5, .5, .5, .5, .25, .25]
    # the floor
    assert lr_after_each_step([1.0] * 40, patience=0)[-1] == 1e-3
    # the state round-trips (resume)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    a = PlateauScheduler(opt, 0.5, 2, 1e-3)
    for v in (3.0, 2.0, 2.5):
        a.step(v)
    b = PlateauScheduler(opt, 0.5, 2, 1e-3)
    b.load_state_dict(a.state_dict())
    assert (b.best, b.bad_epochs) == (2.0, 1)


# ------------------------------------------------------------------ learning
def test_tiny_training_beats_smoothing(dataset, tmp_path):
    path, spikes, rates = dataset
    res = train(path, tmp_path / "run", tiny_model(con_dim=0, co_dim=0), tiny_train(max_epochs=30), device="cpu")
    rows = read_log(res.log_path)
    assert len(rows) == 30 and set(rows[0]) >= {"epoch", "train_recon", "valid_recon", "train_kl_ic",
                                                  "train_kl_co", "train_l2", "lr", "time_s"}
    assert float(rows[-1]["valid_recon"]) < float(rows[0]["valid_recon"])
    post = run_posterior(res.model_path, path, tmp_path / "post.h5", n_samples=10, device="cpu")
    truth = rates[:N_TRAIN, :T, :N_IN]
    counts = spikes[:N_TRAIN, :T, :N_IN].astype(float)
    baseline = max(r2(gaussian_filter1d(counts, s, axis=1), truth) for s in (1, 2, 3, 4, 6))
    lfads = r2(post["train_rates"][:, :T, :N_IN], truth)
    assert lfads > baseline + 0.03, (lfads, baseline)
    assert r2(post["valid_rates"], rates[N_TRAIN:]) > 0.5  # held-out neurons and fp bins too
    with h5py.File(tmp_path / "post.h5") as f:
        for s, n in (("train", N_TRAIN), ("valid", N_VALID)):
            assert f[f"{s}_rates"].shape == (n, T + FP, N_IN + N_OUT)
            assert f[f"{s}_factors"].shape == (n, T + FP, 6)
            assert f[f"{s}_inferred_inputs"].shape == (n, T + FP, 0)
            assert f[f"{s}_ic_mean"].shape == f[f"{s}_ic_std"].shape == (n, 8)
            assert np.array_equal(f[f"{s}_inds"][()], np.arange(N_TRAIN + N_VALID)[:N_TRAIN] if s == "train"
                                  else np.arange(N_TRAIN, N_TRAIN + N_VALID))
        assert f.attrs["n_samples"] == 10


def test_sample_validation_entries_never_used_for_training(dataset, tmp_path):
    """Changing the training data at held-back entries leaves the trained weights unchanged."""
    path = dataset[0]
    mc, tc = tiny_model(sv_rate=0.2, sv_seed=4), tiny_train(max_epochs=2)
    held_back = load_lfads_h5(path, 0.2, 4).train.sv_mask.numpy()
    altered = tmp_path / "altered.h5"
    with h5py.File(path) as src, h5py.File(altered, "w") as dst:
        for k in src:
            dst[k] = src[k][()]
        dst.attrs.update(dict(src.attrs))
        enc, rec = dst["train_encod_data"][()], dst["train_recon_data"][()]
        enc[held_back] += 7
        rec[:, :T, :N_IN][held_back] += 7
        dst["train_encod_data"][...] = enc
        dst["train_recon_data"][...] = rec
    a = train(path, tmp_path / "a", mc, tc, device="cpu")
    b = train(altered, tmp_path / "b", mc, tc, device="cpu")
    sa = torch.load(a.model_path, weights_only=False)["state_dict"]
    sb = torch.load(b.model_path, weights_only=False)["state_dict"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # ... while the validation NLL on held-back entries is reported
    assert all(float(r["valid_recon_sv"]) > 0 for r in read_log(a.log_path))


# ------------------------------------------------------------------ checkpoint / resume
class _Killed(Exception):
    pass


def test_resume_is_bit_identical(dataset, tmp_path):
    path = dataset[0]
    mc, tc = tiny_model(sv_rate=0.1), tiny_train(max_epochs=4)
    full = train(path, tmp_path / "full", mc, tc, device="cpu")

    def kill_after_epoch_1(row):
        if row["epoch"] == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(path, tmp_path / "resumed", mc, tc, device="cpu", progress=kill_after_epoch_1)
    ck = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["epoch"] == 2 and not (tmp_path / "resumed" / "model.pt").exists()
    seen = []
    resumed = train(path, tmp_path / "resumed", mc, tc, device="cpu", progress=lambda r: seen.append(r["epoch"]))
    assert seen == [2, 3]  # continued where it stopped
    a = torch.load(full.model_path, weights_only=False)["state_dict"]
    b = torch.load(resumed.model_path, weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    ob = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    for i in oa:
        assert torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"])
    la, lb = read_log(full.log_path), read_log(resumed.log_path)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(la) == strip(lb) and len(la) == 4
    # a different config cannot silently resume another run
    with pytest.raises(ValueError, match=r"cannot be resumed: setting training.lr differs \(0.01 in the "
                                         r"checkpoint, 0.005 now\)"):
        train(path, tmp_path / "resumed", mc, tiny_train(max_epochs=4, lr=5e-3), device="cpu")
    # ... unless asked to start afresh, as the workflow does after a user changes a setting
    seen.clear()
    fresh = train(path, tmp_path / "resumed", mc, tiny_train(max_epochs=2, lr=5e-3), device="cpu",
                  resume="if_compatible", progress=lambda r: seen.append(r["epoch"]))
    assert seen == [0, 1] and fresh.epochs_run == 2


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path, caplog):
    """Train, rewrite the input with other data of the same shapes, train again into the same
    folder: the weights are a fresh run's on the new data, not the first run's."""
    mc, tc = tiny_model(), tiny_train(max_epochs=2)
    data = tmp_path / "lfads_input.h5"
    write_lfads_h5(data, seed=0)
    first = torch.load(train(data, tmp_path / "run", mc, tc, device="cpu").model_path,
                       weights_only=False)
    write_lfads_h5(data, seed=1)  # same shapes, other spikes
    with caplog.at_level("WARNING", logger="lfads_core.lfads.training"):
        again = train(data, tmp_path / "run", mc, tc, device="cpu", resume="if_compatible")
    assert "not resuming" in caplog.text and "the input file changed" in caplog.text
    fresh = torch.load(train(data, tmp_path / "fresh", mc, tc, device="cpu").model_path,
                       weights_only=False)
    again = torch.load(again.model_path, weights_only=False)
    assert again["meta"]["input_sha256"] == fresh["meta"]["input_sha256"] != first["meta"]["input_sha256"]
    assert all(torch.equal(again["state_dict"][k], fresh["state_dict"][k]) for k in fresh["state_dict"])
    assert not all(torch.equal(again["state_dict"][k], first["state_dict"][k]) for k in first["state_dict"])
    # resume=True refuses, naming what differs
    write_lfads_h5(data, seed=2)
    with pytest.raises(ValueError, match="cannot be resumed: the input file changed"):
        train(data, tmp_path / "run", mc, tc, device="cpu")


# ------------------------------------------------------------------ NaN guard
def test_nan_guard_rolls_back_and_halves_lr(dataset, tmp_path):
    path = dataset[0]
    fired = []

    def hook(epoch, batch, loss):
        if epoch == 1 and batch == 2 and not fired:
            fired.append(True)
            return loss * float("nan")
        return loss

    tc = tiny_train(max_epochs=3, lr_patience=100)
    res = train(path, tmp_path / "run", tiny_model(con_dim=0), tc, device="cpu", loss_hook=hook)
    rows = read_log(res.log_path)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert math.isclose(float(rows[1]["lr"]), tc.lr / 2)
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["rollbacks"] == 1


def test_nan_guard_gives_up_with_clear_error(dataset, tmp_path):
    path = dataset[0]
    tc = tiny_train(max_epochs=3, max_nonfinite_rollbacks=2)

    def hook(epoch, batch, loss):
        return loss * float("inf") if epoch >= 1 else loss

    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at epoch 1.*2 rollback"):
        train(path, tmp_path / "run", tiny_model(con_dim=0), tc, device="cpu", loss_hook=hook)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["epoch"] == 1  # the last good checkpoint is kept


# ------------------------------------------------------------------ preemption
def test_sigterm_stops_with_a_checkpoint_and_the_rerun_resumes(dataset, tmp_path):
    """Kill a real training process with SIGTERM mid-run (as SLURM does), rerun, and check
    that it resumed where it stopped and ended with the weights of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = dataset[0]
    script = (
        "import logging, sys, torch; torch.set_num_threads(1)\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from lfads_core.lfads.config import ModelConfig, TrainConfig\n"
        "from lfads_core.lfads.training import train\n"
        f"mc = ModelConfig(**{dict(ic_enc_dim=16, ci_enc_dim=6, con_dim=6, co_dim=1, ic_dim=8, gen_dim=24, fac_dim=6)!r})\n"
        f"tc = TrainConfig(**{dict(lr=1e-2, batch_size=8, max_epochs=12, early_stop_burn_in=10)!r})\n"
        "r = train(sys.argv[1], sys.argv[2], mc, tc, device='cpu')\n"
        "print('epochs_run', r.epochs_run)\n")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_csv = run_dir / "train_log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not log_csv.exists() or len(read_log(log_csv)) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "TrainingPreempted" in output
    stopped_at = torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["epoch"]
    assert 2 <= stopped_at < 12 and not (run_dir / "model.pt").exists()

    rerun = subprocess.run([sys.executable, "-c", script, str(path), str(run_dir)],
                           capture_output=True, text=True, check=True)
    assert f"resuming from {run_dir / 'checkpoint.pt'} at epoch {stopped_at}" in rerun.stderr
    whole = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "whole")],
                           capture_output=True, text=True, check=True)
    assert "epochs_run 12" in rerun.stdout and "epochs_run 12" in whole.stdout
    a = torch.load(run_dir / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "whole" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert os.path.exists(run_dir / "train_log.csv") and len(read_log(run_dir / "train_log.csv")) == 12


def test_training_and_its_choices_never_read_the_test_trials(dataset, tmp_path):
    """Two inputs with the same train and valid trials but other test trials (real counts in
    one, NaN of another trial count in the other) train to the same weights, log and smoothed
    validation loss, the number sweeps and PBT rank models by; posterior sampling, which does
    read them, samples the test trials."""
    import shutil

    path = dataset[0]
    results = []
    for name, test in (("counts", np.ones((7, T + FP, N_IN + N_OUT), np.int32)),
                       ("nan", np.full((3, T + FP, N_IN + N_OUT), np.nan, np.float32))):
        data = tmp_path / f"{name}.h5"
        shutil.copy(path, data)
        with h5py.File(data, "a") as f:
            f["test_encod_data"] = test[:, :T, :N_IN]
            f["test_recon_data"] = test
            f["test_inds"] = np.arange(len(test), dtype=np.int64) + 1000
        results.append(train(data, tmp_path / name, tiny_model(), tiny_train(max_epochs=3), device="cpu"))
    a, b = (torch.load(r.model_path, weights_only=False)["state_dict"] for r in results)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(read_log(results[0].log_path)) == strip(read_log(results[1].log_path))
    assert results[0].best_valid_loss_smooth == results[1].best_valid_loss_smooth
    assert load_lfads_h5(tmp_path / "nan.h5").test is None  # training's loader leaves them
    post = run_posterior(results[0].model_path, tmp_path / "counts.h5", tmp_path / "posterior.h5",
                         n_samples=2)
    assert post["test_rates"].shape == (7, T + FP, N_IN + N_OUT)
    assert post["test_inds"].tolist() == list(range(1000, 1007))
