// op_conv.c: 2-D convolution (cross-correlation, as torch's conv2d) on NCHW,
// forward and backward, with stride, zero padding, dilation and groups.
// Shapes: inp (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC),
// out (N, OC, OH, OW), OH = (H + 2 PH - DH (KH-1) - 1) / SH + 1 (same for OW).
//
// Four paths, chosen from the geometry alone:
// - Winograd F(4x4, 3x3) (op_winograd.c) for 3x3, stride 1, dilation 1,
//   ungrouped convolutions with 16k input and output channels, when the CPU
//   has AVX-512: forward, input gradient and weight gradient (each can be
//   switched off: NETSMITH_WINOGRAD, ns_conv2d_set_winograd). Its rounding
//   differs from the direct sum's: about 1e-5 of the rms output at worst
//   against ~2e-6 (test_ops prints both).
// - packed (the usual one otherwise): every product is a sum of ns_tile_gemm_rows
//   tiles (lib/base/blas.h: netsmith's AVX-512 32x8 tile, or BLIS's microkernel)
//   reading the images in place through tables of row offsets, so there is no
//   im2col matrix to write and then repack. Samples are split over OpenMP
//   threads (dynamic schedule); each thread has its own slice of scratch and
//   runs the tiles single-threaded. Per sample and group:
//   forward   out (pixels x OC) = patches (pixels x taps) W^T. The input is
//             copied into zero-padded planes, split by stride into SH x SW
//             phase planes (padded[r*SH + a][s*SW + b] in phase (a, b)), and
//             the output is computed on the phase grid (OH x Wph positions;
//             the columns past OW are thrown away). There each tap of 32
//             consecutive positions is 32 consecutive floats of one phase
//             plane: a tile row read in place.
//   dinp      by input phase: the pixels of phase (a, b) receive a stride-1
//             correlation of dout (padded) with the taps of that phase (with
//             stride 1, one phase: the transposed convolution), the same
//             machinery as forward; each dinp element is written by one tile.
//   dweight   dW^T (taps x OC) += patches^T dout^T, summing over pixels: tile
//             rows are pixels of a padded NHWC copy of the input, where a
//             tap's channels are consecutive floats, and dout is read in
//             place. Each chunk of samples (at most MAX_CHUNKS, fixed by N
//             alone) sums into its own partial dW; the partials are added in
//             chunk order.
//   Every output element is computed by one thread in a fixed order, so the
//   results do not depend on the thread count. While one sample computes,
//   the next sample's data is prefetched: a layer's activations come from
//   DRAM sample after sample. Measured on resnet20 (one core, AVX-512):
//   165-205 GFLOP/s per 3x3 layer against ~265 for the tile alone.
// - plain, for tiny problems (fewer than PACKED_MIN_PIXELS output pixels in
//   the batch, where the packed path's fixed costs dominate): im2col per
//   (sample, group) into scratch (C/G*KH*KW, OH*OW), then ns_sgemm; backward
//   dW += dout col^T, dcol = W^T dout and col2im. A 1x1, stride 1, unpadded
//   convolution uses the input plane as the column matrix. This path is also
//   the readable reference for the packed one.
// - direct, C/G == 1 and OC/G == 1 (depthwise): each output plane depends on
//   one input plane and KH*KW weights. There is no dense product here; N*C
//   one-row sgemm calls would cost more than the arithmetic, so a plain loop
//   per (sample, channel) does it.
//
// ns_conv2d_forward_ex applies an epilogue (a folded eval-mode batch norm, a
// residual add, a relu, the per-plane statistics a training-mode batch norm
// needs) to each sample's output right after it is computed, while it is in
// cache; the arithmetic is that of the separate ops (see ops.h).
#include "nn/ops.h"
#include "base/tensor.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "base/blas.h"

#define OMP_MIN 32768
#define PACKED_MIN_PIXELS 16 // N*OH*OW below this: the plain path
#define MAX_CHUNKS 16        // backward work units, each with its own partial dW
#define KC 256               // pixels per dW panel

int ns_conv2d_geom_init(ns_conv2d_geom *g, ns_err *err) {
    if (g->N < 1 || g->C < 1 || g->H < 1 || g->W < 1 || g->OC < 1 || g->KH < 1 || g->KW < 1)
        return ns_errf(err, "conv2d: sizes must be positive (N %lld C %lld H %lld W %lld "
                            "OC %lld KH %lld KW %lld)",
                       (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W,
                       (long long)g->OC, (long long)g->KH, (long long)g->KW);
    if (g->SH < 1 || g->SW < 1 || g->DH < 1 || g->DW < 1 || g->PH < 0 || g->PW < 0)
        return ns_errf(err, "conv2d: stride and dilation must be >= 1 and padding >= 0 "
                            "(stride %lldx%lld, dilation %lldx%lld, padding %lldx%lld)",
                       (long long)g->SH, (long long)g->SW, (long long)g->DH,
                       (long long)g->DW, (long long)g->PH, (long long)g->PW);
    if (g->G < 1 || g->C % g->G || g->OC % g->G)
        return ns_errf(err, "conv2d: groups (%lld) must divide input channels (%lld) and "
                            "output channels (%lld)",
                       (long long)g->G, (long long)g->C, (long long)g->OC);
    const int64_t big = (int64_t)1 << 31;
    if (g->H > big || g->W > big || g->KH > big || g->KW > big || g->SH > big ||
        g->SW > big || g->PH > big || g->PW > big || g->DH > big || g->DW > big)
        return ns_errf(err, "conv2d: a size exceeds 2^31");
    int64_t eh = g->DH * (g->KH - 1) + 1, ew = g->DW * (g->KW - 1) + 1;
    if (g->H + 2 * g->PH < eh || g->W + 2 * g->PW < ew)
        return ns_errf(err, "conv2d: dilated kernel %lldx%lld is larger than the padded "
                            "input %lldx%lld",
                       (long long)eh, (long long)ew, (long long)(g->H + 2 * g->PH),
                       (long long)(g->W + 2 * g->PW));
    g->OH = (g->H + 2 * g->PH - eh) / g->SH + 1;
    g->OW = (g->W + 2 * g->PW - ew) / g->SW + 1;
    int64_t t;
    if (__builtin_mul_overflow(g->N, g->C, &t) || __builtin_mul_overflow(t, g->H, &t) ||
        __builtin_mul_overflow(t, g->W, &t) || __builtin_mul_overflow(g->N, g->OC, &t) ||
        __builtin_mul_overflow(t, g->OH, &t) || __builtin_mul_overflow(t, g->OW, &t) ||
        __builtin_mul_overflow(g->C, g->KH, &t) || __builtin_mul_overflow(t, g->KW, &t) ||
        __builtin_mul_overflow(t, g->OH, &t) || __builtin_mul_overflow(t, g->OW, &t) ||
        __builtin_mul_overflow(g->OC, g->C, &t) || __builtin_mul_overflow(t, g->KH, &t) ||
        __builtin_mul_overflow(t, g->KW, &t))
        return ns_errf(err, "conv2d: tensor sizes overflow");
    return 0;
}

static int path_direct(const ns_conv2d_geom *g) { return g->C == g->G && g->OC == g->G; }

static int path_1x1(const ns_conv2d_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PH == 0 && g->PW == 0;
}

static int path_packed(const ns_conv2d_geom *g) {
    return !path_direct(g) && g->N * g->OH * g->OW >= PACKED_MIN_PIXELS;
}

// The output positions o in [*lo, *hi) whose input index o*stride + off lies in
// [0, size): one kernel tap's valid range along one axis.
static void valid_range(int64_t off, int64_t stride, int64_t size, int64_t nout, int64_t *lo,
                        int64_t *hi) {
    int64_t l = off < 0 ? (-off + stride - 1) / stride : 0;
    int64_t h = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
    if (h > nout) h = nout;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

// ----------------------------------------------------------------------------
// plain path: im2col / col2im for Cg channels of one sample.

static void im2col(float *col,       // (Cg*KH*KW, OH*OW)
                   const float *x,   // (Cg, H, W)
                   int64_t Cg, const ns_conv2d_geom *g) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t rows = Cg * KH * KW, OHW = OH * OW;
    for (int64_t r = 0; r < rows; r++) {
        int64_t kw = r % KW, kh = r / KW % KH, c = r / (KW * KH);
        const float *xc = x + c * H * W;
        int64_t offh = kh * g->DH - g->PH, offw = kw * g->DW - g->PW, wlo, whi;
        valid_range(offw, g->SW, W, OW, &wlo, &whi);
        float *dst = col + r * OHW;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *d = dst + oh * OW;
            int64_t ih = oh * g->SH + offh;
            if (ih < 0 || ih >= H) {
                for (int64_t ow = 0; ow < OW; ow++) d[ow] = 0.0f;
                continue;
            }
            const float *xr = xc + ih * W;
            for (int64_t ow = 0; ow < wlo; ow++) d[ow] = 0.0f;
            for (int64_t ow = wlo; ow < whi; ow++) d[ow] = xr[offw + ow * g->SW];
            for (int64_t ow = whi; ow < OW; ow++) d[ow] = 0.0f;
        }
    }
}

