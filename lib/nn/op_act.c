// op_act.c: elementwise activations over n floats (any shape, flattened):
// relu, leaky_relu, gelu (exact erf form, to 1.2e-7, and tanh form), sigmoid, tanh. Forward may run in
// place (out == inp). Backward reads the forward's output for relu, sigmoid
// and tanh, and its input for leaky_relu and gelu (see ops.h).
// The cheap loops are written as selects under `omp simd`, so they compile
// to vector compares and masks: a branch on the sign of activations is
// mispredicted half the time and was 20x slower.
#include "nn/ops.h"

// Floating-point exceptions are never enabled here, so the compiler may assume
// no operation traps: without this, GCC -O2 will not if-convert the selects of
// the GELU loops (a division or conversion might trap on the lane not taken),
// and they stay scalar.
#pragma GCC optimize("no-trapping-math")

#include <math.h>
#include <stdint.h>
#include <immintrin.h>
#include <string.h>

#define OMP_MIN 32768

void ns_relu_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

// out > 0 exactly when inp > 0; torch's gradient at 0 is 0, as here.
void ns_relu_backward(float *dinp, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = dout[i]; // loaded either way, so the select vectorises
        dinp[i] += out[i] > 0.0f ? d : 0.0f;
    }
}

void ns_relu_backward_ex(float *dinp, const float *dout, const float *out, int64_t n,
                         int overwrite) {
    if (!overwrite) {
        ns_relu_backward(dinp, dout, out, n);
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = dout[i];
        dinp[i] = out[i] > 0.0f ? d : 0.0f;
    }
}

void ns_leaky_relu_forward(float *out, const float *inp, float slope, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = (inp[i] > 0.0f ? 1.0f : slope) * inp[i];
}

void ns_leaky_relu_backward(float *dinp, const float *dout, const float *inp, float slope,
                            int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) {
        float k = inp[i] > 0.0f ? 1.0f : slope;
        dinp[i] += k * dout[i];
    }
}

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

// Phi(x) = erfc(-x / sqrt 2) / 2 with erfc from Numerical Recipes' Chebyshev
// fit (relative error below 1.2e-7 everywhere, the tails included) and
// exp_nonpos below, so the loops vectorise: libm's erff and expf are calls,
// and were a fifth of a small ViT's time.

// e^v for v <= 0 (below -87: e^-87), Cody-Waite reduction v = k ln2 + r and
// a degree-7 Taylor polynomial on |r| <= ln2/2 (relative error ~1e-8 before
// float rounding), 2^k put in the exponent bits.
static inline float exp_nonpos(float v) {
    v = v > -87.0f ? v : -87.0f;
    float y = v * 1.44269504088896341f;
    int k = (int)(y - 0.5f); // round half down (truncation of a negative value)
    float kf = (float)k;
    float r = v - kf * 0.693145751953125f - kf * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
              r * (1.0f / 720 + r * (1.0f / 5040)))))));
    float two_k;
    int32_t bits = (k + 127) << 23;
    memcpy(&two_k, &bits, sizeof two_k);
    return p * two_k;
}

static inline float normal_cdf(float x) {
    float z = x * INV_SQRT2, a = fabsf(z); // erfc(-z) is what we want
    float t = 1.0f / (1.0f + 0.5f * a);
    float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
                 t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
                 t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc_a = t * exp_nonpos(-a * a + poly); // erfc(|z|)
    float half = 0.5f * erfc_a;
    return z < 0.0f ? half : 1.0f - half;
}

