// op_conv_tiles.c: the packed convolution's tile products (op_conv.c
// describes the path): the plan, forward (out = patches W^T, a tile row of
// 32 positions read in place from a phase plane) and the input gradient by
// input phase, each sample on its own thread's scratch; the weight gradient
// is op_conv_dweight.c's, the phase planes op_conv_phase.c's. Shapes:
// inp (N, C, H, W), weight (OC, C/G, KH, KW), out (N, OC, OH, OW).
#include "nn/conv_packed.h"

#include <omp.h>

#include "base/blas.h"

void ns_conv_make_plan(plan *p, const ns_conv2d_geom *g) {
    memset(p, 0, sizeof *p);
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW;
    p->TP = ns_tile_rows();
    p->TQ = ns_tile_cols();
    p->threads = ns_threads();
    p->rows = !ns_tile_packs();
    p->Cg = g->C / g->G;
    p->OCg = g->OC / g->G;
    p->Kd = p->Cg * KH * KW;
    p->HW = g->H * g->W;
    p->OHW = g->OH * g->OW;
    p->Hp = g->H + 2 * g->PH;
    p->Wp = g->W + 2 * g->PW;
    p->Hph = ceil_div(p->Hp, g->SH);
    p->Wph = ceil_div(p->Wp, g->SW);
    p->npos = g->OH * p->Wph;
    p->ntiles = ceil_div(p->npos, p->TP);
    // Tiles read whole rows of the grid, up to ntiles*TP - 1 plus the largest
    // tap offset within a phase plane; the rest of the plane is zero.
    p->PL = round16(max64(p->Hph * p->Wph, p->ntiles * p->TP + (KH - 1) * DH / g->SH * p->Wph +
                                                (KW - 1) * DW / g->SW));
    p->Lp = g->SH * g->SW * p->PL;
    p->nq_f = ceil_div(p->OCg, p->TQ);
    p->Kb = p->OCg * KH * KW;
    p->nq_b = ceil_div(p->Cg, p->TQ);
    p->nph = g->SH * g->SW;
    p->Emax = (KH - 1) * DH / g->SH;
    p->Fmax = (KW - 1) * DW / g->SW;
    // the phase grids' first real row and column, over all phases, and
    // their ends: input row ih = r*SH + a - PH for phase row r
    int64_t rhi = 0, chi = 0, lo, hi;
    p->RS = p->CS = INT64_MAX;
    for (int64_t a = 0; a < g->SH; a++) {
        valid_range(a - g->PH, g->SH, g->H, p->Hph, &lo, &hi);
        if (lo < hi) p->RS = min64(p->RS, lo), rhi = max64(rhi, hi);
    }
    for (int64_t b = 0; b < g->SW; b++) {
        valid_range(b - g->PW, g->SW, g->W, p->Wph, &lo, &hi);
        if (lo < hi) p->CS = min64(p->CS, lo), chi = max64(chi, hi);
    }
    p->Hq = rhi - p->RS + p->Emax;
    p->Wq = chi - p->CS + p->Fmax;
    // a phase's tiles cover its rows of the grid; reads go up to the last
    // tile's end plus the largest tap offset
    p->Lq = round16(max64(p->Hq * p->Wq, ceil_div((rhi - p->RS) * p->Wq, p->TP) * p->TP +
                                             p->Emax * p->Wq + p->Fmax + p->TP));
    p->nt_w = ceil_div(p->Kd, p->TP);
    p->nq_w = ceil_div(p->OCg, p->TQ);
    p->nchunks = min64(g->N, MAX_CHUNKS);
    p->chunk = ceil_div(g->N, p->nchunks);
    p->nchunks = ceil_div(g->N, p->chunk);

    // packed weights, shared by the threads: forward (OCg tiles x Kd taps) or
    // dinp (Cg tiles x Kb taps)
    int64_t wq = g->G * p->nq_f * p->TQ * p->Kd;
    wq = max64(wq, g->G * p->nq_b * p->TQ * p->Kb);
    p->o_part = round16(wq);
    p->o_thread = p->o_part + round16(p->nchunks * g->OC * p->Kd);
    int64_t t = 0;
    p->o_xp = t;
    t += round16(p->Cg * p->Lp);
    p->o_xt = t; // + TP: a partial tap tile reads past the last pixel
    t += round16(p->Hp * p->Wp * p->Cg + p->TP);
    p->o_dz = t;
    t += round16(p->TQ * KC);
    p->o_dyp = t;
    t += round16(p->OCg * p->Lq);
    p->o_P = t;
    t += round16(max64(p->TP * max64(max64(p->Kd, p->Kb), max64(p->OCg, KC)), 6 * p->Kb));
    p->o_Q = t;
    t += round16(p->nq_w * p->TQ * KC);
    p->o_C = t;
    t += round16(p->TP * p->TQ);
    p->o_idx = t; // int64 pixel offsets of a dW block: KC of them
    t += round16(2 * KC);
    p->o_idx2 = t; // a run (three int64) per tile row
    t += round16(6 * p->TP);
    p->o_off = t; // int64 tap offsets
    t += round16(2 * max64(p->Kd, p->Kb));
    p->o_id = t; // int64 0, TP, 2 TP, ...: rows of a packed panel
    t += round16(2 * KC);
    p->o_runs = t; // ns_conv_dweight_runs: at most Kd runs of three int64
    t += round16(6 * p->Kd);
    p->o_rstart = t;
    t += round16(2 * (p->nt_w + 1));
    p->o_phs = t; // dinp: first tap of each phase, int64
    t += round16(2 * (p->nph + 1));
    p->thread_floats = t;
    p->total = p->o_thread + p->threads * t + 16; // + 16: room to align the base
}

