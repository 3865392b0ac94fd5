// op_tokens.c: turning images into tokens and tokens into a vector (ops.h):
// image patches (N, C, H, W) <-> (N, T, C*P*P), a class token (N, T, D) ->
// (N, T+1, D), learned positions (T, D) added to (N, T, D), and token pooling
// (N, T, D) -> (N, D) (first, mean, or at the end-of-text id). Parameter gradients sum over samples in sample order,
// in double, one feature per iteration.
#include "nn/ops.h"

#include <string.h>

#define OMP_MIN 32768

void ns_patches_forward(float *cols, const float *inp, int64_t N, int64_t C, int64_t H,
                        int64_t W, int64_t P) {
    const int64_t OH = H / P, OW = W / P, K = C * P * P;
#pragma omp parallel for schedule(static) if (N * C * H * W >= OMP_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                float *row = cols + ((n * OH + i) * OW + j) * K;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t kh = 0; kh < P; kh++)
                        memcpy(row + (c * P + kh) * P, inp + ((n * C + c) * H + i * P + kh) * W + j * P,
                               (size_t)P * sizeof(float));
            }
}

void ns_patches_backward(float *dinp, const float *dcols, int64_t N, int64_t C, int64_t H,
                         int64_t W, int64_t P) {
    const int64_t OH = H / P, OW = W / P, K = C * P * P;
#pragma omp parallel for schedule(static) if (N * C * H * W >= OMP_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                const float *row = dcols + ((n * OH + i) * OW + j) * K;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t kh = 0; kh < P; kh++) {
                        float *d = dinp + ((n * C + c) * H + i * P + kh) * W + j * P;
                        const float *r = row + (c * P + kh) * P;
                        for (int64_t kw = 0; kw < P; kw++) d[kw] += r[kw];
                    }
            }
}

void ns_cls_token_forward(float *out, const float *inp, const float *tok, int64_t N, int64_t T,
                          int64_t D) {
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * (T + 1) * D;
        memcpy(o, tok, (size_t)D * sizeof(float));
        memcpy(o + D, inp + n * T * D, (size_t)(T * D) * sizeof(float));
    }
}

void ns_cls_token_backward(float *dinp, float *dtok, const float *dout, int64_t N, int64_t T,
                           int64_t D) {
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * T * D >= OMP_MIN)
        for (int64_t n = 0; n < N; n++) {
            const float *g = dout + n * (T + 1) * D + D;
            float *d = dinp + n * T * D;
            for (int64_t i = 0; i < T * D; i++) d[i] += g[i];
        }
    }
    if (dtok)
        for (int64_t e = 0; e < D; e++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += dout[n * (T + 1) * D + e];
            dtok[e] += (float)s;
        }
}

void ns_pos_embed_forward(float *out, const float *inp, const float *pos, int64_t N, int64_t T,
                          int64_t D) {
#pragma omp parallel for schedule(static) if (N * T * D >= OMP_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < T * D; i++) out[n * T * D + i] = inp[n * T * D + i] + pos[i];
}

void ns_pos_embed_backward(float *dinp, float *dpos, const float *dout, int64_t N, int64_t T,
                           int64_t D) {
    const int64_t TD = T * D;
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * TD >= OMP_MIN)
        for (int64_t i = 0; i < N * TD; i++) dinp[i] += dout[i];
    }
    if (dpos) {
#pragma omp parallel for schedule(static) if (N * TD >= OMP_MIN)
        for (int64_t i = 0; i < TD; i++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += dout[n * TD + i];
            dpos[i] += (float)s;
        }
    }
}

void ns_token_pool_forward(float *out, const float *inp, int mode, int64_t N, int64_t T,
                           int64_t D) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * T * D;
        float *o = out + n * D;
        if (mode == 0) {
            memcpy(o, x, (size_t)D * sizeof(float));
            continue;
        }
        for (int64_t e = 0; e < D; e++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++) s += x[t * D + e];
            o[e] = (float)(s / (double)T);
        }
    }
}

void ns_token_pool_backward(float *dinp, const float *dout, int mode, int64_t N, int64_t T,
                            int64_t D) {
    for (int64_t n = 0; n < N; n++) {
        float *d = dinp + n * T * D;
        const float *g = dout + n * D;
        if (mode == 0) {
            for (int64_t e = 0; e < D; e++) d[e] += g[e];
            continue;
        }
        const float inv = (float)(1.0 / (double)T);
        for (int64_t t = 0; t < T; t++)
            for (int64_t e = 0; e < D; e++) d[t * D + e] += g[e] * inv;
    }
}

static int64_t argmax_position(const float *keys, int64_t T) {
    int64_t best = 0;
    for (int64_t t = 1; t < T; t++)
        if (keys[t] > keys[best]) best = t;
    return best;
}

void ns_token_pool_eot_forward(float *out, const float *inp, const float *keys, int64_t N, int64_t T,
                               int64_t D) {
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * D, inp + (n * T + argmax_position(keys + n * T, T)) * D, (size_t)D * sizeof(float));
}

void ns_token_pool_eot_backward(float *dinp, const float *dout, const float *keys, int64_t N, int64_t T,
                                int64_t D) {
    for (int64_t n = 0; n < N; n++) {
        float *d = dinp + (n * T + argmax_position(keys + n * T, T)) * D;
        for (int64_t e = 0; e < D; e++) d[e] += dout[n * D + e];
    }
}
