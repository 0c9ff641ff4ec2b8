"""Training-time augmentations that act on inputs and on the per-entry loss.

Shapes: encoder data B x T x N_in; per-entry NLL B x T_recon x N_recon with the
held-in channels first and the encoder bins first, so the "held-in region" of the
NLL is ``[:, :T, :N_in]``.

* Coordinated dropout (Keshtkaran & Pandarinath 2019): a random fraction of
  held-in entries is zeroed in the input (the rest scaled by 1/(1-rate)), and the
  reconstruction gradient for held-in entries flows *only* through the zeroed
  entries, so the network cannot learn an identity map.  The loss *value* is
  unchanged (gradient routing only).
* Sample validation: a fixed, seeded set of held-in entries per trial is held
  back from the input (like dropout) and from the training loss; the NLL on
  those entries of validation trials is an honest validation loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..loops.native import dropout_draw, runs_on

__all__ = ["CoordinatedDropout", "SampleValidation", "pad_to"]


def pad_to(mask: torch.Tensor, shape: torch.Size | tuple[int, ...], value: bool = False) -> torch.Tensor:
    """Pad a B x T x N boolean mask at the end of time and channels to ``shape``."""
    dt = shape[1] - mask.shape[1]
    dn = shape[2] - mask.shape[2]
    if dt == 0 and dn == 0:
        return mask
    return F.pad(mask, (0, dn, 0, dt), value=value)


class CoordinatedDropout:
    def __init__(self, rate: float, native: bool = False):
        """``native``: draw the masks with the compiled kernels (``Execution.native``) where
        they serve the input (float32 on CPU) and no generator is given."""
        if not 0.0 <= rate < 1.0:
            raise ValueError("coordinated dropout rate must be in [0, 1)")
        self.rate = rate
        self.native = native

    def mask_input(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Returns (masked input, keep mask).  keep is True where the entry was kept."""
        if self.rate == 0.0:
            return x, torch.ones_like(x, dtype=torch.bool)
        if generator is None and runs_on(self.native, x):
            return dropout_draw(x, self.rate)
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.rate
        return x * keep / (1.0 - self.rate), keep

    @staticmethod
    def route_gradients(nll: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Same values as ``nll``; gradients blocked at entries the input kept.

        ``keep`` is B x T x N_in; entries outside the held-in region (held-out
        channels, forward-prediction bins) always pass gradients.
        """
        blocked = pad_to(keep, nll.shape, value=False)
        return torch.where(blocked, nll.detach(), nll)


class SampleValidation:
    def __init__(self, rate: float, seed: int = 0):
        if not 0.0 <= rate < 1.0:
            raise ValueError("sample validation rate must be in [0, 1)")
        self.rate = rate
        self.seed = seed

    def make_mask(self, shape: tuple[int, ...], split_offset: int = 0) -> torch.Tensor:
        """Fixed held-back mask (True = held back) of ``shape`` (trials x T x N_in).

        Deterministic in (seed, split_offset); use different offsets for splits.
        """
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + split_offset)
        if self.rate == 0.0:
            return torch.zeros(shape, dtype=torch.bool)
        return torch.rand(shape, generator=g) < self.rate

    def mask_input(self, x: torch.Tensor, held_back: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0:
            return x
        return x * ~held_back / (1.0 - self.rate)

    @staticmethod
    def split_nll(nll: torch.Tensor, held_back: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(NLL with held-back entries zeroed, NLL on held-back entries only), both B x T_recon x N_recon."""
        hb = pad_to(held_back, nll.shape, value=False)
        return nll.masked_fill(hb, 0.0), nll.masked_fill(~hb, 0.0)
