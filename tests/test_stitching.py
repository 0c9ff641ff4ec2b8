"""Stitched LFADS on several sessions: routing of batches to their session's read-in and
read-out, the seeded interleaving, the read-in initialisation from shared PCs, and training."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.data import SessionBatcher, load_lfads_h5
from lfads_core.lfads.model import LFADS
from lfads_core.lfads.stitching import condition_averages, init_from_alignment
from lfads_core.lfads.training import train
from test_training import read_log

torch.set_num_threads(1)

T, FP, N_CONDITIONS = 30, 4, 6


def write_session(path, n_neurons, n_train, n_valid, seed, n_heldout=3):
    """One session of a shared 2-d rotation (phase set by the condition), observed through its
    own random neurons; lfads_input.h5 layout with cond_idx. Returns the truth latents."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    cond = np.arange(n) % N_CONDITIONS
    t = np.arange(T + FP)
    angle = 2 * np.pi / 20.0 * t[None] + 2 * np.pi * cond[:, None] / N_CONDITIONS
    z = np.stack([np.sin(angle), np.cos(angle)], -1)
    C = rng.normal(0, 0.9, (2, n_neurons))
    b = np.log(rng.uniform(0.1, 0.4, n_neurons))
    rates = np.exp(b + z @ C).astype(np.float32)
    spikes = rng.poisson(rates).astype(np.int32)
    n_in = n_neurons - n_heldout
    with h5py.File(path, "w") as f:
        for s, sl in (("train", slice(0, n_train)), ("valid", slice(n_train, None))):
            f[f"{s}_encod_data"] = spikes[sl, :T, :n_in]
            f[f"{s}_recon_data"] = spikes[sl]
            f[f"{s}_inds"] = np.arange(n, dtype=np.int64)[sl]
            f[f"{s}_cond_idx"] = cond[sl]
            f[f"{s}_truth_latents"] = z[sl].astype(np.float32)
        f.attrs.update(bin_width_s=0.01, n_heldin=n_in, n_heldout=n_heldout, fp_bins=FP)
    return z


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sessions")
    paths = []
    for k, (neurons, n_train) in enumerate([(20, 36), (28, 30), (16, 42)]):
        path = folder / f"session_{k}.h5"
        write_session(path, neurons, n_train, 12, seed=10 + k)
        paths.append(path)
    return paths


def stitched_model(paths, **changes):
    data = [load_lfads_h5(p) for p in paths]
    cfg = ModelConfig(
        encod_data_dims=[d.n_heldin for d in data], recon_data_dims=[d.n_recon for d in data],
        encod_seq_len=T, recon_seq_len=T + FP, readin_dim=8, ic_enc_dim=12, ci_enc_dim=6,
        con_dim=6, co_dim=1, ic_dim=6, gen_dim=16, fac_dim=4, **changes)
    return LFADS(cfg), data


def test_a_batch_of_one_session_touches_only_its_readin_readout_and_the_core(sessions):
    torch.manual_seed(0)
    model, data = stitched_model(sessions)
    for k in range(len(data)):
        model.zero_grad(set_to_none=True)
        x = data[k].train.encod[:5]
        out = model(x, session=k)
        model.recon_nll(out, data[k].train.recon[:5]).sum().backward()
        for j in range(len(data)):
            for part in (model.readin.layers[j], model.readout.layers[j]):
                grads = [p.grad for p in part.parameters()]
                if j == k:
                    assert all(g is not None and g.abs().sum() > 0 for g in grads)
                else:
                    assert all(g is None for g in grads), (k, j)
        core = [model.ic_encoder, model.ci_encoder, model.controller, model.generator]
        for module in core:
            assert all(p.grad is not None and p.grad.abs().sum() > 0
                       for p in module.parameters() if p.requires_grad), (k, module)


def test_sessions_are_interleaved_by_a_seeded_order():
    sizes = [10, 25, 7]
    batcher = SessionBatcher(sizes, batch_size=4, seed=3)
    epoch = batcher.batches(0)
    assert [s for s, _ in epoch] != sorted(s for s, _ in epoch)  # interleaved, not in blocks
    for k, n in enumerate(sizes):  # every trial of every session once per epoch
        seen = torch.cat([idx for s, idx in epoch if s == k]).tolist()
        assert sorted(seen) == list(range(n))
    again = SessionBatcher(sizes, batch_size=4, seed=3).batches(0)
    assert all(a[0] == b[0] and torch.equal(a[1], b[1]) for a, b in zip(epoch, again))
    assert [s for s, _ in batcher.batches(1)] != [s for s, _ in epoch]