// P[k*TP + i] = src[off[k] + i] for taps k < ntaps and i < TP: the panel of
// one tile on a padded grid, where a tap's TP positions are consecutive.
NS_SIMD_CLONES static void pack_consecutive(float *restrict P, const float *restrict src,
                                    const int64_t *off, int64_t ntaps, int64_t TP) {
    for (int64_t k = 0; k < ntaps; k++) copy_wide(P + k * TP, src + off[k], TP);
}

static int64_t tile_runs(run *runs, int64_t q0, int64_t TP, int64_t npos, int64_t Wg,
                         int64_t OW) {
    int64_t n = 0, end = min64(q0 + TP, npos);
    for (int64_t q = q0; q < end;) {
        int64_t r = q / Wg, c = q % Wg;
        if (c >= OW) { // padding columns: skip to the next row
            q = (r + 1) * Wg;
            continue;
        }
        int64_t len = min64(OW - c, end - q);
        runs[n++] = (run){q - q0, r * OW + c, len};
        q += len;
    }
    return n;
}

// ----------------------------------------------------------------------------
// packed path: forward

// wq[((grp*nq_f + jt)*Kd + k)*TQ + j] = W[grp*OCg + jt*TQ + j][k], 0 past OCg.
static void pack_weights_fwd(float *wq, const float *weight, const ns_conv2d_geom *g,
                             const plan *p) {
    const int64_t TQ = p->TQ, Kd = p->Kd, OCg = p->OCg;
    for (int64_t grp = 0; grp < g->G; grp++)
        for (int64_t jt = 0; jt < p->nq_f; jt++) {
            float *q = wq + (grp * p->nq_f + jt) * Kd * TQ;
            for (int64_t j = 0; j < TQ; j++) {
                int64_t oc = jt * TQ + j;
                const float *w = weight + (grp * OCg + oc) * Kd;
                for (int64_t k = 0; k < Kd; k++) q[k * TQ + j] = oc < OCg ? w[k] : 0.0f;
            }
        }
}