// dx += col2im(col).
static void col2im(float *dx,        // (Cg, H, W)
                   const float *col, // (Cg*KH*KW, OH*OW)
                   int64_t Cg, const ns_conv2d_geom *g) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t OHW = OH * OW;
    for (int64_t c = 0; c < Cg; c++) {
        float *dxc = dx + c * H * W;
        for (int64_t kh = 0; kh < KH; kh++) {
            for (int64_t kw = 0; kw < KW; kw++) {
                const float *src = col + ((c * KH + kh) * KW + kw) * OHW;
                int64_t offh = kh * g->DH - g->PH, offw = kw * g->DW - g->PW, wlo, whi;
                valid_range(offw, g->SW, W, OW, &wlo, &whi);
                for (int64_t oh = 0; oh < OH; oh++) {
                    int64_t ih = oh * g->SH + offh;
                    if (ih < 0 || ih >= H) continue;
                    float *xr = dxc + ih * W;
                    const float *s = src + oh * OW;
                    for (int64_t ow = wlo; ow < whi; ow++) xr[offw + ow * g->SW] += s[ow];
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// direct path (C/G == OC/G == 1): plane c of the output from plane c of the input.

static void direct_forward(float *out, const float *inp, const float *weight,
                           const float *bias, const ns_conv2d_geom *g) {
    const int64_t N = g->N, C = g->C, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int64_t KH = g->KH, KW = g->KW;
#pragma omp parallel for collapse(2) schedule(static) if (N * C * OH * OW * KH * KW >= OMP_MIN)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t c = 0; c < C; c++) {
            const float *x = inp + (n * C + c) * H * W;
            const float *w = weight + c * KH * KW;
            float *o = out + (n * C + c) * OH * OW;
            float b = bias ? bias[c] : 0.0f;
            for (int64_t i = 0; i < OH * OW; i++) o[i] = b;
            for (int64_t kh = 0; kh < KH; kh++) {
                for (int64_t kw = 0; kw < KW; kw++) {
                    float wv = w[kh * KW + kw];
                    int64_t offh = kh * g->DH - g->PH, offw = kw * g->DW - g->PW, wlo, whi;
                    valid_range(offw, g->SW, W, OW, &wlo, &whi);
                    for (int64_t oh = 0; oh < OH; oh++) {
                        int64_t ih = oh * g->SH + offh;
                        if (ih < 0 || ih >= H) continue;
                        const float *xr = x + ih * W;
                        float *orow = o + oh * OW;
                        for (int64_t ow = wlo; ow < whi; ow++)
                            orow[ow] += wv * xr[offw + ow * g->SW];
                    }
                }
            }
        }
    }
}

static void direct_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const ns_conv2d_geom *g) {
    const int64_t N = g->N, C = g->C, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int64_t KH = g->KH, KW = g->KW;
    const int64_t work = N * C * OH * OW * KH * KW;
    if (dinp) {
#pragma omp parallel for collapse(2) schedule(static) if (work >= OMP_MIN)
        for (int64_t n = 0; n < N; n++) {
            for (int64_t c = 0; c < C; c++) {
                float *dx = dinp + (n * C + c) * H * W;
                const float *w = weight + c * KH * KW;
                const float *d = dout + (n * C + c) * OH * OW;
                for (int64_t kh = 0; kh < KH; kh++) {
                    for (int64_t kw = 0; kw < KW; kw++) {
                        float wv = w[kh * KW + kw];
                        int64_t offh = kh * g->DH - g->PH, offw = kw * g->DW - g->PW, wlo, whi;
                        valid_range(offw, g->SW, W, OW, &wlo, &whi);
                        for (int64_t oh = 0; oh < OH; oh++) {
                            int64_t ih = oh * g->SH + offh;
                            if (ih < 0 || ih >= H) continue;
                            float *xr = dx + ih * W;
                            const float *drow = d + oh * OW;
                            for (int64_t ow = wlo; ow < whi; ow++)
                                xr[offw + ow * g->SW] += wv * drow[ow];
                        }
                    }
                }
            }
        }
    }
    if (dweight) {
#pragma omp parallel for schedule(static) if (work >= OMP_MIN)
        for (int64_t c = 0; c < C; c++) {
            for (int64_t kh = 0; kh < KH; kh++) {
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t offh = kh * g->DH - g->PH, offw = kw * g->DW - g->PW, wlo, whi;
                    valid_range(offw, g->SW, W, OW, &wlo, &whi);
                    double s = 0;
                    for (int64_t n = 0; n < N; n++) {
                        const float *x = inp + (n * C + c) * H * W;
                        const float *d = dout + (n * C + c) * OH * OW;
                        for (int64_t oh = 0; oh < OH; oh++) {
                            int64_t ih = oh * g->SH + offh;
                            if (ih < 0 || ih >= H) continue;
                            const float *xr = x + ih * W;
                            const float *drow = d + oh * OW;
                            float rs = 0.0f;
                            for (int64_t ow = wlo; ow < whi; ow++)
                                rs += drow[ow] * xr[offw + ow * g->SW];
                            s += rs;
                        }
                    }
                    dweight[c * KH * KW + kh * KW + kw] += (float)s;
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// plain path

static void plain_forward(float *out, float *scratch, const float *inp, const float *weight,
                          const float *bias, const ns_conv2d_geom *g) {
    const int64_t N = g->N, C = g->C, OC = g->OC, G = g->G, HW = g->H * g->W;
    const int64_t Cg = C / G, OCg = OC / G, OHW = g->OH * g->OW;
    const int64_t Kdim = Cg * g->KH * g->KW;
    const int fast = path_1x1(g);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * C + grp * Cg) * HW;
            const float *col = x; // (Kdim, OHW)
            if (!fast) {
                im2col(scratch, x, Cg, g);
                col = scratch;
            }
            ns_sgemm(0, 0, OCg, OHW, Kdim, 1.0f, weight + grp * OCg * Kdim, Kdim, col, OHW,
                     0.0f, out + (n * OC + grp * OCg) * OHW, OHW);
        }
    }
    if (!bias) return;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t oc = 0; oc < OC; oc++) {
            float *o = out + (n * OC + oc) * OHW, b = bias[oc];
            for (int64_t i = 0; i < OHW; i++) o[i] += b;
        }
    }
}