def test_readins_map_every_session_onto_shared_components(sessions):
    """After the alignment, the read-in outputs of the sessions' condition averages agree:
    the same latent seen through different neurons lands in the same space."""
    torch.manual_seed(0)
    model, data = stitched_model(sessions)
    init_from_alignment(model, data)
    averages = []
    with torch.no_grad():
        for k, d in enumerate(data):
            mean = condition_averages(d.train.encod.numpy(), d.train.extras["cond_idx"],
                                      list(range(N_CONDITIONS)), sigma_bins=5.0)
            averages.append(model.readin(torch.from_numpy(mean).float(), k).numpy())
    for k in (1, 2):  # the first two components, the rotation, agree across sessions
        for component in (0, 1):
            r = np.corrcoef(averages[0][:, component], averages[k][:, component])[0, 1]
            assert abs(r) > 0.9, (k, component, r)
    # random read-ins do not agree
    torch.manual_seed(0)
    random_model, _ = stitched_model(sessions, readin_init="random")
    with torch.no_grad():
        a = random_model.readin(data[0].train.encod.mean(0, keepdim=True), 0).reshape(-1, 8)
        b = random_model.readin(data[1].train.encod.mean(0, keepdim=True), 1).reshape(-1, 8)
    assert abs(np.corrcoef(a[:, 0], b[:, 0])[0, 1]) < 0.9


def test_the_alignment_does_not_amplify_weak_components(sessions):
    """The read-ins keep each component at its share of the variance: beyond the 2-d rotation
    the components are noise, and whitening them would feed the encoders amplified noise."""
    torch.manual_seed(0)
    model, data = stitched_model(sessions)
    init_from_alignment(model, data)
    with torch.no_grad():
        for k, d in enumerate(data):
            mean = condition_averages(d.train.encod.numpy(), d.train.extras["cond_idx"],
                                      list(range(N_CONDITIONS)), sigma_bins=5.0)
            variance = model.readin(torch.from_numpy(mean).float(), k).numpy().var(axis=0)
            assert variance[0] == pytest.approx(1.0, rel=0.3), k
            assert (variance[2:] < 0.2 * variance[0]).all(), (k, variance)


def test_the_alignment_sees_only_training_trials(sessions, tmp_path):
    torch.manual_seed(0)
    model, data = stitched_model(sessions)
    init_from_alignment(model, data)
    changed = []
    for k, path in enumerate(sessions):  # other validation spikes, same training trials
        copy = tmp_path / f"s{k}.h5"
        with h5py.File(path) as src, h5py.File(copy, "w") as dst:
            for key in src:
                dst[key] = src[key][()]
            dst.attrs.update(src.attrs)
            dst["valid_encod_data"][...] = np.random.default_rng(k).poisson(
                1.0, dst["valid_encod_data"].shape)
        changed.append(copy)
    torch.manual_seed(0)
    other, other_data = stitched_model(changed)
    init_from_alignment(other, other_data)
    for a, b in zip(model.readin.parameters(), other.readin.parameters()):
        assert torch.equal(a, b)


def tiny_stitched_train(**changes):
    base = dict(lr=1e-2, batch_size=8, max_epochs=3, kl_ic_ramp_epochs=2, kl_co_ramp_epochs=2,
                l2_gen_ramp_epochs=2, l2_con_ramp_epochs=2, early_stop_burn_in=1)
    return TrainConfig(**{**base, **changes})


def stitched_cfg(**changes):
    return ModelConfig(readin_dim=8, ic_enc_dim=12, ci_enc_dim=6, con_dim=6, co_dim=1, ic_dim=6,
                       gen_dim=16, fac_dim=4, **changes)


