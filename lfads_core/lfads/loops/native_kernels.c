/* The fast path's recurrences as compiled loops (execution loops: native; see native.py).
 *
 * Same computation as the Python loops of kernels.py (gate convention there): per step the
 * recurrent matmuls go to the BLAS sgemm_ that PyTorch itself uses (MKL inside libtorch_cpu),
 * and all elementwise gate arithmetic of a step is one fused pass over the rows (instead of
 * 10-20 separate tensor operations, each a few microseconds of dispatch on CPU).  exp, tanh
 * and sigmoid are branch-free polynomial approximations (Cephes' expf and tanhf, about 1-2 ulp)
 * so that the compiler can vectorise the passes; the results differ from PyTorch's in the last
 * bits of a float, not more.
 *
 * All arrays are float32, row-major and contiguous unless a stride says otherwise; "rows" are
 * trials (B), sizes in elements.  An input-side array x of a scan is given as a pointer with
 * a time stride st, a row stride sb and a row count bp: row b of step t is
 * x + t*st + (b % bp)*sb (a stride 0 broadcasts a bias; bp < B repeats B' trials for
 * posterior samples).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef long long i64;

/* Row passes of at least this many elements are split over the OpenMP threads (PyTorch's own
 * thread count, when built with OpenMP); smaller ones are not worth a fork.  The directions of
 * a scan run one per thread when there are several (each direction's matmuls and row passes
 * then single-threaded: cheaper than splitting every small step over the threads). */
#define PARALLEL_MIN 8192
#ifdef _OPENMP
#include <omp.h>
#define ROWS_PARALLEL(n) ((n) >= PARALLEL_MIN && !omp_in_parallel())
#define DIRECTIONS_PARALLEL(D) ((D) > 1 && omp_get_max_threads() > 1 && !omp_in_parallel())
#else
#define ROWS_PARALLEL(n) 0
#define DIRECTIONS_PARALLEL(D) 0
#endif

extern void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                   const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
                   const float *beta, float *c, const int *ldc);

/* C (M x N) = beta C + A (M x K) @ op(W): op(W) = W (stored K x N) or, with wt, W^T (W stored N x K). */
static void matmul(int M, int N, int K, const float *A, const float *W, int wt, float beta, float *C) {
    const float one = 1.0f;
    const int lda = K, ldw = wt ? K : N, ldc = N;
    /* column-major view: C^T (N x M) = op(W)^T (N x K) @ A^T (K x M) */
    sgemm_(wt ? "T" : "N", "N", &N, &M, &K, &one, W, &ldw, A, &lda, &beta, C, &ldc);
}

static inline float exp_f(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x; /* NaN passes both */
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - fx * 0.693359375f;
    r = r + fx * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)fx + 127) << 23;
    return p * scale.f;
}

static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

static inline float tanh_f(float x) {
    float big = 1.0f - 2.0f / (exp_f(2.0f * x) + 1.0f);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = x + x * z * p;
    return fabsf(x) < 0.625f ? small : big;
}

/* One GRU step of one row.  Input-side pre-activation: xa (with has_xa) + x (3H each).
 * gh (3H) holds h @ W_hh^T on entry and gets + b_hh.  Writes rz (2H: sigmoid gates r, z),
 * n (H: candidate) and h_out = n + z (h - n) (H), clamped to +-clip. */
static inline __attribute__((always_inline)) void gru_row(
    int has_xa, int H, const float *restrict xa, const float *restrict x, const float *restrict b_hh,
    float *restrict gh, const float *restrict h, float clip, float *restrict rz, float *restrict n,
    float *restrict h_out) {
    for (int j = 0; j < 2 * H; ++j) {
        float g = gh[j] + b_hh[j];
        gh[j] = g;
        rz[j] = sigmoid_f((has_xa ? xa[j] + x[j] : x[j]) + g);
    }
    for (int j = 0; j < H; ++j) {
        float g = gh[2 * H + j] + b_hh[2 * H + j];
        gh[2 * H + j] = g;
        float nv = tanh_f((has_xa ? xa[2 * H + j] + x[2 * H + j] : x[2 * H + j]) + rz[j] * g);
        n[j] = nv;
        float hv = nv + rz[H + j] * (h[j] - nv);
        hv = hv > clip ? clip : hv;
        h_out[j] = hv < -clip ? -clip : hv;
    }
}