static void plain_backward(float *dinp, float *dweight, float *scratch, const float *dout,
                           const float *inp, const float *weight, const ns_conv2d_geom *g) {
    const int64_t N = g->N, C = g->C, OC = g->OC, G = g->G, HW = g->H * g->W;
    const int64_t Cg = C / G, OCg = OC / G, OHW = g->OH * g->OW;
    const int64_t Kdim = Cg * g->KH * g->KW;
    const int fast = path_1x1(g);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *dy = dout + (n * OC + grp * OCg) * OHW; // (OCg, OHW)
            const float *w = weight + grp * OCg * Kdim;          // (OCg, Kdim)
            if (dweight) {
                const float *x = inp + (n * C + grp * Cg) * HW;
                const float *col = x;
                if (!fast) {
                    im2col(scratch, x, Cg, g);
                    col = scratch;
                }
                // dW_g (OCg, Kdim) += dy (OCg, OHW) @ col^T (OHW, Kdim)
                ns_sgemm(0, 1, OCg, Kdim, OHW, 1.0f, dy, OHW, col, OHW, 1.0f,
                         dweight + grp * OCg * Kdim, Kdim);
            }
            if (dinp) {
                float *dx = dinp + (n * C + grp * Cg) * HW;
                // dcol (Kdim, OHW) = W_g^T (Kdim, OCg) @ dy (OCg, OHW)
                if (fast) {
                    ns_sgemm(1, 0, Kdim, OHW, OCg, 1.0f, w, Kdim, dy, OHW, 1.0f, dx, OHW);
                } else {
                    ns_sgemm(1, 0, Kdim, OHW, OCg, 1.0f, w, Kdim, dy, OHW, 0.0f, scratch, OHW);
                    col2im(dx, scratch, Cg, g);
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// packed path: the plan (sizes and scratch layout, from the geometry alone)

typedef struct plan {
    int64_t TP, TQ;           // microkernel tile: TP rows (pixels or taps) x TQ columns
    int64_t Cg, OCg, Kd;      // channels per group; Kd = Cg*KH*KW taps
    int64_t HW, OHW;
    int rows;                 // the tile kernel reads rows in place (ns_tile_gemm_rows)
    // forward: the zero-padded input (Hp x Wp) split into SH x SW phase
    // planes (Hph x Wph, stride PL; a channel's phases Lp apart); output grid
    // of npos = OH x Wph positions in ntiles tiles
    int64_t Hp, Wp, Hph, Wph, PL, Lp, npos, ntiles, nq_f;
    // dinp, by input phase (see dinp_sample): dout padded (Hq x Wq, plane
    // stride Lq, the image at row Emax - RS, column Fmax - CS); Kb = OCg*KH*KW
    // taps over all phases; nq_b tiles of input channels
    int64_t Emax, Fmax, RS, CS, Hq, Wq, Lq, Kb, nq_b, nph;
    // dweight: tap tiles, channel tiles, chunks of samples
    int64_t nt_w, nq_w, nchunks, chunk;
    int threads;
    // scratch (floats from the 64-byte aligned base): packed weights, partial
    // dW, then one slice per thread
    int64_t o_part, o_thread, thread_floats, total;
    // offsets within a thread's slice
    int64_t o_xp, o_xt, o_dz, o_dyp, o_P, o_Q, o_C, o_idx, o_idx2, o_off, o_id, o_runs, o_rstart,
        o_phs;
} plan;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static void make_plan(plan *p, const ns_conv2d_geom *g) {
    memset(p, 0, sizeof *p);
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW;
    p->TP = ns_tile_rows();
    p->TQ = ns_tile_cols();
    p->threads = ns_threads();
    p->rows = !ns_tile_packs();
    p->Cg = g->C / g->G;
    p->OCg = g->OC / g->G;
    p->Kd = p->Cg * KH * KW;
    p->HW = g->H * g->W;
    p->OHW = g->OH * g->OW;
    p->Hp = g->H + 2 * g->PH;
    p->Wp = g->W + 2 * g->PW;
    p->Hph = ceil_div(p->Hp, g->SH);
    p->Wph = ceil_div(p->Wp, g->SW);
    p->npos = g->OH * p->Wph;
    p->ntiles = ceil_div(p->npos, p->TP);
    // Tiles read whole rows of the grid, up to ntiles*TP - 1 plus the largest
    // tap offset within a phase plane; the rest of the plane is zero.
    p->PL = round16(max64(p->Hph * p->Wph, p->ntiles * p->TP + (KH - 1) * DH / g->SH * p->Wph +
                                                (KW - 1) * DW / g->SW));
    p->Lp = g->SH * g->SW * p->PL;
    p->nq_f = ceil_div(p->OCg, p->TQ);
    p->Kb = p->OCg * KH * KW;
    p->nq_b = ceil_div(p->Cg, p->TQ);
    p->nph = g->SH * g->SW;
    p->Emax = (KH - 1) * DH / g->SH;
    p->Fmax = (KW - 1) * DW / g->SW;
    // the phase grids' first real row and column, over all phases, and
    // their ends: input row ih = r*SH + a - PH for phase row r
    int64_t rhi = 0, chi = 0, lo, hi;
    p->RS = p->CS = INT64_MAX;
    for (int64_t a = 0; a < g->SH; a++) {
        valid_range(a - g->PH, g->SH, g->H, p->Hph, &lo, &hi);
        if (lo < hi) p->RS = min64(p->RS, lo), rhi = max64(rhi, hi);
    }
    for (int64_t b = 0; b < g->SW; b++) {
        valid_range(b - g->PW, g->SW, g->W, p->Wph, &lo, &hi);
        if (lo < hi) p->CS = min64(p->CS, lo), chi = max64(chi, hi);
    }
    p->Hq = rhi - p->RS + p->Emax;
    p->Wq = chi - p->CS + p->Fmax;
    // a phase's tiles cover its rows of the grid; reads go up to the last
    // tile's end plus the largest tap offset
    p->Lq = round16(max64(p->Hq * p->Wq, ceil_div((rhi - p->RS) * p->Wq, p->TP) * p->TP +
                                             p->Emax * p->Wq + p->Fmax + p->TP));
    p->nt_w = ceil_div(p->Kd, p->TP);
    p->nq_w = ceil_div(p->OCg, p->TQ);
    p->nchunks = min64(g->N, MAX_CHUNKS);
    p->chunk = ceil_div(g->N, p->nchunks);
    p->nchunks = ceil_div(g->N, p->chunk);

    // packed weights, shared by the threads: forward (OCg tiles x Kd taps) or
    // dinp (Cg tiles x Kb taps)
    int64_t wq = g->G * p->nq_f * p->TQ * p->Kd;
    wq = max64(wq, g->G * p->nq_b * p->TQ * p->Kb);
    p->o_part = round16(wq);
    p->o_thread = p->o_part + round16(p->nchunks * g->OC * p->Kd);
    int64_t t = 0;
    p->o_xp = t;
    t += round16(p->Cg * p->Lp);
    p->o_xt = t; // + TP: a partial tap tile reads past the last pixel
    t += round16(p->Hp * p->Wp * p->Cg + p->TP);
    p->o_dz = t;
    t += round16(p->TQ * KC);
    p->o_dyp = t;
    t += round16(p->OCg * p->Lq);
    p->o_P = t;
    t += round16(max64(p->TP * max64(max64(p->Kd, p->Kb), max64(p->OCg, KC)), 6 * p->Kb));
    p->o_Q = t;
    t += round16(p->nq_w * p->TQ * KC);
    p->o_C = t;
    t += round16(p->TP * p->TQ);
    p->o_idx = t; // int64 pixel offsets of a dW block: KC of them
    t += round16(2 * KC);
    p->o_idx2 = t; // a run (three int64) per tile row
    t += round16(6 * p->TP);
    p->o_off = t; // int64 tap offsets
    t += round16(2 * max64(p->Kd, p->Kb));
    p->o_id = t; // int64 0, TP, 2 TP, ...: rows of a packed panel
    t += round16(2 * KC);
    p->o_runs = t; // dweight_runs: at most Kd runs of three int64
    t += round16(6 * p->Kd);
    p->o_rstart = t;
    t += round16(2 * (p->nt_w + 1));
    p->o_phs = t; // dinp: first tap of each phase, int64
    t += round16(2 * (p->nph + 1));
    p->thread_floats = t;
    p->total = p->o_thread + p->threads * t + 16; // + 16: room to align the base
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static int64_t scratch_direct(const ns_conv2d_geom *g) {
    if (path_direct(g)) return 0;
    if (!path_packed(g)) {
        if (path_1x1(g)) return 0;
        return g->C / g->G * g->KH * g->KW * g->OH * g->OW;
    }
    plan p;
    make_plan(&p, g);
    return p.total;
}

int64_t ns_conv2d_scratch_floats(const ns_conv2d_geom *g) {
    int64_t s = scratch_direct(g);
    s = max64(s, ns_wino_scratch_floats(g)); // 0 unless Winograd could run, switched on or not
    return s;
}

// ----------------------------------------------------------------------------
// packed path: copying and packing

// Short copies come in their thousands per sample (a tap of a tile is 32
// floats, a run of channels 16), so they are written with 4-float vectors
// rather than left to library calls. vf4 is GCC's generic vector type: SSE on
// x86-64, plain code elsewhere. Unaligned, and allowed to alias floats. The
// empty asm keeps GCC from recognising the loops as memmove/memset and
// calling the library after all (a call per 32 floats cost a fifth of the
// forward time).
typedef float vf4 __attribute__((vector_size(16), aligned(4), may_alias));

static inline void copy_floats(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        *(vf4 *)(d + i) = *(const vf4 *)(s + i);
        __asm__("" : "+r"(i));
    }
    for (; i < n; i++) {
        d[i] = s[i];
        __asm__("" : "+r"(i));
    }
}

static inline void add_floats(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) *(vf4 *)(d + i) += *(const vf4 *)(s + i);
    for (; i < n; i++) d[i] += s[i];
}

static inline void zero_floats(float *d, int64_t n) {
    if (n > 64) {
        memset(d, 0, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        *(vf4 *)(d + i) = (vf4){0, 0, 0, 0};
        __asm__("" : "+r"(i));
    }
    for (; i < n; i++) {
        d[i] = 0.0f;
        __asm__("" : "+r"(i));
    }
}

// d[t*ldd + j] = s[j*lds + t] for j < nj, t < nt: a transpose, by 4x4 blocks.
static void transpose(float *restrict d, int64_t ldd, const float *restrict s, int64_t lds,
                      int64_t nj, int64_t nt) {
    int64_t j = 0;
    for (; j + 4 <= nj; j += 4) {
        const float *s0 = s + j * lds;
        int64_t t = 0;
        for (; t + 4 <= nt; t += 4) {
            vf4 r0 = *(const vf4 *)(s0 + t), r1 = *(const vf4 *)(s0 + lds + t);
            vf4 r2 = *(const vf4 *)(s0 + 2 * lds + t), r3 = *(const vf4 *)(s0 + 3 * lds + t);
            vf4 a0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5);
            vf4 a1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
            vf4 a2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5);
            vf4 a3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
            float *d0 = d + t * ldd + j;
            *(vf4 *)d0 = __builtin_shufflevector(a0, a2, 0, 1, 4, 5);
            *(vf4 *)(d0 + ldd) = __builtin_shufflevector(a0, a2, 2, 3, 6, 7);
            *(vf4 *)(d0 + 2 * ldd) = __builtin_shufflevector(a1, a3, 0, 1, 4, 5);
            *(vf4 *)(d0 + 3 * ldd) = __builtin_shufflevector(a1, a3, 2, 3, 6, 7);
        }
        for (; t < nt; t++)
            for (int64_t jj = j; jj < j + 4; jj++) d[t * ldd + jj] = s[jj * lds + t];
    }
    for (; j < nj; j++)
        for (int64_t t = 0; t < nt; t++) d[t * ldd + j] = s[j * lds + t];
}

// The packers below run once per tile or pixel block and move most of the
// data, so they are compiled for AVX-512 and AVX2 as well (NS_SIMD_CLONES,
// tensor.h); vf16 is a 64-byte vector, one register with AVX-512, four SSE
// registers in the default build.
typedef float vf16 __attribute__((vector_size(64), aligned(4), may_alias));

static inline void copy_wide(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        *(vf16 *)(d + i) = *(const vf16 *)(s + i);
        __asm__("" : "+r"(i));
    }
    copy_floats(d + i, s + i, n - i);
}

