// merge_solve.c: the solvers Psi of a merge (merge.h): alignment by exact LSA
// (a star onto model 0), group-structured alignment that also pairs blocks
// (attention heads, GroupNorm groups), and ZipIt!'s greedy zip.
//
// Shapes: C (O, O) float, O = n * om, row i*om + u is channel u of model i;
// dest (n * om) into [0, om).
#include "merge/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ns_merge_count(const int64_t *dest, int n, int64_t om, int64_t *count) {
    memset(count, 0, (size_t)om * sizeof *count);
    for (int64_t k = 0; k < n * om; k++) count[dest[k]]++;
}

// Copies the (rows, cols) block of C at (r0, c0) into buf as doubles.
static void copy_block(const float *C, int64_t O, int64_t r0, int64_t c0, int64_t rows, int64_t cols,
                       double *buf) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) buf[r * cols + c] = C[(r0 + r) * O + c0 + c];
}

int ns_merge_align(const float *C, int n, int64_t om, int64_t block, ns_lsa_ws *ws,
                   int64_t *dest, double *score, ns_err *err) {
    if (block <= 0 || om % block) return ns_errf(err, "block size %lld does not divide %lld channels",
                                                 (long long)block, (long long)om);
    int64_t O = n * om;
    double *buf = malloc((size_t)(block * block) * sizeof *buf);
    int64_t *r2c = malloc((size_t)block * sizeof *r2c);
    if (!buf || !r2c) {
        free(buf);
        free(r2c);
        return ns_errf(err, "out of memory");
    }
    for (int64_t u = 0; u < om; u++) dest[u] = u;
    double sum = 0;
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        for (int64_t b0 = 0; b0 < om && rc == 0; b0 += block) {
            copy_block(C, O, b0, i * om + b0, block, block, buf);
            double total;
            if ((rc = ns_lsa_ws_solve(ws, buf, block, block, 1, r2c, &total, err)) < 0) break;
            sum += total;
            for (int64_t r = 0; r < block; r++) dest[i * om + b0 + r2c[r]] = b0 + r;
        }
    free(buf);
    free(r2c);
    if (rc < 0) return -1;
    *score = n > 1 ? sum / (double)((n - 1) * om) : 1.0;
    return 0;
}

int ns_merge_pair_blocks(const float *const *C, int ngr, int n, const int64_t *om, int64_t nb, ns_lsa_ws *ws,
                         int64_t *pair, ns_err *err) {
    int64_t maxog = 1;
    for (int k = 0; k < ngr; k++) {
        if (nb <= 0 || om[k] % nb)
            return ns_errf(err, "%lld blocks do not divide %lld channels", (long long)nb, (long long)om[k]);
        if (om[k] / nb > maxog) maxog = om[k] / nb;
    }
    double *buf = malloc((size_t)(maxog * maxog) * sizeof *buf);
    double *sc = malloc((size_t)(nb * nb) * sizeof *sc);
    int64_t *r2c = malloc((size_t)maxog * sizeof *r2c);
    int rc = 0;
    if (!buf || !sc || !r2c) rc = ns_errf(err, "out of memory");
    for (int64_t a = 0; a < nb; a++) pair[a] = a;
    for (int i = 1; i < n && rc == 0; i++) {
        memset(sc, 0, (size_t)(nb * nb) * sizeof *sc);
        for (int k = 0; k < ngr && rc == 0; k++) {
            int64_t og = om[k] / nb, O = n * om[k];
            for (int64_t a = 0; a < nb && rc == 0; a++)
                for (int64_t b = 0; b < nb && rc == 0; b++) {
                    copy_block(C[k], O, a * og, i * om[k] + b * og, og, og, buf);
                    double total;
                    rc = ns_lsa_ws_solve(ws, buf, og, og, 1, r2c, &total, err);
                    sc[a * nb + b] += total / (double)og;
                }
        }
        double total;
        if (rc == 0) rc = ns_lsa_ws_solve(ws, sc, nb, nb, 1, pair + i * nb, &total, err);
    }
    free(buf);
    free(sc);
    free(r2c);
    return rc < 0 ? -1 : 0;
}

