"""Recovery of simulated ground truth: R^2 helpers and the smoothed-spikes baseline."""

import numpy as np
import pytest

from lfads_core.analysis.ground_truth import (latent_r2, r2_per_channel, rate_r2, smooth_spikes,
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


def test_pulse_bins_floor_onsets_into_window_bins():
    from lfads_core.analysis.ground_truth import pulse_bins

    starts = np.array([10.0, 20.0, 30.0])
    # onsets 5 ms, 10 ms (exactly on an edge: bin 1) and 999 ms into 10 ms-binned windows
    np.testing.assert_array_equal(pulse_bins(starts + [0.005, 0.010, 0.999], starts, 0.01),
                                  [0, 1, 99])


def test_input_peak_ignores_sign_scale_and_offset():
    from lfads_core.analysis.ground_truth import fraction_within, input_peak_bins, input_peak_error_bins

    rng = np.random.default_rng(0)
    inputs = rng.normal(0.0, 0.1, (4, 50, 2))
    true = np.array([5, 20, 33, 49])
    inputs[0, 5, 0] += 3.0  # positive pulse in dim 0
    inputs[1, 20, 1] -= 0.9  # negative pulse in dim 1, small scale
    inputs[2] += 7.0  # large constant offset on every bin
    inputs[2, 33, :] -= 2.0
    inputs[3, 49] += [1.0, -1.0]  # peak in the last bin, both dims
    np.testing.assert_array_equal(input_peak_bins(inputs), true)
    errors = input_peak_error_bins(inputs, true - [0, 2, -4, 3])
    np.testing.assert_array_equal(errors, [0, 2, -4, 3])
    assert fraction_within(errors, 3) == 0.75 and fraction_within(errors, 1) == 0.25