// Prefetches slice `part` of `parts` of n floats at x: a sample's work
// prefetches the next sample's data a slice at a time, so that its first
// reads (a layer's activations come from DRAM, sample after sample) do not
// wait on memory. noipa: GCC considers prefetches free of side effects and
// would otherwise delete the calls.
#if defined(__clang__)
#define NOIPA __attribute__((noinline))
#else
#define NOIPA __attribute__((noipa))
#endif
NOIPA static void prefetch_slice(const float *x, int64_t n, int64_t part,
                                                  int64_t parts) {
    if (!x) return;
    int64_t step = (n + parts - 1) / parts;
    for (int64_t i = part * step; i < (part + 1) * step && i < n; i += 16) __builtin_prefetch(x + i);
}

// P[k*TP + i] = src[off[k] + i] for taps k < ntaps and i < TP: the panel of
// one tile on a padded grid, where a tap's TP positions are consecutive.
NS_SIMD_CLONES static void pack_consecutive(float *restrict P, const float *restrict src,
                                    const int64_t *off, int64_t ntaps, int64_t TP) {
    for (int64_t k = 0; k < ntaps; k++) copy_wide(P + k * TP, src + off[k], TP);
}

// nplanes images (H x W) into padded planes (Hp x Wp, stride Lp), the image
// at row r0, column c0 (either may be negative: then it is cropped). Only the
// image is written: the caller zeroes the planes once per call, and the
// borders stay zero from sample to sample.
NS_SIMD_CLONES static void copy_planes(float *restrict dst, int64_t Lp, int64_t Hp, int64_t Wp,
                               const float *restrict src, int64_t nplanes, int64_t H, int64_t W,
                               int64_t r0, int64_t c0) {
    int64_t rlo = max64(0, -r0), rhi = min64(H, Hp - r0);
    int64_t clo = max64(0, -c0), chi = min64(W, Wp - c0);
    if (rlo >= rhi || clo >= chi) return;
    for (int64_t c = 0; c < nplanes; c++)
        for (int64_t r = rlo; r < rhi; r++)
            copy_wide(dst + c * Lp + (r + r0) * Wp + clo + c0, src + (c * H + r) * W + clo, chi - clo);
}

// The tile rows i in [0, TP) that land in an output plane, as runs: row
// i0 + r goes to plane index d0 + r for r < len. The tile covers grid
// positions q0 .. q0 + TP - 1 of rows of Wg positions, of which the first OW
// are real outputs (the rest padding, thrown away).
typedef struct run {
    int64_t i0, d0, len;
} run;

static int64_t tile_runs(run *runs, int64_t q0, int64_t TP, int64_t npos, int64_t Wg,
                         int64_t OW) {
    int64_t n = 0, end = min64(q0 + TP, npos);
    for (int64_t q = q0; q < end;) {
        int64_t r = q / Wg, c = q % Wg;
        if (c >= OW) { // padding columns: skip to the next row
            q = (r + 1) * Wg;
            continue;
        }
        int64_t len = min64(OW - c, end - q);
        runs[n++] = (run){q - q0, r * OW + c, len};
        q += len;
    }
    return n;
}

// A[t*TP + i] for pixels t < kc: row t of a dW panel, gathered from
// src + pb[t] by runs (position i0 in the row, offset d0 from src + pb[t],
// len floats); positions nk .. TP-1 are zero.
NS_SIMD_CLONES static void pack_runs(float *restrict A, int64_t TP, const float *restrict src,
                             const int64_t *pb, int64_t kc, const run *runs, int64_t nruns,
                             int64_t nk) {
    for (int64_t t = 0; t < kc; t++) {
        float *a = A + t * TP;
        const float *st = src + pb[t];
        for (int64_t r = 0; r < nruns; r++) copy_wide(a + runs[r].i0, st + runs[r].d0, runs[r].len);
        if (nk < TP) zero_floats(a + nk, TP - nk);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_STRIDE2 1
// The two below with AVX-512 masks: 16 results at a time, the last partial,
// touching only the floats the scalar loops would.
__attribute__((target("avx512f"))) static void copy_stride2_512(float *restrict d,
                                                                const float *restrict s,
                                                                int64_t n) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t r = n - i < 16 ? n - i : 16, m = 2 * r - 1; // floats read: s[2i .. 2i+m)
        const __mmask16 m0 = (__mmask16)(m >= 16 ? 0xffff : (1u << m) - 1);
        const __mmask16 m1 = (__mmask16)(m > 16 ? (1u << (m - 16)) - 1 : 0);
        __m512 a = _mm512_maskz_loadu_ps(m0, s + 2 * i);
        __m512 b = m1 ? _mm512_maskz_loadu_ps(m1, s + 2 * i + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(d + i, (__mmask16)((1u << r) - 1), _mm512_permutex2var_ps(a, even, b));
    }
}

__attribute__((target("avx512f"))) static void add_stride2_512(float *restrict d,
                                                               const float *restrict s,
                                                               int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t r = n - i < 16 ? n - i : 16, m = 2 * r - 1; // d[2i .. 2i+m), even ones
        const __mmask16 m0 = (__mmask16)((m >= 16 ? 0xffff : (1u << m) - 1) & 0x5555);
        const __mmask16 m1 = (__mmask16)((m > 16 ? (1u << (m - 16)) - 1 : 0) & 0x5555);
        __m512 sv = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1), s + i);
        float *d0 = d + 2 * i;
        __m512 a = _mm512_maskz_loadu_ps(m0, d0);
        _mm512_mask_storeu_ps(d0, m0, _mm512_add_ps(a, _mm512_permutexvar_ps(lo, sv)));
        if (m1) {
            __m512 b = _mm512_maskz_loadu_ps(m1, d0 + 16);
            _mm512_mask_storeu_ps(d0 + 16, m1, _mm512_add_ps(b, _mm512_permutexvar_ps(hi, sv)));
        }
    }
}
#endif

// d[i] = s[2 i] for i < n, where avail floats from s on may be read: vectors
// of 32 deinterleaved while they fit, then one by one (AVX-512: all with
// masked vectors).
NS_SIMD_CLONES static void copy_stride2(float *restrict d, const float *restrict s, int64_t n,
                                int64_t avail) {
#ifdef HAVE_AVX512_STRIDE2
    if (__builtin_cpu_supports("avx512f")) {
        copy_stride2_512(d, s, n);
        return;
    }
#endif
    int64_t i = 0;
    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {
        vf16 a = *(const vf16 *)(s + 2 * i), b = *(const vf16 *)(s + 2 * i + 16);
        *(vf16 *)(d + i) = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                                   22, 24, 26, 28, 30);
    }
    for (; i < n; i++) d[i] = s[2 * i];
}

