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
// plane in float, by vectorised loops, and add the block sums in double, in
// a fixed order: a double add per element is a serial chain of
// latency-bound adds, about 10x slower, and float sums over a thousand values
// lose nothing that matters next to float activations.
#define BLOCK 1024

static double plane_sum(const float *x, int64_t S) {
    double d = 0;
    for (int64_t b = 0; b < S; b += BLOCK) {
        int64_t e = b + BLOCK < S ? b + BLOCK : S;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = b; i < e; i++) s += x[i];
        d += s;
    }
    return d;
}

static double plane_sqdev(const float *x, float m, int64_t S) {
    double d = 0;
    for (int64_t b = 0; b < S; b += BLOCK) {
        int64_t e = b + BLOCK < S ? b + BLOCK : S;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = b; i < e; i++) s += (x[i] - m) * (x[i] - m);
        d += s;
    }
    return d;
}

// sum of dy and of dy * (x - m) over a plane
static void plane_dy_sums(const float *dy, const float *x, float m, int64_t S, double *sdy,
                          double *sdyx) {
    for (int64_t b = 0; b < S; b += BLOCK) {
        int64_t e = b + BLOCK < S ? b + BLOCK : S;
        float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = b; i < e; i++) {
            s1 += dy[i];
            s2 += dy[i] * (x[i] - m);
        }
        *sdy += s1;
        *sdyx += s2;
    }
}

void ns_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *inp, const float *weight,
                          const float *bias, int64_t N, int64_t C, int64_t S, int training,
                          float momentum, float eps) {
    const int64_t M = N * S; // values per channel
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double m, var;
        if (training) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += plane_sum(inp + (n * C + c) * S, S);
            m = s / (double)M;
            // deviations from the float mean; (x - mf) differs from (x - m)
            // by a constant, whose square is removed below
            const float mf = (float)m;
            double v = 0;
            for (int64_t n = 0; n < N; n++) v += plane_sqdev(inp + (n * C + c) * S, mf, S);
            double dm = m - (double)mf;
            v -= (double)M * dm * dm;
            if (v < 0) v = 0;
            var = v / (double)M;
            if (running_mean)
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            if (running_var) {
                double unbiased = M > 1 ? v / (double)(M - 1) : var;
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
            }
        } else {
            m = running_mean[c];
            var = running_var[c];
        }
        float mf = (float)m, rs = (float)(1.0 / sqrt(var + (double)eps));
        mean[c] = mf;
        rstd[c] = rs;
        float w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
        float scale = rs * w, shift = b - mf * rs * w;
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + (n * C + c) * S;
            float *o = out + (n * C + c) * S;
#pragma omp simd
            for (int64_t i = 0; i < S; i++) o[i] = x[i] * scale + shift;
        }
    }
}

void ns_batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int64_t N, int64_t C, int64_t S,
                           int training) {
    const int64_t M = N * S;
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
        const float wrs = (weight ? weight[c] : 1.0f) * rs;
        // training: dx = w rstd (dy - mean(dy) - xhat mean(dy xhat)); eval: w rstd dy
        const float a = training ? (float)(sdy / (double)M) : 0.0f;
        const float b = training ? (float)(sdyx / (double)M) : 0.0f;
        const float rsb = rs * b;
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + (n * C + c) * S;
            const float *dy = dout + (n * C + c) * S;
            float *dx = dinp + (n * C + c) * S;
#pragma omp simd
            for (int64_t i = 0; i < S; i++) dx[i] += wrs * (dy[i] - a - (x[i] - m) * rsb);
        }
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
