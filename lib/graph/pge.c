// pge.c: the pair-scoring adjacency generator of pge.h: parameter table,
// initialisation, forward over all n*n ordered pairs and its backward.
// Shapes: x (n, d); PT, QT (h, n); pair activations transposed, (h, M) with M = n*n.
#include "graph/pge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "nn/ops.h"
#include "base/rng.h"
#include "base/tensor.h"

enum { W1, B1, G1, BE1, W2, B2, G2, BE2, W3, B3 };

static const char *const param_names[NS_PGE_PARAMS] = {
    "layers.0.weight", "layers.0.bias", "bns.0.weight", "bns.0.bias", "layers.1.weight",
    "layers.1.bias",   "bns.1.weight",  "bns.1.bias",   "layers.2.weight", "layers.2.bias",
};

static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

int ns_pge_create(ns_pge *g, int64_t n, int64_t d, int64_t h, ns_err *err) {
    memset(g, 0, sizeof *g);
    if (n < 1 || d < 1 || h < 1) return ns_errf(err, "pge: bad sizes (n %lld, d %lld, h %lld)", (long long)n, (long long)d, (long long)h);
    if (n > 46340) return ns_errf(err, "pge: %lld condensed nodes is too many (at most 46340 pairs per side)", (long long)n);
    g->n = n, g->d = d, g->h = h, g->M = n * n;
    const int64_t shapes[NS_PGE_PARAMS][2] = {
        {h, 2 * d}, {h, 0}, {h, 0}, {h, 0}, {h, h}, {h, 0}, {h, 0}, {h, 0}, {1, h}, {1, 0},
    };
    int64_t off = 0;
    for (int i = 0; i < NS_PGE_PARAMS; i++) {
        ns_pge_tensor *t = &g->params[i];
        snprintf(t->name, sizeof t->name, "%s", param_names[i]);
        t->ndim = shapes[i][1] ? 2 : 1;
        t->shape[0] = shapes[i][0], t->shape[1] = shapes[i][1];
        t->numel = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1);
        t->offset = off;
        off += round16(t->numel);
    }
    g->numel = off;
    int64_t M = g->M, nh = round16(n * h), Mh = round16(M * h);
    int64_t act = 2 * nh + 6 * Mh + round16(M) + 4 * round16(h);
    g->value = ns_aligned_alloc((size_t)off * sizeof(float));
    g->grad = ns_aligned_alloc((size_t)off * sizeof(float));
    g->block = ns_aligned_alloc((size_t)act * sizeof(float));
    if (!g->value || !g->grad || !g->block) {
        ns_pge_free(g);
        return ns_errf(err, "out of memory (a pair generator for %lld nodes: %lld pairs x %lld hidden)",
                       (long long)n, (long long)M, (long long)h);
    }
    memset(g->value, 0, (size_t)off * sizeof(float));
    memset(g->grad, 0, (size_t)off * sizeof(float));
    float *c = g->block;
    g->p = c, c += nh;
    g->q = c, c += nh;
    g->z1 = c, c += Mh;
    g->r1 = c, c += Mh;
    g->z2 = c, c += Mh;
    g->r2 = c, c += Mh;
    g->dz = c, c += Mh;
    g->dr = c, c += Mh;
    g->e = c, c += round16(M);
    g->mean1 = c, c += round16(h);
    g->rstd1 = c, c += round16(h);
    g->mean2 = c, c += round16(h);
    g->rstd2 = c;
    return 0;
}

void ns_pge_free(ns_pge *g) {
    free(g->value);
    free(g->grad);
    free(g->block);
    memset(g, 0, sizeof *g);
}

static float *param(const ns_pge *g, int i) { return g->value + g->params[i].offset; }
static float *pgrad(const ns_pge *g, int i) { return g->grad + g->params[i].offset; }

void ns_pge_init(ns_pge *g, uint64_t seed) {
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    memset(g->value, 0, (size_t)g->numel * sizeof *g->value);
    for (int i = 0; i < NS_PGE_PARAMS; i++) {
        const ns_pge_tensor *t = &g->params[i];
        float *v = param(g, i);
        if (i == G1 || i == G2) {
            for (int64_t k = 0; k < t->numel; k++) v[k] = 1.0f;
        } else if (i == BE1 || i == BE2) {
            continue; // zeros
        } else {
            // a layer's weight and bias share the bound 1/sqrt(fan_in)
            int64_t fan_in = i == W1 || i == B1 ? 2 * g->d : g->h;
            double bound = 1.0 / sqrt((double)fan_in);
            for (int64_t k = 0; k < t->numel; k++) v[k] = (float)((2.0 * ns_rng_uniform(&rng) - 1.0) * bound);
        }
    }
}