// d[2 i] += s[i] for i < n, where avail floats from d on may be touched:
// vectors of 32 while they fit (the odd floats rewritten unchanged), then one
// by one.
NS_SIMD_CLONES static void add_stride2(float *restrict d, const float *restrict s, int64_t n,
                               int64_t avail) {
#ifdef HAVE_AVX512_STRIDE2
    if (__builtin_cpu_supports("avx512f")) {
        add_stride2_512(d, s, n);
        return;
    }
#endif
    int64_t i = 0;
    const vf16 z = {0};
    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {
        vf16 sv = *(const vf16 *)(s + i);
        vf16 lo = __builtin_shufflevector(sv, z, 0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16);
        vf16 hi = __builtin_shufflevector(sv, z, 8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16);
        vf16 d0 = *(vf16 *)(d + 2 * i), d1 = *(vf16 *)(d + 2 * i + 16);
        vf16 a0 = d0 + lo, a1 = d1 + hi;
        // even floats from the sums, odd ones as they were (bit for bit: -0 stays -0)
        *(vf16 *)(d + 2 * i) = __builtin_shufflevector(a0, d0, 0, 17, 2, 19, 4, 21, 6, 23, 8, 25,
                                                       10, 27, 12, 29, 14, 31);
        *(vf16 *)(d + 2 * i + 16) = __builtin_shufflevector(a1, d1, 0, 17, 2, 19, 4, 21, 6, 23, 8,
                                                            25, 10, 27, 12, 29, 14, 31);
    }
    for (; i < n; i++) d[2 * i] += s[i];
}

// Whether some tap reads phase (a, b): kh*DH = a mod SH and kw*DW = b mod SW.
static int phase_used(int64_t a, int64_t b, const ns_conv2d_geom *g) {
    int ra = 0, rb = 0;
    for (int64_t kh = 0; kh < g->KH; kh++) ra |= kh * g->DH % g->SH == a;
    for (int64_t kw = 0; kw < g->KW; kw++) rb |= kw * g->DW % g->SW == b;
    return ra && rb;
}

// The zero-padded planes (pad PH, PW) split into SH x SW phase planes:
// phase (a, b) of channel c, at dst + c*Lp + (a*SW + b)*PL, holds
// padded[r*SH + a][s*SW + b] at r*Wph + s; the rest of each plane is zero
// (the caller zeroes the buffer once per call). With stride 1 that is the
// padded plane itself. Phases no tap reads are left alone.
static void phase_planes(float *dst, const float *src, const ns_conv2d_geom *g, const plan *p) {
    if (g->SH == 1 && g->SW == 1) {
        copy_planes(dst, p->PL, p->Hph, p->Wph, src, p->Cg, g->H, g->W, g->PH, g->PW);
        return;
    }
    const int64_t H = g->H, W = g->W, SH = g->SH, SW = g->SW, Wph = p->Wph;
    for (int64_t c = 0; c < p->Cg; c++)
        for (int64_t a = 0; a < SH; a++)
            for (int64_t b = 0; b < SW; b++) {
                if (!phase_used(a, b, g)) continue;
                float *d = dst + c * p->Lp + (a * SW + b) * p->PL;
                // padded column s*SW + b is input column s*SW + b - PW
                int64_t slo, shi;
                valid_range(b - g->PW, SW, W, Wph, &slo, &shi);
                for (int64_t r = 0; r < p->Hph; r++) {
                    int64_t ih = r * SH + a - g->PH;
                    if (ih < 0 || ih >= H) continue;
                    const float *sr = src + (c * H + ih) * W + b - g->PW;
                    float *dr = d + r * Wph;
                    if (SW == 2 && shi > slo) {
                        // the row's input from column 2 slo + b - PW on
                        copy_stride2(dr + slo, sr + 2 * slo, shi - slo, W - (2 * slo + b - g->PW));
                        continue;
                    }
                    for (int64_t s2 = slo; s2 < shi; s2++) dr[s2] = sr[s2 * SW];
                }
            }
}

// ----------------------------------------------------------------------------
// packed path: forward

// wq[((grp*nq_f + jt)*Kd + k)*TQ + j] = W[grp*OCg + jt*TQ + j][k], 0 past OCg.
static void pack_weights_fwd(float *wq, const float *weight, const ns_conv2d_geom *g,
                             const plan *p) {
    const int64_t TQ = p->TQ, Kd = p->Kd, OCg = p->OCg;
    for (int64_t grp = 0; grp < g->G; grp++)
        for (int64_t jt = 0; jt < p->nq_f; jt++) {
            float *q = wq + (grp * p->nq_f + jt) * Kd * TQ;
            for (int64_t j = 0; j < TQ; j++) {
                int64_t oc = jt * TQ + j;
                const float *w = weight + (grp * OCg + oc) * Kd;
                for (int64_t k = 0; k < Kd; k++) q[k * TQ + j] = oc < OCg ? w[k] : 0.0f;
            }
        }
}

// One sample and group: out (OCg planes) from the input's Cg planes.
static void forward_sample(float *out, const float *x, const float *wq, const float *bias,
                           float *t, const ns_conv2d_geom *g, const plan *p,
                           const float *next, int64_t next_floats) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Wph = p->Wph;
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW, SH = g->SH, SW = g->SW;
    float *xp = t + p->o_xp, *P = t + p->o_P, *Ct = t + p->o_C;
    int64_t *off = (int64_t *)(t + p->o_off);
    run *runs = (run *)(t + p->o_idx2);
    phase_planes(xp, x, g, p);
    // Tap k = (c, kh, kw) of output (oh, ow) reads padded[oh*SH + kh*DH][ow*SW + kw*DW],
    // which is in phase ((kh*DH) % SH, (kw*DW) % SW) at row oh + kh*DH/SH, column
    // ow + kw*DW/SW: at grid position q = oh*Wph + ow, offset off[k] from q.
    int64_t k = 0;
    for (int64_t c = 0; c < p->Cg; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++)
                off[k++] = c * p->Lp + (kh * DH % SH * SW + kw * DW % SW) * p->PL +
                           kh * DH / SH * Wph + kw * DW / SW;
    for (int64_t tile = 0; tile < p->ntiles; tile++) {
        const int64_t q0 = tile * TP;
        prefetch_slice(next, next_floats, tile, p->ntiles);
        int64_t nruns = tile_runs(runs, q0, TP, p->npos, Wph, g->OW);
        // P[k][i] = xp[off[k] + q0 + i], read in place when the kernel can
        if (!p->rows) pack_consecutive(P, xp + q0, off, Kd, TP);
        for (int64_t jt = 0; jt < p->nq_f; jt++) {
            if (p->rows) ns_tile_gemm_rows(Kd, xp + q0, off, wq + jt * Kd * TQ, TQ, 1, 0.0f, Ct, TP, NULL);
            else ns_tile_gemm(Kd, P, wq + jt * Kd * TQ, 0.0f, Ct, TP);
            int64_t nj = min64(TQ, p->OCg - jt * TQ);
            for (int64_t j = 0; j < nj; j++) {
                float *o = out + (jt * TQ + j) * p->OHW;
                const float *cj = Ct + j * TP;
                float b = bias ? bias[jt * TQ + j] : 0.0f;
                for (int64_t r = 0; r < nruns; r++) {
                    float *d = o + runs[r].d0;
                    const float *sr = cj + runs[r].i0;
                    if (bias) {
                        for (int64_t i = 0; i < runs[r].len; i++) d[i] = sr[i] + b;
                    } else {
                        copy_floats(d, sr, runs[r].len);
                    }
                }
            }
        }
    }
}

static void epilogue_sample(float *out, const float *raw, const float *bias,
                            const ns_conv2d_epilogue *ep, int64_t n, int64_t OC, int64_t OHW);

static void packed_forward(float *out, float *scratch, const float *inp, const float *weight,
                           const float *bias, const ns_conv2d_geom *g,
                           const ns_conv2d_epilogue *ep) {
    float *raw = ep && ep->conv_out ? ep->conv_out : out;
    plan p;
    make_plan(&p, g);
    float *base = align64(scratch);
    pack_weights_fwd(base, weight, g, &p);
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
#pragma omp parallel num_threads(p.threads) if (N > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
        zero_floats(t + p.o_xp, p.Cg * p.Lp);
        // chunks of 4 samples: the next sample is usually this thread's next
#pragma omp for schedule(dynamic, 4)
        for (int64_t n = 0; n < N; n++)
            for (int64_t grp = 0; grp < G; grp++) {
                const float *x = inp + (n * C + grp * p.Cg) * HW;
                const float *next = grp + 1 < G ? x + p.Cg * HW : n + 1 < N ? x + (C - grp * p.Cg) * HW : NULL;
                forward_sample(raw + (n * OC + grp * p.OCg) * OHW, x,
                               base + grp * p.nq_f * p.Kd * p.TQ,
                               bias ? bias + grp * p.OCg : NULL, t, g, &p, next, p.Cg * HW);
                if (ep && grp + 1 == G) epilogue_sample(out, raw, NULL, ep, n, OC, OHW);
            }
    }
}