// One sample and group: out (OCg planes) from the input's Cg planes.
static void forward_sample(float *out, const float *x, const float *wq, const float *bias,
                           float *t, const ns_conv2d_geom *g, const plan *p,
                           const float *next, int64_t next_floats) {
    const int64_t TP = p->TP, TQ = p->TQ, Kd = p->Kd, Wph = p->Wph;
    const int64_t KH = g->KH, KW = g->KW, DH = g->DH, DW = g->DW, SH = g->SH, SW = g->SW;
    float *xp = t + p->o_xp, *P = t + p->o_P, *Ct = t + p->o_C;
    int64_t *off = (int64_t *)(t + p->o_off);
    run *runs = (run *)(t + p->o_idx2);
    ns_conv_phase_planes(xp, x, g, p);
    // Tap k = (c, kh, kw) of output (oh, ow) reads padded[oh*SH + kh*DH][ow*SW + kw*DW],
    // which is in phase ((kh*DH) % SH, (kw*DW) % SW) at row oh + kh*DH/SH, column
    // ow + kw*DW/SW: at grid position q = oh*Wph + ow, offset off[k] from q.
    int64_t k = 0;
    for (int64_t c = 0; c < p->Cg; c++)
        for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t kw = 0; kw < KW; kw++)
                off[k++] = c * p->Lp + (kh * DH % SH * SW + kw * DW % SW) * p->PL +
                           kh * DH / SH * Wph + kw * DW / SW;
    for (int64_t tile = 0; tile < p->ntiles; tile++) {
        const int64_t q0 = tile * TP;
        prefetch_slice(next, next_floats, tile, p->ntiles);
        int64_t nruns = tile_runs(runs, q0, TP, p->npos, Wph, g->OW);
        // P[k][i] = xp[off[k] + q0 + i], read in place when the kernel can
        if (!p->rows) pack_consecutive(P, xp + q0, off, Kd, TP);
        for (int64_t jt = 0; jt < p->nq_f; jt++) {
            if (p->rows) ns_tile_gemm_rows(Kd, xp + q0, off, wq + jt * Kd * TQ, TQ, 1, 0.0f, Ct, TP, NULL);
            else ns_tile_gemm(Kd, P, wq + jt * Kd * TQ, 0.0f, Ct, TP);
            int64_t nj = min64(TQ, p->OCg - jt * TQ);
            for (int64_t j = 0; j < nj; j++) {
                float *o = out + (jt * TQ + j) * p->OHW;
                const float *cj = Ct + j * TP;
                float b = bias ? bias[jt * TQ + j] : 0.0f;
                for (int64_t r = 0; r < nruns; r++) {
                    float *d = o + runs[r].d0;
                    const float *sr = cj + runs[r].i0;
                    if (bias) {
                        for (int64_t i = 0; i < runs[r].len; i++) d[i] = sr[i] + b;
                    } else {
                        copy_floats(d, sr, runs[r].len);
                    }
                }
            }
        }
    }
}

void ns_conv_packed_forward(float *out, float *scratch, const float *inp, const float *weight,
                            const float *bias, const ns_conv2d_geom *g,
                            const ns_conv2d_epilogue *ep) {
    float *raw = ep && ep->conv_out ? ep->conv_out : out;
    plan p;
    ns_conv_make_plan(&p, g);
    float *base = align64(scratch);
    pack_weights_fwd(base, weight, g, &p);
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
#pragma omp parallel num_threads(p.threads) if (N > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
        zero_floats(t + p.o_xp, p.Cg * p.Lp);
        // chunks of 4 samples: the next sample is usually this thread's next
#pragma omp for schedule(dynamic, 4)
        for (int64_t n = 0; n < N; n++)
            for (int64_t grp = 0; grp < G; grp++) {
                const float *x = inp + (n * C + grp * p.Cg) * HW;
                const float *next = grp + 1 < G ? x + p.Cg * HW : n + 1 < N ? x + (C - grp * p.Cg) * HW : NULL;
                forward_sample(raw + (n * OC + grp * p.OCg) * OHW, x,
                               base + grp * p.nq_f * p.Kd * p.TQ,
                               bias ? bias + grp * p.OCg : NULL, t, g, &p, next, p.Cg * HW);
                if (ep && grp + 1 == G) ns_conv_epilogue_sample(out, raw, NULL, ep, n, OC, OHW);
            }
    }
}

