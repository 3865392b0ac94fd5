// op_conv_epilogue.c: the convolution's fused epilogue (ns_conv2d_epilogue,
// ops.h), run on each sample's output planes right after they are computed,
// while they are in cache: bias, the plane statistics a training-mode batch
// norm needs, then a folded batch norm, a residual add and a ReLU
// (nn/plane_epilogue.h). Shapes: out, raw (N, OC, OH*OW).
#include "nn/conv_packed.h"

#include "nn/plane_epilogue.h"

// Sample n's OC planes: raw (the convolution, in ep->conv_out when that is
// given, else in out) plus bias (when not NULL: not yet added), then the
// plane statistics, then the steps into out.
void ns_conv_epilogue_sample(float *out, const float *raw, const float *bias,
                             const ns_conv2d_epilogue *ep, int64_t n, int64_t OC, int64_t OHW) {
    const int f = (ep->scale ? NS_EPI_SCALE | (ep->affine_out ? NS_EPI_AOUT : 0) : 0) |
                  (ep->residual ? NS_EPI_RES | (ep->residual_out ? NS_EPI_ROUT : 0) : 0) |
                  (ep->relu ? NS_EPI_RELU : 0);
    for (int64_t oc = 0; oc < OC; oc++) {
        const int64_t off = (n * OC + oc) * OHW;
        float *cur = (float *)raw + off;
        if (bias) {
            const float b = bias[oc];
#pragma omp simd
            for (int64_t i = 0; i < OHW; i++) cur[i] += b;
        }
        if (ep->plane_stats) ns_batchnorm_plane_stats(ep->plane_stats + 2 * (n * OC + oc), cur, OHW);
        if (f || cur != out + off)
            ns_epilogue_plane(f, out + off, cur, OHW, ep->scale ? ep->scale[oc] : 1.0f,
                              ep->scale ? ep->shift[oc] : 0.0f, ep->residual ? ep->residual + off : NULL,
                              ep->affine_out ? ep->affine_out + off : NULL,
                              ep->residual_out ? ep->residual_out + off : NULL);
    }
}