// ----------------------------------------------------------------------------
// packed path: backward

// dinp by input phase. An input pixel at padded position (r*SH + a,
// s*SW + b) gets W[oc][c][kh][kw] dout[oc][r - e][s - f] from the taps with
// kh*DH = e*SH + a and kw*DW = f*SW + b: for each phase (a, b) a stride-1
// correlation of dout with those taps, which is the forward's machinery
// again (with stride 1: one phase, the transposed convolution). dout is
// padded by Emax rows and Fmax columns (the largest e, f) so every tap reads
// at a non-negative offset. The phases' taps, in a fixed order (oc, kh, kw):
static int64_t phase_taps(int64_t ph, const ns_conv2d_geom *g, const plan *p,
                          int64_t *kh_out, int64_t *kw_out, int64_t *oc_out) {
    const int64_t a = ph / g->SW, b = ph % g->SW;
    int64_t n = 0;
    for (int64_t oc = 0; oc < p->OCg; oc++)
        for (int64_t kh = 0; kh < g->KH; kh++) {
            if (kh * g->DH % g->SH != a) continue;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                if (kw * g->DW % g->SW != b) continue;
                if (kh_out) kh_out[n] = kh, kw_out[n] = kw, oc_out[n] = oc;
                n++;
            }
        }
    return n;
}

// wq, per group and phase, nq_b tiles of the phase's taps x TQ input
// channels: W[grp*OCg + oc][jt*TQ + j][kh][kw] for tap (oc, kh, kw), 0 past Cg.
static void pack_weights_bwd(float *wq, const float *weight, const ns_conv2d_geom *g,
                             const plan *p, int64_t *scratch3) {
    const int64_t TQ = p->TQ, Cg = p->Cg, OCg = p->OCg, KH = g->KH, KW = g->KW;
    int64_t *khs = scratch3, *kws = khs + p->Kb, *ocs = kws + p->Kb;
    for (int64_t grp = 0; grp < g->G; grp++) {
        float *q = wq + grp * p->nq_b * TQ * p->Kb;
        for (int64_t ph = 0; ph < p->nph; ph++) {
            int64_t n = phase_taps(ph, g, p, khs, kws, ocs);
            for (int64_t jt = 0; jt < p->nq_b; jt++, q += n * TQ)
                for (int64_t k = 0; k < n; k++)
                    for (int64_t j = 0; j < TQ; j++) {
                        int64_t c = jt * TQ + j;
                        q[k * TQ + j] = c < Cg ? weight[(((grp * OCg + ocs[k]) * Cg + c) * KH +
                                                         khs[k]) * KW + kws[k]]
                                               : 0.0f;
                    }
        }
    }
}

// The taps' offsets in the padded dout, phase by phase (phs[ph] is the
// phase's first tap), for dinp_sample.
static void dinp_offsets(int64_t *off, int64_t *phs, const ns_conv2d_geom *g, const plan *p,
                         int64_t *scratch3) {
    int64_t *khs = scratch3, *kws = khs + p->Kb, *ocs = kws + p->Kb, n = 0;
    for (int64_t ph = 0; ph < p->nph; ph++) {
        phs[ph] = n;
        int64_t m = phase_taps(ph, g, p, khs, kws, ocs);
        for (int64_t k = 0; k < m; k++)
            off[n + k] = ocs[k] * p->Lq + (p->Emax - khs[k] * g->DH / g->SH) * p->Wq +
                         (p->Fmax - kws[k] * g->DW / g->SW);
        n += m;
    }
    phs[p->nph] = n;
}

// dinp (Cg planes) += for one sample and group, phase by phase. Phase grid
// position q = (r - RS)*Wq + (s - CS) is input pixel (r*SH + a - PH,
// s*SW + b - PW) when that is inside the image.
static void dinp_sample(float *dx, const float *dy, const float *wq, float *t,
                        const ns_conv2d_geom *g, const plan *p, const float *next_dy,
                        const float *next_x, const float *next_dx) {
    const int64_t TP = p->TP, TQ = p->TQ, Wq = p->Wq, H = g->H, W = g->W, SH = g->SH, SW = g->SW;
    float *dyp = t + p->o_dyp, *P = t + p->o_P, *Ct = t + p->o_C;
    const int64_t *off = (const int64_t *)(t + p->o_off), *phs = (const int64_t *)(t + p->o_phs);
    run *runs = (run *)(t + p->o_idx2);
    copy_planes(dyp, p->Lq, p->Hq, Wq, dy, p->OCg, g->OH, g->OW, p->Emax - p->RS, p->Fmax - p->CS);
    for (int64_t ph = 0; ph < p->nph; ph++) {
        const int64_t a = ph / SW, b = ph % SW, nk = phs[ph + 1] - phs[ph];
        if (nk == 0) continue;
        int64_t rlo, rhi, slo, shi;
        valid_range(a - g->PH, SH, H, p->Hph, &rlo, &rhi);
        valid_range(b - g->PW, SW, W, p->Wph, &slo, &shi);
        if (rlo >= rhi || slo >= shi) continue;
        const float *wph = wq + phs[ph] * p->nq_b * TQ;
        const int64_t *offp = off + phs[ph];
        const int64_t qa = (rlo - p->RS) * Wq, ntl = ceil_div((rhi - p->RS) * Wq - qa, TP);
        for (int64_t q0 = qa; q0 < (rhi - p->RS) * Wq; q0 += TP) {
            // the next sample's dout and input, spread over the phases' tiles
            int64_t part = ph * ntl + (q0 - qa) / TP, parts = p->nph * ntl;
            prefetch_slice(next_dy, p->OCg * p->OHW, part, parts);
            prefetch_slice(next_x, p->Cg * p->HW, part, parts);
            prefetch_slice(next_dx, p->Cg * p->HW, part, parts);
            // runs of valid positions: grid row r - RS, columns slo - CS .. shi - CS
            int64_t nruns = 0;
            for (int64_t q = q0; q < q0 + TP;) {
                int64_t r = q / Wq + p->RS, s = q % Wq + p->CS;
                if (r >= rhi) break;
                if (s < slo) {
                    q += slo - s;
                    continue;
                }
                if (s >= shi) {
                    q += Wq - (s - p->CS);
                    continue;
                }
                int64_t len = min64(shi - s, q0 + TP - q);
                runs[nruns++] = (run){q - q0, (r * SH + a - g->PH) * W + s * SW + b - g->PW, len};
                q += len;
            }
            if (nruns == 0) continue;
            if (!p->rows) pack_consecutive(P, dyp + q0, offp, nk, TP);
            for (int64_t jt = 0; jt < p->nq_b; jt++) {
                const float *wj = wph + jt * nk * TQ;
                if (p->rows) ns_tile_gemm_rows(nk, dyp + q0, offp, wj, TQ, 1, 0.0f, Ct, TP, NULL);
                else ns_tile_gemm(nk, P, wj, 0.0f, Ct, TP);
                int64_t nj = min64(TQ, p->Cg - jt * TQ);
                for (int64_t j = 0; j < nj; j++) {
                    float *d = dx + (jt * TQ + j) * p->HW;
                    const float *cj = Ct + j * TP;
                    for (int64_t r = 0; r < nruns; r++) {
                        if (SW == 1) {
                            add_floats(d + runs[r].d0, cj + runs[r].i0, runs[r].len);
                        } else if (SW == 2) {
                            add_stride2(d + runs[r].d0, cj + runs[r].i0, runs[r].len,
                                        p->HW - runs[r].d0);
                        } else {
                            float *dr = d + runs[r].d0;
                            const float *sr = cj + runs[r].i0;
                            for (int64_t i = 0; i < runs[r].len; i++) dr[i * SW] += sr[i];
                        }
                    }
                }
            }
        }
    }
}

// The taps of each dW tap tile (TP taps in (kh, kw, c) order) as runs of
// consecutive floats in the padded NHWC copy: tile it has runs
// runs[rstart[it]] .. runs[rstart[it + 1] - 1] (position in the tile row,
// offset from the pixel, length).
static void dweight_runs(run *runs, int64_t *rstart, const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, Kd = p->Kd, Cg = p->Cg, KW = g->KW;
    int64_t n = 0;
    for (int64_t it = 0; it < p->nt_w; it++) {
        rstart[it] = n;
        int64_t k0 = it * TP, nk = min64(TP, Kd - k0);
        for (int64_t i = 0; i < nk; i++) {
            int64_t k = k0 + i, c = k % Cg, kw = k / Cg % KW, kh = k / (Cg * KW);
            int64_t off = (kh * g->DH * p->Wp + kw * g->DW) * Cg + c;
            if (n > rstart[it] && runs[n - 1].d0 + runs[n - 1].len == off)
                runs[n - 1].len++;
            else
                runs[n++] = (run){i, off, 1};
        }
    }
    rstart[p->nt_w] = n;
}