// ----------------------------------------------------------------------------
// packed path: backward

// dinp by input phase. An input pixel at padded position (r*SH + a,
// s*SW + b) gets W[oc][c][kh][kw] dout[oc][r - e][s - f] from the taps with
// kh*DH = e*SH + a and kw*DW = f*SW + b: for each phase (a, b) a stride-1
// correlation of dout with those taps, which is the forward's machinery
// again (with stride 1: one phase, the transposed convolution). dout is
// padded by Emax rows and Fmax columns (the largest e, f) so every tap reads
// at a non-negative offset. The phases' taps, in a fixed order (oc, kh, kw):
static int64_t phase_taps(int64_t ph, const ns_conv2d_geom *g, const plan *p,
                          int64_t *kh_out, int64_t *kw_out, int64_t *oc_out) {
    const int64_t a = ph / g->SW, b = ph % g->SW;
    int64_t n = 0;
    for (int64_t oc = 0; oc < p->OCg; oc++)
        for (int64_t kh = 0; kh < g->KH; kh++) {
            if (kh * g->DH % g->SH != a) continue;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                if (kw * g->DW % g->SW != b) continue;
                if (kh_out) kh_out[n] = kh, kw_out[n] = kw, oc_out[n] = oc;
                n++;
            }
        }
    return n;
}

// wq, per group and phase, nq_b tiles of the phase's taps x TQ input
// channels: W[grp*OCg + oc][jt*TQ + j][kh][kw] for tap (oc, kh, kw), 0 past Cg.
static void pack_weights_bwd(float *wq, const float *weight, const ns_conv2d_geom *g,
                             const plan *p, int64_t *scratch3) {
    const int64_t TQ = p->TQ, Cg = p->Cg, OCg = p->OCg, KH = g->KH, KW = g->KW;
    int64_t *khs = scratch3, *kws = khs + p->Kb, *ocs = kws + p->Kb;
    for (int64_t grp = 0; grp < g->G; grp++) {
        float *q = wq + grp * p->nq_b * TQ * p->Kb;
        for (int64_t ph = 0; ph < p->nph; ph++) {
            int64_t n = phase_taps(ph, g, p, khs, kws, ocs);
            for (int64_t jt = 0; jt < p->nq_b; jt++, q += n * TQ)
                for (int64_t k = 0; k < n; k++)
                    for (int64_t j = 0; j < TQ; j++) {
                        int64_t c = jt * TQ + j;
                        q[k * TQ + j] = c < Cg ? weight[(((grp * OCg + ocs[k]) * Cg + c) * KH +
                                                         khs[k]) * KW + kws[k]]
                                               : 0.0f;
                    }
        }
    }
}

// The taps' offsets in the padded dout, phase by phase (phs[ph] is the
// phase's first tap), for dinp_sample.
static void dinp_offsets(int64_t *off, int64_t *phs, const ns_conv2d_geom *g, const plan *p,
                         int64_t *scratch3) {
    int64_t *khs = scratch3, *kws = khs + p->Kb, *ocs = kws + p->Kb, n = 0;
    for (int64_t ph = 0; ph < p->nph; ph++) {
        phs[ph] = n;
        int64_t m = phase_taps(ph, g, p, khs, kws, ocs);
        for (int64_t k = 0; k < m; k++)
            off[n + k] = ocs[k] * p->Lq + (p->Emax - khs[k] * g->DH / g->SH) * p->Wq +
                         (p->Fmax - kws[k] * g->DW / g->SW);
        n += m;
    }
    phs[p->nph] = n;
}

