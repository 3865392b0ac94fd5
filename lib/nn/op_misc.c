// op_misc.c: the small ops. Elementwise add and mul of two same-shape (n)
// tensors; concatenation along the middle axis of (N, Cs[i], S) tensors (the
// channel axis of NCHW); transpose of a (R, Cm) matrix; inverted dropout with a
// uint8 keep mask (n) drawn from a counter-based generator; embedding lookup of
// int32 ids (N) in a table (V, D). Reshape needs no kernel: it is the same
// buffer with another shape.
#include "nn/ops.h"

#include <string.h>

#define OMP_MIN 32768

// ----------------------------------------------------------------------------
// add, mul

void ns_add_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ns_add_backward(float *da, float *db, const float *dout, int64_t n) {
    if (da && db) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) {
            da[i] += dout[i];
            db[i] += dout[i];
        }
    } else if (da || db) {
        float *d = da ? da : db;
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) d[i] += dout[i];
    }
}

void ns_add_backward_ex(float *da, float *db, const float *dout, int64_t n, int overwrite) {
    if (!(overwrite & 3) || (!da && !db)) {
        ns_add_backward(da, db, dout, n);
        return;
    }
    const int oa = da && (overwrite & 1), ob = db && (overwrite & 2);
    if (da && db && da != db) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) {
            float d = dout[i];
            da[i] = oa ? d : da[i] + d;
            db[i] = ob ? d : db[i] + d;
        }
    } else if (da && db) { // the same buffer twice: 2 dout, or dout + 2 dout... in order
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) {
            float d = dout[i], v = oa ? d : da[i] + d;
            da[i] = ob ? d : v + d;
        }
    } else {
        float *dd = da ? da : db;
        const int o = da ? oa : ob;
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) dd[i] = o ? dout[i] : dd[i] + dout[i];
    }
}

void ns_mul_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void ns_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                     int64_t n) {
    if (da) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) da[i] += dout[i] * b[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
        for (int64_t i = 0; i < n; i++) db[i] += dout[i] * a[i];
    }
}

// ----------------------------------------------------------------------------
// concat along the middle axis

void ns_concat_forward(float *out, const float *const *inps, const int64_t *Cs, int64_t k,
                       int64_t N, int64_t S) {
    int64_t Ct = 0;
    for (int64_t j = 0; j < k; j++) Ct += Cs[j];
#pragma omp parallel for schedule(static) if (N * Ct * S >= OMP_MIN)
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * Ct * S;
        for (int64_t j = 0; j < k; j++) {
            int64_t len = Cs[j] * S;
            memcpy(o, inps[j] + n * len, (size_t)len * sizeof(float));
            o += len;
        }
    }
}

void ns_concat_backward(float *const *dinps, const float *dout, const int64_t *Cs, int64_t k,
                        int64_t N, int64_t S) {
    int64_t Ct = 0;
    for (int64_t j = 0; j < k; j++) Ct += Cs[j];
#pragma omp parallel for schedule(static) if (N * Ct * S >= OMP_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *d = dout + n * Ct * S;
        for (int64_t j = 0; j < k; j++) {
            int64_t len = Cs[j] * S;
            if (dinps[j]) {
                float *dx = dinps[j] + n * len;
                for (int64_t i = 0; i < len; i++) dx[i] += d[i];
            }
            d += len;
        }
    }
}

// ----------------------------------------------------------------------------
// transpose, in 32x32 tiles so both sides stay in cache

#define TILE 32

void ns_transpose_forward(float *out, const float *inp, int64_t R, int64_t Cm) {
#pragma omp parallel for schedule(static) if (R * Cm >= OMP_MIN)
    for (int64_t r0 = 0; r0 < R; r0 += TILE) {
        int64_t r1 = r0 + TILE < R ? r0 + TILE : R;
        for (int64_t c0 = 0; c0 < Cm; c0 += TILE) {
            int64_t c1 = c0 + TILE < Cm ? c0 + TILE : Cm;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++) out[c * R + r] = inp[r * Cm + c];
        }
    }
}

void ns_transpose_backward(float *dinp, const float *dout, int64_t R, int64_t Cm) {
#pragma omp parallel for schedule(static) if (R * Cm >= OMP_MIN)
    for (int64_t r0 = 0; r0 < R; r0 += TILE) {
        int64_t r1 = r0 + TILE < R ? r0 + TILE : R;
        for (int64_t c0 = 0; c0 < Cm; c0 += TILE) {
            int64_t c1 = c0 + TILE < Cm ? c0 + TILE : Cm;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dinp[r * Cm + c] += dout[c * R + r];
        }
    }
}

// ----------------------------------------------------------------------------
// random numbers and dropout

// SplitMix64's finaliser (Steele, Lea, Flood 2014, constants by Vigna): a
// bijective mix of 64 bits.
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The seed is mixed first so that nearby seeds give unrelated sequences
// rather than shifted copies of one another.
uint64_t ns_rand_u64(uint64_t seed, uint64_t i) {
    uint64_t key = mix64(seed ^ 0x6a09e667f3bcc909ull);
    return mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
}

void ns_dropout_mask(uint8_t *mask, float p, uint64_t seed, int64_t n) {
    // keep when the top 32 bits are >= p * 2^32: probability 1 - p
    uint64_t thr = p <= 0.0f ? 0 : p >= 1.0f ? ((uint64_t)1 << 32)
                                             : (uint64_t)((double)p * 4294967296.0);
#pragma omp parallel for schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) mask[i] = (ns_rand_u64(seed, (uint64_t)i) >> 32) >= thr;
}

static float keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

void ns_dropout_forward(float *out, const float *inp, const uint8_t *mask, float p,
                        int64_t n) {
    const float s = keep_scale(p);
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = mask[i] ? inp[i] * s : 0.0f;
}

void ns_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p,
                         int64_t n) {
    const float s = keep_scale(p);
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = dout[i] * s;
        dinp[i] += mask[i] ? d : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// embedding

void ns_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                          int64_t D) {
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
    for (int64_t i = 0; i < N; i++)
        memcpy(out + i * D, table + (int64_t)ids[i] * D, (size_t)D * sizeof(float));
}

// Repeated ids make rows collide, so threads split the D columns instead of
// the N rows: each column block sums its ids in index order, race-free.
void ns_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                           int64_t D) {
#pragma omp parallel for schedule(static) if (N * D >= OMP_MIN)
    for (int64_t d0 = 0; d0 < D; d0 += 64) {
        int64_t d1 = d0 + 64 < D ? d0 + 64 : D;
        for (int64_t i = 0; i < N; i++) {
            float *dt = dtable + (int64_t)ids[i] * D;
            const float *dy = dout + i * D;
            for (int64_t d = d0; d < d1; d++) dt[d] += dy[d];
        }
    }
}
