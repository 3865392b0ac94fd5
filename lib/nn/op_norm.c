// op_norm.c: batch normalisation (1-d and 2-d), layer and group normalisation.
// Shapes: batch norm sees its input as (N, C, S), S = H*W for NCHW and S = 1
// for (N, C); weight, bias, running and saved statistics are (C). Layer norm
// sees (N, D) rows normalised over D; weight and bias are (D), saved mean and
// rstd are (N). Group norm sees (N, C, S) with (N, G) saved statistics. Statistics are two passes (mean, then squared deviations)
// within one thread per channel or row, summed in double. Batch norm takes
// them per plane (float block sums added in double) and merges the planes in
// sample order (Chan et al.'s update), so that a convolution can compute its
// planes' statistics while its output is in cache and the result is the same
// bit for bit (ns_batchnorm_plane_stats, ns_batchnorm_stats).
#include "nn/ops.h"
#include "base/tensor.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/plane_epilogue.h"

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

typedef float vf16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi16 __attribute__((vector_size(64), aligned(4), may_alias));

static float lanes_sum(const vf16 *a, const vf16 *b) {
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += (*a)[i] + (*b)[i];
    return s;
}

// Over x[0..n): sum of (x - m) when sq == 0, sum of (x - m)^2 when sq == 1.
NS_SIMD_CLONES static float block_sum(const float *x, int64_t n, float m, int sq) {
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
NS_SIMD_CLONES static void block_dy_sums(const float *dy, const float *x, int64_t n, float m, float *s1,
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

// The same with g = dy where mask > 0, else 0 (a relu's output as mask).
NS_SIMD_CLONES static void block_dy_sums_masked(const float *dy, const float *mask, const float *x,
                                        int64_t n, float m, float *s1, float *s2) {
    vf16 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, mv = m - (vf16){0}, z = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        vi16 c0 = *(const vf16 *)(mask + i) > z, c1 = *(const vf16 *)(mask + i + 16) > z;
        vf16 g0 = (vf16)(c0 & (vi16) * (const vf16 *)(dy + i));
        vf16 g1 = (vf16)(c1 & (vi16) * (const vf16 *)(dy + i + 16));
        a0 += g0;
        a1 += g1;
        b0 += g0 * (*(const vf16 *)(x + i) - mv);
        b1 += g1 * (*(const vf16 *)(x + i + 16) - mv);
    }
    float t1 = lanes_sum(&a0, &a1), t2 = lanes_sum(&b0, &b1);
    for (; i < n; i++) {
        float g = mask[i] > 0.0f ? dy[i] : 0.0f;
        t1 += g;
        t2 += g * (x[i] - m);
    }
    *s1 = t1;
    *s2 = t2;
}

// The same with g = dy where x * a + b > 0, else 0: the mask of a relu that
// directly follows the batch norm, recomputed from its input with the
// forward's arithmetic (a multiply, then an add: the same bits).
NS_SIMD_CLONES static void block_dy_sums_affmask(const float *dy, const float *x, int64_t n, float m,
                                         float a, float b, float *s1, float *s2) {
    vf16 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, mv = m - (vf16){0}, z = {0};
    vf16 av = a - (vf16){0}, bv = b - (vf16){0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        vf16 x0 = *(const vf16 *)(x + i), x1 = *(const vf16 *)(x + i + 16);
        vf16 y0 = x0 * av, y1 = x1 * av;
        y0 = y0 + bv, y1 = y1 + bv;
        vi16 c0 = y0 > z, c1 = y1 > z;
        vf16 g0 = (vf16)(c0 & (vi16) * (const vf16 *)(dy + i));
        vf16 g1 = (vf16)(c1 & (vi16) * (const vf16 *)(dy + i + 16));
        a0 += g0;
        a1 += g1;
        b0 += g0 * (x0 - mv);
        b1 += g1 * (x1 - mv);
    }
    float t1 = lanes_sum(&a0, &a1), t2 = lanes_sum(&b0, &b1);
    for (; i < n; i++) {
        float y = x[i] * a;
        y = y + b;
        float g = y > 0.0f ? dy[i] : 0.0f;
        t1 += g;
        t2 += g * (x[i] - m);
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

// sum of dy and of dy * (x - m) over a plane (dy masked by mask > 0 when
// mask is not NULL, else by x * aff[0] + aff[1] > 0 when aff is not NULL)
static void plane_dy_sums(const float *dy, const float *mask, const float *aff, const float *x,
                          float m, int64_t S, double *sdy, double *sdyx) {
    for (int64_t b = 0; b < S; b += BLOCK) {
        float s1, s2;
        int64_t n = S - b < BLOCK ? S - b : BLOCK;
        if (mask) block_dy_sums_masked(dy + b, mask + b, x + b, n, m, &s1, &s2);
        else if (aff) block_dy_sums_affmask(dy + b, x + b, n, m, aff[0], aff[1], &s1, &s2);
        else block_dy_sums(dy + b, x + b, n, m, &s1, &s2);
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

// A plane's mean and sum of squared deviations: the deviations are taken
// from the float mean, (x - mf) differing from (x - m) by a constant whose
// square is removed after.
void ns_batchnorm_plane_stats(double *st, const float *x, int64_t S) {
    const double m = plane_sum(x, S, 0.0f, 0) / (double)S;
    const float mf = (float)m;
    double v = plane_sum(x, S, mf, 1);
    const double dm = m - (double)mf;
    v -= (double)S * dm * dm;
    st[0] = m;
    st[1] = v < 0 ? 0 : v;
}

// Chan, Golub and LeVeque's update: (cnt, m, v) of the planes so far, merged
// with one more plane of S values.
static void merge_plane(double *cnt, double *m, double *v, const double *st, int64_t S) {
    const double nc = *cnt + (double)S, d = st[0] - *m;
    *m += d * ((double)S / nc);
    *v += st[1] + d * d * (*cnt * (double)S / nc);
    *cnt = nc;
}

// Channel c's saved and running statistics from its merged mean m and sum of
// squared deviations v over M values.
static void finish_stats(float *mean, float *rstd, float *running_mean, float *running_var,
                         int64_t c, double m, double v, int64_t M, float momentum, float eps) {
    const double var = v / (double)M;
    if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
    if (running_var) {
        double unbiased = M > 1 ? v / (double)(M - 1) : var;
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
    mean[c] = (float)m;
    rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
}

// Synchronised batch norm (ns_batchnorm_set_sync): the sum over processes, or NULL.
static ns_batchnorm_sum_fn bn_sync;

void ns_batchnorm_set_sync(ns_batchnorm_sum_fn sum) { bn_sync = sum; }

// cmv (C, 3): each channel's count, mean and sum of squared deviations over
// this process's batch, made those over every process's: counts and sums
// summed, then the squared deviations from the global mean, v + cnt (m - M)^2,
// summed (a second pass, so nothing cancels). Then the saved and running
// statistics, as finish_stats does for one process.
static void finish_synced(float *mean, float *rstd, float *running_mean, float *running_var, const double *cmv,
                          int64_t C, float momentum, float eps) {
    double sums[2 * C], dev[C], m[C];
    ns_err err; // a failed sum ends the job (MPI's errors are fatal)
    for (int64_t c = 0; c < C; c++) sums[2 * c] = cmv[3 * c], sums[2 * c + 1] = cmv[3 * c] * cmv[3 * c + 1];
    bn_sync(sums, 2 * C, &err);
    for (int64_t c = 0; c < C; c++) {
        m[c] = sums[2 * c] > 0 ? sums[2 * c + 1] / sums[2 * c] : 0;
        const double d = cmv[3 * c + 1] - m[c];
        dev[c] = cmv[3 * c + 2] + cmv[3 * c] * d * d;
    }
    bn_sync(dev, C, &err);
    for (int64_t c = 0; c < C; c++)
        finish_stats(mean, rstd, running_mean, running_var, c, m[c], dev[c], (int64_t)sums[2 * c], momentum, eps);
}

void ns_batchnorm_stats(float *mean, float *rstd, float *running_mean, float *running_var,
                        const double *plane_stats, int64_t N, int64_t C, int64_t S,
                        float momentum, float eps) {
    if (bn_sync) {
        double cmv[3 * C];
        for (int64_t c = 0; c < C; c++) {
            double cnt = 0, m = 0, v = 0;
            for (int64_t n = 0; n < N; n++) merge_plane(&cnt, &m, &v, plane_stats + 2 * (n * C + c), S);
            cmv[3 * c] = cnt, cmv[3 * c + 1] = m, cmv[3 * c + 2] = v;
        }
        finish_synced(mean, rstd, running_mean, running_var, cmv, C, momentum, eps);
        return;
    }
    for (int64_t c = 0; c < C; c++) {
        double cnt = 0, m = 0, v = 0;
        for (int64_t n = 0; n < N; n++) merge_plane(&cnt, &m, &v, plane_stats + 2 * (n * C + c), S);
        finish_stats(mean, rstd, running_mean, running_var, c, m, v, N * S, momentum, eps);
    }
}

void ns_batchnorm_eval_stats(float *mean, float *rstd, const float *running_mean,
                             const float *running_var, int64_t C, float eps) {
    for (int64_t c = 0; c < C; c++) {
        mean[c] = running_mean[c];
        rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
    }
}

void ns_batchnorm_affine(float *scale, float *shift, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int64_t C) {
    for (int64_t c = 0; c < C; c++) {
        const float w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
        scale[c] = rstd[c] * w;
        shift[c] = b - mean[c] * rstd[c] * w;
    }
}

void ns_batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *inp, const float *weight,
                          const float *bias, int64_t N, int64_t C, int64_t S, int training,
                          float momentum, float eps) {
    if (!training) {
        ns_batchnorm_eval_stats(mean, rstd, running_mean, running_var, C, eps);
        bn_apply(out, inp, mean, rstd, weight, bias, N, C, S);
        return;
    }
    if (bn_sync) { // this batch's moments per channel, then everyone's
        double cmv[3 * C];
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
        for (int64_t c = 0; c < C; c++) {
            double cnt = 0, m = 0, v = 0;
            for (int64_t n = 0; n < N; n++) {
                double st[2];
                ns_batchnorm_plane_stats(st, inp + (n * C + c) * S, S);
                merge_plane(&cnt, &m, &v, st, S);
            }
            cmv[3 * c] = cnt, cmv[3 * c + 1] = m, cmv[3 * c + 2] = v;
        }
        finish_synced(mean, rstd, running_mean, running_var, cmv, C, momentum, eps);
        bn_apply(out, inp, mean, rstd, weight, bias, N, C, S);
        return;
    }
    // per plane, merged in sample order: what ns_batchnorm_stats does with
    // statistics a convolution computed for its planes
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double cnt = 0, m = 0, v = 0;
        for (int64_t n = 0; n < N; n++) {
            double st[2];
            ns_batchnorm_plane_stats(st, inp + (n * C + c) * S, S);
            merge_plane(&cnt, &m, &v, st, S);
        }
        finish_stats(mean, rstd, running_mean, running_var, c, m, v, N * S, momentum, eps);
    }
    bn_apply(out, inp, mean, rstd, weight, bias, N, C, S);
}

void ns_batchnorm_apply(float *out, float *bn_out, float *sum_out, const float *inp,
                        const float *scale_c, const float *shift_c, const float *residual,
                        int relu, int64_t N, int64_t C, int64_t S) {
    const int f = NS_EPI_SCALE | (bn_out ? NS_EPI_AOUT : 0) |
                  (residual ? NS_EPI_RES | (sum_out ? NS_EPI_ROUT : 0) : 0) | (relu ? NS_EPI_RELU : 0);
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        ns_epilogue_plane(f, out + p * S, inp + p * S, S, scale_c[c], shift_c[c],
                          residual ? residual + p * S : NULL, bn_out ? bn_out + p * S : NULL,
                          sum_out ? sum_out + p * S : NULL);
    }
}

// Channels up to this many keep their backward coefficients on the stack for
// the memory-order pass; beyond, each channel's thread applies them itself.
#define BN_STACK_C 1024

// dx (= or +=) k0 * (g - k1 - (x - m) * k2), dr (= or +=) g, over a plane,
// g = dy masked by mask > 0 when mask is not NULL. Flags constant after inlining.
enum { BW_MASK = 1, BW_RES = 2, BW_OVER = 4, BW_DX = 8, BW_ROVER = 16, BW_AFF = 32 };
__attribute__((always_inline)) static inline void bwd_plane(const int f, float *restrict dx,
                                                            float *restrict dr,
                                                            const float *restrict dy,
                                                            const float *restrict mask,
                                                            const float *restrict x, float m,
                                                            float k0, float k1, float k2,
                                                            float a, float b, int64_t S) {
#pragma omp simd
    for (int64_t i = 0; i < S; i++) {
        float d = dy[i]; // loaded either way, so the select vectorises
        float y = x[i] * a;
        y = y + b;
        float g = f & BW_MASK ? (mask[i] > 0.0f ? d : 0.0f) : f & BW_AFF ? (y > 0.0f ? d : 0.0f) : d;
        if (f & BW_DX) {
            float v = k0 * (g - k1 - (x[i] - m) * k2);
            if (f & BW_OVER) dx[i] = v;
            else dx[i] += v;
        }
        if (f & BW_RES) {
            if (f & BW_ROVER) dr[i] = g;
            else dr[i] += g;
        }
    }
}

#define BW_CASE(f)                                                                             \
    case f:                                                                                    \
        bwd_plane(f, dx, dr, dy, mk, x, m, k0, k1, k2, a, b, S);                               \
        break;

static void bwd_plane_any(int f, float *dx, float *dr, const float *dy, const float *mk,
                          const float *x, float m, float k0, float k1, float k2, float a, float b,
                          int64_t S) {
    switch (f) {
        BW_CASE(2) BW_CASE(3) BW_CASE(6) BW_CASE(7) BW_CASE(8) BW_CASE(9) BW_CASE(10)
        BW_CASE(11) BW_CASE(12) BW_CASE(13) BW_CASE(14) BW_CASE(15) BW_CASE(18) BW_CASE(19)
        BW_CASE(22) BW_CASE(23) BW_CASE(24) BW_CASE(25) BW_CASE(26) BW_CASE(27) BW_CASE(28)
        BW_CASE(29) BW_CASE(30) BW_CASE(31) BW_CASE(34) BW_CASE(38) BW_CASE(40) BW_CASE(42)
        BW_CASE(44) BW_CASE(46) BW_CASE(50) BW_CASE(54) BW_CASE(56) BW_CASE(58) BW_CASE(60)
        BW_CASE(62)
    }
}

void ns_batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int64_t N, int64_t C, int64_t S,
                           int training) {
    ns_batchnorm_backward_ex(dinp, dweight, dbias, NULL, dout, NULL, NULL, inp, mean, rstd, weight,
                             N, C, S, training, 0);
}

// Synchronised batch norm's backward in training: this batch's channel sums
// of g and g * xhat (added to dbias and dweight: the gradient sum over the
// processes adds the others'), then everyone's with the count, for the
// coefficients; then the elementwise pass as ns_batchnorm_backward_ex's.
static void backward_synced(int f, float *dinp, float *dweight, float *dbias, float *dres, const float *dout,
                            const float *relu_out, const float *ra, const float *rb, const float *inp,
                            const float *mean, const float *rstd, const float *weight, int64_t N, int64_t C,
                            int64_t S) {
    double sums[2 * C + 1];
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyx = 0;
        for (int64_t n = 0; n < N; n++) {
            float aff[2] = {ra ? ra[c] : 1.0f, rb ? rb[c] : 0.0f};
            plane_dy_sums(dout + (n * C + c) * S, relu_out ? relu_out + (n * C + c) * S : NULL, ra ? aff : NULL,
                          inp + (n * C + c) * S, mean[c], S, &sdy, &sdyx);
        }
        sdyx *= rstd[c];
        if (dbias) dbias[c] += (float)sdy;
        if (dweight) dweight[c] += (float)sdyx;
        sums[2 * c] = sdy, sums[2 * c + 1] = sdyx;
    }
    sums[2 * C] = (double)(N * S);
    ns_err err; // a failed sum ends the job (MPI's errors are fatal)
    bn_sync(sums, 2 * C + 1, &err);
    if (!dinp && !dres) return;
    const double M = sums[2 * C];
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C, o = p * S;
        const float rs = rstd[c], k0 = (weight ? weight[c] : 1.0f) * rs;
        const float k1 = (float)(sums[2 * c] / M), k2 = rs * (float)(sums[2 * c + 1] / M);
        bwd_plane_any(f, dinp ? dinp + o : NULL, dres ? dres + o : NULL, dout + o, relu_out ? relu_out + o : NULL,
                      inp + o, mean[c], k0, k1, k2, ra ? ra[c] : 1.0f, rb ? rb[c] : 0.0f, S);
    }
}

