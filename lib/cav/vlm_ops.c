// vlm_ops.c: the two kernels a clip-small model adds to the engine's: the
// text tower (mean of token embeddings, then a linear projection) and CLIP's
// symmetric contrastive loss, forward and backward (vlm_train.h).
//
// Dimensions: B pairs, E joint width, V vocabulary, D token width, n texts.
#include <math.h>
#include <string.h>

#include "base/blas.h"
#include "nn/ops.h"
#include "cav/vlm_train.h"

// ----------------------------------------------------------------------------
// text tower

void ns_text_tower_forward(float *out, float *pooled, const ns_token_lists *tok, const float *embedding,
                           const float *weight, const float *bias, int64_t D, int64_t E) {
    int64_t n = tok->n;
    for (int64_t i = 0; i < n; i++) {
        float *p = pooled + i * D; // (D)
        memset(p, 0, (size_t)D * sizeof *p);
        int64_t a = tok->offsets[i], b = tok->offsets[i + 1];
        for (int64_t k = a; k < b; k++) {
            const float *row = embedding + (int64_t)tok->ids[k] * D;
            for (int64_t d = 0; d < D; d++) p[d] += row[d];
        }
        float inv = 1.0f / (float)(b - a);
        for (int64_t d = 0; d < D; d++) p[d] *= inv;
    }
    ns_linear_forward(out, pooled, weight, bias, n, D, E);
}

void ns_text_tower_backward(float *dembedding, float *dweight, float *dbias, float *dpooled, const float *dout,
                            const float *pooled, const ns_token_lists *tok, const float *weight, int64_t D,
                            int64_t E) {
    int64_t n = tok->n;
    memset(dpooled, 0, (size_t)(n * D) * sizeof *dpooled);
    ns_linear_backward(dembedding ? dpooled : NULL, dweight, dbias, dout, pooled, weight, n, D, E);
    if (!dembedding) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = tok->offsets[i], b = tok->offsets[i + 1];
        float inv = 1.0f / (float)(b - a);
        const float *dp = dpooled + i * D; // (D)
        for (int64_t k = a; k < b; k++) {
            float *row = dembedding + (int64_t)tok->ids[k] * D;
            for (int64_t d = 0; d < D; d++) row[d] += dp[d] * inv;
        }
    }
}

// ----------------------------------------------------------------------------
// CLIP's loss
//
// work layout: u (B, E), v (B, E), du (B, E), L (B, B), G (B, B), rnorm_img (B), rnorm_txt (B)

int64_t ns_clip_loss_work_floats(int64_t B, int64_t E) { return 3 * B * E + 2 * B * B + 2 * B; }

// Unit rows of x into u; rnorm receives 1/|x_i| (0 for a zero row).
static void unit_rows(float *u, float *rnorm, const float *x, int64_t B, int64_t E) {
    for (int64_t i = 0; i < B; i++) {
        double ss = 0;
        for (int64_t j = 0; j < E; j++) ss += (double)x[i * E + j] * x[i * E + j];
        rnorm[i] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int64_t j = 0; j < E; j++) u[i * E + j] = x[i * E + j] * rnorm[i];
    }
}

// dx += (du - u (u . du)) / |x|, row by row: the backward of x -> x / |x|.
static void unit_rows_backward(float *dx, const float *du, const float *u, const float *rnorm, int64_t B,
                               int64_t E) {
    for (int64_t i = 0; i < B; i++) {
        double dot = 0;
        for (int64_t j = 0; j < E; j++) dot += (double)u[i * E + j] * du[i * E + j];
        for (int64_t j = 0; j < E; j++)
            dx[i * E + j] += (float)(((double)du[i * E + j] - (double)u[i * E + j] * dot) * rnorm[i]);
    }
}

double ns_clip_loss(float *dimg, float *dtxt, double *dt, const float *img, const float *txt, double t, int64_t B,
                    int64_t E, float *work) {
    float *u = work, *v = u + B * E, *du = v + B * E, *L = du + B * E, *G = L + B * B, *rimg = G + B * B, *rtxt = rimg + B;
    unit_rows(u, rimg, img, B, E);
    unit_rows(v, rtxt, txt, B, E);
    int clamped = exp(t) > NS_VLM_MAX_SCALE;
    double s = clamped ? NS_VLM_MAX_SCALE : exp(t);
    ns_sgemm(0, 1, B, B, E, 1.0f, u, E, v, E, 0.0f, L, B); // L = cos(u_i, v_j) for now
    // G = d loss / d logits: (softmax of the row - onehot + softmax of the column - onehot) / 2B
    double loss = 0;
    for (int64_t i = 0; i < B; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < B; j++) mx = fmax(mx, s * L[i * B + j]);
        for (int64_t j = 0; j < B; j++) sum += exp(s * L[i * B + j] - mx);
        loss += mx + log(sum) - s * L[i * B + i];
        for (int64_t j = 0; j < B; j++)
            G[i * B + j] = (float)((exp(s * L[i * B + j] - mx) / sum - (i == j)) / (2.0 * B));
    }
    for (int64_t j = 0; j < B; j++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < B; i++) mx = fmax(mx, s * L[i * B + j]);
        for (int64_t i = 0; i < B; i++) sum += exp(s * L[i * B + j] - mx);
        loss += mx + log(sum) - s * L[j * B + j];
        for (int64_t i = 0; i < B; i++)
            G[i * B + j] += (float)((exp(s * L[i * B + j] - mx) / sum - (i == j)) / (2.0 * B));
    }
    loss /= 2.0 * B;
    if (dt) {
        double ds = 0; // d loss / d s = sum G * cos
        for (int64_t k = 0; k < B * B; k++) ds += (double)G[k] * L[k];
        if (!clamped) *dt += ds * s;
    }
    // d loss / d u = s G v, d loss / d v = s G^T u, then back through the normalisations.
    if (dimg) {
        ns_sgemm(0, 0, B, E, B, (float)s, G, B, v, E, 0.0f, du, E);
        unit_rows_backward(dimg, du, u, rimg, B, E);
    }
    if (dtxt) {
        ns_sgemm(1, 0, B, E, B, (float)s, G, B, u, E, 0.0f, du, E);
        unit_rows_backward(dtxt, du, v, rtxt, B, E);
    }
    return loss;
}