/* gru_row for B rows: xa (B x 3H) may be NULL; row b of the input source is x + (b % bp) sb. */
static void gru_step(int B, int H, const float *xa, const float *x, i64 sb, int bp, const float *b_hh,
                     float *gh, const float *h, float clip, float *rz, float *n, float *h_out) {
    const i64 G = 3 * H;
#pragma omp parallel for schedule(static) if (ROWS_PARALLEL((i64)B * H))
    for (int b = 0; b < B; ++b) {
        const float *xb = x + (i64)(b % bp) * sb;
        if (xa)
            gru_row(1, H, xa + b * G, xb, b_hh, gh + b * G, h + (i64)b * H, clip, rz + (i64)b * 2 * H,
                    n + (i64)b * H, h_out + (i64)b * H);
        else
            gru_row(0, H, NULL, xb, b_hh, gh + b * G, h + (i64)b * H, clip, rz + (i64)b * 2 * H,
                    n + (i64)b * H, h_out + (i64)b * H);
    }
}

/* Backward of gru_row.  dh (H): on entry the gradient w.r.t. h_out (plus add, with has_add);
 * on exit its direct part towards h (dh z), to which the caller adds dgh @ W_hh.  Writes dx
 * (3H, input-side pre-activation) and dgh (3H). */
static inline __attribute__((always_inline)) void gru_row_backward(
    int has_add, int clipped, int H, float *restrict dh, const float *restrict add,
    const float *restrict h_prev, const float *restrict rz, const float *restrict n,
    const float *restrict gh, float clip, float *restrict dx, float *restrict dgh) {
    for (int j = 0; j < H; ++j) {
        float d = has_add ? dh[j] + add[j] : dh[j];
        float nv = n[j], zv = rz[H + j], rv = rz[j], hd = h_prev[j] - nv;
        if (clipped) d = fabsf(nv + zv * hd) <= clip ? d : 0.0f;
        float dpre_n = d * (1.0f - zv) * (1.0f - nv * nv);
        float dr = dpre_n * gh[2 * H + j] * (rv * (1.0f - rv));
        float dz = d * hd * (zv * (1.0f - zv));
        dx[j] = dr;
        dx[H + j] = dz;
        dx[2 * H + j] = dpre_n;
        dgh[j] = dr;
        dgh[H + j] = dz;
        dgh[2 * H + j] = dpre_n * rv;
        dh[j] = d * zv;
    }
}

/* gru_row_backward for B rows (all B x ..., but add, which may be NULL, has row stride add_sb). */
static void gru_step_backward(int B, int H, float *dh, const float *add, i64 add_sb, const float *h_prev,
                              const float *rz, const float *n, const float *gh, float clip, float *dx, float *dgh) {
    const int clipped = isfinite(clip);
    const i64 G = 3 * H;
#pragma omp parallel for schedule(static) if (ROWS_PARALLEL((i64)B * H))
    for (int b = 0; b < B; ++b) {
        float *dhb = dh + (i64)b * H, *dxb = dx + b * G, *dghb = dgh + b * G;
        const float *ab = add ? add + b * add_sb : NULL, *hp = h_prev + (i64)b * H;
        const float *rzb = rz + (i64)b * 2 * H, *nb = n + (i64)b * H, *ghb = gh + b * G;
        if (add && clipped)
            gru_row_backward(1, 1, H, dhb, ab, hp, rzb, nb, ghb, clip, dxb, dghb);
        else if (add)
            gru_row_backward(1, 0, H, dhb, ab, hp, rzb, nb, ghb, clip, dxb, dghb);
        else if (clipped)
            gru_row_backward(0, 1, H, dhb, ab, hp, rzb, nb, ghb, clip, dxb, dghb);
        else
            gru_row_backward(0, 0, H, dhb, ab, hp, rzb, nb, ghb, clip, dxb, dghb);
    }
}