// part (OCg rows of Kd taps in (kh, kw, c) order) += dW^T of one sample and
// group: sum over pixels of patches (taps) x dout (channels), both packed
// pixel-major from a padded NHWC copy of the input.
static void dweight_sample(float *part, const float *x, const float *dy, float *t,
                           const ns_conv2d_geom *g, const plan *p, const float *next_x,
                           const float *next_dy) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Cg = p->Cg, OCg = p->OCg, OHW = p->OHW;
    const int64_t Wp = p->Wp, H = g->H, W = g->W;
    float *xt = t + p->o_xt, *A = t + p->o_P, *Q = t + p->o_Q, *Ct = t + p->o_C;
    float *dz = t + p->o_dz;
    int64_t *pb = (int64_t *)(t + p->o_idx), *id = (int64_t *)(t + p->o_id);
    const run *runs = (const run *)(t + p->o_runs);
    const int64_t *rstart = (const int64_t *)(t + p->o_rstart);
    // xt[((ih + PH)*Wp + iw + PW)*Cg + c] = x[c][ih][iw], zero padding around
    // (zeroed once per call)
    for (int64_t ih = 0; ih < H; ih++)
        transpose(xt + ((ih + g->PH) * Wp + g->PW) * Cg, Cg, x + ih * W, H * W, Cg, W);
    for (int64_t p0 = 0; p0 < OHW; p0 += KC) {
        int64_t kc = min64(KC, OHW - p0);
        // Q[jt][tt*TQ + j] = dout[jt*TQ + j][p0 + tt]; the columns past OCg
        // stay zero (set once per call)
        if (!p->rows)
            for (int64_t jt = 0; jt < p->nq_w; jt++)
                transpose(Q + jt * TQ * KC, TQ, dy + jt * TQ * OHW + p0, OHW,
                          min64(TQ, OCg - jt * TQ), kc);
        for (int64_t tt = 0, oh = p0 / g->OW, ow = p0 % g->OW; tt < kc; tt++) {
            pb[tt] = (oh * g->SH * Wp + ow * g->SW) * Cg;
            if (++ow == g->OW) ow = 0, oh++;
        }
        for (int64_t it = 0; it < p->nt_w; it++) {
            int64_t part_i = p0 / KC * p->nt_w + it, parts = ceil_div(OHW, KC) * p->nt_w;
            prefetch_slice(next_x, Cg * p->HW, part_i, parts);
            prefetch_slice(next_dy, OCg * OHW, part_i, parts);
            // the tile's taps as runs of consecutive floats in xt (see
            // dweight_runs): read in place when there is one run (a partial
            // tile reads into xt's slack; those rows are dropped), else packed
            const run *tr = runs + rstart[it];
            int64_t nruns = rstart[it + 1] - rstart[it], k0 = it * TP, nk = min64(TP, Kd - k0);
            const int in_place = p->rows && nruns == 1;
            if (!in_place) pack_runs(A, TP, xt, pb, kc, tr, nruns, nk);
            const float *base = in_place ? xt + tr[0].d0 : A;
            const int64_t *off = in_place ? pb : id;
            for (int64_t jt = 0; jt < p->nq_w; jt++) {
                int64_t nj = min64(TQ, OCg - jt * TQ);
                float *c = part + jt * TQ * Kd + k0;
                const int full = nk == TP && nj == TQ;
                float *dst = full ? c : Ct;
                int64_t ldc = full ? Kd : TP;
                if (p->rows) {
                    // dout read in place: element (tt, j) at
                    // dy[(jt*TQ + j)*OHW + p0 + tt]; a partial last column tile
                    // goes through dz, whose rows past OCg stay zero
                    const float *q = dy + jt * TQ * OHW + p0;
                    int64_t cq = OHW;
                    if (nj < TQ) {
                        for (int64_t j = 0; j < nj; j++) copy_floats(dz + j * KC, q + j * OHW, kc);
                        q = dz;
                        cq = KC;
                    }
                    ns_tile_gemm_rows(kc, base, off, q, 1, cq, full ? 1.0f : 0.0f, dst, ldc, NULL);
                } else
                    ns_tile_gemm(kc, A, Q + jt * TQ * KC, full ? 1.0f : 0.0f, dst, ldc);
                if (!full)
                    for (int64_t j = 0; j < nj; j++)
                        for (int64_t i = 0; i < nk; i++) c[j * Kd + i] += Ct[j * TP + i];
            }
        }
    }
}

static void packed_backward(float *dinp, float *dweight, float *scratch, const float *dout,
                            const float *inp, const float *weight, const ns_conv2d_geom *g,
                            int overwrite) {
    plan p;
    make_plan(&p, g);
    float *base = align64(scratch), *parts = base + p.o_part;
    // packing the weights needs three int64 per tap for a moment: the first
    // thread's slice is free until the parallel region
    if (dinp) pack_weights_bwd(base, weight, g, &p, (int64_t *)(base + p.o_thread + p.o_P));
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
    const int64_t Kd = p.Kd, Cg = p.Cg, KHW = g->KH * g->KW;
#pragma omp parallel num_threads(p.threads) if (p.nchunks > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
        if (dinp) {
            dinp_offsets((int64_t *)(t + p.o_off), (int64_t *)(t + p.o_phs), g, &p,
                         (int64_t *)(t + p.o_P));
            zero_floats(t + p.o_dyp, p.OCg * p.Lq);
        }
        if (dweight) {
            zero_floats(t + p.o_xt, p.Hp * p.Wp * p.Cg + p.TP);
            zero_floats(t + p.o_Q, p.nq_w * p.TQ * KC);
            zero_floats(t + p.o_dz, p.TQ * KC);
            int64_t *id = (int64_t *)(t + p.o_id);
            for (int64_t i = 0; i < KC; i++) id[i] = i * p.TP;
            dweight_runs((run *)(t + p.o_runs), (int64_t *)(t + p.o_rstart), g, &p);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < p.nchunks; ch++) {
            float *part = parts + ch * OC * Kd;
            if (dweight) zero_floats(part, OC * Kd);
            for (int64_t n = ch * p.chunk; n < min64(N, (ch + 1) * p.chunk); n++)
                for (int64_t grp = 0; grp < G; grp++) {
                    const float *dy = dout + (n * OC + grp * p.OCg) * OHW;
                    const int last = n + 1 == min64(N, (ch + 1) * p.chunk) && grp + 1 == G;
                    if (dinp && overwrite) zero_floats(dinp + (n * C + grp * Cg) * HW, Cg * HW);
                    if (dinp)
                        dinp_sample(dinp + (n * C + grp * Cg) * HW, dy,
                                    base + grp * p.nq_b * p.TQ * p.Kb, t, g, &p,
                                    last ? NULL : dy + p.OCg * OHW + (grp + 1 == G ? (OC - G * p.OCg) * OHW : 0),
                                    last || !dweight ? NULL : inp + (n * C + grp * Cg) * HW + Cg * HW,
                                    last ? NULL : dinp + (n * C + grp * Cg) * HW + Cg * HW);
                    // (dinp_sample prefetches for both when it runs)
                    if (dweight)
                        dweight_sample(part + grp * p.OCg * Kd, inp + (n * C + grp * Cg) * HW, dy,
                                       t, g, &p,
                                       last || dinp ? NULL : inp + (n * C + grp * Cg) * HW + Cg * HW,
                                       last || dinp ? NULL : dy + p.OCg * OHW + (grp + 1 == G ? (OC - G * p.OCg) * OHW : 0));
                }
        }
        if (dweight) {
            // dweight[oc][c][kh][kw] += the partials' [oc][kh][kw][c], in chunk order
#pragma omp for schedule(static)
            for (int64_t oc = 0; oc < OC; oc++)
                for (int64_t k = 0; k < Kd; k++) {
                    int64_t c = k % Cg, khw = k / Cg;
                    double s = 0;
                    for (int64_t ch = 0; ch < p.nchunks; ch++) s += parts[(ch * OC + oc) * Kd + k];
                    dweight[oc * Kd + c * KHW + khw] += (float)s;
                }
        }
    }
}

// ----------------------------------------------------------------------------

// ----------------------------------------------------------------------------
// epilogue (ns_conv2d_epilogue)

enum { EPI_SCALE = 1, EPI_RES = 2, EPI_RELU = 4, EPI_AOUT = 8, EPI_ROUT = 16 };