void ns_merge_reorder_blocks(const float *C, int n, int64_t om, int64_t nb, const int64_t *pair, float *out) {
    int64_t O = n * om, og = om / nb;
    int64_t *src = malloc((size_t)O * sizeof *src); // new row -> old row
    if (!src) return;
    for (int i = 0; i < n; i++)
        for (int64_t a = 0; a < nb; a++)
            for (int64_t r = 0; r < og; r++) src[i * om + a * og + r] = i * om + pair[i * nb + a] * og + r;
    for (int64_t r = 0; r < O; r++)
        for (int64_t c = 0; c < O; c++) out[r * O + c] = C[src[r] * O + src[c]];
    free(src);
}

void ns_merge_unorder_dest(const int64_t *dest_reordered, int n, int64_t om, int64_t nb, const int64_t *pair,
                           int64_t *dest) {
    int64_t og = om / nb;
    for (int i = 0; i < n; i++)
        for (int64_t a = 0; a < nb; a++)
            for (int64_t r = 0; r < og; r++)
                dest[i * om + pair[i * nb + a] * og + r] = dest_reordered[i * om + a * og + r];
}

int ns_merge_align_blocks(const float *C, int n, int64_t om, int64_t nblocks, ns_lsa_ws *ws,
                          int64_t *dest, double *score, ns_err *err) {
    if (nblocks <= 0 || om % nblocks)
        return ns_errf(err, "%lld blocks do not divide %lld channels", (long long)nblocks, (long long)om);
    int64_t O = n * om;
    int64_t *pair = malloc((size_t)(n * nblocks) * sizeof *pair), *dr = malloc((size_t)O * sizeof *dr);
    float *Cr = malloc((size_t)(O * O) * sizeof *Cr);
    int rc = -1;
    if (!pair || !dr || !Cr) ns_errf(err, "out of memory");
    else if (ns_merge_pair_blocks(&C, 1, n, &om, nblocks, ws, pair, err) == 0) {
        ns_merge_reorder_blocks(C, n, om, nblocks, pair, Cr);
        if (ns_merge_align(Cr, n, om, om / nblocks, ws, dr, score, err) == 0) {
            ns_merge_unorder_dest(dr, n, om, nblocks, pair, dest);
            rc = 0;
        }
    }
    free(pair);
    free(dr);
    free(Cr);
    return rc;
}

// ---------------------------------------------------------------------------
// Greedy zip on one m x m similarity S (one block of every model), with a
// per-row maximum over the columns to its right so each pick is O(m).

typedef struct zipper {
    int64_t m;
    double *S;        // (m, m), symmetric; inactive rows are ignored
    int *model;       // label of each unit (the first model of a merged unit)
    unsigned char *active;
    int64_t *parent;  // merged into (a smaller index), or itself
    double *rowmax;   // max of S[r][c] over active c > r (-inf when none)
    int64_t *rowarg;  // its first column, -1 when none
} zipper;

static void zip_row(zipper *z, int64_t r) {
    double best = -INFINITY;
    int64_t arg = -1;
    const double *row = z->S + r * z->m;
    for (int64_t c = r + 1; c < z->m; c++)
        if (z->active[c] && (arg < 0 || row[c] > best)) {
            best = row[c];
            arg = c;
        }
    z->rowmax[r] = best;
    z->rowarg[r] = arg;
}

static int64_t zip_root(const zipper *z, int64_t r) {
    while (z->parent[r] != r) r = z->parent[r];
    return r;
}