// The pair activations are stored transposed, one row per hidden unit:
// Z1T (h, M) and so on, so each batch norm normalises contiguous rows (the
// (N, C, S) = (1, h, M) layout of ns_batchnorm_*) and every layer is one gemm.
void ns_pge_forward(ns_pge *g, const float *x, float *a0) {
    int64_t n = g->n, d = g->d, h = g->h, M = g->M;
    const float *w1 = param(g, W1), *b1 = param(g, B1), *b2 = param(g, B2);
    // PT = W1a X^T, QT = W1b X^T: W1 (h, 2d) read as two (h, d) halves, row stride 2d
    ns_sgemm(0, 1, h, n, d, 1.0f, w1, 2 * d, x, d, 0.0f, g->p, n);
    ns_sgemm(0, 1, h, n, d, 1.0f, w1 + d, 2 * d, x, d, 0.0f, g->q, n);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < h; k++)
        for (int64_t i = 0; i < n; i++) {
            float *z = g->z1 + k * M + i * n;
            const float pik = g->p[k * n + i] + b1[k], *qk = g->q + k * n;
            for (int64_t j = 0; j < n; j++) z[j] = pik + qk[j];
        }
    ns_batchnorm_forward(g->r1, g->mean1, g->rstd1, NULL, NULL, g->z1, param(g, G1), param(g, BE1), 1, h, M,
                         1, 0.1f, 1e-5f);
    ns_relu_forward(g->r1, g->r1, M * h);
    ns_sgemm(0, 0, h, M, h, 1.0f, param(g, W2), h, g->r1, M, 0.0f, g->z2, M);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < h; k++)
        for (int64_t m = 0; m < M; m++) g->z2[k * M + m] += b2[k];
    ns_batchnorm_forward(g->r2, g->mean2, g->rstd2, NULL, NULL, g->z2, param(g, G2), param(g, BE2), 1, h, M,
                         1, 0.1f, 1e-5f);
    ns_relu_forward(g->r2, g->r2, M * h);
    ns_sgemm(0, 0, 1, M, h, 1.0f, param(g, W3), h, g->r2, M, 0.0f, g->e, M);
    const float b3 = param(g, B3)[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.5f * ((g->e[i * n + j] + b3) + (g->e[j * n + i] + b3));
            a0[i * n + j] = i == j ? 0.0f : 1.0f / (1.0f + expf(-s));
        }
}

// Row sums of a (rows, cols) matrix added into out (rows).
static void add_row_sums(float *out, const float *a, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < cols; c++) s += a[r * cols + c];
        out[r] += (float)s;
    }
}

void ns_pge_backward(ns_pge *g, const float *x, const float *a0, const float *da0, float *dx) {
    int64_t n = g->n, d = g->d, h = g->h, M = g->M;
    float *de = g->e; // the scores are not needed any more: their gradient goes in their place
    // A0 = sigmoid(S), S = (E + E^T)/2: dE_ij = (dS_ij + dS_ji)/2, dS = dA0 * A0 (1 - A0)
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            float a = a0[i * n + j]; // a0 is symmetric
            de[i * n + j] = i == j ? 0.0f : 0.5f * (da0[i * n + j] + da0[j * n + i]) * a * (1.0f - a);
        }
    // E = w3 R2T + b3
    add_row_sums(pgrad(g, B3), de, 1, M);
    ns_sgemm(0, 1, 1, h, M, 1.0f, de, M, g->r2, M, 1.0f, pgrad(g, W3), h);
    ns_sgemm(1, 0, h, M, 1, 1.0f, param(g, W3), h, de, M, 0.0f, g->dr, M);
    // R2T = relu(BN2(Z2T)): the relu's output decides its gradient
    ns_relu_backward_ex(g->dz, g->dr, g->r2, M * h, 1);
    memset(g->dr, 0, (size_t)(M * h) * sizeof(float));
    ns_batchnorm_backward(g->dr, pgrad(g, G2), pgrad(g, BE2), g->dz, g->z2, g->mean2, g->rstd2, param(g, G2),
                          1, h, M, 1);
    // Z2T = W2 R1T + b2
    add_row_sums(pgrad(g, B2), g->dr, h, M);
    ns_sgemm(0, 1, h, h, M, 1.0f, g->dr, M, g->r1, M, 1.0f, pgrad(g, W2), h);
    ns_sgemm(1, 0, h, M, h, 1.0f, param(g, W2), h, g->dr, M, 0.0f, g->dz, M);
    ns_relu_backward_ex(g->dr, g->dz, g->r1, M * h, 1);
    memset(g->dz, 0, (size_t)(M * h) * sizeof(float));
    ns_batchnorm_backward(g->dz, pgrad(g, G1), pgrad(g, BE1), g->dr, g->z1, g->mean1, g->rstd1, param(g, G1),
                          1, h, M, 1);
    // Z1T[k, i*n+j] = PT[k, i] + QT[k, j] + b1[k]: dPT sums over j, dQT over i
    // (p and q are reused for them)
    float *dpt = g->p, *dqt = g->q;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < h; k++) {
        const float *z = g->dz + k * M;
        float *qk = dqt + k * n;
        memset(qk, 0, (size_t)n * sizeof *qk);
        for (int64_t i = 0; i < n; i++) {
            float s = 0;
            for (int64_t j = 0; j < n; j++) s += z[i * n + j], qk[j] += z[i * n + j];
            dpt[k * n + i] = s;
        }
    }
    add_row_sums(pgrad(g, B1), dpt, h, n);
    // PT = W1a X^T, QT = W1b X^T
    float *dw1 = pgrad(g, W1);
    const float *w1 = param(g, W1);
    ns_sgemm(0, 0, h, d, n, 1.0f, dpt, n, x, d, 1.0f, dw1, 2 * d);
    ns_sgemm(0, 0, h, d, n, 1.0f, dqt, n, x, d, 1.0f, dw1 + d, 2 * d);
    if (dx) {
        ns_sgemm(1, 0, n, d, h, 1.0f, dpt, n, w1, 2 * d, 1.0f, dx, d);
        ns_sgemm(1, 0, n, d, h, 1.0f, dqt, n, w1 + d, 2 * d, 1.0f, dx, d);
    }
}