/* ------------------------------------------------------------------------------- GRU scan */

/* Direction d of lfads_gru_scan_forward (arguments there). */
static void gru_scan_forward_direction(int d, int T, int B, int H, const float *x, i64 sd, i64 st, i64 sb, int bp,
                                       const float *h0, const float *w_hh, const float *b_hh, float clip, int save,
                                       float *hs, float *rz, float *n, float *gh) {
    const i64 BH = (i64)B * H, steps = save ? T : 1;
    x += d * sd, h0 += d * BH, w_hh += (i64)d * 3 * H * H, b_hh += (i64)d * 3 * H, hs += d * T * BH;
    rz += d * steps * 2 * BH, n += d * steps * BH, gh += d * steps * 3 * BH;
    for (int t = 0; t < T; ++t) {
        const i64 k = save ? t : 0;
        const float *h = t ? hs + (t - 1) * BH : h0;
        matmul(B, 3 * H, H, h, w_hh, 1, 0.0f, gh + k * 3 * BH);
        gru_step(B, H, NULL, x + t * st, sb, bp, b_hh, gh + k * 3 * BH, h, clip, rz + k * 2 * BH, n + k * BH,
                 hs + t * BH);
    }
}

/* D independent GRUs over T steps.  x (st, sb, bp per direction d at x + d*sd): input
 * projections incl. input bias (3H); h0 D x B x H; w_hh D x 3H x H; b_hh D x 3H.
 * Writes hs (D x T x B x H).  With save, rz (D x T x B x 2H), n (D x T x B x H) and gh
 * (D x T x B x 3H) keep every step's gates; without, they are one step's scratch (D x B x ...). */
void lfads_gru_scan_forward(int D, int T, int B, int H, const float *x, i64 sd, i64 st, i64 sb, int bp,
                            const float *h0, const float *w_hh, const float *b_hh, float clip, int save,
                            float *hs, float *rz, float *n, float *gh) {
    if (DIRECTIONS_PARALLEL(D)) {
#pragma omp parallel for schedule(static, 1)
        for (int d = 0; d < D; ++d)
            gru_scan_forward_direction(d, T, B, H, x, sd, st, sb, bp, h0, w_hh, b_hh, clip, save, hs, rz, n, gh);
    } else {
        for (int d = 0; d < D; ++d)
            gru_scan_forward_direction(d, T, B, H, x, sd, st, sb, bp, h0, w_hh, b_hh, clip, save, hs, rz, n, gh);
    }
}

/* Direction d of lfads_gru_scan_backward (arguments there). */
static void gru_scan_backward_direction(int d, int T, int B, int H, const float *grad_hs, i64 g_sd, i64 g_st,
                                        i64 g_sb, const float *h0, const float *w_hh, const float *hs,
                                        const float *rz, const float *n, const float *gh, float clip, float *dx,
                                        float *dgh, float *dh) {
    const i64 BH = (i64)B * H, TBH = (i64)T * BH;
    grad_hs += d * g_sd, h0 += d * BH, w_hh += (i64)d * 3 * H * H, hs += d * TBH, rz += d * 2 * TBH;
    n += d * TBH, gh += d * 3 * TBH, dx += d * 3 * TBH, dgh += d * 3 * TBH, dh += d * BH;
    for (int t = T - 1; t >= 0; --t) {
        gru_step_backward(B, H, dh, grad_hs + t * g_st, g_sb, t ? hs + (t - 1) * BH : h0, rz + t * 2 * BH,
                          n + t * BH, gh + t * 3 * BH, clip, dx + t * 3 * BH, dgh + t * 3 * BH);
        matmul(B, H, 3 * H, dgh + t * 3 * BH, w_hh, 0, 1.0f, dh);
    }
}

/* Backward of lfads_gru_scan_forward (with save).  grad_hs D x T x B x H with strides g_sd,
 * g_st, g_sb (unit stride within a row).  Writes dx and dgh (D x T x B x 3H) and dh (D x B x H,
 * zero on entry): the gradient w.r.t. h0. */