def test_training_on_three_sessions_logs_each_and_resumes_exactly(sessions, tmp_path):
    result = train(sessions, tmp_path / "full", stitched_cfg(), tiny_stitched_train(),
                   device="cpu")
    log = read_log(result.log_path)
    assert len(log) == 3
    for row in log:  # the total is the trial-weighted mean of the sessions' losses
        per_session = [float(row[f"valid_recon_session_{k}"]) for k in range(3)]
        assert float(row["valid_recon"]) == pytest.approx(np.mean(per_session), rel=1e-6)
    blob = torch.load(result.model_path, weights_only=False)
    assert blob["model_cfg"]["encod_data_dims"] == [17, 25, 13]
    assert len(blob["meta"]["input_h5"]) == 3

    class Killed(Exception):
        pass

    def kill_after_epoch_1(row):
        if row["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(sessions, tmp_path / "resumed", stitched_cfg(), tiny_stitched_train(),
              device="cpu", progress=kill_after_epoch_1)
    resumed = train(sessions, tmp_path / "resumed", stitched_cfg(), tiny_stitched_train(),
                    device="cpu")
    a = torch.load(result.model_path, weights_only=False)["state_dict"]
    b = torch.load(resumed.model_path, weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_readins_stay_as_initialised(sessions, tmp_path):
    result = train(sessions, tmp_path / "frozen", stitched_cfg(train_readin=False),
                   tiny_stitched_train(max_epochs=2), device="cpu")
    torch.manual_seed(0)
    model, data = stitched_model(sessions, train_readin=False)
    init_from_alignment(model, data)
    final = torch.load(result.model_path, weights_only=False)["state_dict"]
    for k in range(3):
        assert torch.allclose(final[f"readin.layers.{k}.weight"], model.readin.layers[k].weight)
    trained = train(sessions, tmp_path / "trained", stitched_cfg(),
                    tiny_stitched_train(max_epochs=2), device="cpu")
    moved = torch.load(trained.model_path, weights_only=False)["state_dict"]
    assert not torch.allclose(moved["readin.layers.0.weight"], model.readin.layers[0].weight)


def test_sessions_with_other_bins_are_refused(sessions, tmp_path):
    other = tmp_path / "longer.h5"
    with h5py.File(sessions[0]) as src, h5py.File(other, "w") as dst:
        for key in src:
            value = src[key][()]
            dst[key] = np.concatenate([value, value[:, :5]], axis=1) \
                if key.endswith(("encod_data", "recon_data")) else value
        dst.attrs.update(src.attrs)
    with pytest.raises(ValueError, match="the sessions disagree on encod_seq_len"):
        train([sessions[1], other], tmp_path / "run", stitched_cfg(), tiny_stitched_train(),
              device="cpu")


def test_posterior_sampling_uses_the_sessions_own_readin_and_readout(sessions, tmp_path):
    from lfads_core.lfads.posterior import run_posterior

    result = train(sessions, tmp_path / "run", stitched_cfg(), tiny_stitched_train(max_epochs=1),
                   device="cpu")
    for k, path in enumerate(sessions):
        out = run_posterior(result.model_path, path, tmp_path / f"posterior_{k}.h5", n_samples=2,
                            device="cpu", session=k)
        data = load_lfads_h5(path)
        assert out["valid_rates"].shape == tuple(data.valid.recon.shape)
    with pytest.raises(RuntimeError):  # another session's read-in does not fit these units
        run_posterior(result.model_path, sessions[0], tmp_path / "wrong.h5", n_samples=1,
                      device="cpu", session=1)


def test_a_group_shares_its_window_length_whether_trials_or_segments():
    """Rows of a stitched group must agree on the bins one model sees: a continuous row's
    window is its segment, so two continuous sessions with the same segment length group
    (whatever their trial windows say), and a segment length unlike a trial row's window is
    refused naming the sheet, the group's rows and the field."""
    from lfads_core.errors import InputDataError
    from lfads_core.workflow.groups import model_groups

    base = {"group": "monkey", "bin_width_ms": 5, "fp_bins": 0, "window_start_ms": -250,
            "window_end_ms": 450, "segment_length_ms": None}
    continuous = dict(base, segment_length_ms=700, window_end_ms=250)
    assert model_groups({"a": continuous, "b": dict(continuous, window_start_ms=0)},
                        "sheet.tsv") == {"monkey": ["a", "b"]}
    assert model_groups({"a": base, "b": continuous}, "sheet.tsv") == {"monkey": ["a", "b"]}
    with pytest.raises(InputDataError) as err:
        model_groups({"a": base, "b": dict(continuous, segment_length_ms=1000)}, "sheet.tsv")
    message = str(err.value)
    assert message.startswith("sheet.tsv (group 'monkey', rows ['a', 'b'])")
    assert "segment_length_ms" in message and "{'a': 700, 'b': 1000.0}" in message
