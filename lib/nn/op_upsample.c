// op_upsample.c: nearest-neighbour upsampling of NCHW images by an integer
// factor s, as torch.nn.Upsample(scale_factor=s, mode='nearest'):
//     out[n, c, y, x] = inp[n, c, y / s, x / s]      (N, C, H*s, W*s)
// The backward adds each s x s block of dout into its source pixel, summing
// the block in a fixed order, so the result does not depend on the threads.
#include "nn/ops.h"

void ns_upsample_nearest_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t H, int64_t W,
                                 int64_t s) {
    int64_t OW = W * s, planes = N * C;
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t p = 0; p < planes; p++) {
        const float *src = inp + p * H * W;
        float *dst = out + p * H * W * s * s;
        for (int64_t y = 0; y < H; y++) {
            float *row = dst + y * s * OW;
            for (int64_t x = 0; x < W; x++) {
                float v = src[y * W + x];
                for (int64_t k = 0; k < s; k++) row[x * s + k] = v;
            }
            for (int64_t k = 1; k < s; k++)
                for (int64_t x = 0; x < OW; x++) row[k * OW + x] = row[x];
        }
    }
}

void ns_upsample_nearest_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t H, int64_t W,
                                  int64_t s) {
    int64_t OW = W * s, planes = N * C;
    #pragma omp parallel for schedule(static) if (planes * H * W > 16384)
    for (int64_t p = 0; p < planes; p++) {
        const float *src = dout + p * H * W * s * s;
        float *dst = dinp + p * H * W;
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                float sum = 0;
                for (int64_t i = 0; i < s; i++)
                    for (int64_t j = 0; j < s; j++) sum += src[(y * s + i) * OW + x * s + j];
                dst[y * W + x] += sum;
            }
    }
}
