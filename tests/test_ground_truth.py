"""Recovery of simulated ground truth: R^2 helpers and the smoothed-spikes baseline."""

import numpy as np
import pytest

from lfads_core.ground_truth import (latent_r2, r2_per_channel, rate_r2, smooth_spikes,
                                     smoothing_baseline_r2)


def test_r2_per_channel_by_hand():
    true = np.array([[[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]])  # 1 trial x 3 bins x 2 channels
    pred = np.array([[[1.0, 1.0], [2.0, 1.0], [4.0, 1.0]]])
    # channel 0: SSE 1, SST 2 -> 0.5; channel 1: SSE 2, SST 2 -> 0
    np.testing.assert_allclose(r2_per_channel(pred, true), [0.5, 0.0])
    assert rate_r2(pred, true) == pytest.approx(0.25)


def test_latent_r2_finds_an_affine_map_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(40, 30, 3))
    factors = latents @ rng.normal(size=(3, 8)) + 2.0
    assert latent_r2(factors[:30], latents[:30], factors[30:], latents[30:]) > 0.999
    noise = rng.normal(size=factors.shape)
    assert latent_r2(noise[:30], latents[:30], noise[30:], latents[30:]) < 0.05


def test_smoothing_keeps_levels_and_baseline_picks_a_kernel():
    rng = np.random.default_rng(1)
    t = np.arange(200)[None, :, None]
    phase = rng.uniform(0, 6, (60, 1, 1))
    rates = np.repeat(0.5 * np.exp(np.sin(2 * np.pi * t / 100.0 + phase)), 5, axis=2)
    counts = rng.poisson(rates)  # 60 trials x 200 bins x 5 neurons
    np.testing.assert_allclose(smooth_spikes(np.full((2, 50, 3), 4), 3), 4.0)  # keeps levels
    r2, sigma = smoothing_baseline_r2(counts[:40], rates[:40], counts[40:], rates[40:])
    assert 0.3 < r2 < 1.0 and sigma > 1