// Zips units down to keep; returns the sum of the picked values, or NAN when no
// finite pair is left before keep is reached.
static double zip_run(zipper *z, int n, int64_t keep, double a, double b) {
    int64_t m = z->m, budget[NS_MERGE_MAX_MODELS];
    for (int i = 0; i < n; i++) budget[i] = (int64_t)floor(b * (double)(m - keep) / (double)n);
    for (int64_t r = 0; r < m; r++) {
        z->S[r * m + r] = -INFINITY;
        z->active[r] = 1;
        z->parent[r] = r;
    }
    for (int i = 0; i < n; i++)
        if (budget[i] <= 0)
            for (int64_t r = 0; r < m; r++)
                for (int64_t c = 0; c < m; c++)
                    if (z->model[r] == i && z->model[c] == i) z->S[r * m + c] = -INFINITY;
    for (int64_t r = 0; r < m; r++) zip_row(z, r);
    double picked = 0;
    for (int64_t left = m; left > keep; left--) {
        int64_t i = -1;
        for (int64_t r = 0; r < m; r++)
            if (z->active[r] && z->rowarg[r] >= 0 && (i < 0 || z->rowmax[r] > z->rowmax[i])) i = r;
        if (i < 0 || z->rowmax[i] == -INFINITY) return NAN;
        int64_t j = z->rowarg[i];
        picked += z->rowmax[i];
        double *Si = z->S + i * m, *Sj = z->S + j * m;
        for (int64_t k = 0; k < m; k++) {
            if (!z->active[k] || k == i || k == j) continue;
            double v = Si[k] < Sj[k] ? Si[k] : Sj[k];
            v = a > 0 ? v * a : -INFINITY;
            Si[k] = v;
            z->S[k * m + i] = v;
        }
        z->active[j] = 0;
        z->parent[j] = i;
        int same = z->model[i] == z->model[j], exhausted = 0;
        if (same && --budget[z->model[i]] == 0) {
            exhausted = 1;
            int lab = z->model[i];
            for (int64_t r = 0; r < m; r++)
                for (int64_t c = 0; c < m; c++)
                    if (r != c && z->model[r] == lab && z->model[c] == lab) z->S[r * m + c] = -INFINITY;
        }
        for (int64_t r = 0; r < m; r++) {
            if (!z->active[r]) continue;
            if (exhausted || r == i || z->rowarg[r] == i || z->rowarg[r] == j) zip_row(z, r);
            else if (r < i && (z->S[r * m + i] > z->rowmax[r] ||
                               (z->S[r * m + i] == z->rowmax[r] && i < z->rowarg[r])))
                z->rowmax[r] = z->S[r * m + i], z->rowarg[r] = i;
        }
    }
    return picked;
}

int ns_merge_zip(const float *C, int n, int64_t om, int64_t block, double a, double b,
                 int64_t *dest, double *score, ns_err *err) {
    if (block <= 0 || om % block) return ns_errf(err, "block size %lld does not divide %lld channels",
                                                 (long long)block, (long long)om);
    if (n < 1 || n > NS_MERGE_MAX_MODELS) return ns_errf(err, "zip: %d models", n);
    int64_t O = n * om, m = n * block;
    zipper z = {m, NULL, NULL, NULL, NULL, NULL, NULL};
    z.S = malloc((size_t)(m * m) * sizeof *z.S);
    z.model = malloc((size_t)m * sizeof *z.model);
    z.active = malloc((size_t)m);
    z.parent = malloc((size_t)m * sizeof *z.parent);
    z.rowmax = malloc((size_t)m * sizeof *z.rowmax);
    z.rowarg = malloc((size_t)m * sizeof *z.rowarg);
    int64_t *row_of = malloc((size_t)m * sizeof *row_of), *slot = malloc((size_t)m * sizeof *slot);
    int rc = 0;
    double sum = 0;
    if (!z.S || !z.model || !z.active || !z.parent || !z.rowmax || !z.rowarg || !row_of || !slot)
        rc = ns_errf(err, "out of memory");
    for (int64_t b0 = 0; b0 < om && rc == 0; b0 += block) {
        // unit k of the block problem: model k / block, channel b0 + k % block
        for (int64_t k = 0; k < m; k++) {
            row_of[k] = (k / block) * om + b0 + k % block;
            z.model[k] = (int)(k / block);
        }
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < m; c++) z.S[r * m + c] = C[row_of[r] * O + row_of[c]];
        double picked = zip_run(&z, n, block, a, b);
        if (isnan(picked)) {
            rc = ns_errf(err, "zip: no finite pair left to merge (zip a %g)", a);
            break;
        }
        sum += picked;
        int64_t next = 0;
        for (int64_t k = 0; k < m; k++) slot[k] = z.active[k] ? b0 + next++ : -1;
        for (int64_t k = 0; k < m; k++) dest[row_of[k]] = slot[zip_root(&z, k)];
    }
    free(z.S);
    free(z.model);
    free(z.active);
    free(z.parent);
    free(z.rowmax);
    free(z.rowarg);
    free(row_of);
    free(slot);
    if (rc < 0) return -1;
    *score = O > om ? sum / (double)(O - om) : 1.0;
    return 0;
}
