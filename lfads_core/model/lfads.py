"""The LFADS model: encoders -> (controller <-> generator) -> factors -> readout.

Shapes: B trials, T encoder bins, T_r = recon bins (T + forward-prediction
bins), N_in held-in channels, N_r recon channels (held-in first).
Rates are in expected counts per bin.

Two implementations of the same computation share all parameters:

* ``impl="reference"``: plain per-step loops (GRU cells for the encoders too);
  easy to read, used as the correctness reference.
* ``impl="fast"``: encoders via cuDNN ``nn.GRU`` on CUDA and a two-direction
  GRU scan elsewhere; for the controller/generator loop all input-side matmuls
  that do not depend on the recurrence are done for all bins at once before the
  loop, the factor->controller path is folded into one (gen_dim -> 3*con_dim)
  matrix, factors are computed for all bins after the loop, and the loop runs
  without autograd bookkeeping (buffers written in place, hand-written backward;
  weight gradients as one matmul over all bins after the backward loop).  All random draws (sampling noise, dropout masks) are made before the loop
  in the same order for both, so they agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .controller import Controller
from .encoders import CIEncoder, ICEncoder, gru_scan
from .generator import Generator, gru_forward_into, gru_backward_into
from .likelihoods import get_likelihood
from .priors import GaussianPrior, make_co_prior
from .readout import ReadIn, ReadOut

__all__ = ["LFADS", "LFADSOutput"]


@dataclass
class LFADSOutput:
    params: torch.Tensor  # B x T_r x N_r x n_params likelihood parameters (Poisson: log counts/bin)
    factors: torch.Tensor  # B x T_r x fac_dim
    gen_states: torch.Tensor  # B x T_r x gen_dim (before dropout)
    ic_mean: torch.Tensor  # B x ic_dim
    ic_std: torch.Tensor  # B x ic_dim
    co_mean: torch.Tensor  # B x T_r x co_dim (empty last dim without controller)
    co_std: torch.Tensor  # B x T_r x co_dim
    inferred_inputs: torch.Tensor  # B x T_r x co_dim: sampled (or mean) generator inputs


class _DecoderScan(torch.autograd.Function):
    """Controller + generator recurrence over T_r bins with a hand-written backward.

    Time-major inputs: g0 (B x G) initial generator state; hc0 (B x C) initial
    controller state; cx (T_r x B x 3C) controller input projection of the
    encodings (+ input bias); gx (T_r x B x 3G) generator input projection of
    external inputs (+ input bias); w_gc (3C x G) = controller factor-input weights
    @ factor matrix; w_hh_c, b_hh_c; w_co, b_co (controller -> inferred-input
    mean/logvar); w_cg (3G x K) inferred input -> generator; w_hh_g, b_hh_g;
    masks ((T_r+1) x B x G, pre-scaled dropout masks, or None); eps (T_r x B x K
    posterior noise, or None for the posterior mean).
    Returns gen states, dropped gen states (T_r x B x G), controller output
    params (T_r x B x 2K) and inferred inputs (T_r x B x K).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # recurrence in fp32 under autocast
    def forward(ctx, g0, hc0, cx, gx, w_gc, w_hh_c, b_hh_c, w_co, b_co, w_cg, w_hh_g, b_hh_g, masks, eps,
                clip: float):
        Tr, B, C3 = cx.shape
        C, G, K = C3 // 3, g0.shape[1], w_cg.shape[1]
        new = cx.new_empty
        gs, gds, rz_g, n_g, gh_g = new(Tr, B, G), new(Tr, B, G), new(Tr, B, 2 * G), new(Tr, B, G), new(Tr, B, 3 * G)
        hcs, rz_c, n_c, gh_c = new(Tr, B, C), new(Tr, B, 2 * C), new(Tr, B, C), new(Tr, B, 3 * C)
        cps, cos = new(Tr, B, 2 * K), new(Tr, B, K)
        stds = new(Tr, B, K) if eps is not None else None
        ac, ag = new(B, 3 * C), new(B, 3 * G)
        w_gc_t, w_hh_c_t, w_co_t, w_cg_t, w_hh_g_t = w_gc.t(), w_hh_c.t(), w_co.t(), w_cg.t(), w_hh_g.t()
        gd0 = g0 * masks[0] if masks is not None else g0
        g, hc, gd = g0, hc0, gd0
        for t in range(Tr):
            torch.addmm(cx[t], gd, w_gc_t, out=ac)
            torch.addmm(b_hh_c, hc, w_hh_c_t, out=gh_c[t])
            gru_forward_into(ac, gh_c[t], hc, clip, rz_c[t], n_c[t], hcs[t])
            hc = hcs[t]
            cp = cps[t]
            torch.addmm(b_co, hc, w_co_t, out=cp)
            if eps is not None:
                torch.exp(cp[:, K:] * 0.5, out=stds[t])
                torch.addcmul(cp[:, :K], stds[t], eps[t], out=cos[t])
            else:
                cos[t].copy_(cp[:, :K])
            torch.addmm(gx[t], cos[t], w_cg_t, out=ag)
            torch.addmm(b_hh_g, g, w_hh_g_t, out=gh_g[t])
            gru_forward_into(ag, gh_g[t], g, clip, rz_g[t], n_g[t], gs[t])
            g = gs[t]
            if masks is not None:
                torch.mul(g, masks[t + 1], out=gds[t])
            else:
                gds[t].copy_(g)
            gd = gds[t]
        ctx.save_for_backward(g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g,
                              gh_g, hcs, rz_c, n_c, gh_c, cos, stds)
        ctx.clip = clip
        return gs, gds, cps, cos

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, d_gs, d_gds, d_cps, d_cos):
        (g0, hc0, gd0, w_gc, w_hh_c, w_co, w_cg, w_hh_g, masks, eps, gs, gds, rz_g, n_g, gh_g, hcs, rz_c, n_c,
         gh_c, cos, stds) = ctx.saved_tensors
        clip = ctx.clip
        Tr, B, G = gs.shape
        C, K = hcs.shape[2], cos.shape[2]
        new = gs.new_empty
        dcx, dgh_c, dgx, dgh_g, dcp = new(Tr, B, 3 * C), new(Tr, B, 3 * C), new(Tr, B, 3 * G), new(Tr, B, 3 * G), \
            new(Tr, B, 2 * K)
        dg = torch.zeros_like(g0)
        dhc = torch.zeros_like(hc0)
        dgd_next = torch.zeros_like(g0)  # gradient reaching gd_t from the controller at t+1
        for t in range(Tr - 1, -1, -1):
            dgd = d_gds[t] + dgd_next
            dg = dg + d_gs[t] + (dgd * masks[t + 1] if masks is not None else dgd)
            g_prev = gs[t - 1] if t > 0 else g0
            dgz = gru_backward_into(dg, g_prev, gh_g[t], rz_g[t], n_g[t], clip, dgx[t], dgh_g[t])
            dg = torch.addmm(dgz, dgh_g[t], w_hh_g)
            dco = torch.addmm(d_cos[t], dgx[t], w_cg)
            torch.add(d_cps[t][:, :K], dco, out=dcp[t][:, :K])
            if eps is not None:
                torch.addcmul(d_cps[t][:, K:], dco * 0.5, eps[t] * stds[t], out=dcp[t][:, K:])
            else:
                dcp[t][:, K:] = d_cps[t][:, K:]
            dhc = torch.addmm(dhc, dcp[t], w_co)
            hc_prev = hcs[t - 1] if t > 0 else hc0
            dhz = gru_backward_into(dhc, hc_prev, gh_c[t], rz_c[t], n_c[t], clip, dcx[t], dgh_c[t])
            dhc = torch.addmm(dhz, dgh_c[t], w_hh_c)
            dgd_next = torch.mm(dcx[t], w_gc)
        dg0 = dg + (dgd_next * masks[0] if masks is not None else dgd_next)

        def wgrad(dpre, xs, x0):
            """sum_t dpre_t^T @ x_{t-1} with x_{-1} = x0."""
            n_out, n_in = dpre.shape[2], xs.shape[2]
            w = torch.mm(dpre[0].t(), x0)
            if Tr > 1:
                w.addmm_(dpre[1:].reshape(-1, n_out).t(), xs[:-1].reshape(-1, n_in))
            return w

        flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
        dw_gc = wgrad(dcx, gds, gd0)
        dw_hh_c = wgrad(dgh_c, hcs, hc0)
        dw_hh_g = wgrad(dgh_g, gs, g0)
        dw_co = torch.mm(flat(dcp).t(), flat(hcs))
        dw_cg = torch.mm(flat(dgx).t(), flat(cos))
        return (dg0, dhc, dcx, dgx, dw_gc, dw_hh_c, flat(dgh_c).sum(0), dw_co, flat(dcp).sum(0), dw_cg, dw_hh_g,
                flat(dgh_g).sum(0), None, None, None)


