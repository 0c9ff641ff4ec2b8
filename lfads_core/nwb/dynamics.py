"""The simulator's latent systems: latents (conditions x steps x n_latents), or (trials x ...)
with input pulses. Each takes the simulation parameters, the number of steps of ``dt_ms`` and
the simulator's named random streams."""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["SYSTEMS", "lorenz", "chaotic_rnn"]


def _rk4(deriv, x: np.ndarray, h: float) -> np.ndarray:
    """One classic Runge-Kutta step of size ``h`` of ``dx/dt = deriv(x)``."""
    k1 = deriv(x)
    k2 = deriv(x + 0.5 * h * k1)
    k3 = deriv(x + 0.5 * h * k2)
    return x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + deriv(x + h * k3))


def _trajectories(deriv, x: np.ndarray, h: float, n_steps: int, drive=None) -> np.ndarray:
    """States (batch, n_steps, dims) at the start of each RK4 step of size ``h``.

    ``drive(i)``, if given, is the external input during step ``i`` (held constant over the
    step), passed to ``deriv`` as ``inputs``."""
    out = np.empty((len(x), n_steps, x.shape[-1]))
    for i in range(n_steps):
        out[:, i] = x
        step = deriv if drive is None else functools.partial(deriv, inputs=drive(i))
        x = _rk4(step, x, h)
    return out


def _lorenz_deriv(x: np.ndarray, sigma=10.0, rho=28.0, beta=8.0 / 3.0) -> np.ndarray:
    return np.stack([sigma * (x[..., 1] - x[..., 0]),
                     x[..., 0] * (rho - x[..., 2]) - x[..., 1],
                     x[..., 0] * x[..., 1] - beta * x[..., 2]], axis=-1)


def lorenz(p: dict, n_steps: int, rng: dict, pulses=None) -> np.ndarray:
    """Lorenz states (one run per condition); initial states lie on the attractor (burn-in)."""
    x = rng["init"].normal(0.0, 5.0, (p["n_conditions"], 3)) + [0.0, 0.0, 25.0]
    for _ in range(3000):  # 30 Lorenz time units of burn-in
        x = _rk4(_lorenz_deriv, x, 0.01)
    return _trajectories(_lorenz_deriv, x, p["dt_ms"] * 1e-3 * p["lorenz_speed"], n_steps)


def chaotic_rnn(p: dict, n_steps: int, rng: dict, pulses=None) -> np.ndarray:
    """tanh of the states of tau dx/dt = -x + gain J tanh(x) + b u(t), J ~ N(0, 1/N).

    Without ``pulses``, one run per condition and u = 0. With ``pulses = (conds, u)`` (trials,
    and trials x steps input u in state units), one run per trial from its condition's initial
    state, driven along the input direction b ~ N(0, 1) per unit."""
    n = p["rnn_units"]
    weights = p["rnn_gain"] * rng["system"].normal(0.0, 1.0 / np.sqrt(n), (n, n))
    tau = p["rnn_tau_s"]

    def deriv(x: np.ndarray, inputs: float | np.ndarray = 0.0) -> np.ndarray:
        return (-x + np.tanh(x) @ weights.T + inputs) / tau

    x = rng["init"].normal(0.0, 1.0, (p["n_conditions"], n))
    drive = None
    if pulses is not None:
        conds, u = pulses
        direction = rng["pulses"].normal(0.0, 1.0, n)
        x = x[conds]
        drive = lambda i: u[:, i, None] * direction  # noqa: E731  (trials x units)
    return np.tanh(_trajectories(deriv, x, p["dt_ms"] * 1e-3, n_steps, drive))


SYSTEMS = {"lorenz": lorenz, "chaotic_rnn": chaotic_rnn}
