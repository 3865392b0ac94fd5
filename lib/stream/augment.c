// augment.c: random crop with zero padding and random horizontal flip of image
// batches (contract in augment.h).
//
// One plane at a time, in place or not: output row y is input row y + oy
// shifted by ox columns (zeros where that falls outside the image), then
// mirrored. In place, rows are visited in the direction that reads each source
// row before it is overwritten (ascending when oy > 0, descending when oy < 0);
// within a row memmove handles the overlap. So no scratch is needed at all.
#include "stream/augment.h"

#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"

// Below this many floats a batch is done by one thread.
#define PAR_MIN_FLOATS 65536

int ns_augment_init(ns_augment *a, int64_t max_n, int64_t C, int64_t H, int64_t W, int pad,
                    double flip_p, ns_err *err) {
    memset(a, 0, sizeof *a);
    if (max_n < 1 || C < 1 || H < 1 || W < 1)
        return ns_errf(err, "augment: bad batch geometry (%lld, %lld, %lld, %lld)", (long long)max_n,
                       (long long)C, (long long)H, (long long)W);
    int64_t shape[4] = {max_n, C, H, W}, numel;
    size_t nbytes;
    if (ns_shape_size(4, shape, NS_F32, &numel, &nbytes, err) < 0) return ns_err_prefix(err, "augment");
    if (pad < 0 || pad > NS_AUGMENT_PAD_MAX)
        return ns_errf(err, "augment: crop padding must be in [0, %d] (%d)", NS_AUGMENT_PAD_MAX, pad);
    if (!(flip_p >= 0 && flip_p <= 1))
        return ns_errf(err, "augment: flip probability must be in [0, 1] (%g)", flip_p);
    a->draws = calloc((size_t)max_n, sizeof *a->draws);
    if (!a->draws) return ns_errf(err, "augment: out of memory for %lld images", (long long)max_n);
    a->max_n = max_n;
    a->C = C;
    a->H = H;
    a->W = W;
    a->pad = pad;
    a->flip_p = flip_p;
    return 0;
}

void ns_augment_free(ns_augment *a) {
    free(a->draws);
    a->draws = NULL;
    a->max_n = 0;
}

int ns_augment_draw_batch(ns_augment *a, int64_t N, ns_rng *rng, ns_err *err) {
    if (N < 0 || N > a->max_n)
        return ns_errf(err, "augment: batch of %lld images, sized for at most %lld", (long long)N,
                       (long long)a->max_n);
    const uint64_t span = 2 * (uint64_t)a->pad + 1;
    for (int64_t i = 0; i < N; i++) {
        ns_augment_draw *d = &a->draws[i];
        d->top = d->left = a->pad;
        if (a->pad > 0) {
            d->top = (int32_t)ns_rng_below(rng, span);
            d->left = (int32_t)ns_rng_below(rng, span);
        }
        if (a->flip_p <= 0)
            d->flip = 0;
        else if (a->flip_p >= 1)
            d->flip = 1;
        else
            d->flip = ns_rng_uniform(rng) < a->flip_p;
    }
    return 0;
}

static void reverse_row(float *row, int64_t W) {
    for (int64_t i = 0, j = W - 1; i < j; i++, j--) {
        float t = row[i];
        row[i] = row[j];
        row[j] = t;
    }
}

// out[y][x] = in[y + oy][x + ox] (0 outside in), then mirrored when flip.
// out == in is allowed.
static void plane_forward(float *out,      // (H, W)
                          const float *in, // (H, W)
                          int64_t H, int64_t W, int64_t oy, int64_t ox, int flip) {
    const int64_t x0 = ox < 0 ? -ox : 0;          // first column with a source
    const int64_t x1 = ox > 0 ? W - ox : W;       // one past the last
    const int64_t len = x1 - x0;                  // may be <= 0 when |ox| >= W
    const size_t row_bytes = (size_t)W * sizeof(float);
    for (int64_t k = 0; k < H; k++) {
        const int64_t y = oy < 0 ? H - 1 - k : k;
        float *orow = out + y * W;
        const int64_t sy = y + oy;
        if (sy < 0 || sy >= H || len <= 0) {
            memset(orow, 0, row_bytes);
        } else {
            memmove(orow + x0, in + sy * W + x0 + ox, (size_t)len * sizeof(float));
            memset(orow, 0, (size_t)x0 * sizeof(float));
            memset(orow + x1, 0, (size_t)(W - x1) * sizeof(float));
        }
        if (flip) reverse_row(orow, W);
    }
}

void ns_augment_apply(const ns_augment *a, float *out, const float *inp, int64_t N) {
    const int64_t C = a->C, H = a->H, W = a->W, plane = H * W;
    const int64_t planes = N * C;
    const ns_augment_draw *draws = a->draws;
#pragma omp parallel for schedule(static) if (planes * plane >= PAR_MIN_FLOATS)
    for (int64_t q = 0; q < planes; q++) {
        const ns_augment_draw *d = &draws[q / C];
        const int64_t oy = (int64_t)d->top - a->pad, ox = (int64_t)d->left - a->pad;
        float *o = out + q * plane;
        const float *in = inp + q * plane;
        if (oy == 0 && ox == 0 && !d->flip) {
            if (o != in) memcpy(o, in, (size_t)plane * sizeof(float));
            continue;
        }
        plane_forward(o, in, H, W, oy, ox, d->flip);
    }
}

int ns_augment_batch(ns_augment *a, float *out, const float *inp, int64_t N, ns_rng *rng,
                     ns_err *err) {
    if (ns_augment_draw_batch(a, N, rng, err) < 0) return -1;
    ns_augment_apply(a, out, inp, N);
    return 0;
}