void lfads_gru_scan_backward(int D, int T, int B, int H, const float *grad_hs, i64 g_sd, i64 g_st, i64 g_sb,
                             const float *h0, const float *w_hh, const float *hs, const float *rz, const float *n,
                             const float *gh, float clip, float *dx, float *dgh, float *dh) {
    if (DIRECTIONS_PARALLEL(D)) {
#pragma omp parallel for schedule(static, 1)
        for (int d = 0; d < D; ++d)
            gru_scan_backward_direction(d, T, B, H, grad_hs, g_sd, g_st, g_sb, h0, w_hh, hs, rz, n, gh, clip, dx,
                                        dgh, dh);
    } else {
        for (int d = 0; d < D; ++d)
            gru_scan_backward_direction(d, T, B, H, grad_hs, g_sd, g_st, g_sb, h0, w_hh, hs, rz, n, gh, clip, dx,
                                        dgh, dh);
    }
}

/* ---------------------------------------------------------------------------- decoder scan */

/* The controller + generator loop of decoder_scan.py's _decoder_forward (shapes there; C, G, K the
 * controller, generator and inferred-input sizes).  cx and gx are sources (st, sb, bp).
 * gd0 = g0 (* masks[0]); masks (Tr+1) x B x G or NULL; eps Tr x B x K or NULL.
 * Outputs gs, gds (Tr x B x G; gds may be gs when masks is NULL), cps (Tr x B x 2K), cos
 * (Tr x B x K).  With save: hcs (Tr x B x C), the gates rz_c, n_c, gh_c, rz_g, n_g, gh_g
 * (Tr x B x ...) and stds (Tr x B x K, with eps) for the backward; without: the gates and stds are
 * one step's scratch (B x ...) and hcs two steps' (2 x B x C).  ac (B x 3C), ag (B x 3G): scratch. */
void lfads_decoder_forward(int B, int Tr, int C, int G, int K, const float *g0, const float *hc0,
                           const float *gd0, const float *cx, i64 cx_st, i64 cx_sb, int cx_bp,
                           const float *gx, i64 gx_st, i64 gx_sb, int gx_bp, const float *w_gc,
                           const float *w_hh_c, const float *b_hh_c, const float *w_co, const float *b_co,
                           const float *w_cg, const float *w_hh_g, const float *b_hh_g, const float *masks,
                           const float *eps, float clip, int save, float *gs, float *gds, float *cps,
                           float *cos_, float *hcs, float *rz_c, float *n_c, float *gh_c, float *rz_g,
                           float *n_g, float *gh_g, float *stds, float *ac, float *ag) {
    const i64 BC = (i64)B * C, BG = (i64)B * G, BK = (i64)B * K;
    for (int t = 0; t < Tr; ++t) {
        const i64 k = save ? t : 0;
        const float *gd = t ? gds + (t - 1) * BG : gd0, *g = t ? gs + (t - 1) * BG : g0;
        const float *hc = t ? hcs + (save ? t - 1 : (t - 1) % 2) * BC : hc0;
        float *hc_new = hcs + (save ? t : t % 2) * BC;
        float *cp = cps + t * 2 * BK, *co = cos_ + t * BK, *std = stds ? stds + k * BK : NULL;
        /* controller */
        matmul(B, 3 * C, G, gd, w_gc, 1, 0.0f, ac);
        matmul(B, 3 * C, C, hc, w_hh_c, 1, 0.0f, gh_c + k * 3 * BC);
        gru_step(B, C, ac, cx + t * cx_st, cx_sb, cx_bp, b_hh_c, gh_c + k * 3 * BC, hc, clip,
                 rz_c + k * 2 * BC, n_c + k * BC, hc_new);
        /* inferred input: posterior mean and log-variance, a sample with eps */
        matmul(B, 2 * K, C, hc_new, w_co, 1, 0.0f, cp);
        for (int b = 0; b < B; ++b) {
            float *cpb = cp + (i64)b * 2 * K, *cob = co + (i64)b * K;
            for (int j = 0; j < 2 * K; ++j) cpb[j] += b_co[j];
            if (eps) {
                const float *eb = eps + t * BK + (i64)b * K;
                float *sdb = std + (i64)b * K;
                for (int j = 0; j < K; ++j) {
                    sdb[j] = expf(cpb[K + j] * 0.5f);
                    cob[j] = cpb[j] + sdb[j] * eb[j];
                }
            } else {
                for (int j = 0; j < K; ++j) cob[j] = cpb[j];
            }
        }
        /* generator */
        matmul(B, 3 * G, K, co, w_cg, 1, 0.0f, ag);
        matmul(B, 3 * G, G, g, w_hh_g, 1, 0.0f, gh_g + k * 3 * BG);
        gru_step(B, G, ag, gx + t * gx_st, gx_sb, gx_bp, b_hh_g, gh_g + k * 3 * BG, g, clip,
                 rz_g + k * 2 * BG, n_g + k * BG, gs + t * BG);
        if (masks) {
            const float *m = masks + (t + 1) * BG, *gt = gs + t * BG;
            float *gdt = gds + t * BG;
            for (i64 i = 0; i < BG; ++i) gdt[i] = gt[i] * m[i];
        } else if (gds != gs) {
            memcpy(gds + t * BG, gs + t * BG, sizeof(float) * BG);
        }
    }
}

