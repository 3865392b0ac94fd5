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

void ns_gelu_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= OMP_MIN / 8)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] * normal_cdf(inp[i]);
}

// d/dx x Phi(x) = Phi(x) + x phi(x)
void ns_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
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
