// plane_epilogue.h: the elementwise tail that follows a convolution or a
// batch norm, on one plane of n floats (private to lib/nn): y = x * s + sh
// (optionally kept in aout), then + res (optionally kept in rout), then
// ReLU, into out. The convolution's fused epilogue (op_conv_epilogue.c) and
// the batch norm's apply pass (op_norm.c) both run it; the arithmetic is
// that of the separate ops (bn_apply, ns_add_forward, ns_relu_forward).
#ifndef NS_PLANE_EPILOGUE_H
#define NS_PLANE_EPILOGUE_H

#include <stdint.h>

enum {
    NS_EPI_SCALE = 1, // y = x * s + sh (else y = x)
    NS_EPI_RES = 2,   // y += res
    NS_EPI_RELU = 4,  // y = max(y, 0)
    NS_EPI_AOUT = 8,  // with SCALE: aout = x * s + sh
    NS_EPI_ROUT = 16, // with RES: rout = the sum before the ReLU
    NS_EPI_FLAGS = 32
};

// out = the steps f asks for applied to x; x may be out. With f a constant
// the flags fold away (ns_epilogue_plane below instantiates each).
__attribute__((always_inline)) static inline void ns_epilogue_plane_f(const int f, float *out, const float *x,
                                                                      int64_t n, float s, float sh,
                                                                      const float *restrict res,
                                                                      float *restrict aout,
                                                                      float *restrict rout) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float y = x[i];
        if (f & NS_EPI_SCALE) {
            y = y * s + sh;
            if (f & NS_EPI_AOUT) aout[i] = y;
        }
        if (f & NS_EPI_RES) {
            y = y + res[i];
            if (f & NS_EPI_ROUT) rout[i] = y;
        }
        if (f & NS_EPI_RELU) y = y > 0.0f ? y : 0.0f;
        out[i] = y;
    }
}

#define NS_EPI_CASE(f)                                                                         \
    case f:                                                                                    \
        ns_epilogue_plane_f(f, out, x, n, s, sh, res, aout, rout);                             \
        break;
#define NS_EPI_CASE8(b) NS_EPI_CASE(b) NS_EPI_CASE(b + 1) NS_EPI_CASE(b + 2) NS_EPI_CASE(b + 3) \
    NS_EPI_CASE(b + 4) NS_EPI_CASE(b + 5) NS_EPI_CASE(b + 6) NS_EPI_CASE(b + 7)

// The same for flags known only at run time: one specialised loop per set.
static inline void ns_epilogue_plane(int f, float *out, const float *x, int64_t n, float s, float sh,
                                     const float *res, float *aout, float *rout) {
    switch (f) { NS_EPI_CASE8(0) NS_EPI_CASE8(8) NS_EPI_CASE8(16) NS_EPI_CASE8(24) }
}

#undef NS_EPI_CASE8
#undef NS_EPI_CASE

#endif