// dinp (Cg planes) += for one sample and group, phase by phase. Phase grid
// position q = (r - RS)*Wq + (s - CS) is input pixel (r*SH + a - PH,
// s*SW + b - PW) when that is inside the image.
static void dinp_sample(float *dx, const float *dy, const float *wq, float *t,
                        const ns_conv2d_geom *g, const plan *p, const float *next_dy,
                        const float *next_x, const float *next_dx) {
    const int64_t TP = p->TP, TQ = p->TQ, Wq = p->Wq, H = g->H, W = g->W, SH = g->SH, SW = g->SW;
    float *dyp = t + p->o_dyp, *P = t + p->o_P, *Ct = t + p->o_C;
    const int64_t *off = (const int64_t *)(t + p->o_off), *phs = (const int64_t *)(t + p->o_phs);
    run *runs = (run *)(t + p->o_idx2);
    ns_conv_copy_planes(dyp, p->Lq, p->Hq, Wq, dy, p->OCg, g->OH, g->OW, p->Emax - p->RS, p->Fmax - p->CS);
    for (int64_t ph = 0; ph < p->nph; ph++) {
        const int64_t a = ph / SW, b = ph % SW, nk = phs[ph + 1] - phs[ph];
        if (nk == 0) continue;
        int64_t rlo, rhi, slo, shi;
        valid_range(a - g->PH, SH, H, p->Hph, &rlo, &rhi);
        valid_range(b - g->PW, SW, W, p->Wph, &slo, &shi);
        if (rlo >= rhi || slo >= shi) continue;
        const float *wph = wq + phs[ph] * p->nq_b * TQ;
        const int64_t *offp = off + phs[ph];
        const int64_t qa = (rlo - p->RS) * Wq, ntl = ceil_div((rhi - p->RS) * Wq - qa, TP);
        for (int64_t q0 = qa; q0 < (rhi - p->RS) * Wq; q0 += TP) {
            // the next sample's dout and input, spread over the phases' tiles
            int64_t part = ph * ntl + (q0 - qa) / TP, parts = p->nph * ntl;
            prefetch_slice(next_dy, p->OCg * p->OHW, part, parts);
            prefetch_slice(next_x, p->Cg * p->HW, part, parts);
            prefetch_slice(next_dx, p->Cg * p->HW, part, parts);
            // runs of valid positions: grid row r - RS, columns slo - CS .. shi - CS
            int64_t nruns = 0;
            for (int64_t q = q0; q < q0 + TP;) {
                int64_t r = q / Wq + p->RS, s = q % Wq + p->CS;
                if (r >= rhi) break;
                if (s < slo) {
                    q += slo - s;
                    continue;
                }
                if (s >= shi) {
                    q += Wq - (s - p->CS);
                    continue;
                }
                int64_t len = min64(shi - s, q0 + TP - q);
                runs[nruns++] = (run){q - q0, (r * SH + a - g->PH) * W + s * SW + b - g->PW, len};
                q += len;
            }
            if (nruns == 0) continue;
            if (!p->rows) pack_consecutive(P, dyp + q0, offp, nk, TP);
            for (int64_t jt = 0; jt < p->nq_b; jt++) {
                const float *wj = wph + jt * nk * TQ;
                if (p->rows) ns_tile_gemm_rows(nk, dyp + q0, offp, wj, TQ, 1, 0.0f, Ct, TP, NULL);
                else ns_tile_gemm(nk, P, wj, 0.0f, Ct, TP);
                int64_t nj = min64(TQ, p->Cg - jt * TQ);
                for (int64_t j = 0; j < nj; j++) {
                    float *d = dx + (jt * TQ + j) * p->HW;
                    const float *cj = Ct + j * TP;
                    for (int64_t r = 0; r < nruns; r++) {
                        if (SW == 1) {
                            add_floats(d + runs[r].d0, cj + runs[r].i0, runs[r].len);
                        } else if (SW == 2) {
                            ns_conv_add_stride2(d + runs[r].d0, cj + runs[r].i0, runs[r].len,
                                        p->HW - runs[r].d0);
                        } else {
                            float *dr = d + runs[r].d0;
                            const float *sr = cj + runs[r].i0;
                            for (int64_t i = 0; i < runs[r].len; i++) dr[i * SW] += sr[i];
                        }
                    }
                }
            }
        }
    }
}