void ns_batchnorm_backward_ex(float *dinp, float *dweight, float *dbias, float *dres,
                              const float *dout, const float *relu_out,
                              const float *relu_affine, const float *inp, const float *mean,
                              const float *rstd, const float *weight, int64_t N, int64_t C,
                              int64_t S, int training, int overwrite) {
    const int64_t M = N * S;
    if (relu_out) relu_affine = NULL;
    const int f = (relu_out ? BW_MASK : 0) | (dres ? BW_RES : 0) | (overwrite & 1 ? BW_OVER : 0) |
                  (dinp ? BW_DX : 0) | (overwrite & 2 ? BW_ROVER : 0) | (relu_affine ? BW_AFF : 0);
    const float *ra = relu_affine, *rb = relu_affine ? relu_affine + C : NULL;
    const int elementwise = dinp || dres;
    if (bn_sync && training) {
        backward_synced(f, dinp, dweight, dbias, dres, dout, relu_out, ra, rb, inp, mean, rstd, weight, N, C, S);
        return;
    }
    // dx = w rstd (g - mean(g) - xhat mean(g xhat)) in training, w rstd g
    // in eval: per channel, dx += k[0] * (g - k[1] - (x - mean) * k[2])
    float coef[3 * BN_STACK_C];
    const int split = C <= BN_STACK_C;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], rs = rstd[c];
        double sdy = 0, sdyx = 0; // sum of g, sum of g * xhat
        for (int64_t n = 0; n < N; n++)
        {
            float aff[2] = {ra ? ra[c] : 1.0f, rb ? rb[c] : 0.0f};
            plane_dy_sums(dout + (n * C + c) * S, relu_out ? relu_out + (n * C + c) * S : NULL,
                          ra ? aff : NULL, inp + (n * C + c) * S, m, S, &sdy, &sdyx);
        }
        sdyx *= rs;
        if (dbias) dbias[c] += (float)sdy;
        if (dweight) dweight[c] += (float)sdyx;
        if (!elementwise) continue;
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
            const int64_t o = (n * C + c) * S;
            bwd_plane_any(f, dinp ? dinp + o : NULL, dres ? dres + o : NULL, dout + o,
                          relu_out ? relu_out + o : NULL, inp + o, m, k0, k1, k2,
                          ra ? ra[c] : 1.0f, rb ? rb[c] : 0.0f, S);
        }
    }
    if (!elementwise || !split) return;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C, o = p * S;
        bwd_plane_any(f, dinp ? dinp + o : NULL, dres ? dres + o : NULL, dout + o,
                      relu_out ? relu_out + o : NULL, inp + o, mean[c], coef[3 * c],
                      coef[3 * c + 1], coef[3 * c + 2], ra ? ra[c] : 1.0f, rb ? rb[c] : 0.0f, S);
    }
}

