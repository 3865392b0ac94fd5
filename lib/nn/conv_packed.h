// conv_packed.h: what the files of the packed convolution path share
// (private to lib/nn/op_conv*.c): the plan (sizes and scratch layout, from
// the geometry alone), the short-copy helpers, the runs a tile row splits
// into, and the functions one file calls in another. The path itself is
// described in op_conv.c; the files:
//   op_conv.c          geometry, path choice, the plain and direct paths,
//                      Winograd's threads, the entry points
//   op_conv_tiles.c    the plan and the tile products: forward and dinp
//   op_conv_phase.c    the zero-padded planes and their stride-2 phase split
//   op_conv_dweight.c  the weight gradient
//   op_conv_epilogue.c the fused epilogue (nn/plane_epilogue.h)
// Shapes are op_conv.c's: inp (N, C, H, W), weight (OC, C/G, KH, KW),
// out (N, OC, OH, OW).
#ifndef NS_CONV_PACKED_H
#define NS_CONV_PACKED_H

#include <stdint.h>
#include <string.h>

#include "base/tensor.h"
#include "nn/ops.h"

#define MAX_CHUNKS 16        // backward work units, each with its own partial dW
#define KC 256               // pixels per dW panel

typedef struct plan {
    int64_t TP, TQ;           // microkernel tile: TP rows (pixels or taps) x TQ columns
    int64_t Cg, OCg, Kd;      // channels per group; Kd = Cg*KH*KW taps
    int64_t HW, OHW;
    int rows;                 // the tile kernel reads rows in place (ns_tile_gemm_rows)
    // forward: the zero-padded input (Hp x Wp) split into SH x SW phase
    // planes (Hph x Wph, stride PL; a channel's phases Lp apart); output grid
    // of npos = OH x Wph positions in ntiles tiles
    int64_t Hp, Wp, Hph, Wph, PL, Lp, npos, ntiles, nq_f;
    // dinp, by input phase (see dinp_sample): dout padded (Hq x Wq, plane
    // stride Lq, the image at row Emax - RS, column Fmax - CS); Kb = OCg*KH*KW
    // taps over all phases; nq_b tiles of input channels
    int64_t Emax, Fmax, RS, CS, Hq, Wq, Lq, Kb, nq_b, nph;
    // dweight: tap tiles, channel tiles, chunks of samples
    int64_t nt_w, nq_w, nchunks, chunk;
    int threads;
    // scratch (floats from the 64-byte aligned base): packed weights, partial
    // dW, then one slice per thread
    int64_t o_part, o_thread, thread_floats, total;
    // offsets within a thread's slice
    int64_t o_xp, o_xt, o_dz, o_dyp, o_P, o_Q, o_C, o_idx, o_idx2, o_off, o_id, o_runs, o_rstart,
        o_phs;
} plan;

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

// The output positions o in [*lo, *hi) whose input index o*stride + off lies in
// [0, size): one kernel tap's valid range along one axis.
static inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t nout, int64_t *lo,
                               int64_t *hi) {
    int64_t l = off < 0 ? (-off + stride - 1) / stride : 0;
    int64_t h = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
    if (h > nout) h = nout;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

// Short copies come in their thousands per sample (a tap of a tile is 32
// floats, a run of channels 16), so they are written with 4-float vectors
// rather than left to library calls. vf4 is GCC's generic vector type: SSE on
// x86-64, plain code elsewhere. Unaligned, and allowed to alias floats. The
// empty asm keeps GCC from recognising the loops as memmove/memset and
// calling the library after all (a call per 32 floats cost a fifth of the
// forward time).
typedef float vf4 __attribute__((vector_size(16), aligned(4), may_alias));

static inline void copy_floats(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        *(vf4 *)(d + i) = *(const vf4 *)(s + i);
        __asm__("" : "+r"(i));
    }
    for (; i < n; i++) {
        d[i] = s[i];
        __asm__("" : "+r"(i));
    }
}