void ns_conv_packed_backward(float *dinp, float *dweight, float *scratch, const float *dout,
                             const float *inp, const float *weight, const ns_conv2d_geom *g,
                             int overwrite) {
    plan p;
    ns_conv_make_plan(&p, g);
    float *base = align64(scratch), *parts = base + p.o_part;
    // packing the weights needs three int64 per tap for a moment: the first
    // thread's slice is free until the parallel region
    if (dinp) pack_weights_bwd(base, weight, g, &p, (int64_t *)(base + p.o_thread + p.o_P));
    const int64_t N = g->N, G = g->G, C = g->C, OC = g->OC, HW = p.HW, OHW = p.OHW;
    const int64_t Kd = p.Kd, Cg = p.Cg, KHW = g->KH * g->KW;
#pragma omp parallel num_threads(p.threads) if (p.nchunks > 1)
    {
        float *t = base + p.o_thread + omp_get_thread_num() * p.thread_floats;
        if (dinp) {
            dinp_offsets((int64_t *)(t + p.o_off), (int64_t *)(t + p.o_phs), g, &p,
                         (int64_t *)(t + p.o_P));
            zero_floats(t + p.o_dyp, p.OCg * p.Lq);
        }
        if (dweight) {
            zero_floats(t + p.o_xt, p.Hp * p.Wp * p.Cg + p.TP);
            zero_floats(t + p.o_Q, p.nq_w * p.TQ * KC);
            zero_floats(t + p.o_dz, p.TQ * KC);
            int64_t *id = (int64_t *)(t + p.o_id);
            for (int64_t i = 0; i < KC; i++) id[i] = i * p.TP;
            ns_conv_dweight_runs((run *)(t + p.o_runs), (int64_t *)(t + p.o_rstart), g, &p);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < p.nchunks; ch++) {
            float *part = parts + ch * OC * Kd;
            if (dweight) zero_floats(part, OC * Kd);
            for (int64_t n = ch * p.chunk; n < min64(N, (ch + 1) * p.chunk); n++)
                for (int64_t grp = 0; grp < G; grp++) {
                    const float *dy = dout + (n * OC + grp * p.OCg) * OHW;
                    const int last = n + 1 == min64(N, (ch + 1) * p.chunk) && grp + 1 == G;
                    if (dinp && overwrite) zero_floats(dinp + (n * C + grp * Cg) * HW, Cg * HW);
                    if (dinp)
                        dinp_sample(dinp + (n * C + grp * Cg) * HW, dy,
                                    base + grp * p.nq_b * p.TQ * p.Kb, t, g, &p,
                                    last ? NULL : dy + p.OCg * OHW + (grp + 1 == G ? (OC - G * p.OCg) * OHW : 0),
                                    last || !dweight ? NULL : inp + (n * C + grp * Cg) * HW + Cg * HW,
                                    last ? NULL : dinp + (n * C + grp * Cg) * HW + Cg * HW);
                    // (dinp_sample prefetches for both when it runs)
                    if (dweight)
                        ns_conv_dweight_sample(part + grp * p.OCg * Kd, inp + (n * C + grp * Cg) * HW, dy,
                                       t, g, &p,
                                       last || dinp ? NULL : inp + (n * C + grp * Cg) * HW + Cg * HW,
                                       last || dinp ? NULL : dy + p.OCg * OHW + (grp + 1 == G ? (OC - G * p.OCg) * OHW : 0));
                }
        }
        if (dweight) {
            // dweight[oc][c][kh][kw] += the partials' [oc][kh][kw][c], in chunk order
#pragma omp for schedule(static)
            for (int64_t oc = 0; oc < OC; oc++)
                for (int64_t k = 0; k < Kd; k++) {
                    int64_t c = k % Cg, khw = k / Cg;
                    double s = 0;
                    for (int64_t ch = 0; ch < p.nchunks; ch++) s += parts[(ch * OC + oc) * Kd + k];
                    dweight[oc * Kd + c * KHW + khw] += (float)s;
                }
        }
    }
}