// The mean and 1/sqrt(variance + eps) of x[0..M), summed in double: one
// layer-norm row or one group-norm group.
static inline void norm_stats(const float *x, int64_t M, float eps, float *mean, float *rstd) {
    double s = 0;
    for (int64_t i = 0; i < M; i++) s += x[i];
    double m = s / (double)M, v = 0;
    for (int64_t i = 0; i < M; i++) {
        double d = x[i] - m;
        v += d * d;
    }
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(v / (double)M + (double)eps));
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
        float mf, rs;
        norm_stats(x, D, eps, &mf, &rs);
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

// Layer norm's weight and bias gradients sum this many features at a time.
#define LN_BLOCK 64

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
    if (dweight || dbias) { // per feature, rows in order; a block of features row by row
        const int64_t nblocks = (D + LN_BLOCK - 1) / LN_BLOCK;
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
        for (int64_t ib = 0; ib < nblocks; ib++) {
            const int64_t i0 = ib * LN_BLOCK, ni = D - i0 < LN_BLOCK ? D - i0 : LN_BLOCK;
            double sw[LN_BLOCK] = {0}, sb[LN_BLOCK] = {0};
            for (int64_t n = 0; n < N; n++) {
                const float *dy = dout + n * D + i0, *x = inp + n * D + i0;
                const float m = mean[n], rs = rstd[n];
                for (int64_t i = 0; i < ni; i++) {
                    sb[i] += dy[i];
                    sw[i] += (double)dy[i] * ((x[i] - m) * rs);
                }
            }
            for (int64_t i = 0; i < ni; i++) {
                if (dweight) dweight[i0 + i] += (float)sw[i];
                if (dbias) dbias[i0 + i] += (float)sb[i];
            }
        }
    }
}

