// op_norm.c: batch normalisation (1-d and 2-d) and layer normalisation.
// Shapes: batch norm sees its input as (N, C, S), S = H*W for NCHW and S = 1
// for (N, C); weight, bias, running and saved statistics are (C). Layer norm
// sees (N, D) rows normalised over D; weight and bias are (D), saved mean and
// rstd are (N). Statistics are two passes (mean, then squared deviations)
// within one thread per channel or row, summed in double (batch norm: per
// plane in float, then in double).
#include "ops.h"

#include <math.h>

#define OMP_MIN 32768

// ----------------------------------------------------------------------------
// batch norm
//
// One thread per channel. Sums run over blocks of at most BLOCK values of a
// plane in float and add the block sums in double, in a fixed order: a
// double add per element is a serial chain of latency-bound adds, about 10x
// slower, and float sums over a thousand values lose nothing that matters
// next to float activations. Within a block, 32 lanes accumulate side by
// side (two 16-float vectors of GCC's generic vector type, so the adds are
// independent and vectorise) and are added up in a fixed order at the end:
// the result does not depend on the instruction set the clone below uses.
#define BLOCK 1024

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif
typedef float vf16 __attribute__((vector_size(64), aligned(4), may_alias));

static float lanes_sum(const vf16 *a, const vf16 *b) {
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += (*a)[i] + (*b)[i];
    return s;
}

// Over x[0..n): sum of (x - m) when sq == 0, sum of (x - m)^2 when sq == 1.
CLONES static float block_sum(const float *x, int64_t n, float m, int sq) {
    vf16 a = {0}, b = {0}, mv = m - (vf16){0};
    int64_t i = 0;
    if (sq) {
        for (; i + 32 <= n; i += 32) {
            vf16 d0 = *(const vf16 *)(x + i) - mv, d1 = *(const vf16 *)(x + i + 16) - mv;
            a += d0 * d0;
            b += d1 * d1;
        }
    } else {
        for (; i + 32 <= n; i += 32) {
            a += *(const vf16 *)(x + i) - mv;
            b += *(const vf16 *)(x + i + 16) - mv;
        }
    }
    float s = lanes_sum(&a, &b);
    for (; i < n; i++) s += sq ? (x[i] - m) * (x[i] - m) : x[i] - m;
    return s;
}

// Over a block: *s1 = sum of dy, *s2 = sum of dy * (x - m).
CLONES static void block_dy_sums(const float *dy, const float *x, int64_t n, float m, float *s1,
                                 float *s2) {
    vf16 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, mv = m - (vf16){0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        vf16 g0 = *(const vf16 *)(dy + i), g1 = *(const vf16 *)(dy + i + 16);
        a0 += g0;
        a1 += g1;
        b0 += g0 * (*(const vf16 *)(x + i) - mv);
        b1 += g1 * (*(const vf16 *)(x + i + 16) - mv);
    }
    float t1 = lanes_sum(&a0, &a1), t2 = lanes_sum(&b0, &b1);
    for (; i < n; i++) {
        t1 += dy[i];
        t2 += dy[i] * (x[i] - m);
    }
    *s1 = t1;
    *s2 = t2;
}

// sum over a plane of (x - m), or of (x - m)^2
static double plane_sum(const float *x, int64_t S, float m, int sq) {
    double d = 0;
    for (int64_t b = 0; b < S; b += BLOCK) d += block_sum(x + b, S - b < BLOCK ? S - b : BLOCK, m, sq);
    return d;
}

// sum of dy and of dy * (x - m) over a plane
static void plane_dy_sums(const float *dy, const float *x, float m, int64_t S, double *sdy,
                          double *sdyx) {
    for (int64_t b = 0; b < S; b += BLOCK) {
        float s1, s2;
        block_dy_sums(dy + b, x + b, S - b < BLOCK ? S - b : BLOCK, m, &s1, &s2);
        *sdy += s1;
        *sdyx += s2;
    }
}

// Statistics go channel by channel (one thread per channel, in a fixed
// order); the elementwise passes go plane by plane in memory order, like any
// elementwise op: writing 256 planes 50 KB apart channel after channel ran at
// a third of the speed.

// The elementwise pass of the forward: out = x * scale[c] + shift[c], from
// the saved mean and rstd.
static void bn_apply(float *out, const float *inp, const float *mean, const float *rstd,
                     const float *weight, const float *bias, int64_t N, int64_t C, int64_t S) {
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        const float w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
        const float scale = rstd[c] * w, shift = b - mean[c] * rstd[c] * w;
        const float *x = inp + p * S;
        float *o = out + p * S;
#pragma omp simd
        for (int64_t i = 0; i < S; i++) o[i] = x[i] * scale + shift;
    }
}

