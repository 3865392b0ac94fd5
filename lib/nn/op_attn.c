// op_attn.c: softmax along an axis and multi-head attention (ops.h).
// Shapes: softmax (outer, L, inner); attention x (N, Tq, D), mem (N, Tk, D),
// Hd heads of dh = D/Hd features; with cross_heads c (twin self-attention,
// N = 2 x pairs) head h >= Hd - c of sample n reads the keys and values of
// kv_sample(n, h) = its partner (n + N/2) mod N. The saved state of an
// attention forward is
//   q, k, v   self: one (N, Tq, 3D) block [q | k | v] per token row (row
//             stride 3D); cross: q (N, Tq, D), then [k | v] (N, Tk, 2D)
//   P         (N, Hd, Tq, Tk) attention probabilities
//   ctx       (N, Tq, D) the heads' outputs, before the output projection
// The projections are ns_linear (ns_sgemm); the per-head products are small
// (tokens x head size) and run as plain loops, one (sample, head) pair per
// iteration of a static OpenMP loop, so every sum has a fixed order.
#include "nn/ops.h"

#include <math.h>
#include <string.h>

#define OMP_MIN 32768

// ---------------------------------------------------------------------------
// softmax

void ns_softmax_forward(float *out, const float *inp, int64_t outer, int64_t L, int64_t inner) {
#pragma omp parallel for schedule(static) if (outer * L * inner >= OMP_MIN)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t r = 0; r < inner; r++) {
            const float *x = inp + o * L * inner + r;
            float *y = out + o * L * inner + r;
            float mx = -INFINITY;
            for (int64_t j = 0; j < L; j++) mx = fmaxf(mx, x[j * inner]);
            double s = 0;
            for (int64_t j = 0; j < L; j++) {
                float e = expf(x[j * inner] - mx);
                y[j * inner] = e;
                s += e;
            }
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < L; j++) y[j * inner] *= inv;
        }
    }
}

// dx_j = y_j (dy_j - sum_k y_k dy_k)
void ns_softmax_backward(float *dinp, const float *dout, const float *out, int64_t outer,
                         int64_t L, int64_t inner) {
#pragma omp parallel for schedule(static) if (outer * L * inner >= OMP_MIN)
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t r = 0; r < inner; r++) {
            const float *y = out + o * L * inner + r, *dy = dout + o * L * inner + r;
            float *dx = dinp + o * L * inner + r;
            double s = 0;
            for (int64_t j = 0; j < L; j++) s += (double)y[j * inner] * dy[j * inner];
            float sf = (float)s;
            for (int64_t j = 0; j < L; j++) dx[j * inner] += y[j * inner] * (dy[j * inner] - sf);
        }
    }
}

// ---------------------------------------------------------------------------
// attention

typedef struct attn_layout {
    float *q, *k, *v, *P, *ctx;
    int64_t ldq, ldkv; // row strides of q and of k, v
    int64_t dh;
} attn_layout;

static attn_layout layout(const ns_attn_geom *g, float *saved) {
    attn_layout a;
    int64_t D = g->D;
    a.dh = D / g->Hd;
    a.q = saved;
    if (g->self) {
        a.ldq = a.ldkv = 3 * D;
        a.k = saved + D;
        a.v = saved + 2 * D;
    } else {
        a.ldq = D;
        a.ldkv = 2 * D;
        a.k = saved + g->N * g->Tq * D;
        a.v = a.k + D;
    }
    a.P = saved + g->N * g->Tq * D + g->N * g->Tk * 2 * D;
    a.ctx = a.P + g->N * g->Hd * g->Tq * g->Tk;
    return a;
}

int64_t ns_attention_saved_floats(const ns_attn_geom *g) {
    return g->N * g->Tq * g->D + g->N * g->Tk * 2 * g->D + g->N * g->Hd * g->Tq * g->Tk +
           g->N * g->Tq * g->D;
}

// dctx, the gradient of q, k, v (laid out as they are), and a row of dS per pair.
int64_t ns_attention_scratch_floats(const ns_attn_geom *g) {
    return g->N * g->Tq * g->D + g->N * g->Tq * g->D + g->N * g->Tk * 2 * g->D +
           g->N * g->Hd * g->Tk;
}

// The sample whose keys and values head h of sample n attends to: itself,
// or its partner for the last cross_heads heads. For one head this is a
// bijection of the samples, so in the backward each (sample, head) slice of
// dk and dv is written by one (sample, head) iteration only.
static int64_t kv_sample(const ns_attn_geom *g, int64_t n, int64_t h) {
    return h >= g->Hd - g->cross_heads ? (n + g->N / 2) % g->N : n;
}

