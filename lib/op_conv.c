// op_conv.c: 2-D convolution (cross-correlation, as torch's conv2d) on NCHW,
// forward and backward, with stride, zero padding, dilation and groups.
// Shapes: inp (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC),
// out (N, OC, OH, OW), OH = (H + 2 PH - DH (KH-1) - 1) / SH + 1 (same for OW).
//
// Three paths, chosen from the geometry alone:
// - packed (the usual one): the products run on the BLIS microkernel
//   (ns_tile_gemm) over panels built straight from the images, so there is no
//   im2col matrix to write and then have BLIS repack. The batch is split over
//   OpenMP threads by samples; each thread has its own slice of scratch and
//   runs the microkernel single-threaded. Per sample and group:
//   forward   out (pixels x OC) = patches (pixels x taps) W^T. The input is
//             copied into zero-padded planes; with stride 1 the output is
//             computed on the padded grid (OH x Wp, the extra columns thrown
//             away), where one tap of 32 consecutive outputs is 32 consecutive
//             floats of the padded plane: packing is plain copying.
//   dinp      stride 1: the transposed convolution, i.e. a stride-1
//             convolution of dout, padded, with the flipped kernel (same
//             packing as forward, each dinp element written by one tile).
//             Other strides: dcol (pixels x taps) = dout^T W, then col2im
//             scatter-adds it, one sample by one thread.
//   dweight   dW^T (taps x OC) += patches^T dout^T, summing over pixels, so
//             both panels are pixel-major: the input is transposed to padded
//             NHWC, where a tap's channels are consecutive floats. Each chunk
//             of samples (at most 16 chunks, fixed by N alone) sums into its
//             own partial dW; the partials are added in chunk order.
//   Every output element is computed by one thread in a fixed order, so the
//   results do not depend on the thread count.
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
#include "ops.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "blas.h"

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
    int stride1;              // SH == SW == 1
    // forward: zero-padded input planes (Hp x Wp), plane stride Lp; output
    // grid of npos positions (stride 1: OH x Wp, else OH x OW) in ntiles tiles
    int64_t Hp, Wp, Lp, npos, ntiles, nq_f;
    // dinp, stride 1: dout padded by T rows and L columns (Hq x Wq, stride Lq),
    // Kb = OCg*KH*KW taps, grid H x Wq; other strides: Kd/TQ tap tiles
    int64_t T, L, Hq, Wq, Lq, npos_b, ntiles_b, Kb, nq_b;
    // dweight: tap tiles, channel tiles, chunks of samples
    int64_t nt_w, nq_w, nchunks, chunk;
    int threads;
    // scratch (floats from the 64-byte aligned base): packed weights, partial
    // dW, then one slice per thread
    int64_t o_part, o_thread, thread_floats, total;
    // offsets within a thread's slice
    int64_t o_xp, o_xt, o_dyp, o_P, o_Q, o_C, o_idx, o_idx2;
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
    p->Cg = g->C / g->G;
    p->OCg = g->OC / g->G;
    p->Kd = p->Cg * KH * KW;
    p->HW = g->H * g->W;
    p->OHW = g->OH * g->OW;
    p->stride1 = g->SH == 1 && g->SW == 1;
    p->Hp = g->H + 2 * g->PH;
    p->Wp = g->W + 2 * g->PW;
    p->npos = p->stride1 ? g->OH * p->Wp : p->OHW;
    p->ntiles = ceil_div(p->npos, p->TP);
    // Stride 1 reads whole tiles of the padded grid, up to ntiles*TP - 1 plus
    // the largest tap offset; the rest of the plane is zero.
    p->Lp = p->Hp * p->Wp;
    if (p->stride1)
        p->Lp = max64(p->Lp, p->ntiles * p->TP + (KH - 1) * DH * p->Wp + (KW - 1) * DW);
    p->Lp = round16(p->Lp);
    p->nq_f = ceil_div(p->OCg, p->TQ);
    p->Kb = p->OCg * KH * KW;
    if (p->stride1) {
        p->T = (KH - 1) * DH - g->PH;
        p->L = (KW - 1) * DW - g->PW;
        p->Hq = g->H + (KH - 1) * DH;
        p->Wq = g->W + (KW - 1) * DW;
        p->npos_b = g->H * p->Wq;
        p->ntiles_b = ceil_div(p->npos_b, p->TP);
        p->Lq = round16(max64(p->Hq * p->Wq,
                              p->ntiles_b * p->TP + (KH - 1) * DH * p->Wq + (KW - 1) * DW));
        p->nq_b = ceil_div(p->Cg, p->TQ);
    } else {
        p->nq_b = ceil_div(p->Kd, p->TQ);
    }
    p->nt_w = ceil_div(p->Kd, p->TP);
    p->nq_w = ceil_div(p->OCg, p->TQ);
    p->nchunks = min64(g->N, MAX_CHUNKS);
    p->chunk = ceil_div(g->N, p->nchunks);
    p->nchunks = ceil_div(g->N, p->chunk);

    // packed weights: forward (OCg tiles x Kd), dinp (stride 1: Cg tiles x Kb;
    // else Kd tiles x OCg), shared by the threads
    int64_t wq = g->G * p->nq_f * p->TQ * p->Kd;
    wq = max64(wq, g->G * p->nq_b * p->TQ * (p->stride1 ? p->Kb : p->OCg));
    p->o_part = round16(wq);
    p->o_thread = p->o_part + round16(p->nchunks * g->OC * p->Kd);
    int64_t t = 0;
    p->o_xp = t;
    t += round16(p->Cg * p->Lp);
    p->o_xt = t;
    t += round16(p->Hp * p->Wp * p->Cg);
    p->o_dyp = t;
    t += p->stride1 ? round16(p->OCg * p->Lq) : 0;
    p->o_P = t;
    t += round16(p->TP * max64(max64(p->Kd, p->Kb), max64(p->OCg, KC)));
    p->o_Q = t;
    t += round16(p->nq_w * p->TQ * KC);
    p->o_C = t;
    t += round16(p->TP * p->TQ);
    p->o_idx = t; // int64 indices: max(TP, KC) of them
    t += round16(2 * max64(p->TP, KC));
    p->o_idx2 = t; // three more int64 per tile row
    t += round16(6 * p->TP);
    p->thread_floats = t;
    p->total = p->o_thread + p->threads * t + 16; // + 16: room to align the base
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