/* Backward of lfads_decoder_forward (with save): the loop of decoder_scan.py's _decoder_backward.
 * d_gs, d_gds (Tr x B x G), d_cps (Tr x B x 2K), d_cos (Tr x B x K): incoming gradients, each
 * with its time and row strides (sg[0..7]: d_gs st, sb, d_gds st, sb, ...; unit stride in a row).
 * Writes dcx, dgh_c (Tr x B x 3C), dgx, dgh_g (Tr x B x 3G), dcp (Tr x B x 2K), dg (B x G: the
 * gradient w.r.t. g0) and dhc (B x C: w.r.t. hc0); dg, dhc zero on entry.  dgd_next (B x G) and
 * dco (B x K): scratch. */
void lfads_decoder_backward(int B, int Tr, int C, int G, int K, const float *g0, const float *hc0,
                            const float *w_gc, const float *w_hh_c, const float *w_co, const float *w_cg,
                            const float *w_hh_g, const float *masks, const float *eps, const float *gs,
                            const float *rz_g, const float *n_g, const float *gh_g, const float *hcs,
                            const float *rz_c, const float *n_c, const float *gh_c, const float *stds,
                            float clip, const float *d_gs, const float *d_gds, const float *d_cps,
                            const float *d_cos, const i64 *sg, float *dcx, float *dgh_c, float *dgx,
                            float *dgh_g, float *dcp, float *dg, float *dhc, float *dgd_next, float *dco) {
    const i64 BC = (i64)B * C, BG = (i64)B * G, BK = (i64)B * K;
    memset(dgd_next, 0, sizeof(float) * BG);
    for (int t = Tr - 1; t >= 0; --t) {
        /* gradient reaching the generator state: its own, and through the dropped state */
        const float *m = masks ? masks + (t + 1) * BG : NULL;
        for (int b = 0; b < B; ++b) {
            const float *dgs = d_gs + t * sg[0] + b * sg[1], *dgds = d_gds + t * sg[2] + b * sg[3];
            const float *dn = dgd_next + (i64)b * G, *mb = m ? m + (i64)b * G : NULL;
            float *dgb = dg + (i64)b * G;
            for (int j = 0; j < G; ++j) {
                float dgd = dgds[j] + dn[j];
                dgb[j] += dgs[j] + (mb ? dgd * mb[j] : dgd);
            }
        }
        gru_step_backward(B, G, dg, NULL, 0, t ? gs + (t - 1) * BG : g0, rz_g + t * 2 * BG, n_g + t * BG,
                          gh_g + t * 3 * BG, clip, dgx + t * 3 * BG, dgh_g + t * 3 * BG);
        matmul(B, G, 3 * G, dgh_g + t * 3 * BG, w_hh_g, 0, 1.0f, dg);
        /* inferred input -> controller output parameters */
        for (int b = 0; b < B; ++b)
            memcpy(dco + (i64)b * K, d_cos + t * sg[6] + b * sg[7], sizeof(float) * K);
        matmul(B, K, 3 * G, dgx + t * 3 * BG, w_cg, 0, 1.0f, dco);
        for (int b = 0; b < B; ++b) {
            const float *dcb = dco + (i64)b * K, *dpb = d_cps + t * sg[4] + b * sg[5];
            float *out = dcp + t * 2 * BK + (i64)b * 2 * K;
            for (int j = 0; j < K; ++j) out[j] = dpb[j] + dcb[j];
            if (eps) {
                const float *eb = eps + t * BK + (i64)b * K, *sb = stds + t * BK + (i64)b * K;
                for (int j = 0; j < K; ++j) out[K + j] = dpb[K + j] + (dcb[j] * 0.5f) * (eb[j] * sb[j]);
            } else {
                for (int j = 0; j < K; ++j) out[K + j] = dpb[K + j];
            }
        }
        matmul(B, C, 2 * K, dcp + t * 2 * BK, w_co, 0, 1.0f, dhc);
        /* controller */
        gru_step_backward(B, C, dhc, NULL, 0, t ? hcs + (t - 1) * BC : hc0, rz_c + t * 2 * BC, n_c + t * BC,
                          gh_c + t * 3 * BC, clip, dcx + t * 3 * BC, dgh_c + t * 3 * BC);
        matmul(B, C, 3 * C, dgh_c + t * 3 * BC, w_hh_c, 0, 1.0f, dhc);
        matmul(B, G, 3 * C, dcx + t * 3 * BC, w_gc, 0, 0.0f, dgd_next);
    }
    const float *m0 = masks;
    for (i64 i = 0; i < BG; ++i) dg[i] += m0 ? dgd_next[i] * m0[i] : dgd_next[i];
}