void ns_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *inp, const float *weight,
                          const float *bias, int64_t N, int64_t C, int64_t S, int training,
                          float momentum, float eps) {
    const int64_t M = N * S; // values per channel
    if (!training) {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = running_mean[c];
            rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        }
        bn_apply(out, inp, mean, rstd, weight, bias, N, C, S);
        return;
    }
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) s += plane_sum(inp + (n * C + c) * S, S, 0.0f, 0);
        const double m = s / (double)M;
        // deviations from the float mean; (x - mf) differs from (x - m) by a
        // constant, whose square is removed below
        const float mf = (float)m;
        double v = 0;
        for (int64_t n = 0; n < N; n++) v += plane_sum(inp + (n * C + c) * S, S, mf, 1);
        const double dm = m - (double)mf;
        v -= (double)M * dm * dm;
        if (v < 0) v = 0;
        const double var = v / (double)M;
        if (running_mean)
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
        if (running_var) {
            double unbiased = M > 1 ? v / (double)(M - 1) : var;
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
        mean[c] = mf;
        rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    }
    bn_apply(out, inp, mean, rstd, weight, bias, N, C, S);
}

// Channels up to this many keep their backward coefficients on the stack for
// the memory-order pass; beyond, each channel's thread applies them itself.
#define BN_STACK_C 1024

void ns_batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int64_t N, int64_t C, int64_t S,
                           int training) {
    const int64_t M = N * S;
    // dx = w rstd (dy - mean(dy) - xhat mean(dy xhat)) in training, w rstd dy
    // in eval: per channel, dx += k[0] * (dy - k[1] - (x - mean) * k[2])
    float coef[3 * BN_STACK_C];
    const int split = C <= BN_STACK_C;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], rs = rstd[c];
        double sdy = 0, sdyx = 0; // sum of dout, sum of dout * xhat
        for (int64_t n = 0; n < N; n++)
            plane_dy_sums(dout + (n * C + c) * S, inp + (n * C + c) * S, m, S, &sdy, &sdyx);
        sdyx *= rs;
        if (dbias) dbias[c] += (float)sdy;
        if (dweight) dweight[c] += (float)sdyx;
        if (!dinp) continue;
        const float k0 = (weight ? weight[c] : 1.0f) * rs;
        const float k1 = training ? (float)(sdy / (double)M) : 0.0f;
        const float k2 = training ? rs * (float)(sdyx / (double)M) : 0.0f;
        if (split) {
            coef[3 * c] = k0;
            coef[3 * c + 1] = k1;
            coef[3 * c + 2] = k2;
            continue;
        }
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + (n * C + c) * S;
            const float *dy = dout + (n * C + c) * S;
            float *dx = dinp + (n * C + c) * S;
#pragma omp simd
            for (int64_t i = 0; i < S; i++) dx[i] += k0 * (dy[i] - k1 - (x[i] - m) * k2);
        }
    }
    if (!dinp || !split) return;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        const float k0 = coef[3 * c], k1 = coef[3 * c + 1], k2 = coef[3 * c + 2], m = mean[c];
        const float *x = inp + p * S, *dy = dout + p * S;
        float *dx = dinp + p * S;
#pragma omp simd
        for (int64_t i = 0; i < S; i++) dx[i] += k0 * (dy[i] - k1 - (x[i] - m) * k2);
    }
}

// ----------------------------------------------------------------------------
// layer norm

void ns_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int64_t N, int64_t D,
                          float eps) {
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * D;
        float *o = out + n * D;
        double s = 0;
        for (int64_t i = 0; i < D; i++) s += x[i];
        double m = s / (double)D, v = 0;
        for (int64_t i = 0; i < D; i++) {
            double d = x[i] - m;
            v += d * d;
        }
        float mf = (float)m, rs = (float)(1.0 / sqrt(v / (double)D + (double)eps));
        mean[n] = mf;
        rstd[n] = rs;
        for (int64_t i = 0; i < D; i++) {
            float y = (x[i] - mf) * rs;
            if (weight) y *= weight[i];
            if (bias) y += bias[i];
            o[i] = y;
        }
    }
}

void ns_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int64_t N, int64_t D) {
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + n * D, *dy = dout + n * D;
            float *dx = dinp + n * D;
            const float m = mean[n], rs = rstd[n];
            double sg = 0, sgx = 0; // sum of dxhat, sum of dxhat * xhat
            for (int64_t i = 0; i < D; i++) {
                float g = weight ? dy[i] * weight[i] : dy[i];
                sg += g;
                sgx += (double)g * ((x[i] - m) * rs);
            }
            const float a = (float)(sg / (double)D), b = (float)(sgx / (double)D);
            for (int64_t i = 0; i < D; i++) {
                float g = weight ? dy[i] * weight[i] : dy[i];
                dx[i] += rs * (g - a - (x[i] - m) * rs * b);
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
        for (int64_t i = 0; i < D; i++) {
            double sw = 0, sb = 0;
            for (int64_t n = 0; n < N; n++) {
                float dy = dout[n * D + i];
                sb += dy;
                sw += (double)dy * ((inp[n * D + i] - mean[n]) * rstd[n]);
            }
            if (dweight) dweight[i] += (float)sw;
            if (dbias) dbias[i] += (float)sb;
        }
    }
}
