// op_conv_dweight.c: the packed convolution's weight gradient (op_conv.c):
// dW^T (taps x OC) += patches^T dout^T summed over pixels, tile rows read from
// a padded NHWC copy of the input (a tap's channels consecutive) and dout in
// place; each chunk of samples sums into its own partial dW. Shapes: x
// (Cg, H, W) of one sample and group, dy (OCg, OH, OW), dW (OCg, Cg*KH*KW).
#include "nn/conv_packed.h"

#include "base/blas.h"

// d[t*ldd + j] = s[j*lds + t] for j < nj, t < nt: a transpose, by 4x4 blocks.
static void transpose(float *restrict d, int64_t ldd, const float *restrict s, int64_t lds,
                      int64_t nj, int64_t nt) {
    int64_t j = 0;
    for (; j + 4 <= nj; j += 4) {
        const float *s0 = s + j * lds;
        int64_t t = 0;
        for (; t + 4 <= nt; t += 4) {
            vf4 r0 = *(const vf4 *)(s0 + t), r1 = *(const vf4 *)(s0 + lds + t);
            vf4 r2 = *(const vf4 *)(s0 + 2 * lds + t), r3 = *(const vf4 *)(s0 + 3 * lds + t);
            vf4 a0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5);
            vf4 a1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
            vf4 a2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5);
            vf4 a3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
            float *d0 = d + t * ldd + j;
            *(vf4 *)d0 = __builtin_shufflevector(a0, a2, 0, 1, 4, 5);
            *(vf4 *)(d0 + ldd) = __builtin_shufflevector(a0, a2, 2, 3, 6, 7);
            *(vf4 *)(d0 + 2 * ldd) = __builtin_shufflevector(a1, a3, 0, 1, 4, 5);
            *(vf4 *)(d0 + 3 * ldd) = __builtin_shufflevector(a1, a3, 2, 3, 6, 7);
        }
        for (; t < nt; t++)
            for (int64_t jj = j; jj < j + 4; jj++) d[t * ldd + jj] = s[jj * lds + t];
    }
    for (; j < nj; j++)
        for (int64_t t = 0; t < nt; t++) d[t * ldd + j] = s[j * lds + t];
}

// A[t*TP + i] for pixels t < kc: row t of a dW panel, gathered from
// src + pb[t] by runs (position i0 in the row, offset d0 from src + pb[t],
// len floats); positions nk .. TP-1 are zero.
NS_SIMD_CLONES static void pack_runs(float *restrict A, int64_t TP, const float *restrict src,
                             const int64_t *pb, int64_t kc, const run *runs, int64_t nruns,
                             int64_t nk) {
    for (int64_t t = 0; t < kc; t++) {
        float *a = A + t * TP;
        const float *st = src + pb[t];
        for (int64_t r = 0; r < nruns; r++) copy_wide(a + runs[r].i0, st + runs[r].d0, runs[r].len);
        if (nk < TP) zero_floats(a + nk, TP - nk);
    }
}

// The taps of each dW tap tile (TP taps in (kh, kw, c) order) as runs of
// consecutive floats in the padded NHWC copy: tile it has runs
// runs[rstart[it]] .. runs[rstart[it + 1] - 1] (position in the tile row,
// offset from the pixel, length).
void ns_conv_dweight_runs(run *runs, int64_t *rstart, const ns_conv2d_geom *g, const plan *p) {
    const int64_t TP = p->TP, Kd = p->Kd, Cg = p->Cg, KW = g->KW;
    int64_t n = 0;
    for (int64_t it = 0; it < p->nt_w; it++) {
        rstart[it] = n;
        int64_t k0 = it * TP, nk = min64(TP, Kd - k0);
        for (int64_t i = 0; i < nk; i++) {
            int64_t k = k0 + i, c = k % Cg, kw = k / Cg % KW, kh = k / (Cg * KW);
            int64_t off = (kh * g->DH * p->Wp + kw * g->DW) * Cg + c;
            if (n > rstart[it] && runs[n - 1].d0 + runs[n - 1].len == off)
                runs[n - 1].len++;
            else
                runs[n++] = (run){i, off, 1};
        }
    }
    rstart[p->nt_w] = n;
}

