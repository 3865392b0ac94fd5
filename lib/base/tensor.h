// tensor.h: element types and the in-memory tensor.
// A tensor owns one 64-byte-aligned block of C-contiguous elements in host byte
// order; shape is outermost first, as in NumPy: an image batch is (N, C, H, W).
#ifndef NS_TENSOR_H
#define NS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

// Append-only: the numeric values are not stored in streams (the name is), but
// tables below are indexed by them.
typedef enum ns_dtype {
    NS_F32,
    NS_F64,
    NS_F16,
    NS_BF16,
    NS_I8,
    NS_U8,
    NS_I16,
    NS_I32,
    NS_I64,
    NS_BOOL,
    NS_DTYPE_COUNT
} ns_dtype;

typedef struct ns_dtype_info {
    const char *name; // as written in streams: "f32", "u8", ...
    size_t size;      // bytes per element
} ns_dtype_info;

extern const ns_dtype_info ns_dtypes[NS_DTYPE_COUNT];

// Looks up a dtype by its stream name (len bytes, not NUL-terminated); -1 if unknown.
int ns_dtype_from_name(const char *name, size_t len);

// The most dimensions this implementation accepts. The format itself has no cap;
// a record with more is refused as absurd rather than misread.
#define NS_MAX_NDIM 16

typedef struct ns_tensor {
    ns_dtype dtype;
    int ndim;
    int64_t shape[NS_MAX_NDIM];
    int64_t numel; // product of shape (1 for a scalar)
    void *data;    // numel * ns_dtypes[dtype].size bytes, 64-byte aligned, owned
} ns_tensor;

// Product of shape into *numel and bytes into *nbytes; fails on a negative
// dimension or on overflow of size_t / int64_t.
int ns_shape_size(int ndim, const int64_t *shape, ns_dtype dtype, int64_t *numel,
                  size_t *nbytes, ns_err *err);

// Allocates a zeroed tensor. Fails on overflow or out of memory.
int ns_tensor_alloc(ns_tensor *t, ns_dtype dtype, int ndim, const int64_t *shape,
                    ns_err *err);
void ns_tensor_free(ns_tensor *t);
size_t ns_tensor_nbytes(const ns_tensor *t);

// 64-byte aligned allocation for numeric buffers; NULL on failure (size 0 gives a
// valid unique pointer). Free with free().
void *ns_aligned_alloc(size_t nbytes);

// For kernels that move or combine a lot of data in vectorisable loops: GCC
// compiles the function for AVX-512, AVX2 and the baseline and the variant is
// chosen once, at load time, from the CPU. Other compilers get the baseline.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define NS_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NS_SIMD_CLONES
#endif

// Converts n elements from src (dtype from, host order) to float. Integers and
// bool convert by value; f16/bf16 decode exactly.
void ns_convert_to_f32(float *dst, const void *src, ns_dtype from, size_t n);

// Converts n floats to dtype `to`: integers round to nearest and saturate;
// bool is x != 0.
void ns_convert_from_f32(void *dst, const float *src, ns_dtype to, size_t n);

// A number to int64: rounded to nearest, halves to even, saturated at
// INT64_MIN/INT64_MAX (2^63 and above is INT64_MAX); NaN is 0.
int64_t ns_saturate_i64(double v);

// Formats a shape as "2x3x4" (or "scalar") into buf.
void ns_shape_format(char *buf, size_t cap, int ndim, const int64_t *shape);

// Element i of a possibly unaligned little-endian buffer of dtype, as double.
double ns_value_at(const void *data, ns_dtype dtype, size_t i);

#endif
