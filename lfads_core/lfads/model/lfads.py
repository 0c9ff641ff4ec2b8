"""The LFADS model: encoders -> (controller <-> generator) -> factors -> readout.

Shapes: B trials, T encoder bins, T_r = recon bins (T + forward-prediction
bins), N_in held-in channels, N_r recon channels (held-in first).
Rates are the expected observation per bin: expected counts per bin for Poisson, data units
for the other likelihoods.

Two implementations of the same computation share all parameters:

* ``impl="reference"``: plain per-step loops (GRU cells for the encoders too);
  easy to read, used as the correctness reference.
* ``impl="fast"``: encoders via cuDNN ``nn.GRU`` on CUDA and a two-direction
  GRU scan elsewhere; for the controller/generator loop all input-side matmuls
  that do not depend on the recurrence are done for all bins at once before the
  loop, the factor->controller path is folded into one (gen_dim -> 3*con_dim)
  matrix, factors are computed for all bins after the loop, and the loop runs
  without autograd bookkeeping (buffers written in place, hand-written backward;
  weight gradients as one matmul over all bins after the backward loop).
  All random draws (sampling noise, dropout masks) are made before the loop
  in the same order for both, so they agree to float rounding.

Which implementation runs is not the model's setting: :attr:`LFADS.execution` holds the
choice :func:`..execution.resolve_execution` made (the fast path by default).  With the C
loops (``Execution.native``, CPU) the dropout masks are drawn there too (another random
stream, so with dropout on a run differs from one without by its draws, not in kind).

:meth:`LFADS.encode` and :meth:`LFADS.decode_repeated` split the model for posterior
sampling: the encoders once per batch of trials, the decoder for many draws of each at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..execution import Execution
from ..loops.decoder_scan import decoder_scan
from ..loops.kernels import gru_scan
from ..loops.native import dropout, dropout_mask, runs_on
from .controller import Controller
from .encoders import CIEncoder, ICEncoder
from .generator import Generator
from .likelihoods import get_likelihood
from .priors import GaussianPrior, make_co_prior
from .readout import ReadIn, ReadOut

__all__ = ["LFADS", "LFADSOutput"]


@dataclass
class LFADSOutput:
    params: torch.Tensor  # B x T_r x N_r x (n_params + n_fixed) likelihood parameters (Poisson: log counts/bin)
    factors: torch.Tensor  # B x T_r x fac_dim
    gen_states: torch.Tensor  # B x T_r x gen_dim (before dropout)
    ic_mean: torch.Tensor  # B x ic_dim
    ic_std: torch.Tensor  # B x ic_dim
    co_mean: torch.Tensor  # B x T_r x co_dim (empty last dim without controller)
    co_std: torch.Tensor  # B x T_r x co_dim
    inferred_inputs: torch.Tensor  # B x T_r x co_dim: sampled (or mean) generator inputs


class LFADS(nn.Module):
    """Latent Factor Analysis via Dynamical Systems.

    Per-session read-in/read-out around a shared core; ``session`` picks them.
    ``cfg.con_dim == 0`` (or ``co_dim == 0``) removes the controller and the
    controller-input encoder: the generator is then driven only by its initial
    condition (and external inputs, if any).  ``execution``: how the loops run (resolved by
    :func:`..execution.resolve_execution`; default the fast path); not part of the model,
    so it may be swapped at any time (:attr:`execution`).
    """

    def __init__(self, cfg: ModelConfig, execution: Execution | None = None):
        super().__init__()
        self.execution = execution or Execution()
        cfg.validate()
        if cfg.n_sessions < 1 or cfg.encod_seq_len < 1:
            raise ValueError("ModelConfig needs data dimensions (encod_data_dims, recon_data_dims, seq lens)")
        self.cfg = cfg
        self.likelihood = get_likelihood(cfg.likelihood)
        self.readin = ReadIn(cfg.encod_data_dims, cfg.readin_dim)
        enc_in = self.readin.out_dim
        self.dropout = nn.Dropout(cfg.dropout_rate)
        self.ic_encoder = ICEncoder(enc_in, cfg.ic_enc_dim, cfg.ic_dim, cfg.dropout_rate, cfg.ic_post_var_min)
        self.use_controller = cfg.use_controller
        co_dim = cfg.co_dim if self.use_controller else 0
        self.co_dim = co_dim
        if self.use_controller:
            self.ci_encoder = CIEncoder(enc_in, cfg.ci_enc_dim, cfg.ci_lag, cfg.dropout_rate)
            self.controller = Controller(2 * cfg.ci_enc_dim, cfg.fac_dim, cfg.con_dim, co_dim, cfg.cell_clip)
            self.co_prior = make_co_prior(cfg)
        else:
            self.ci_encoder = None
            self.controller = None
            self.co_prior = None
        self.generator = Generator(cfg.ic_dim, co_dim + cfg.ext_input_dim, cfg.gen_dim, cfg.fac_dim, cfg.cell_clip)
        self.ic_prior = GaussianPrior(cfg.ic_dim, cfg.ic_prior_var)
        self.readout = ReadOut(cfg.fac_dim, cfg.recon_data_dims, self.likelihood.n_params,
                               getattr(self.likelihood, "n_fixed", 0))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        encod_data: torch.Tensor,
        session: int = 0,
        ext_input: torch.Tensor | None = None,
        sample_posteriors: bool = True,
        impl: str | None = None,
    ) -> LFADSOutput:
        """encod_data: B x T x N_in (float counts or other observations, already augmented),
        finite: entries not observed (NaN in the data) are 0 here, as :class:`.data.SplitData`
        makes them, like the entries coordinated dropout drops; ext_input: B x T_r x ext_dim
        (shorter inputs are zero-padded)."""
        cfg, ex = self.cfg, self.execution
        impl = impl or ex.impl
        B = encod_data.shape[0]
        Tr = cfg.recon_seq_len
        ic_mean, ic_std, ci = self.encode(encod_data, session, impl)
        x = ic_mean

        # --- all random draws up front, in a fixed order (shared by both impls) ---
        if sample_posteriors:
            ic_sample = ic_mean + ic_std * torch.randn_like(ic_mean)
        else:
            ic_sample = ic_mean
        co_eps = None
        if self.use_controller and sample_posteriors:
            co_eps = torch.randn(Tr, B, self.co_dim, device=x.device, dtype=x.dtype)
        gen_masks = None
        p = cfg.dropout_rate
        if self.training and p > 0 and runs_on(ex.native and impl == "fast", x):
            gen_masks = dropout_mask((Tr + 1, B, cfg.gen_dim), p)
        elif self.training and p > 0:
            gen_masks = torch.empty(Tr + 1, B, cfg.gen_dim, device=x.device, dtype=x.dtype)
            gen_masks.bernoulli_(1.0 - p).div_(1.0 - p)

        ext_tm = self.ext_time_major(ext_input, x.dtype)
        decode = self._decode_fast if impl == "fast" else self._decode_reference
        gen_states, gen_dropped, co_params, co_inputs = decode(ic_sample, ci, ext_tm, co_eps, gen_masks)
        # time-major -> batch-major
        gen_states = gen_states.transpose(0, 1)
        factors = self.generator.factors(gen_dropped.transpose(0, 1))
        params = self.readout(factors, session)
        if self.use_controller:
            co_mean, co_logvar = co_params.transpose(0, 1).chunk(2, dim=-1)
            co_std = torch.exp(0.5 * co_logvar)
            inferred = co_inputs.transpose(0, 1)
        else:
            co_mean = co_std = inferred = x.new_zeros(B, Tr, 0)
        return LFADSOutput(params, factors, gen_states, ic_mean, ic_std, co_mean, co_std, inferred)

    def encode(self, encod_data: torch.Tensor, session: int = 0, impl: str | None = None):
        """Read-in (with dropout in training mode) and both encoders: returns the IC posterior
        (mean, std; B x ic_dim each) and the controller inputs (B x T_r x 2 ci_enc_dim, or None
        without controller)."""
        impl = impl or self.execution.impl
        native = self.execution.native and impl == "fast"
        x = dropout(self.dropout, self.readin(encod_data, session), native)
        ic_mean, ic_std = self.ic_encoder(x, impl, native)
        ci = self.ci_encoder(x, self.cfg.recon_seq_len, impl, native) if self.use_controller else None
        return ic_mean, ic_std, ci

    def ext_time_major(self, ext_input: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """External inputs (B x T' x ext_dim) zero-padded to T_r bins, time-major; None without."""
        Tr = self.cfg.recon_seq_len
        if self.cfg.ext_input_dim <= 0:
            return None
        if ext_input is None:
            raise ValueError("this model expects external inputs (ext_input_dim > 0)")
        ext_input = ext_input.to(dtype)
        if ext_input.shape[1] < Tr:
            ext_input = F.pad(ext_input, (0, 0, 0, Tr - ext_input.shape[1]))
        return ext_input.transpose(0, 1)

    @torch.no_grad()
    def decode_repeated(self, ic_sample, ci, ext_tm, co_eps, impl: str | None = None):
        """Evaluation-mode decoder (no dropout) for ``k`` draws of each of B' trials at once.

        ic_sample: (k B') x ic_dim, row ``j B' + b`` is draw j of trial b; co_eps: T_r x (k B')
        x co_dim (or None for the posterior mean); ci (B' x T_r x ...) and ext_tm (T_r x B' x ...)
        of the B' trials.  Returns time-major gen states (T_r x k B' x gen_dim) and controller
        output params (T_r x k B' x 2 co_dim, or None).  The fast path uses the encodings of
        the B' trials for all draws without copying them."""
        impl = impl or self.execution.impl
        rows = ic_sample.shape[0]
        fast_repeats = impl == "fast" and self.use_controller  # the decoder scan broadcasts them
        if ci is not None and ci.shape[0] != rows and not fast_repeats:
            ci = ci.repeat(rows // ci.shape[0], 1, 1)
        if ext_tm is not None and ext_tm.shape[1] != rows and not fast_repeats:
            ext_tm = ext_tm.repeat(1, rows // ext_tm.shape[1], 1)
        decode = self._decode_fast if impl == "fast" else self._decode_reference
        gs, _, cps, _ = decode(ic_sample, ci, ext_tm, co_eps, None)
        return gs, cps

    def _initial_gen(self, ic_sample, gen_masks):
        g0 = self.generator.ic_to_g0(ic_sample)
        g0_drop = g0 * gen_masks[0] if gen_masks is not None else g0
        return g0, g0_drop

    def _decode_reference(self, ic_sample, ci, ext_tm, co_eps, gen_masks):
        """Plain loop.  Returns time-major gen states, dropped gen states,
        controller output params (T_r x B x 2co) and inferred inputs (T_r x B x co)."""
        gen, con = self.generator, self.controller
        B, Tr = ic_sample.shape[0], self.cfg.recon_seq_len
        g, g_drop = self._initial_gen(ic_sample, gen_masks)
        f = gen.factors(g_drop)
        h_con = con.initial_state(B) if con is not None else None
        states, dropped, co_ps, co_ins = [], [], [], []
        for t in range(Tr):
            gen_in = []
            if con is not None:
                h_con = con.cell(torch.cat([ci[:, t], f], dim=1), h_con)
                co_p = con.to_co(h_con)
                mean, logvar = co_p.chunk(2, dim=1)
                co = mean + torch.exp(0.5 * logvar) * co_eps[t] if co_eps is not None else mean
                gen_in.append(co)
                co_ps.append(co_p)
                co_ins.append(co)
            if ext_tm is not None:
                gen_in.append(ext_tm[t])
            gen_in = torch.cat(gen_in, dim=1) if gen_in else ic_sample.new_zeros(B, 0)
            g = gen.cell(gen_in, g)
            g_drop = g * gen_masks[t + 1] if gen_masks is not None else g
            f = gen.factors(g_drop)
            states.append(g)
            dropped.append(g_drop)
        co_params = torch.stack(co_ps) if co_ps else None
        co_inputs = torch.stack(co_ins) if co_ins else None
        return torch.stack(states), torch.stack(dropped), co_params, co_inputs

    def _decode_fast(self, ic_sample, ci, ext_tm, co_eps, gen_masks):
        """Same computation as :meth:`_decode_reference`: everything that does not
        depend on the recurrence is computed for all bins at once, and the
        recurrence itself runs in :func:`gru_scan` (no controller) or
        :class:`DecoderScan` (hand-written backward)."""
        gen, con = self.generator, self.controller
        cell_g = gen.cell
        B, Tr = ic_sample.shape[0], self.cfg.recon_seq_len
        co_dim = self.co_dim
        g0 = gen.ic_to_g0(ic_sample)
        # generator input side: external inputs (+ input bias) for all bins at once
        w_ih_g = cell_g.weight_ih
        if ext_tm is not None:
            gx = F.linear(ext_tm, w_ih_g[:, co_dim:], cell_g.bias_ih)
        else:
            gx = cell_g.bias_ih.expand(Tr, B, -1)
        if con is None:
            gs = gru_scan(gx.unsqueeze(0), g0.unsqueeze(0), cell_g.weight_hh.unsqueeze(0),
                          cell_g.bias_hh.unsqueeze(0), cell_g.clip, native=self.execution.native)[0]
            gds = gs * gen_masks[1:] if gen_masks is not None else gs
            return gs, gds, None, None
        cell_c = con.cell
        ci_dim = con.ci_dim
        cx = F.linear(ci.transpose(0, 1), cell_c.weight_ih[:, :ci_dim], cell_c.bias_ih)
        w_gc = cell_c.weight_ih[:, ci_dim:] @ gen.factor_matrix()  # dropped gen state -> controller input
        hc0 = con.initial_state(B)
        gs, gds, cps, cos = decoder_scan(
            g0, hc0, cx, gx, w_gc, cell_c.weight_hh, cell_c.bias_hh, con.to_co.weight, con.to_co.bias,
            w_ih_g[:, :co_dim], cell_g.weight_hh, cell_g.bias_hh, gen_masks, co_eps, cell_g.clip,
            cuda_graphs=self.execution.cuda_graphs, native=self.execution.native,
            triton=self.execution.triton,
        )
        return gs, gds, cps, cos

    # ------------------------------------------------------------------ losses
    def recon_nll(self, out: LFADSOutput, recon_data: torch.Tensor, constant: torch.Tensor | None = None,
                  missing: torch.Tensor | None = None) -> torch.Tensor:
        """Per-entry negative log-likelihood, B x T_r x N_r.  ``constant``: the likelihood's
        data-only term (:meth:`nll_constant`) of ``recon_data``, if cached.  ``missing``
        (B x T_r x N_r bool, e.g. ``torch.isnan(recon_data)``): entries not observed; their NLL
        is 0 and passes exactly zero gradient (recon_data may be NaN there), so sums over
        bins and channels count observed entries only.  None: every entry is observed."""
        data = recon_data.float()
        if missing is not None:
            data = data.masked_fill(missing, 0.0)  # a value every likelihood can evaluate
        if constant is None:
            nll = self.likelihood.nll(out.params.float(), data)
        else:
            nll = self.likelihood.nll(out.params.float(), data, constant)
        return nll if missing is None else nll.masked_fill(missing, 0.0)

    def nll_constant(self, recon_data: torch.Tensor, session: int = 0) -> torch.Tensor | None:
        """The data-only term of the per-entry NLL of ``recon_data`` (session ``session``'s
        channels), for caching: Poisson log k!, Gamma log x, ZIG log(x - s_min); None if the
        likelihood has none.  Entries not observed (NaN) get that of 0."""
        fn = getattr(self.likelihood, "constant", None)
        if fn is None:
            return None
        data = recon_data.float()
        data = data.masked_fill(torch.isnan(data), 0.0)
        return fn(data, self.readout.fixed(session)) if self.readout.n_fixed else fn(data)

    def predicted_mean(self, out: LFADSOutput) -> torch.Tensor:
        """Expected observation per entry (Poisson: counts/bin), B x T_r x N_r."""
        return self.likelihood.mean(out.params.float())

    def kl_ic(self, out: LFADSOutput) -> torch.Tensor:
        """KL(q(ic) || p(ic)) per trial, B."""
        return self.ic_prior.kl(out.ic_mean.float(), out.ic_std.float())

    def kl_co(self, out: LFADSOutput) -> torch.Tensor:
        """KL over inferred inputs per trial (summed over bins), B; zeros without controller."""
        if not self.use_controller:
            return out.ic_mean.new_zeros(out.ic_mean.shape[0]).float()
        return self.co_prior.kl(out.co_mean.float(), out.co_std.float())

    @staticmethod
    def _l2(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (w.float() ** 2).sum() / w.numel()

    def l2_gen(self) -> torch.Tensor:
        """0.5 * mean squared generator recurrent weight (orig. LFADS normalisation)."""
        return self._l2(self.generator.cell.weight_hh)

    def l2_con(self) -> torch.Tensor:
        """0.5 * mean squared controller recurrent weight; 0 without controller."""
        if not self.use_controller:
            return self.generator.cell.weight_hh.new_zeros(()).float()
        return self._l2(self.controller.cell.weight_hh)

    @torch.no_grad()
    def init_readout(self, recon_data: torch.Tensor, session: int = 0) -> None:
        """Start session ``session``'s readout from its training data (trials x T_r x N_r; NaN
        where an entry is not observed or held back, left out): the likelihood's fixed
        per-channel parameters (ZIG: s_min) and the bias at its initial values (Poisson: log of
        the mean count; see each likelihood).  A likelihood without ``initial_bias`` keeps the
        readout's random bias."""
        lik, data = self.likelihood, recon_data.float()
        if self.readout.n_fixed:
            self.readout.fixed(session).copy_(lik.fixed_params(data))
        initial_bias = getattr(lik, "initial_bias", None)
        if initial_bias is not None:
            self.readout.layers[session].bias.view(-1, lik.n_params).copy_(initial_bias(data))