class LFADS(nn.Module):
    """Latent Factor Analysis via Dynamical Systems.

    Per-session read-in/read-out around a shared core; ``session`` picks them.
    ``cfg.con_dim == 0`` (or ``co_dim == 0``) removes the controller and the
    controller-input encoder: the generator is then driven only by its initial
    condition (and external inputs, if any).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
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
        self.readout = ReadOut(cfg.fac_dim, cfg.recon_data_dims, self.likelihood.n_params)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        encod_data: torch.Tensor,
        session: int = 0,
        ext_input: torch.Tensor | None = None,
        sample_posteriors: bool = True,
        impl: str | None = None,
    ) -> LFADSOutput:
        """encod_data: B x T x N_in (float counts, already augmented);
        ext_input: B x T_r x ext_dim (shorter inputs are zero-padded)."""
        cfg = self.cfg
        impl = impl or cfg.impl
        B = encod_data.shape[0]
        Tr = cfg.recon_seq_len
        x = self.dropout(self.readin(encod_data, session))
        ic_mean, ic_std = self.ic_encoder(x, impl)
        ci = self.ci_encoder(x, Tr, impl) if self.use_controller else None

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
        if self.training and p > 0:
            gen_masks = torch.empty(Tr + 1, B, cfg.gen_dim, device=x.device, dtype=x.dtype)
            gen_masks.bernoulli_(1.0 - p).div_(1.0 - p)

        if cfg.ext_input_dim > 0:
            if ext_input is None:
                raise ValueError("this model expects external inputs (ext_input_dim > 0)")
            ext_input = ext_input.to(x.dtype)
            if ext_input.shape[1] < Tr:
                ext_input = F.pad(ext_input, (0, 0, 0, Tr - ext_input.shape[1]))
            ext_tm = ext_input.transpose(0, 1)
        else:
            ext_tm = None

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
        :class:`_DecoderScan` (hand-written backward)."""
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
                          cell_g.bias_hh.unsqueeze(0), cell_g.clip)[0]
            gds = gs * gen_masks[1:] if gen_masks is not None else gs
            return gs, gds, None, None
        cell_c = con.cell
        ci_dim = con.ci_dim
        cx = F.linear(ci.transpose(0, 1), cell_c.weight_ih[:, :ci_dim], cell_c.bias_ih)
        w_gc = cell_c.weight_ih[:, ci_dim:] @ gen.factor_matrix()  # dropped gen state -> controller input
        hc0 = con.initial_state(B)
        gs, gds, cps, cos = _DecoderScan.apply(
            g0, hc0, cx, gx, w_gc, cell_c.weight_hh, cell_c.bias_hh, con.to_co.weight, con.to_co.bias,
            w_ih_g[:, :co_dim], cell_g.weight_hh, cell_g.bias_hh, gen_masks, co_eps, cell_g.clip,
        )
        return gs, gds, cps, cos

    # ------------------------------------------------------------------ losses
    def recon_nll(self, out: LFADSOutput, recon_data: torch.Tensor) -> torch.Tensor:
        """Per-entry negative log-likelihood, B x T_r x N_r."""
        return self.likelihood.nll(out.params.float(), recon_data.float())

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
    def init_readout_bias(self, mean_data: torch.Tensor, session: int = 0) -> None:
        """Start the readout at the per-channel data mean (N_r): log for Poisson."""
        layer = self.readout.layers[session]
        bias = layer.bias.view(-1, self.likelihood.n_params)
        if self.cfg.likelihood == "poisson":
            bias[:, 0] = torch.log(mean_data.clamp_min(1e-3))
        else:
            bias[:, 0] = mean_data
