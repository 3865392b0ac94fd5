// tensor.c: dtype table, shape arithmetic, aligned tensors and conversions.
#include "base/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ns_dtype_info ns_dtypes[NS_DTYPE_COUNT] = {
    [NS_F32] = {"f32", 4}, [NS_F64] = {"f64", 8}, [NS_F16] = {"f16", 2},
    [NS_BF16] = {"bf16", 2}, [NS_I8] = {"i8", 1}, [NS_U8] = {"u8", 1},
    [NS_I16] = {"i16", 2}, [NS_I32] = {"i32", 4}, [NS_I64] = {"i64", 8},
    [NS_BOOL] = {"bool", 1},
};
_Static_assert(NS_DTYPE_COUNT == 10, "extend ns_dtypes with the new dtype");

int ns_dtype_from_name(const char *name, size_t len) {
    for (int d = 0; d < NS_DTYPE_COUNT; d++)
        if (strlen(ns_dtypes[d].name) == len && memcmp(ns_dtypes[d].name, name, len) == 0)
            return d;
    return -1;
}

int ns_shape_size(int ndim, const int64_t *shape, ns_dtype dtype, int64_t *numel,
                  size_t *nbytes, ns_err *err) {
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return ns_errf(err, "negative dimension (%lld)", (long long)shape[i]);
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && count > (uint64_t)INT64_MAX / d)
            return ns_errf(err, "shape too large (dimension %d is %lld)", i, (long long)shape[i]);
        count *= d;
    }
    size_t item = ns_dtypes[dtype].size;
    if (count > SIZE_MAX / item) return ns_errf(err, "tensor too large (%llu elements)",
                                                 (unsigned long long)count);
    if (numel) *numel = (int64_t)count;
    if (nbytes) *nbytes = (size_t)count * item;
    return 0;
}

void *ns_aligned_alloc(size_t nbytes) {
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes) return NULL;
    return aligned_alloc(64, rounded ? rounded : 64);
}

int ns_tensor_alloc(ns_tensor *t, ns_dtype dtype, int ndim, const int64_t *shape,
                    ns_err *err) {
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > NS_MAX_NDIM)
        return ns_errf(err, "too many dimensions (%d, at most %d)", ndim, NS_MAX_NDIM);
    size_t nbytes;
    if (ns_shape_size(ndim, shape, dtype, &t->numel, &nbytes, err) < 0) return -1;
    t->data = ns_aligned_alloc(nbytes);
    if (!t->data) return ns_errf(err, "out of memory (%zu bytes for a tensor)", nbytes);
    memset(t->data, 0, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

void ns_tensor_free(ns_tensor *t) {
    free(t->data);
    memset(t, 0, sizeof *t);
}

size_t ns_tensor_nbytes(const ns_tensor *t) {
    return (size_t)t->numel * ns_dtypes[t->dtype].size;
}

// IEEE half -> float, exact for every value (subnormals, inf, nan included).
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 0x400), (int)exp - 25);
    uint32_t bits;
    memcpy(&bits, &v, 4);
    bits |= sign;
    memcpy(&v, &bits, 4);
    return v;
}

// float -> IEEE half, round to nearest even.
static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00;
    if (a < 6.103515625e-05f) // subnormal half: multiples of 2^-24
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    int e;
    float m = frexpf(a, &e); // a = m * 2^e, m in [0.5, 1)
    long man = lrintf(ldexpf(m, 11)); // 11 significant bits, rounded to nearest even
    if (man == 2048) { man = 1024; e++; }
    return sign | (uint16_t)(((e + 14) << 10) | (man - 1024));
}

static float bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

static uint16_t float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if (isnan(f)) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1); // round to nearest even
    return (uint16_t)(x >> 16);
}

void ns_convert_to_f32(float *dst, const void *src, ns_dtype from, size_t n) {
    if (n == 0) return; // an empty tensor's data may be NULL, which memmove must not see
    switch (from) {
    case NS_F32: memmove(dst, src, n * 4); break;
    case NS_F64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; break;
    case NS_F16: for (size_t i = 0; i < n; i++) dst[i] = half_to_float(((const uint16_t *)src)[i]); break;
    case NS_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(((const uint16_t *)src)[i]); break;
    case NS_I8: for (size_t i = 0; i < n; i++) dst[i] = ((const int8_t *)src)[i]; break;
    case NS_U8: for (size_t i = 0; i < n; i++) dst[i] = ((const uint8_t *)src)[i]; break;
    case NS_I16: for (size_t i = 0; i < n; i++) dst[i] = ((const int16_t *)src)[i]; break;
    case NS_I32: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i]; break;
    case NS_I64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src)[i]; break;
    case NS_BOOL: for (size_t i = 0; i < n; i++) dst[i] = ((const uint8_t *)src)[i] != 0; break;
    case NS_DTYPE_COUNT: break;
    }
}

static double saturate(double v, double lo, double hi) {
    if (isnan(v)) return 0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

int64_t ns_saturate_i64(double v) {
    if (isnan(v)) return 0;
    v = nearbyint(v); // the default rounding mode: halves to even
    if (v >= 9223372036854775808.0) return INT64_MAX; // 2^63 itself does not fit
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

void ns_convert_from_f32(void *dst, const float *src, ns_dtype to, size_t n) {
    if (n == 0) return;
    switch (to) {
    case NS_F32: memmove(dst, src, n * 4); break;
    case NS_F64: for (size_t i = 0; i < n; i++) ((double *)dst)[i] = src[i]; break;
    case NS_F16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = float_to_half(src[i]); break;
    case NS_BF16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = float_to_bf16(src[i]); break;
    case NS_I8: for (size_t i = 0; i < n; i++) ((int8_t *)dst)[i] = (int8_t)saturate(src[i], -128, 127); break;
    case NS_U8: for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)saturate(src[i], 0, 255); break;
    case NS_I16: for (size_t i = 0; i < n; i++) ((int16_t *)dst)[i] = (int16_t)saturate(src[i], -32768, 32767); break;
    case NS_I32: for (size_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int32_t)saturate(src[i], -2147483648.0, 2147483647.0); break;
    case NS_I64: for (size_t i = 0; i < n; i++) ((int64_t *)dst)[i] = ns_saturate_i64(src[i]); break;
    case NS_BOOL: for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = src[i] != 0; break;
    case NS_DTYPE_COUNT: break;
    }
}

void ns_shape_format(char *buf, size_t cap, int ndim, const int64_t *shape) {
    if (cap == 0) return;
    if (ndim == 0) {
        snprintf(buf, cap, "scalar");
        return;
    }
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? "x%lld" : "%lld", (long long)shape[i]);
}

double ns_value_at(const void *data, ns_dtype dtype, size_t i) {
    unsigned char elem[8];
    size_t size = ns_dtypes[dtype].size;
    memcpy(elem, (const unsigned char *)data + i * size, size);
    float f;
    ns_convert_to_f32(&f, elem, dtype, 1);
    switch (dtype) { // wide types keep their precision
    case NS_F64: { double d; memcpy(&d, elem, 8); return d; }
    case NS_I64: { int64_t v; memcpy(&v, elem, 8); return (double)v; }
    case NS_I32: { int32_t v; memcpy(&v, elem, 4); return v; }
    default: return f;
    }
}
