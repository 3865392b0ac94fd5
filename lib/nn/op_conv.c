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
//
// Files: this one has the geometry, the choice of path, the plain and direct
// paths, Winograd's threads and the entry points; the packed path is in
// op_conv_tiles.c (plan, forward and dinp tiles), op_conv_phase.c (padded
// and stride-2 phase planes), op_conv_dweight.c (weight gradient), and the
// epilogue in op_conv_epilogue.c; conv_packed.h is what they share.
#include "nn/ops.h"
#include "base/tensor.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "base/blas.h"
#include "nn/conv_packed.h"

#define OMP_MIN 32768
#define PACKED_MIN_PIXELS 16 // N*OH*OW below this: the plain path

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

static int64_t scratch_direct(const ns_conv2d_geom *g) {
    if (path_direct(g)) return 0;
    if (!path_packed(g)) {
        if (path_1x1(g)) return 0;
        return g->C / g->G * g->KH * g->KW * g->OH * g->OW;
    }
    plan p;
    ns_conv_make_plan(&p, g);
    return p.total;
}

// Scratch for any batch of 1 to g->N samples: a smaller batch can split into
// more chunks (20 samples: 10 chunks of 2; 16 samples: 16 chunks of 1) or
// take the plain path, so the sizes at N, at MAX_CHUNKS samples and at one
// sample are all candidates (the engine sizes for its largest batch and runs
// smaller ones: a last partial batch, a rank's share of a global batch).
int64_t ns_conv2d_scratch_floats(const ns_conv2d_geom *g) {
    const int64_t sizes[] = {g->N, MAX_CHUNKS, 1};
    int64_t s = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] > g->N) continue;
        ns_conv2d_geom h = *g;
        h.N = sizes[i];
        s = max64(s, scratch_direct(&h));
        s = max64(s, ns_wino_scratch_floats(&h)); // 0 unless Winograd could run, switched on or not
    }
    return s;
}

// ----------------------------------------------------------------------------
// packed path: copying and packing

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
            if (!in_tiles) ns_conv_epilogue_sample(out, raw, bias, ep, n, OC, OHW);
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
        ns_conv_packed_forward(out, scratch, inp, weight, bias, g, ep);
        return;
    }
    float *raw = ep && ep->conv_out ? ep->conv_out : out;
    if (path_direct(g)) direct_forward(raw, inp, weight, bias, g);
    else plain_forward(raw, scratch, inp, weight, bias, g);
    if (ep)
        for (int64_t n = 0; n < g->N; n++) ns_conv_epilogue_sample(out, raw, NULL, ep, n, g->OC, g->OH * g->OW);
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
        ns_conv_packed_backward(dinp, dweight, scratch, dout, inp, weight, g, overwrite);
        return;
    }
    if (dinp && overwrite) memset(dinp, 0, (size_t)(g->N * g->C * g->H * g->W) * sizeof(float));
    if (path_direct(g)) direct_backward(dinp, dweight, dout, inp, weight, g);
    else plain_backward(dinp, dweight, scratch, dout, inp, weight, g);
}
