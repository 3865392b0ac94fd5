// op_pool.c: 2-D max and average pooling over NCHW, and global average pooling.
// Shapes: inp (N, C, H, W), out (N, C, OH, OW) with OH = (H + 2 PH - KH) / SH + 1
// (floor mode), argmax (N, C, OH, OW) int32 plane offsets h*W + w; global
// average pooling maps (N, C, S) to (N, C). Every loop runs over (sample,
// channel) planes, and backward writes only into its own plane, so there are
// no races and no atomics.
#include "nn/ops.h"

#include <math.h>

#define OMP_MIN 32768

int ns_pool2d_geom_init(ns_pool2d_geom *g, ns_err *err) {
    if (g->N < 1 || g->C < 1 || g->H < 1 || g->W < 1 || g->KH < 1 || g->KW < 1)
        return ns_errf(err, "pool2d: sizes must be positive (N %lld C %lld H %lld W %lld "
                            "kernel %lldx%lld)",
                       (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W,
                       (long long)g->KH, (long long)g->KW);
    if (g->SH < 1 || g->SW < 1)
        return ns_errf(err, "pool2d: stride must be >= 1 (%lldx%lld)", (long long)g->SH,
                       (long long)g->SW);
    if (g->PH < 0 || g->PW < 0 || 2 * g->PH > g->KH || 2 * g->PW > g->KW)
        return ns_errf(err, "pool2d: padding %lldx%lld must be between 0 and half the "
                            "kernel %lldx%lld",
                       (long long)g->PH, (long long)g->PW, (long long)g->KH, (long long)g->KW);
    int64_t hw;
    if (__builtin_mul_overflow(g->H, g->W, &hw) || hw > INT32_MAX || g->KH > INT32_MAX ||
        g->KW > INT32_MAX || g->SH > INT32_MAX || g->SW > INT32_MAX)
        return ns_errf(err, "pool2d: plane %lldx%lld too large", (long long)g->H,
                       (long long)g->W);
    if (g->H + 2 * g->PH < g->KH || g->W + 2 * g->PW < g->KW)
        return ns_errf(err, "pool2d: kernel %lldx%lld is larger than the padded input "
                            "%lldx%lld",
                       (long long)g->KH, (long long)g->KW, (long long)(g->H + 2 * g->PH),
                       (long long)(g->W + 2 * g->PW));
    g->OH = (g->H + 2 * g->PH - g->KH) / g->SH + 1;
    g->OW = (g->W + 2 * g->PW - g->KW) / g->SW + 1;
    int64_t t;
    if (__builtin_mul_overflow(g->N, g->C, &t) || __builtin_mul_overflow(t, hw, &t))
        return ns_errf(err, "pool2d: tensor size overflows");
    return 0;
}

// ----------------------------------------------------------------------------
// max pool

void ns_maxpool2d_forward(float *out, int32_t *argmax, const float *inp,
                          const ns_pool2d_geom *g) {
    const int64_t N = g->N, C = g->C, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
#pragma omp parallel for schedule(static) if (N * C * OH * OW * g->KH * g->KW >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const float *x = inp + p * H * W;
        float *o = out + p * OH * OW;
        int32_t *am = argmax + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * g->SH - g->PH;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * g->SW - g->PW;
                float best = -INFINITY;
                int64_t idx = -1;
                for (int64_t ih = h0 < 0 ? 0 : h0; ih < h0 + g->KH && ih < H; ih++) {
                    for (int64_t iw = w0 < 0 ? 0 : w0; iw < w0 + g->KW && iw < W; iw++) {
                        float v = x[ih * W + iw];
                        if (idx < 0 || v > best || isnan(v)) {
                            best = v;
                            idx = ih * W + iw;
                        }
                    }
                }
                o[oh * OW + ow] = best;
                am[oh * OW + ow] = (int32_t)idx;
            }
        }
    }
}

void ns_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax,
                           const ns_pool2d_geom *g) {
    const int64_t N = g->N, C = g->C, HW = g->H * g->W, OHW = g->OH * g->OW;
#pragma omp parallel for schedule(static) if (N * C * OHW >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        float *dx = dinp + p * HW;
        const float *dy = dout + p * OHW;
        const int32_t *am = argmax + p * OHW;
        for (int64_t i = 0; i < OHW; i++) dx[am[i]] += dy[i];
    }
}

// ----------------------------------------------------------------------------
// average pool (count_include_pad=True)

void ns_avgpool2d_forward(float *out, const float *inp, const ns_pool2d_geom *g) {
    const int64_t N = g->N, C = g->C, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const float inv = 1.0f / (float)(g->KH * g->KW);
#pragma omp parallel for schedule(static) if (N * C * OH * OW * g->KH * g->KW >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const float *x = inp + p * H * W;
        float *o = out + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * g->SH - g->PH;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * g->SW - g->PW;
                float s = 0.0f;
                for (int64_t ih = h0 < 0 ? 0 : h0; ih < h0 + g->KH && ih < H; ih++)
                    for (int64_t iw = w0 < 0 ? 0 : w0; iw < w0 + g->KW && iw < W; iw++)
                        s += x[ih * W + iw];
                o[oh * OW + ow] = s * inv;
            }
        }
    }
}

void ns_avgpool2d_backward(float *dinp, const float *dout, const ns_pool2d_geom *g) {
    const int64_t N = g->N, C = g->C, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const float inv = 1.0f / (float)(g->KH * g->KW);
#pragma omp parallel for schedule(static) if (N * C * OH * OW * g->KH * g->KW >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        float *dx = dinp + p * H * W;
        const float *dy = dout + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * g->SH - g->PH;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * g->SW - g->PW;
                float d = dy[oh * OW + ow] * inv;
                for (int64_t ih = h0 < 0 ? 0 : h0; ih < h0 + g->KH && ih < H; ih++)
                    for (int64_t iw = w0 < 0 ? 0 : w0; iw < w0 + g->KW && iw < W; iw++)
                        dx[ih * W + iw] += d;
            }
        }
    }
}

// ----------------------------------------------------------------------------
// global average pool

void ns_global_avgpool_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t S) {
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const float *x = inp + p * S;
        double s = 0;
        for (int64_t i = 0; i < S; i++) s += x[i];
        out[p] = (float)(s / (double)S);
    }
}

void ns_global_avgpool_backward(float *dinp, const float *dout, int64_t N, int64_t C,
                                int64_t S) {
    const float inv = 1.0f / (float)S;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        float *dx = dinp + p * S;
        float d = dout[p] * inv;
        for (int64_t i = 0; i < S; i++) dx[i] += d;
    }
}