// A head-sized dot product, vectorised (lanes summed in a fixed order).
static float dot(const float *a, const float *b, int64_t n) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void ns_attention_forward(float *out, float *saved, const float *x, const float *mem,
                          const float *key_pad, const float *w_in, const float *b_in,
                          const float *w_out, const float *b_out, const ns_attn_geom *g) {
    const int64_t N = g->N, Tq = g->Tq, Tk = g->Tk, D = g->D, Hd = g->Hd;
    attn_layout a = layout(g, saved);
    const int64_t dh = a.dh;
    const float scale = (float)(1.0 / sqrt((double)dh));
    if (g->self) {
        ns_linear_forward(a.q, x, w_in, b_in, N * Tq, D, 3 * D);
    } else {
        ns_linear_forward(a.q, x, w_in, b_in, N * Tq, D, D);
        ns_linear_forward(a.k, mem, w_in + D * D, b_in ? b_in + D : NULL, N * Tk, D, 2 * D);
    }
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < N * Hd; p++) {
        const int64_t n = p / Hd, h = p % Hd, m = kv_sample(g, n, h);
        const float *qh = a.q + n * Tq * a.ldq + h * dh;
        const float *kh = a.k + m * Tk * a.ldkv + h * dh, *vh = a.v + m * Tk * a.ldkv + h * dh;
        const float *pad = key_pad ? key_pad + n * Tk : NULL;
        float *ch = a.ctx + n * Tq * D + h * dh;
        for (int64_t i = 0; i < Tq; i++) {
            float *row = a.P + (p * Tq + i) * Tk;
            const int64_t jend = g->causal ? i + 1 : Tk;
            float mx = -INFINITY;
            for (int64_t j = 0; j < Tk; j++) {
                if (j >= jend || (pad && pad[j] != 0)) {
                    row[j] = -INFINITY;
                    continue;
                }
                row[j] = dot(qh + i * a.ldq, kh + j * a.ldkv, dh) * scale;
                mx = fmaxf(mx, row[j]);
            }
            float *c = ch + i * D;
            memset(c, 0, (size_t)dh * sizeof *c);
            if (mx == -INFINITY) { // every key masked
                memset(row, 0, (size_t)Tk * sizeof *row);
                continue;
            }
            double s = 0;
            for (int64_t j = 0; j < Tk; j++) {
                row[j] = expf(row[j] - mx); // exp(-inf) = 0 for masked keys
                s += row[j];
            }
            const float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < Tk; j++) {
                row[j] *= inv;
                const float pj = row[j], *vj = vh + j * a.ldkv;
                if (pj != 0) {
#pragma omp simd
                    for (int64_t d = 0; d < dh; d++) c[d] += pj * vj[d];
                }
            }
        }
    }
    ns_linear_forward(out, a.ctx, w_out, b_out, N * Tq, D, D);
}

void ns_attention_backward(float *dx, float *dmem, float *dw_in, float *db_in, float *dw_out,
                           float *db_out, float *scratch, const float *dout, const float *saved,
                           const float *x, const float *mem, const float *w_in,
                           const float *w_out, const ns_attn_geom *g) {
    const int64_t N = g->N, Tq = g->Tq, Tk = g->Tk, D = g->D, Hd = g->Hd;
    attn_layout a = layout(g, (float *)saved);
    const int64_t dh = a.dh;
    const float scale = (float)(1.0 / sqrt((double)dh));
    // gradients of ctx and of q, k, v, laid out as the forward's
    float *dctx = scratch, *dproj = scratch + N * Tq * D;
    const int64_t nproj = N * Tq * D + N * Tk * 2 * D;
    float *dS = dproj + nproj;
    memset(scratch, 0, (size_t)(N * Tq * D + nproj) * sizeof(float));
    attn_layout d = layout(g, dproj); // only q, k, v and the strides are used
    ns_linear_backward(dctx, dw_out, db_out, dout, a.ctx, w_out, N * Tq, D, D);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < N * Hd; p++) {
        const int64_t n = p / Hd, h = p % Hd, m = kv_sample(g, n, h);
        const float *qh = a.q + n * Tq * a.ldq + h * dh;
        const float *kh = a.k + m * Tk * a.ldkv + h * dh, *vh = a.v + m * Tk * a.ldkv + h * dh;
        float *dqh = d.q + n * Tq * d.ldq + h * dh;
        float *dkh = d.k + m * Tk * d.ldkv + h * dh, *dvh = d.v + m * Tk * d.ldkv + h * dh;
        float *ds = dS + p * Tk;
        for (int64_t i = 0; i < Tq; i++) {
            const float *row = a.P + (p * Tq + i) * Tk, *dc = dctx + (n * Tq + i) * D + h * dh;
            double s = 0;
            for (int64_t j = 0; j < Tk; j++) {
                if (row[j] == 0) { // masked, or underflowed: no gradient either way
                    ds[j] = 0;
                    continue;
                }
                float dp = dot(dc, vh + j * a.ldkv, dh);
                ds[j] = dp;
                s += (double)row[j] * dp;
                float *dv = dvh + j * d.ldkv;
#pragma omp simd
                for (int64_t e = 0; e < dh; e++) dv[e] += row[j] * dc[e];
            }
            const float sf = (float)s;
            float *dq = dqh + i * d.ldq;
            const float *q = qh + i * a.ldq;
            for (int64_t j = 0; j < Tk; j++) {
                if (row[j] == 0) continue;
                const float gs = row[j] * (ds[j] - sf) * scale;
                const float *k = kh + j * a.ldkv;
                float *dk = dkh + j * d.ldkv;
#pragma omp simd
                for (int64_t e = 0; e < dh; e++) {
                    dq[e] += gs * k[e];
                    dk[e] += gs * q[e];
                }
            }
        }
    }
    if (g->self) {
        ns_linear_backward(dx, dw_in, db_in, d.q, x, w_in, N * Tq, D, 3 * D);
    } else {
        ns_linear_backward(dx, dw_in, db_in, d.q, x, w_in, N * Tq, D, D);
        ns_linear_backward(dmem, dw_in ? dw_in + D * D : NULL, db_in ? db_in + D : NULL, d.k, mem,
                           w_in + D * D, N * Tk, D, 2 * D);
    }
}