// part (OCg rows of Kd taps in (kh, kw, c) order) += dW^T of one sample and
// group: sum over pixels of patches (taps) x dout (channels), both packed
// pixel-major from a padded NHWC copy of the input.
void ns_conv_dweight_sample(float *part, const float *x, const float *dy, float *t,
                            const ns_conv2d_geom *g, const plan *p, const float *next_x,
                            const float *next_dy) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Cg = p->Cg, OCg = p->OCg, OHW = p->OHW;
    const int64_t Wp = p->Wp, H = g->H, W = g->W;
    float *xt = t + p->o_xt, *A = t + p->o_P, *Q = t + p->o_Q, *Ct = t + p->o_C;
    float *dz = t + p->o_dz;
    int64_t *pb = (int64_t *)(t + p->o_idx), *id = (int64_t *)(t + p->o_id);
    const run *runs = (const run *)(t + p->o_runs);
    const int64_t *rstart = (const int64_t *)(t + p->o_rstart);
    // xt[((ih + PH)*Wp + iw + PW)*Cg + c] = x[c][ih][iw], zero padding around
    // (zeroed once per call)
    for (int64_t ih = 0; ih < H; ih++)
        transpose(xt + ((ih + g->PH) * Wp + g->PW) * Cg, Cg, x + ih * W, H * W, Cg, W);
    for (int64_t p0 = 0; p0 < OHW; p0 += KC) {
        int64_t kc = min64(KC, OHW - p0);
        // Q[jt][tt*TQ + j] = dout[jt*TQ + j][p0 + tt]; the columns past OCg
        // stay zero (set once per call)
        if (!p->rows)
            for (int64_t jt = 0; jt < p->nq_w; jt++)
                transpose(Q + jt * TQ * KC, TQ, dy + jt * TQ * OHW + p0, OHW,
                          min64(TQ, OCg - jt * TQ), kc);
        for (int64_t tt = 0, oh = p0 / g->OW, ow = p0 % g->OW; tt < kc; tt++) {
            pb[tt] = (oh * g->SH * Wp + ow * g->SW) * Cg;
            if (++ow == g->OW) ow = 0, oh++;
        }
        for (int64_t it = 0; it < p->nt_w; it++) {
            int64_t part_i = p0 / KC * p->nt_w + it, parts = ceil_div(OHW, KC) * p->nt_w;
            prefetch_slice(next_x, Cg * p->HW, part_i, parts);
            prefetch_slice(next_dy, OCg * OHW, part_i, parts);
            // the tile's taps as runs of consecutive floats in xt (see
            // ns_conv_dweight_runs): read in place when there is one run (a partial
            // tile reads into xt's slack; those rows are dropped), else packed
            const run *tr = runs + rstart[it];
            int64_t nruns = rstart[it + 1] - rstart[it], k0 = it * TP, nk = min64(TP, Kd - k0);
            const int in_place = p->rows && nruns == 1;
            if (!in_place) pack_runs(A, TP, xt, pb, kc, tr, nruns, nk);
            const float *base = in_place ? xt + tr[0].d0 : A;
            const int64_t *off = in_place ? pb : id;
            for (int64_t jt = 0; jt < p->nq_w; jt++) {
                int64_t nj = min64(TQ, OCg - jt * TQ);
                float *c = part + jt * TQ * Kd + k0;
                const int full = nk == TP && nj == TQ;
                float *dst = full ? c : Ct;
                int64_t ldc = full ? Kd : TP;
                if (p->rows) {
                    // dout read in place: element (tt, j) at
                    // dy[(jt*TQ + j)*OHW + p0 + tt]; a partial last column tile
                    // goes through dz, whose rows past OCg stay zero
                    const float *q = dy + jt * TQ * OHW + p0;
                    int64_t cq = OHW;
                    if (nj < TQ) {
                        for (int64_t j = 0; j < nj; j++) copy_floats(dz + j * KC, q + j * OHW, kc);
                        q = dz;
                        cq = KC;
                    }
                    ns_tile_gemm_rows(kc, base, off, q, 1, cq, full ? 1.0f : 0.0f, dst, ldc, NULL);
                } else
                    ns_tile_gemm(kc, A, Q + jt * TQ * KC, full ? 1.0f : 0.0f, dst, ldc);
                if (!full)
                    for (int64_t j = 0; j < nj; j++)
                        for (int64_t i = 0; i < nk; i++) c[j * Kd + i] += Ct[j * TP + i];
            }
        }
    }
}