// Group norm: per (sample, group) statistics over its C/G channels' S
// values each, as the layer norm's; the affine map is per channel.
void ns_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int64_t N, int64_t C, int64_t S,
                          int64_t G, float eps) {
    const int64_t CG = C / G, M = CG * S;
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
    for (int64_t p = 0; p < N * G; p++) {
        const float *x = inp + p * M;
        float *o = out + p * M;
        float mf, rs;
        norm_stats(x, M, eps, &mf, &rs);
        mean[p] = mf;
        rstd[p] = rs;
        for (int64_t c = 0; c < CG; c++) {
            int64_t ch = (p % G) * CG + c;
            for (int64_t i = c * S; i < (c + 1) * S; i++) {
                float y = (x[i] - mf) * rs;
                if (weight) y *= weight[ch];
                if (bias) y += bias[ch];
                o[i] = y;
            }
        }
    }
}

void ns_groupnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *mean, const float *rstd,
                           const float *weight, int64_t N, int64_t C, int64_t S, int64_t G) {
    const int64_t CG = C / G, M = CG * S;
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
        for (int64_t p = 0; p < N * G; p++) {
            const float *x = inp + p * M, *dy = dout + p * M;
            float *dx = dinp + p * M;
            const float m = mean[p], rs = rstd[p];
            double sg = 0, sgx = 0;
            for (int64_t c = 0; c < CG; c++) {
                float w = weight ? weight[(p % G) * CG + c] : 1.0f;
                for (int64_t i = c * S; i < (c + 1) * S; i++) {
                    float g = dy[i] * w;
                    sg += g;
                    sgx += (double)g * ((x[i] - m) * rs);
                }
            }
            const float a = (float)(sg / (double)M), b = (float)(sgx / (double)M);
            for (int64_t c = 0; c < CG; c++) {
                float w = weight ? weight[(p % G) * CG + c] : 1.0f;
                for (int64_t i = c * S; i < (c + 1) * S; i++)
                    dx[i] += rs * (dy[i] * w - a - (x[i] - m) * rs * b);
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static) if (N * C * S >= OMP_MIN)
        for (int64_t ch = 0; ch < C; ch++) {
            double sw = 0, sb = 0;
            for (int64_t n = 0; n < N; n++) {
                int64_t p = n * G + ch / CG;
                const float *x = inp + (n * C + ch) * S, *dy = dout + (n * C + ch) * S;
                for (int64_t i = 0; i < S; i++) {
                    sb += dy[i];
                    sw += (double)dy[i] * ((x[i] - mean[p]) * rstd[p]);
                }
            }
            if (dweight) dweight[ch] += (float)sw;
            if (dbias) dbias[ch] += (float)sb;
        }
    }
}
