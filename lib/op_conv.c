// op_conv.c: 2-D convolution (cross-correlation, as torch's conv2d) on NCHW,
// forward and backward, with stride, zero padding, dilation and groups.
// Shapes: inp (N, C, H, W), weight (OC, C/G, KH, KW), bias (OC),
// out (N, OC, OH, OW), OH = (H + 2 PH - DH (KH-1) - 1) / SH + 1 (same for OW).
//
// Three paths, chosen from the geometry alone:
// - general: for each (sample, group), im2col the group's input channels into
//   scratch (C/G*KH*KW, OH*OW), then out_g (OC/G, OH*OW) = W_g @ col with
//   ns_sgemm. Backward: dW_g += dout_g @ col^T, dcol = W_g^T @ dout_g, then
//   col2im scatter-adds dcol into dinp. The one scratch matrix serves both.
// - 1x1, stride 1, no padding: the input plane already is the column matrix,
//   so no im2col and no scratch.
// - direct, C/G == 1 and OC/G == 1 (depthwise): each output plane depends on
//   one input plane and KH*KW weights. There is no dense product here; N*C
//   one-row sgemm calls would cost more than the arithmetic, so a plain loop
//   per (sample, channel) does it.
// Scratch is one sample and group at a time: OpenMP works inside im2col/col2im
// and BLIS threads inside each sgemm, so no per-thread copies are needed.
#include "ops.h"

#include "blas.h"

#define OMP_MIN 32768

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

int64_t ns_conv2d_scratch_floats(const ns_conv2d_geom *g) {
    if (path_direct(g) || path_1x1(g)) return 0;
    return g->C / g->G * g->KH * g->KW * g->OH * g->OW;
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
// im2col / col2im for Cg channels of one sample.

static void im2col(float *col,       // (Cg*KH*KW, OH*OW)
                   const float *x,   // (Cg, H, W)
                   int64_t Cg, const ns_conv2d_geom *g) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t rows = Cg * KH * KW, OHW = OH * OW;
#pragma omp parallel for schedule(static) if (rows * OHW >= OMP_MIN)
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

// dx += col2im(col). Parallel over channels: rows of one channel all land in
// that channel's plane, so threads never share a destination.
static void col2im(float *dx,        // (Cg, H, W)
                   const float *col, // (Cg*KH*KW, OH*OW)
                   int64_t Cg, const ns_conv2d_geom *g) {
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t OHW = OH * OW;
#pragma omp parallel for schedule(static) if (Cg * KH * KW * OHW >= OMP_MIN)
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

void ns_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const ns_conv2d_geom *g) {
    if (path_direct(g)) {
        direct_forward(out, inp, weight, bias, g);
        return;
    }
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
#pragma omp parallel for collapse(2) schedule(static) if (N * OC * OHW >= OMP_MIN)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t oc = 0; oc < OC; oc++) {
            float *o = out + (n * OC + oc) * OHW, b = bias[oc];
            for (int64_t i = 0; i < OHW; i++) o[i] += b;
        }
    }
}

void ns_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const ns_conv2d_geom *g) {
    const int64_t N = g->N, C = g->C, OC = g->OC, G = g->G, HW = g->H * g->W;
    const int64_t Cg = C / G, OCg = OC / G, OHW = g->OH * g->OW;
    const int64_t Kdim = Cg * g->KH * g->KW;
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
    if (path_direct(g)) {
        direct_backward(dinp, dweight, dout, inp, weight, g);
        return;
    }
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
