"""NLB metrics against hand-computed values."""

import math

import numpy as np
import pytest

from lfads_core.analysis import metrics


def test_bits_per_spike_by_hand():
    spikes = np.array([[[1.0], [0.0]]])  # 1 trial x 2 bins x 1 neuron
    rates = np.array([[[0.8], [0.1]]])

    def log_p(k, r):
        return k * math.log(r) - r - math.lgamma(k + 1)

    model = log_p(1, 0.8) + log_p(0, 0.1)
    null = log_p(1, 0.5) + log_p(0, 0.5)  # the neuron's mean count per bin
    expected = (model - null) / (1 * math.log(2))
    assert metrics.bits_per_spike(rates, spikes) == pytest.approx(expected)


def test_null_rates_score_zero_and_true_rates_score_positive():
    rng = np.random.default_rng(0)
    rates = np.exp(rng.normal(-2, 0.8, (200, 50, 4)))
    spikes = rng.poisson(rates).astype(float)
    null = np.broadcast_to(spikes.reshape(-1, 4).mean(axis=0), spikes.shape)
    assert metrics.co_bps(null, spikes) == pytest.approx(0.0, abs=1e-12)
    assert metrics.co_bps(rates, spikes) > 0.1
    assert metrics.co_bps(rates * 3, spikes) < metrics.co_bps(rates, spikes)


def test_nan_spikes_are_left_out():
    spikes = np.array([[[1.0], [0.0], [np.nan]]])
    rates = np.array([[[0.8], [0.1], [5.0]]])
    assert metrics.bits_per_spike(rates, spikes) == \
        pytest.approx(metrics.bits_per_spike(rates[:, :2], spikes[:, :2]))


def test_velocity_r2_by_hand():
    true = np.array([[[1.0, 0.0], [2.0, 2.0], [3.0, 4.0]]])
    pred = np.array([[[1.0, 0.0], [2.0, 2.0], [2.0, 4.0]]])
    # dimension 0: SSE 1, SST 2; dimension 1: SSE 0, SST 8 -> variance-weighted 1 - 1/10
    assert metrics.velocity_r2(pred, true) == pytest.approx(0.9)


def test_psth_r2_is_one_for_the_smoothed_psth_itself():
    rng = np.random.default_rng(1)
    conditions = np.repeat(np.arange(3), 10)
    spikes = rng.poisson(0.5, (30, 40, 5)).astype(float)
    smoothed = metrics.smooth_spikes(spikes, 2.0)
    psth = np.stack([smoothed[conditions == c].mean(axis=0) for c in range(3)])
    rates = psth[conditions]
    assert metrics.psth_r2(rates, conditions, spikes, conditions, 2.0) == pytest.approx(1.0)
    assert metrics.psth_r2(rates[::-1], conditions, spikes, conditions, 2.0) < 0.9


def test_smoothing_baseline_predicts_heldout_neurons():
    rng = np.random.default_rng(2)
    t = np.arange(60)[None, :, None]
    latent = np.sin(2 * np.pi * t / 30 + rng.uniform(0, 6, (120, 1, 1)))
    weights = rng.normal(0, 1, (1, 1, 30))
    rates = 0.3 * np.exp(latent * weights)
    spikes = rng.poisson(rates)
    heldin, heldout = spikes[..., :24], spikes[..., 24:]
    smooth_in, predicted = metrics.smoothing_baseline(heldin[:80], heldout[:80], heldin[80:], 3.0)
    assert smooth_in.shape == (40, 60, 24) and predicted.shape == (40, 60, 6)
    assert metrics.co_bps(predicted, heldout[80:]) > 0.05