/* ------------------------------------------------------------------------------ dropout */

static inline uint32_t mix32(uint32_t x) { /* an integer hash with low bias (Wellons' lowbias32) */
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static inline int dropout_keep(i64 i, uint32_t k0, uint32_t k1, uint32_t threshold) {
    return (mix32(mix32((uint32_t)i ^ k0) + k1 + (uint32_t)(i >> 32)) >> 8) >= threshold;
}

/* Element i of a dropout draw is kept with probability 1 - rate (to 2^-24): a hash of (seed, i),
 * so a draw depends on the seed alone, not on the thread count. */
#define DROPOUT_KEYS                                                           \
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);          \
    const uint32_t threshold = (uint32_t)((double)rate * 16777216.0);         \
    const float scale = 1.0f / (1.0f - rate);

/* An inverted-dropout mask of n elements: 1 / (1 - rate) where kept, else 0. */
void lfads_dropout_mask(float *out, i64 n, float rate, unsigned long long seed) {
    DROPOUT_KEYS
#pragma omp parallel for schedule(static) if (n >= 8 * PARALLEL_MIN)
    for (i64 i = 0; i < n; ++i) out[i] = dropout_keep(i, k0, k1, threshold) ? scale : 0.0f;
}

/* Dropout of x (n elements): y = x / (1 - rate) where kept, else 0; keep (n bytes) records it. */
void lfads_dropout_forward(const float *x, float *y, unsigned char *keep, i64 n, float rate,
                           unsigned long long seed) {
    DROPOUT_KEYS
#pragma omp parallel for schedule(static) if (n >= 8 * PARALLEL_MIN)
    for (i64 i = 0; i < n; ++i) {
        const int k = dropout_keep(i, k0, k1, threshold);
        keep[i] = (unsigned char)k;
        y[i] = k ? x[i] * scale : 0.0f;
    }
}

/* Its backward: dx = dy / (1 - rate) where kept, else 0. */
void lfads_dropout_backward(const float *dy, const unsigned char *keep, float *dx, i64 n, float rate) {
    const float scale = 1.0f / (1.0f - rate);
#pragma omp parallel for schedule(static) if (n >= 8 * PARALLEL_MIN)
    for (i64 i = 0; i < n; ++i) dx[i] = keep[i] ? dy[i] * scale : 0.0f;
}