static inline void add_floats(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) *(vf4 *)(d + i) += *(const vf4 *)(s + i);
    for (; i < n; i++) d[i] += s[i];
}

static inline void zero_floats(float *d, int64_t n) {
    if (n > 64) {
        memset(d, 0, (size_t)n * sizeof(float));
        return;
    }
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        *(vf4 *)(d + i) = (vf4){0, 0, 0, 0};
        __asm__("" : "+r"(i));
    }
    for (; i < n; i++) {
        d[i] = 0.0f;
        __asm__("" : "+r"(i));
    }
}

// The packers below run once per tile or pixel block and move most of the
// data, so they are compiled for AVX-512 and AVX2 as well (NS_SIMD_CLONES,
// tensor.h); vf16 is a 64-byte vector, one register with AVX-512, four SSE
// registers in the default build.
typedef float vf16 __attribute__((vector_size(64), aligned(4), may_alias));

static inline void copy_wide(float *restrict d, const float *restrict s, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        *(vf16 *)(d + i) = *(const vf16 *)(s + i);
        __asm__("" : "+r"(i));
    }
    copy_floats(d + i, s + i, n - i);
}

// Prefetches slice `part` of `parts` of n floats at x: a sample's work
// prefetches the next sample's data a slice at a time, so that its first
// reads (a layer's activations come from DRAM, sample after sample) do not
// wait on memory. noipa: GCC considers prefetches free of side effects and
// would otherwise delete the calls.
#if defined(__clang__)
#define NOIPA __attribute__((noinline))
#else
#define NOIPA __attribute__((noipa))
#endif
NOIPA __attribute__((unused)) static void prefetch_slice(const float *x, int64_t n, int64_t part,
                                                         int64_t parts) {
    if (!x) return;
    int64_t step = (n + parts - 1) / parts;
    for (int64_t i = part * step; i < (part + 1) * step && i < n; i += 16) __builtin_prefetch(x + i);
}

// The tile rows i in [0, TP) that land in an output plane, as runs: row
// i0 + r goes to plane index d0 + r for r < len. The tile covers grid
// positions q0 .. q0 + TP - 1 of rows of Wg positions, of which the first OW
// are real outputs (the rest padding, thrown away).
typedef struct run {
    int64_t i0, d0, len;
} run;

// op_conv_tiles.c
void ns_conv_make_plan(plan *p, const ns_conv2d_geom *g);
void ns_conv_packed_forward(float *out, float *scratch, const float *inp, const float *weight,
                            const float *bias, const ns_conv2d_geom *g, const ns_conv2d_epilogue *ep);
void ns_conv_packed_backward(float *dinp, float *dweight, float *scratch, const float *dout,
                             const float *inp, const float *weight, const ns_conv2d_geom *g,
                             int overwrite);

// op_conv_phase.c (the first two compiled for AVX-512, AVX2 and the
// baseline: NS_SIMD_CLONES)
void ns_conv_copy_planes(float *restrict dst, int64_t Lp, int64_t Hp, int64_t Wp, const float *restrict src,
                         int64_t nplanes, int64_t H, int64_t W, int64_t r0, int64_t c0);
void ns_conv_add_stride2(float *restrict d, const float *restrict s, int64_t n, int64_t avail);
void ns_conv_phase_planes(float *dst, const float *src, const ns_conv2d_geom *g, const plan *p);

// op_conv_dweight.c
void ns_conv_dweight_runs(run *runs, int64_t *rstart, const ns_conv2d_geom *g, const plan *p);
void ns_conv_dweight_sample(float *part, const float *x, const float *dy, float *t,
                            const ns_conv2d_geom *g, const plan *p, const float *next_x,
                            const float *next_dy);

// op_conv_epilogue.c
void ns_conv_epilogue_sample(float *out, const float *raw, const float *bias,
                             const ns_conv2d_epilogue *ep, int64_t n, int64_t OC, int64_t OHW);

#endif
