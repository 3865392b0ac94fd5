// op_linear.c: the fully connected layer, out = inp W^T + b, as torch.nn.Linear.
// Shapes: inp (N, IN), weight (OUT, IN), bias (OUT), out (N, OUT). Both
// products are one ns_sgemm each; the bias sums are per output feature.
#include "nn/ops.h"

#include "base/blas.h"

// Elementwise loops below this many floats stay on one thread.
#define OMP_MIN 32768
// Bias gradients sum this many features at a time, reading dout row by row.
#define BIAS_BLOCK 64

void ns_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int64_t N, int64_t IN, int64_t OUT) {
    // out (N, OUT) = inp (N, IN) @ weight^T (IN, OUT)
    ns_sgemm(0, 1, N, OUT, IN, 1.0f, inp, IN, weight, IN, 0.0f, out, OUT);
    if (!bias) return;
#pragma omp parallel for schedule(static) if (N * OUT >= OMP_MIN)
    for (int64_t i = 0; i < N; i++) {
        float *o = out + i * OUT;
        for (int64_t j = 0; j < OUT; j++) o[j] += bias[j];
    }
}

void ns_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int64_t N, int64_t IN,
                        int64_t OUT) {
    // dinp (N, IN) += dout (N, OUT) @ weight (OUT, IN)
    if (dinp) ns_sgemm(0, 0, N, IN, OUT, 1.0f, dout, OUT, weight, IN, 1.0f, dinp, IN);
    // dweight (OUT, IN) += dout^T (OUT, N) @ inp (N, IN)
    if (dweight) ns_sgemm(1, 0, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 1.0f, dweight, IN);
    if (dbias) { // per feature, rows in order, in double; a block of features row by row
        const int64_t nblocks = (OUT + BIAS_BLOCK - 1) / BIAS_BLOCK;
#pragma omp parallel for schedule(static) if (N * OUT >= OMP_MIN)
        for (int64_t jb = 0; jb < nblocks; jb++) {
            const int64_t j0 = jb * BIAS_BLOCK, nj = OUT - j0 < BIAS_BLOCK ? OUT - j0 : BIAS_BLOCK;
            double s[BIAS_BLOCK] = {0};
            for (int64_t i = 0; i < N; i++) {
                const float *row = dout + i * OUT + j0;
                for (int64_t j = 0; j < nj; j++) s[j] += row[j];
            }
            for (int64_t j = 0; j < nj; j++) dbias[j0 + j] += (float)s[j];
        }
    }
}