int64_t ns_conv2d_scratch_floats(const ns_conv2d_geom *g) {
    if (path_direct(g)) return 0;
    if (!path_packed(g)) {
        if (path_1x1(g)) return 0;
        return g->C / g->G * g->KH * g->KW * g->OH * g->OW;
    }
    plan p;
    make_plan(&p, g);
    return p.total;
}

static void copy_floats(float *restrict d, const float *restrict s, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

static void zero_floats(float *d, int64_t n) { memset(d, 0, (size_t)n * sizeof(float)); }

// Cg planes (H x W) into zero-padded planes (Hp x Wp, stride Lp), the image at
// row r0, column c0 (either may be negative: then it is cropped).
static void pad_planes(float *dst, int64_t Lp, int64_t Hp, int64_t Wp, const float *src,
                       int64_t nplanes, int64_t H, int64_t W, int64_t r0, int64_t c0) {
    int64_t rlo = max64(0, -r0), rhi = min64(H, Hp - r0);
    int64_t clo = max64(0, -c0), chi = min64(W, Wp - c0);
    for (int64_t c = 0; c < nplanes; c++) {
        float *d = dst + c * Lp;
        const float *s = src + c * H * W;
        if (rlo >= rhi || clo >= chi) {
            zero_floats(d, Lp);
            continue;
        }
        zero_floats(d, (rlo + r0) * Wp + clo + c0);
        for (int64_t r = rlo; r < rhi; r++) {
            float *dr = d + (r + r0) * Wp;
            copy_floats(dr + clo + c0, s + r * W + clo, chi - clo);
            // the gap up to the next row's first copied column
            int64_t gap_end = r + 1 < rhi ? Wp + clo + c0 : Lp - (r + r0) * Wp;
            zero_floats(dr + chi + c0, gap_end - (chi + c0));
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
                           float *t, const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Lp = p->Lp, Wp = p->Wp;
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW, OW = g->OW;
    float *xp = t + p->o_xp, *P = t + p->o_P, *Ct = t + p->o_C;
    int64_t *dst = (int64_t *)(t + p->o_idx), *pix = (int64_t *)(t + p->o_idx2);
    pad_planes(xp, Lp, p->Hp, Wp, x, p->Cg, g->H, g->W, g->PH, g->PW);
    for (int64_t tile = 0; tile < p->ntiles; tile++) {
        const int64_t q0 = tile * TP;
        // where each row of the tile goes in the output plane (-1: nowhere)
        for (int64_t i = 0; i < TP; i++) {
            int64_t q = q0 + i;
            if (p->stride1) {
                dst[i] = q < p->npos && q % Wp < OW ? q / Wp * OW + q % Wp : -1;
            } else {
                dst[i] = q < p->npos ? q : -1;
                pix[i] = q < p->npos ? q / OW * g->SH * Wp + q % OW * g->SW : 0;
            }
        }
        // P[k][i]: tap k = (c, kh, kw) at output position q0 + i
        int64_t k = 0;
        for (int64_t c = 0; c < p->Cg; c++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++, k++) {
                    const float *s = xp + c * Lp + kh * DH * Wp + kw * DW;
                    float *d = P + k * TP;
                    if (p->stride1) {
                        copy_floats(d, s + q0, TP);
                    } else {
                        for (int64_t i = 0; i < TP; i++) d[i] = s[pix[i]];
                    }
                }
        for (int64_t jt = 0; jt < p->nq_f; jt++) {
            ns_tile_gemm(Kd, P, wq + jt * Kd * TQ, 0.0f, Ct, TP);
            int64_t nj = min64(TQ, p->OCg - jt * TQ);
            for (int64_t j = 0; j < nj; j++) {
                float *o = out + (jt * TQ + j) * p->OHW;
                const float *cj = Ct + j * TP;
                float b = bias ? bias[jt * TQ + j] : 0.0f;
                for (int64_t i = 0; i < TP; i++)
                    if (dst[i] >= 0) o[dst[i]] = cj[i] + b;
            }
        }
    }
}

static void packed_forward(float *out, float *scratch, const float *inp, const float *weight,
                           const float *bias, const ns_conv2d_geom *g) {
    plan p;
    make_plan(&p, g);
    float *base = align64(scratch);
    pack_weights_fwd(base, weight, g, &p);
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
#pragma omp parallel num_threads(p.threads) if (N > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t n = 0; n < N; n++)
            for (int64_t grp = 0; grp < G; grp++)
                forward_sample(out + (n * OC + grp * p.OCg) * OHW,
                               inp + (n * C + grp * p.Cg) * HW,
                               base + grp * p.nq_f * p.Kd * p.TQ,
                               bias ? bias + grp * p.OCg : NULL, t, g, &p);
    }
}

// ----------------------------------------------------------------------------
// packed path: backward

// Stride 1: wq[((grp*nq_b + jt)*Kb + k)*TQ + j] = W[grp*OCg + oc][c][KH-1-kh][KW-1-kw]
// for tap k = (oc, kh, kw) and c = jt*TQ + j (0 past Cg): the flipped kernel.
// Other strides: wq[((grp*nq_b + jt)*OCg + oc)*TQ + j] = W[grp*OCg + oc][jt*TQ + j].
static void pack_weights_bwd(float *wq, const float *weight, const ns_conv2d_geom *g,
                             const plan *p) {
    const int64_t TQ = p->TQ, Kd = p->Kd, OCg = p->OCg, Cg = p->Cg, KH = g->KH, KW = g->KW;
    for (int64_t grp = 0; grp < g->G; grp++)
        for (int64_t jt = 0; jt < p->nq_b; jt++) {
            if (p->stride1) {
                float *q = wq + (grp * p->nq_b + jt) * p->Kb * TQ;
                int64_t k = 0;
                for (int64_t oc = 0; oc < OCg; oc++)
                    for (int64_t kh = 0; kh < KH; kh++)
                        for (int64_t kw = 0; kw < KW; kw++, k++)
                            for (int64_t j = 0; j < TQ; j++) {
                                int64_t c = jt * TQ + j;
                                q[k * TQ + j] =
                                    c < Cg ? weight[(((grp * OCg + oc) * Cg + c) * KH + KH - 1 - kh) *
                                                        KW + KW - 1 - kw]
                                           : 0.0f;
                            }
            } else {
                float *q = wq + (grp * p->nq_b + jt) * OCg * TQ;
                for (int64_t oc = 0; oc < OCg; oc++)
                    for (int64_t j = 0; j < TQ; j++) {
                        int64_t k = jt * TQ + j;
                        q[oc * TQ + j] = k < Kd ? weight[(grp * OCg + oc) * Kd + k] : 0.0f;
                    }
            }
        }
}

// dinp (Cg planes) += for one sample and group, stride 1: a stride-1
// convolution of the padded dout with the flipped kernel.
static void dinp_sample_s1(float *dx, const float *dy, const float *wq, float *t,
                           const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, TQ = p->TQ, Kb = p->Kb, Lq = p->Lq, Wq = p->Wq, W = g->W;
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW;
    float *dyp = t + p->o_dyp, *P = t + p->o_P, *Ct = t + p->o_C;
    int64_t *dst = (int64_t *)(t + p->o_idx);
    pad_planes(dyp, Lq, p->Hq, Wq, dy, p->OCg, g->OH, g->OW, p->T, p->L);
    for (int64_t tile = 0; tile < p->ntiles_b; tile++) {
        const int64_t q0 = tile * TP;
        for (int64_t i = 0; i < TP; i++) {
            int64_t q = q0 + i;
            dst[i] = q < p->npos_b && q % Wq < W ? q / Wq * W + q % Wq : -1;
        }
        int64_t k = 0;
        for (int64_t oc = 0; oc < p->OCg; oc++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++, k++)
                    copy_floats(P + k * TP, dyp + oc * Lq + kh * DH * Wq + kw * DW + q0, TP);
        for (int64_t jt = 0; jt < p->nq_b; jt++) {
            ns_tile_gemm(Kb, P, wq + jt * Kb * TQ, 0.0f, Ct, TP);
            int64_t nj = min64(TQ, p->Cg - jt * TQ);
            for (int64_t j = 0; j < nj; j++) {
                float *d = dx + (jt * TQ + j) * p->HW;
                const float *cj = Ct + j * TP;
                for (int64_t i = 0; i < TP; i++)
                    if (dst[i] >= 0) d[dst[i]] += cj[i];
            }
        }
    }
}

// dinp (Cg planes) += for one sample and group, any stride: dcol tiles
// (pixels x taps) = dout^T W, scattered back by col2im.
static void dinp_sample_col(float *dx, const float *dy, const float *wq, float *t,
                            const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, TQ = p->TQ, OCg = p->OCg, OHW = p->OHW, H = g->H, W = g->W;
    const int64_t KH = g->KH, KW = g->KW;
    float *P = t + p->o_P, *Ct = t + p->o_C;
    int64_t *ohs = (int64_t *)(t + p->o_idx2), *ows = ohs + TP;
    for (int64_t p0 = 0; p0 < OHW; p0 += TP) {
        int64_t np = min64(TP, OHW - p0);
        for (int64_t i = 0; i < np; i++) {
            ohs[i] = (p0 + i) / g->OW * g->SH - g->PH;
            ows[i] = (p0 + i) % g->OW * g->SW - g->PW;
        }
        for (int64_t oc = 0; oc < OCg; oc++) {
            copy_floats(P + oc * TP, dy + oc * OHW + p0, np);
            zero_floats(P + oc * TP + np, TP - np);
        }
        for (int64_t jt = 0; jt < p->nq_b; jt++) {
            ns_tile_gemm(OCg, P, wq + jt * OCg * TQ, 0.0f, Ct, TP);
            int64_t nj = min64(TQ, p->Kd - jt * TQ);
            for (int64_t j = 0; j < nj; j++) {
                int64_t k = jt * TQ + j, c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
                float *d = dx + c * H * W;
                const float *cj = Ct + j * TP;
                for (int64_t i = 0; i < np; i++) {
                    int64_t ih = ohs[i] + kh * g->DH, iw = ows[i] + kw * g->DW;
                    if (ih >= 0 && ih < H && iw >= 0 && iw < W) d[ih * W + iw] += cj[i];
                }
            }
        }
    }
}

// part (OCg rows of Kd taps in (kh, kw, c) order) += dW^T of one sample and
// group: sum over pixels of patches (taps) x dout (channels), both packed
// pixel-major from a padded NHWC copy of the input.
static void dweight_sample(float *part, const float *x, const float *dy, float *t,
                           const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Cg = p->Cg, OCg = p->OCg, OHW = p->OHW;
    const int64_t Wp = p->Wp, H = g->H, W = g->W, KW = g->KW;
    float *xt = t + p->o_xt, *A = t + p->o_P, *Q = t + p->o_Q, *Ct = t + p->o_C;
    int64_t *pb = (int64_t *)(t + p->o_idx), *runs = (int64_t *)(t + p->o_idx2);
    // xt[((ih + PH)*Wp + iw + PW)*Cg + c] = x[c][ih][iw], zero padding around
    zero_floats(xt, p->Hp * Wp * Cg);
    for (int64_t ih = 0; ih < H; ih++) {
        float *d = xt + ((ih + g->PH) * Wp + g->PW) * Cg;
        for (int64_t c = 0; c < Cg; c++) {
            const float *s = x + (c * H + ih) * W;
            for (int64_t iw = 0; iw < W; iw++) d[iw * Cg + c] = s[iw];
        }
    }
    for (int64_t p0 = 0; p0 < OHW; p0 += KC) {
        int64_t kc = min64(KC, OHW - p0);
        // Q[jt][tt*TQ + j] = dout[jt*TQ + j][p0 + tt]
        for (int64_t jt = 0; jt < p->nq_w; jt++)
            for (int64_t j = 0; j < TQ; j++) {
                int64_t oc = jt * TQ + j;
                float *q = Q + jt * TQ * KC + j;
                if (oc < OCg) {
                    const float *s = dy + oc * OHW + p0;
                    for (int64_t tt = 0; tt < kc; tt++) q[tt * TQ] = s[tt];
                } else {
                    for (int64_t tt = 0; tt < kc; tt++) q[tt * TQ] = 0.0f;
                }
            }
        for (int64_t tt = 0; tt < kc; tt++) {
            int64_t pix = p0 + tt;
            pb[tt] = (pix / g->OW * g->SH * Wp + pix % g->OW * g->SW) * Cg;
        }
        for (int64_t it = 0; it < p->nt_w; it++) {
            // runs of consecutive floats in xt for taps it*TP .. +TP: (row, offset, length)
            int64_t nruns = 0, k0 = it * TP, nk = min64(TP, Kd - k0);
            for (int64_t i = 0; i < nk; i++) {
                int64_t k = k0 + i, c = k % Cg, kw = k / Cg % KW, kh = k / (Cg * KW);
                int64_t off = (kh * g->DH * Wp + kw * g->DW) * Cg + c;
                if (nruns && runs[3 * (nruns - 1) + 1] + runs[3 * (nruns - 1) + 2] == off)
                    runs[3 * (nruns - 1) + 2]++;
                else {
                    runs[3 * nruns] = i;
                    runs[3 * nruns + 1] = off;
                    runs[3 * nruns + 2] = 1;
                    nruns++;
                }
            }
            for (int64_t tt = 0; tt < kc; tt++) {
                float *a = A + tt * TP;
                const float *s = xt + pb[tt];
                for (int64_t r = 0; r < nruns; r++)
                    copy_floats(a + runs[3 * r], s + runs[3 * r + 1], runs[3 * r + 2]);
                if (nk < TP) zero_floats(a + nk, TP - nk);
            }
            for (int64_t jt = 0; jt < p->nq_w; jt++) {
                int64_t nj = min64(TQ, OCg - jt * TQ);
                float *c = part + jt * TQ * Kd + k0;
                if (nk == TP && nj == TQ) {
                    ns_tile_gemm(kc, A, Q + jt * TQ * KC, 1.0f, c, Kd);
                } else {
                    ns_tile_gemm(kc, A, Q + jt * TQ * KC, 0.0f, Ct, TP);
                    for (int64_t j = 0; j < nj; j++)
                        for (int64_t i = 0; i < nk; i++) c[j * Kd + i] += Ct[j * TP + i];
                }
            }
        }
    }
}

static void packed_backward(float *dinp, float *dweight, float *scratch, const float *dout,
                            const float *inp, const float *weight, const ns_conv2d_geom *g) {
    plan p;
    make_plan(&p, g);
    float *base = align64(scratch), *parts = base + p.o_part;
    if (dinp) pack_weights_bwd(base, weight, g, &p);
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
    const int64_t Kd = p.Kd, Cg = p.Cg, KHW = g->KH * g->KW;
#pragma omp parallel num_threads(p.threads) if (p.nchunks > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < p.nchunks; ch++) {
            float *part = parts + ch * OC * Kd;
            if (dweight) zero_floats(part, OC * Kd);
            for (int64_t n = ch * p.chunk; n < min64(N, (ch + 1) * p.chunk); n++)
                for (int64_t grp = 0; grp < G; grp++) {
                    const float *dy = dout + (n * OC + grp * p.OCg) * OHW;
                    if (dinp) {
                        float *dx = dinp + (n * C + grp * Cg) * HW;
                        const float *wq = base + grp * p.nq_b * p.TQ * (p.stride1 ? p.Kb : p.OCg);
                        if (p.stride1) dinp_sample_s1(dx, dy, wq, t, g, &p);
                        else dinp_sample_col(dx, dy, wq, t, g, &p);
                    }
                    if (dweight)
                        dweight_sample(part + grp * p.OCg * Kd, inp + (n * C + grp * Cg) * HW, dy,
                                       t, g, &p);
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

void ns_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ns_conv2d_geom *g) {
    if (path_direct(g)) direct_forward(out, inp, weight, bias, g);
    else if (path_packed(g)) packed_forward(out, scratch, inp, weight, bias, g);
    else plain_forward(out, scratch, inp, weight, bias, g);
}

void ns_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const ns_conv2d_geom *g) {
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
    if (path_direct(g)) direct_backward(dinp, dweight, dout, inp, weight, g);
    else if (path_packed(g)) packed_backward(dinp, dweight, scratch, dout, inp, weight, g);
    else plain_backward(dinp, dweight, scratch, dout, inp, weight, g);
}
