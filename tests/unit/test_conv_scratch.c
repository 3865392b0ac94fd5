// test_conv_scratch.c: ns_conv2d_scratch_floats is enough for every batch of 1
// to N samples, not only for N. A smaller batch can split into more chunks of
// partial weight gradients (20 samples: 10 chunks of 2; 16 samples: 16 chunks
// of 1): the engine sizes its scratch for its largest batch and runs smaller
// ones (a last partial batch, an MPI rank's share of a global batch), and
// such a batch wrote past the scratch (found by data-parallel net-train).
// Shapes: inp (n, C, H, W), weight (OC, C, 3, 3), out (n, OC, H, W).
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/tensor.h"
#include "nn/ops.h"

#define GUARD 65536 // floats after the scratch, checked untouched

// Forward and backward of n samples with the scratch sized for max_n; returns
// 1 when the floats after the scratch were left alone.
static int fits(int64_t max_n, int64_t n, int64_t C, int64_t OC, int64_t H) {
    ns_conv2d_geom g = {.N = max_n, .C = C, .H = H, .W = H, .OC = OC, .KH = 3, .KW = 3,
                        .SH = 1, .SW = 1, .PH = 1, .PW = 1, .DH = 1, .DW = 1, .G = 1};
    ns_err err;
    if (ns_conv2d_geom_init(&g, &err) < 0) return 0;
    int64_t s = ns_conv2d_scratch_floats(&g);
    float *scratch = ns_aligned_alloc((size_t)(s + GUARD) * sizeof(float));
    int64_t in = n * C * H * H, out = n * OC * H * H, w = OC * C * 9;
    float *x = ns_aligned_alloc((size_t)in * sizeof(float)), *y = ns_aligned_alloc((size_t)out * sizeof(float));
    float *dy = ns_aligned_alloc((size_t)out * sizeof(float)), *dx = ns_aligned_alloc((size_t)in * sizeof(float));
    float *wt = ns_aligned_alloc((size_t)w * sizeof(float)), *dw = ns_aligned_alloc((size_t)w * sizeof(float));
    for (int64_t i = 0; i < in; i++) x[i] = (float)(i % 7) - 3;
    for (int64_t i = 0; i < out; i++) dy[i] = (float)(i % 5) - 2;
    for (int64_t i = 0; i < w; i++) wt[i] = 0.01f * (float)(i % 11);
    memset(dw, 0, (size_t)w * sizeof(float));
    for (int64_t i = 0; i < GUARD; i++) scratch[s + i] = 12345.0f;
    g.N = n;
    ns_conv2d_forward_ex(y, scratch, x, wt, NULL, &g, NULL);
    ns_conv2d_backward_ex(dx, dw, NULL, scratch, dy, x, wt, &g, 1);
    int ok = 1;
    for (int64_t i = 0; i < GUARD; i++) ok &= scratch[s + i] == 12345.0f;
    free(scratch), free(x), free(y), free(dy), free(dx), free(wt), free(dw);
    return ok;
}

int main(void) {
    // the packed path (4 channels): sized for 20 samples, run with 11 to 19
    for (int64_t n = 11; n <= 19; n++)
        CHECK(fits(20, n, 4, 4, 6), "packed conv: scratch for 20 samples holds a batch of %lld", (long long)n);
    CHECK(fits(20, 1, 4, 4, 6), "packed conv: scratch for 20 samples holds a batch of 1");
    // Winograd's geometry (16 channels, 3x3 stride 1; the packed path where
    // Winograd cannot run): sized for 20, run with 6 to 8
    for (int64_t n = 6; n <= 8; n++)
        CHECK(fits(20, n, 16, 16, 4), "16-channel conv: scratch for 20 samples holds a batch of %lld", (long long)n);
    CHECK(fits(130, 100, 16, 16, 4), "16-channel conv: scratch for 130 samples holds a batch of 100");
    return check_done();
}