// The same with AVX-512, 16 at a time: the same operations in the same order
// (-std=c11 contracts no multiply-adds), so the same bits as the loops below.
#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 exp_nonpos16(__m512 v) {
    v = _mm512_max_ps(v, _mm512_set1_ps(-87.0f)); // -87 for NaN too, as above
    __m512 y = _mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f));
    __m512i k = _mm512_cvttps_epi32(_mm512_sub_ps(y, _mm512_set1_ps(0.5f)));
    __m512 kf = _mm512_cvtepi32_ps(k);
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(v, _mm512_mul_ps(kf, _mm512_set1_ps(0.693145751953125f))),
                             _mm512_mul_ps(kf, _mm512_set1_ps(1.428606765330187045e-06f)));
    static const float c[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 8; i++) p = _mm512_add_ps(_mm512_set1_ps(c[i]), _mm512_mul_ps(r, p));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

AVX512 static inline __m512 normal_cdf16(__m512 x) {
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2));
    __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(0x7fffffff)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(0.5f), a)));
    static const float c[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    __m512 poly = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 10; i++) poly = _mm512_add_ps(_mm512_set1_ps(c[i]), _mm512_mul_ps(t, poly));
    __m512 minus_a = _mm512_sub_ps(_mm512_setzero_ps(), a); // -a exactly (a is never NaN-signed here)
    __m512 erfc_a = _mm512_mul_ps(t, exp_nonpos16(_mm512_add_ps(_mm512_mul_ps(minus_a, a), poly)));
    __m512 half = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfc_a);
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(neg, _mm512_sub_ps(one, half), half);
}

AVX512 static void gelu_avx512(float *out, const float *inp, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(inp + i);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(x, normal_cdf16(x)));
    }
    for (; i < n; i++) out[i] = inp[i] * normal_cdf(inp[i]);
}

AVX512 static void gelu_backward_avx512(float *dinp, const float *dout, const float *inp, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(inp + i);
        __m512 e = exp_nonpos16(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), x), x));
        __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(INV_SQRT2PI), e);
        __m512 d = _mm512_mul_ps(_mm512_loadu_ps(dout + i), _mm512_add_ps(normal_cdf16(x), _mm512_mul_ps(x, pdf)));
        _mm512_storeu_ps(dinp + i, _mm512_add_ps(_mm512_loadu_ps(dinp + i), d));
    }
    for (; i < n; i++) {
        float x = inp[i];
        float pdf = INV_SQRT2PI * exp_nonpos(-0.5f * x * x);
        dinp[i] += dout[i] * (normal_cdf(x) + x * pdf);
    }
}

#define GELU_CHUNK 4096

void ns_gelu_forward(float *out, const float *inp, int64_t n) {
    if (__builtin_cpu_supports("avx512f")) {
        const int64_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t a = c * GELU_CHUNK;
            gelu_avx512(out + a, inp + a, n - a < GELU_CHUNK ? n - a : GELU_CHUNK);
        }
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] * normal_cdf(inp[i]);
}

// d/dx x Phi(x) = Phi(x) + x phi(x)
void ns_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    if (__builtin_cpu_supports("avx512f")) {
        const int64_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t a = c * GELU_CHUNK;
            gelu_backward_avx512(dinp + a, dout + a, inp + a, n - a < GELU_CHUNK ? n - a : GELU_CHUNK);
        }
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float pdf = INV_SQRT2PI * exp_nonpos(-0.5f * x * x);
        dinp[i] += dout[i] * (normal_cdf(x) + x * pdf);
    }
}

// The tanh form: u = c (x + a x^3), y = 0.5 x (1 + tanh u),
// dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
#define GELU_C 0.79788456080286535588f // sqrt(2/pi)
#define GELU_A 0.044715f

void ns_gelu_tanh_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_C * (x + GELU_A * x * x * x)));
    }
}

void ns_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i], t = tanhf(GELU_C * (x + GELU_A * x * x * x));
        float d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * x * x);
        dinp[i] += dout[i] * d;
    }
}

// exp of a non-positive argument only, so no overflow for large |x|.
void ns_sigmoid_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float e = expf(x);
            out[i] = e / (1.0f + e);
        }
    }
}

void ns_sigmoid_backward(float *dinp, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

void ns_tanh_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void ns_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN)
    for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}