// out = the epilogue's steps applied to x, n floats of one plane; x may be out.
__attribute__((always_inline)) static inline void epi_run(const int f, float *out, const float *x,
                                                          int64_t n, float s, float sh,
                                                          const float *restrict res,
                                                          float *restrict aout,
                                                          float *restrict rout) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float y = x[i];
        if (f & EPI_SCALE) {
            y = y * s + sh;
            if (f & EPI_AOUT) aout[i] = y;
        }
        if (f & EPI_RES) {
            y = y + res[i];
            if (f & EPI_ROUT) rout[i] = y;
        }
        if (f & EPI_RELU) y = y > 0.0f ? y : 0.0f;
        out[i] = y;
    }
}

#define EPI_CASE(f)                                                                            \
    case f:                                                                                    \
        epi_run(f, out, x, n, s, sh, res, aout, rout);                                         \
        break;
#define EPI_CASE8(b) EPI_CASE(b) EPI_CASE(b + 1) EPI_CASE(b + 2) EPI_CASE(b + 3) EPI_CASE(b + 4) \
    EPI_CASE(b + 5) EPI_CASE(b + 6) EPI_CASE(b + 7)

static void epi_plane(int f, float *out, const float *x, int64_t n, float s, float sh,
                      const float *res, float *aout, float *rout) {
    switch (f) { EPI_CASE8(0) EPI_CASE8(8) EPI_CASE8(16) EPI_CASE8(24) }
}

// Sample n's OC planes: raw (the convolution, in ep->conv_out when that is
// given, else in out) plus bias (when not NULL: not yet added), then the
// plane statistics, then the steps into out.
static void epilogue_sample(float *out, const float *raw, const float *bias,
                            const ns_conv2d_epilogue *ep, int64_t n, int64_t OC, int64_t OHW) {
    const int f = (ep->scale ? EPI_SCALE | (ep->affine_out ? EPI_AOUT : 0) : 0) |
                  (ep->residual ? EPI_RES | (ep->residual_out ? EPI_ROUT : 0) : 0) |
                  (ep->relu ? EPI_RELU : 0);
    for (int64_t oc = 0; oc < OC; oc++) {
        const int64_t off = (n * OC + oc) * OHW;
        float *cur = (float *)raw + off;
        if (bias) {
            const float b = bias[oc];
#pragma omp simd
            for (int64_t i = 0; i < OHW; i++) cur[i] += b;
        }
        if (ep->plane_stats) ns_batchnorm_plane_stats(ep->plane_stats + 2 * (n * OC + oc), cur, OHW);
        if (f || cur != out + off)
            epi_plane(f, out + off, cur, OHW, ep->scale ? ep->scale[oc] : 1.0f,
                      ep->scale ? ep->shift[oc] : 0.0f, ep->residual ? ep->residual + off : NULL,
                      ep->affine_out ? ep->affine_out + off : NULL,
                      ep->residual_out ? ep->residual_out + off : NULL);
    }
}

// ----------------------------------------------------------------------------
// Winograd (op_winograd.c): threads over samples, one sample's product in
// op_winograd.c, then the epilogue while the output is in cache.

static void wino_forward(float *out, float *scratch, const float *inp, const float *weight,
                         const float *bias, const ns_conv2d_geom *g,
                         const ns_conv2d_epilogue *ep) {
    float *raw = ep && ep->conv_out ? ep->conv_out : out;
    ns_conv2d_epilogue none = {0};
    if (!ep) ep = &none;
    ns_wino_prepare(scratch, weight, g, 0);
    const int64_t N = g->N, C = g->C, OC = g->OC, HW = g->H * g->W, OHW = g->OH * g->OW;
#pragma omp parallel num_threads(ns_threads()) if (N > 1)
    {
        float *t = ns_wino_thread(scratch, omp_get_thread_num(), g);
        ns_wino_thread_init(t, g, 0);
#pragma omp for schedule(dynamic, 4)
        for (int64_t n = 0; n < N; n++) {
            const int more = n + 1 < N;
            // with nothing stored but the final output and no statistics,
            // the epilogue runs as the tiles are stored
            ns_wino_epi we = {bias, ep->scale, ep->shift,
                              ep->residual ? ep->residual + n * OC * OHW : NULL, ep->relu};
            const int in_tiles = !ep->conv_out && !ep->affine_out && !ep->residual_out &&
                                 !ep->plane_stats;
            ns_wino_sample(raw + n * OC * OHW, 0, inp + n * C * HW, scratch, t, g, 0,
                           more ? inp + (n + 1) * C * HW : NULL,
                           more ? raw + (n + 1) * OC * OHW : NULL, in_tiles ? &we : NULL);
            if (!in_tiles) epilogue_sample(out, raw, bias, ep, n, OC, OHW);
        }
    }
}

// dinp (= or +=) the input gradient, sample by sample.
static void wino_dinp(float *dinp, float *scratch, const float *dout, const float *weight,
                      const ns_conv2d_geom *g, int overwrite) {
    ns_wino_prepare(scratch, weight, g, 1);
    const int64_t N = g->N, C = g->C, OC = g->OC, HW = g->H * g->W, OHW = g->OH * g->OW;
#pragma omp parallel num_threads(ns_threads()) if (N > 1)
    {
        float *t = ns_wino_thread(scratch, omp_get_thread_num(), g);
        ns_wino_thread_init(t, g, 1);
#pragma omp for schedule(dynamic, 4)
        for (int64_t n = 0; n < N; n++)
            ns_wino_sample(dinp + n * C * HW, !overwrite, dout + n * OC * OHW, scratch, t, g, 1,
                           n + 1 < N ? dout + (n + 1) * OC * OHW : NULL,
                           n + 1 < N ? dinp + (n + 1) * C * HW : NULL, NULL);
    }
}

// ----------------------------------------------------------------------------

void ns_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ns_conv2d_geom *g) {
    ns_conv2d_forward_ex(out, scratch, inp, weight, bias, g, NULL);
}

void ns_conv2d_forward_ex(float *out, float *scratch, const float *inp, const float *weight,
                          const float *bias, const ns_conv2d_geom *g,
                          const ns_conv2d_epilogue *ep) {
    if (ep && !ep->scale && !ep->residual && !ep->relu && !ep->conv_out && !ep->plane_stats)
        ep = NULL;
    if (ns_wino_usable(g)) {
        wino_forward(out, scratch, inp, weight, bias, g, ep);
        return;
    }
    if (path_packed(g)) {
        packed_forward(out, scratch, inp, weight, bias, g, ep);
        return;
    }
    float *raw = ep && ep->conv_out ? ep->conv_out : out;
    if (path_direct(g)) direct_forward(raw, inp, weight, bias, g);
    else plain_forward(raw, scratch, inp, weight, bias, g);
    if (ep)
        for (int64_t n = 0; n < g->N; n++) epilogue_sample(out, raw, NULL, ep, n, g->OC, g->OH * g->OW);
}

void ns_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const ns_conv2d_geom *g) {
    ns_conv2d_backward_ex(dinp, dweight, dbias, scratch, dout, inp, weight, g, 0);
}

void ns_conv2d_backward_ex(float *dinp, float *dweight, float *dbias, float *scratch,
                           const float *dout, const float *inp, const float *weight,
                           const ns_conv2d_geom *g, int overwrite) {
    const int64_t N = g->N, OC = g->OC, OHW = g->OH * g->OW;
    if (dbias) {
#pragma omp parallel for schedule(static) if (N * OC * OHW >= OMP_MIN)
        for (int64_t oc = 0; oc < OC; oc++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) {
                const float *d = dout + (n * OC + oc) * OHW;
                float rs = 0.0f;
                for (int64_t i = 0; i < OHW; i++) rs += d[i];
                s += rs;
            }
            dbias[oc] += (float)s;
        }
    }
    if (dinp && ns_wino_dinp_usable(g)) {
        wino_dinp(dinp, scratch, dout, weight, g, overwrite);
        dinp = NULL;
        overwrite = 0;
    }
    if (dweight && ns_wino_dweight_usable(g)) {
        ns_wino_dweight(dweight, scratch, dout, inp, g);
        dweight = NULL;
    }
    if (!dinp && !dweight) return;
    if (path_packed(g)) {
        packed_backward(dinp, dweight, scratch, dout, inp, weight, g, overwrite);
        return;
    }
    if (dinp && overwrite) memset(dinp, 0, (size_t)(g->N * g->C * g->H * g->W) * sizeof(float));
    if (path_direct(g)) direct_backward(dinp, dweight, dout, inp, weight, g);
    else plain_backward(dinp, dweight, scratch, dout, inp, weight, g);
}
