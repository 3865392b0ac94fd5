// test_lsa.c: lib/merge/lsa.h, linear sum assignment.
//
// Against brute force (every injection of the smaller side into the larger) on
// a few thousand random matrices, square up to 7x7 and rectangular up to 5x8
// and 8x5, fixed seed: small integers (many ties), reals, negative values,
// forbidden (infinite) entries, minimize and maximize, double and float. Each
// answer must be a valid assignment of the required side whose total is the
// brute-force optimum, and an infeasible problem must fail.
// Beyond brute force: a textbook O(n^3) Hungarian method with potentials (a
// different algorithm, kept naive here as the reference) agrees on larger
// random problems and on a 512x512 one; a random permutation plus noise is
// solved back to that permutation; scipy's answers on tie-heavy matrices
// (computed once with scipy 1.10 and written below) are reproduced exactly.
// Errors: NaN, the unbounded infinity, huge values, infeasible problems, and
// the outputs left at -1 / 0 after a failure. Workspace reuse across sizes.
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli/cli.h"
#include "merge/lsa.h"
#include "base/rng.h"

// ----------------------------------------------------------------------------
// brute force

typedef struct brute {
    const double *cost; // (rows, cols)
    int rows, cols, maximize, transpose;
    int used[16];
    double best;
    int found;
} brute;

// Entry for "row" a, "column" b of the problem as brute force sees it: the
// smaller side is always the one enumerated.
static double brute_at(const brute *bf, int a, int b) {
    return bf->transpose ? bf->cost[b * bf->cols + a] : bf->cost[a * bf->cols + b];
}

static int forbidden(double x, int maximize) {
    return maximize ? x == -INFINITY : x == INFINITY;
}

static void brute_rec(brute *bf, int a, int na, int nb, double sum) {
    if (a == na) {
        if (!bf->found || (bf->maximize ? sum > bf->best : sum < bf->best)) bf->best = sum;
        bf->found = 1;
        return;
    }
    for (int b = 0; b < nb; b++) {
        if (bf->used[b]) continue;
        double x = brute_at(bf, a, b);
        if (forbidden(x, bf->maximize)) continue;
        bf->used[b] = 1;
        brute_rec(bf, a + 1, na, nb, sum + x);
        bf->used[b] = 0;
    }
}

// The optimal total, or returns 0 when no complete assignment exists.
static int brute_solve(const double *cost, int rows, int cols, int maximize, double *best) {
    brute bf = {.cost = cost, .rows = rows, .cols = cols, .maximize = maximize,
                .transpose = rows > cols};
    memset(bf.used, 0, sizeof bf.used);
    int na = rows > cols ? cols : rows, nb = rows > cols ? rows : cols;
    brute_rec(&bf, 0, na, nb, 0.0);
    *best = bf.best;
    return bf.found;
}

// ----------------------------------------------------------------------------
// checks on an answer

// A valid assignment: columns in range and distinct, min(rows, cols) pairs,
// no forbidden pair, and the reported total is the sum of the chosen entries.
static int valid(const double *cost, int64_t rows, int64_t cols, int maximize,
                 const int64_t *row_to_col, double total, char *why, size_t why_len) {
    char *seen = calloc((size_t)cols + 1, 1);
    int64_t pairs = 0;
    double sum = 0;
    int ok = 1;
    for (int64_t i = 0; i < rows && ok; i++) {
        int64_t j = row_to_col[i];
        if (j == -1) continue;
        if (j < 0 || j >= cols) {
            snprintf(why, why_len, "row %lld -> column %lld out of range", (long long)i,
                     (long long)j);
            ok = 0;
        } else if (seen[j]) {
            snprintf(why, why_len, "column %lld used twice", (long long)j);
            ok = 0;
        } else if (forbidden(cost[i * cols + j], maximize)) {
            snprintf(why, why_len, "forbidden pair (%lld, %lld) chosen", (long long)i,
                     (long long)j);
            ok = 0;
        } else {
            seen[j] = 1;
            pairs++;
            sum += cost[i * cols + j];
        }
    }
    int64_t want = rows < cols ? rows : cols;
    if (ok && pairs != want) {
        snprintf(why, why_len, "%lld pairs, want %lld", (long long)pairs, (long long)want);
        ok = 0;
    }
    if (ok && fabs(sum - total) > 1e-9 * (1 + fabs(sum))) {
        snprintf(why, why_len, "total %.17g, chosen entries sum to %.17g", total, sum);
        ok = 0;
    }
    free(seen);
    return ok;
}

static int close_to(double a, double b) {
    return fabs(a - b) <= 1e-9 * (1 + fabs(b));
}

// ----------------------------------------------------------------------------
// a naive reference: the Hungarian method with potentials, O(rows^2 cols),
// rows <= cols, minimizing, finite costs. 1-based as it is usually written.

static double hungarian(const double *a, int rows, int cols, int64_t *row_to_col) {
    int n = rows, m = cols;
    double *u = calloc((size_t)n + 1, sizeof *u), *v = calloc((size_t)m + 1, sizeof *v);
    double *minv = malloc(((size_t)m + 1) * sizeof *minv);
    int *p = calloc((size_t)m + 1, sizeof *p), *way = calloc((size_t)m + 1, sizeof *way);
    char *used = malloc((size_t)m + 1);
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= m; j++) minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int j = 1; j <= m; j++) {
                if (used[j]) continue;
                double cur = a[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (int j = 0; j <= m; j++) {
                if (used[j])
                    u[p[j]] += delta, v[j] -= delta;
                else
                    minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    double total = 0;
    for (int i = 0; i < n; i++) row_to_col[i] = -1;
    for (int j = 1; j <= m; j++)
        if (p[j]) row_to_col[p[j] - 1] = j - 1, total += a[(p[j] - 1) * cols + (j - 1)];
    free(u), free(v), free(minv), free(p), free(way), free(used);
    return total;
}

// ----------------------------------------------------------------------------
// random matrices

enum { KIND_INT3, KIND_INT9, KIND_REAL, KIND_SIGNED, KIND_FORBID, KIND_COUNT };
static const char *kind_name[KIND_COUNT] = {"ints 0..3", "ints 0..9", "reals", "signed reals",
                                            "ints with forbidden pairs"};

// KIND_FORBID forbids each pair with probability p_forbid.
static double p_forbid = 0.35;

static void fill(ns_rng *rng, double *m, int rows, int cols, int kind, int maximize) {
    for (int k = 0; k < rows * cols; k++) {
        switch (kind) {
        case KIND_INT3: m[k] = (double)ns_rng_below(rng, 4); break;
        case KIND_INT9: m[k] = (double)ns_rng_below(rng, 10); break;
        case KIND_REAL: m[k] = ns_rng_uniform(rng); break;
        case KIND_SIGNED: m[k] = 200 * ns_rng_uniform(rng) - 100; break;
        default:
            m[k] = ns_rng_uniform(rng) < p_forbid ? (maximize ? -INFINITY : INFINITY)
                                               : (double)ns_rng_below(rng, 6) - 2;
        }
    }
}

static void test_brute_force(void) {
    ns_rng rng;
    ns_rng_seed(&rng, 20240601);
    int shapes[64][2], n_shapes = 0;
    for (int r = 1; r <= 7; r++)
        for (int c = 1; c <= 7; c++) shapes[n_shapes][0] = r, shapes[n_shapes][1] = c, n_shapes++;
    for (int k = 1; k <= 5; k++) {
        shapes[n_shapes][0] = k, shapes[n_shapes][1] = 8, n_shapes++;
        shapes[n_shapes][0] = 8, shapes[n_shapes][1] = k, n_shapes++;
    }
    double m[64];
    float mf[64];
    int64_t assign[8];
    ns_lsa_ws *ws = ns_lsa_ws_new();
    long cases = 0, bad = 0, infeasible = 0, f32_cases = 0, f32_bad = 0;
    char first[NS_ERR_MAX + 160] = "";
    for (int s = 0; s < n_shapes; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        for (int kind = 0; kind < KIND_COUNT; kind++) {
            for (int maximize = 0; maximize < 2; maximize++) {
                for (int rep = 0; rep < 6; rep++) {
                    p_forbid = 0.2 + 0.11 * rep;
                    fill(&rng, m, rows, cols, kind, maximize);
                    double want = 0, total = 0;
                    int feasible = brute_solve(m, rows, cols, maximize, &want);
                    ns_err err = {{0}};
                    int rc = ns_lsa_ws_solve(ws, m, rows, cols, maximize, assign, &total, &err);
                    char why[NS_ERR_MAX + 64] = "";
                    int ok;
                    if (!feasible) {
                        infeasible++;
                        ok = rc < 0 && strstr(err.msg, "infeasible") && assign[0] == -1;
                        if (!ok) snprintf(why, sizeof why, "infeasible, but rc %d (%s)", rc, err.msg);
                    } else if (rc < 0) {
                        ok = 0;
                        snprintf(why, sizeof why, "failed: %s", err.msg);
                    } else {
                        ok = valid(m, rows, cols, maximize, assign, total, why, sizeof why);
                        if (ok && !close_to(total, want)) {
                            ok = 0;
                            snprintf(why, sizeof why, "total %.17g, brute force %.17g", total, want);
                        }
                    }
                    cases++;
                    if (!ok && !bad++)
                        snprintf(first, sizeof first, "%dx%d %s %s: %s", rows, cols,
                                 kind_name[kind], maximize ? "max" : "min", why);
                    // The float entry point on the same (float) values.
                    if (kind == KIND_INT9 || kind == KIND_FORBID) {
                        for (int k = 0; k < rows * cols; k++) mf[k] = (float)m[k];
                        double tf = 0;
                        int rcf = ns_lsa_solve_f32(mf, rows, cols, maximize, assign, &tf, &err);
                        f32_cases++;
                        if (feasible ? rcf < 0 || tf != want : rcf == 0) f32_bad++;
                    }
                }
            }
        }
    }
    ns_lsa_ws_free(ws);
    CHECK(bad == 0, "brute force: %ld random matrices up to 7x7, 5x8, 8x5 (%ld infeasible), "
          "%ld wrong%s%s", cases, infeasible, bad, bad ? "; first: " : "", first);
    CHECK(cases >= 3000 && infeasible > 50 && infeasible < cases / 4,
          "brute force covered %ld cases, %ld of them infeasible", cases, infeasible);
    CHECK(f32_bad == 0, "float32 entry point: %ld of %ld cases wrong", f32_bad, f32_cases);
}

// ----------------------------------------------------------------------------
// larger problems against the reference Hungarian method

static void test_against_hungarian(void) {
    ns_rng rng;
    ns_rng_seed(&rng, 77);
    static const int shapes[][2] = {{30, 30}, {20, 45}, {45, 20}, {64, 64}, {1, 50}, {50, 1},
                                    {100, 101}, {3, 200}};
    int bad = 0;
    char first[NS_ERR_MAX + 160] = "";
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        int tr = rows > cols, hr = tr ? cols : rows, hc = tr ? rows : cols;
        double *m = malloc(sizeof(double) * (size_t)(rows * cols));
        double *mt = malloc(sizeof(double) * (size_t)(rows * cols));
        int64_t *assign = malloc(sizeof(int64_t) * (size_t)rows);
        int64_t *ref = malloc(sizeof(int64_t) * (size_t)hr);
        for (int kind = 0; kind < 4; kind++) {
            for (int maximize = 0; maximize < 2; maximize++) {
                fill(&rng, m, rows, cols, kind, maximize);
                // The reference minimizes rows <= cols: transpose and negate.
                for (int a = 0; a < rows; a++)
                    for (int b = 0; b < cols; b++) {
                        double x = maximize ? -m[a * cols + b] : m[a * cols + b];
                        if (tr)
                            mt[b * rows + a] = x;
                        else
                            mt[a * cols + b] = x;
                    }
                double want = hungarian(mt, hr, hc, ref);
                if (maximize) want = -want;
                double total = 0;
                ns_err err = {{0}};
                char why[NS_ERR_MAX + 64] = "";
                int rc = ns_lsa_solve(m, rows, cols, maximize, assign, &total, &err);
                int ok = rc == 0 && valid(m, rows, cols, maximize, assign, total, why, sizeof why);
                if (rc < 0) snprintf(why, sizeof why, "failed: %s", err.msg);
                if (ok && !close_to(total, want)) {
                    ok = 0;
                    snprintf(why, sizeof why, "total %.17g, Hungarian %.17g", total, want);
                }
                if (!ok && !bad++)
                    snprintf(first, sizeof first, "%dx%d %s %s: %s", rows, cols, kind_name[kind],
                             maximize ? "max" : "min", why);
            }
        }
        free(m), free(mt), free(assign), free(ref);
    }
    CHECK(bad == 0, "agrees with a reference Hungarian method on 64 larger problems%s%s",
          bad ? "; first: " : "", first);
}

static void test_512(void) {
    const int n = 512;
    ns_rng rng;
    ns_rng_seed(&rng, 512);
    double *m = malloc(sizeof(double) * (size_t)n * n);
    int64_t *assign = malloc(sizeof(int64_t) * n), *ref = malloc(sizeof(int64_t) * n);
    for (int k = 0; k < n * n; k++) m[k] = ns_rng_uniform(&rng);
    ns_err err = {{0}};
    double total = 0, t0 = ns_now();
    int rc = ns_lsa_solve(m, n, n, 0, assign, &total, &err);
    double secs = ns_now() - t0;
    char why[NS_ERR_MAX + 64] = "";
    int ok = rc == 0 && valid(m, n, n, 0, assign, total, why, sizeof why);
    double want = hungarian(m, n, n, ref);
    CHECK(ok && close_to(total, want), "512x512 uniform: total %.12f, Hungarian %.12f %s",
          total, want, why);
    // Not a benchmark: a bound a hundred times what it takes, to catch a blow-up.
    CHECK(secs < 10, "512x512 solved in %.3f s", secs);
    free(m), free(assign), free(ref);
}

// ----------------------------------------------------------------------------
// structure and ties

static void test_permutation_recovery(void) {
    ns_rng rng;
    ns_rng_seed(&rng, 4242);
    static const int sizes[] = {1, 2, 17, 128, 300};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        int64_t *perm = malloc(sizeof(int64_t) * n), *assign = malloc(sizeof(int64_t) * n);
        double *m = malloc(sizeof(double) * (size_t)n * n);
        for (int i = 0; i < n; i++) perm[i] = i;
        ns_rng_shuffle(&rng, perm, n);
        for (int maximize = 0; maximize < 2; maximize++) {
            // A similarity (maximize) or a distance (minimize): 1 on the
            // permutation, noise in [0, 0.45) everywhere.
            for (int k = 0; k < n * n; k++) m[k] = 0.45 * ns_rng_uniform(&rng);
            for (int i = 0; i < n; i++) m[i * n + perm[i]] += 1;
            if (!maximize)
                for (int k = 0; k < n * n; k++) m[k] = 1.5 - m[k];
            double total = 0;
            ns_err err = {{0}};
            int rc = ns_lsa_solve(m, n, n, maximize, assign, &total, &err);
            int same = rc == 0;
            for (int i = 0; i < n && same; i++) same = assign[i] == perm[i];
            CHECK(same, "permutation plus noise, n=%d, %s: recovered (%s)", n,
                  maximize ? "maximize" : "minimize", rc ? err.msg : "ok");
        }
        free(perm), free(assign), free(m);
    }
}

static void test_scipy_ties(void) {
    // Small integer matrices, each solved by scipy 1.10 (linear_sum_assignment).
    static const struct {
        int rows, cols, maximize;
        double cost[36];
        int64_t want[7];
        double total;
    } cases[] = {
        {6, 6, 0, {3,2,2,3,2,3,3,0,0,1,1,3,3,0,1,3,0,3,0,1,3,1,1,1,2,1,3,1,1,2,2,2,2,3,3,3},
         {1,2,4,0,3,5}, 6},
        {4, 7, 1, {2,1,1,2,1,0,2,0,2,1,0,0,1,0,0,1,2,1,2,2,2,1,1,1,0,1,1,0}, {0,1,2,4}, 7},
        {7, 4, 0, {2,0,0,0,2,2,2,0,2,1,1,0,1,2,1,0,1,0,2,2,0,1,2,2,2,1,0,2},
         {1,3,-1,-1,-1,0,2}, 0},
        {5, 5, 1, {0,0,0,1,1,1,1,1,1,0,1,1,0,0,1,0,1,0,0,0,0,1,0,0,1}, {3,2,0,1,4}, 5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t got[7];
        double total = -1;
        ns_err err = {{0}};
        int rc = ns_lsa_solve(cases[c].cost, cases[c].rows, cases[c].cols, cases[c].maximize,
                              got, &total, &err);
        int same = rc == 0 && total == cases[c].total;
        for (int i = 0; i < cases[c].rows && same; i++) same = got[i] == cases[c].want[i];
        CHECK(same, "ties as scipy breaks them: %dx%d %s", cases[c].rows, cases[c].cols,
              cases[c].maximize ? "maximize" : "minimize");
    }
    // Larger, with real-valued ties (multiples of 0.1, not exact in binary):
    // m[i][j] = ((i*i + 3j + (i xor j)) mod 5) * 0.1.
    static const int64_t w20x30[] = {0, 2, 1, 5, 7, 3, 4, 9, 11, 14, 6, 15, 10, 26, 23, 19,
                                     12, 17, 20, 13};
    static const int64_t w30x20[] = {0, 2, 1, 5, 7, 3, 4, 9, 11, 8, 6, 15, 16, -1, 10,
                                     19, 12, 17, -1, 13, 18, 14, -1, -1, -1, -1, -1, -1, -1, -1};
    static const int64_t w40max[] = {1, 8, 3, 7, 11, 9, 5, 37, 12, 6, 2, 21, 13, 14,
                                     16, 26, 0, 35, 22, 24, 19, 28, 23, 34, 10, 17, 25, 20,
                                     33, 30, 39, 31, 27, 18, 38, 29, 15, 4, 36, 32};
    static const int64_t w40min[] = {30, 2, 1, 5, 7, 3, 4, 9, 11, 14, 6, 15, 10, 26,
                                     23, 19, 12, 17, 20, 39, 18, 22, 21, 31, 27, 25, 24, 28,
                                     32, 8, 29, 37, 16, 38, 36, 13, 33, 35, 34, 0};
    static const struct {
        int rows, cols, maximize;
        const int64_t *want;
    } big[] = {{20, 30, 0, w20x30}, {30, 20, 0, w30x20}, {40, 40, 1, w40max}, {40, 40, 0, w40min}};
    for (size_t c = 0; c < sizeof big / sizeof big[0]; c++) {
        int rows = big[c].rows, cols = big[c].cols;
        double m[1600];
        int64_t got[40];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) m[i * cols + j] = ((i * i + 3 * j + (i ^ j)) % 5) * 0.1;
        ns_err err = {{0}};
        double total;
        int rc = ns_lsa_solve(m, rows, cols, big[c].maximize, got, &total, &err);
        int same = rc == 0;
        for (int i = 0; i < rows && same; i++) same = got[i] == big[c].want[i];
        CHECK(same, "real-valued ties as scipy breaks them: %dx%d %s", rows, cols,
              big[c].maximize ? "maximize" : "minimize");
    }
    // A constant matrix gives the identity (the first rows when rectangular).
    double k[12];
    for (int i = 0; i < 12; i++) k[i] = 2.5;
    int64_t got[4];
    double total;
    ns_err err;
    int rc = ns_lsa_solve(k, 3, 4, 0, got, &total, &err);
    CHECK(rc == 0 && got[0] == 0 && got[1] == 1 && got[2] == 2 && total == 7.5,
          "constant 3x4 gives the identity");
    rc = ns_lsa_solve(k, 4, 3, 1, got, &total, &err);
    CHECK(rc == 0 && got[0] == 0 && got[1] == 1 && got[2] == 2 && got[3] == -1 && total == 7.5,
          "constant 4x3 gives the identity and leaves the last row free");
}

// ----------------------------------------------------------------------------
// shapes, errors, workspace

static void test_shapes(void) {
    int64_t got[5] = {7, 7, 7, 7, 7};
    double total = -1;
    ns_err err = {{0}};
    CHECK(ns_lsa_solve(NULL, 0, 0, 0, NULL, &total, &err) == 0 && total == 0, "0x0: total 0");
    CHECK(ns_lsa_solve(NULL, 0, 5, 1, NULL, &total, &err) == 0 && total == 0, "0x5: total 0");
    total = -1;
    int rc = ns_lsa_solve(NULL, 5, 0, 0, got, &total, &err);
    CHECK(rc == 0 && total == 0 && got[0] == -1 && got[4] == -1, "5x0: every row -1, total 0");

    double row[5] = {4, -1, 3, -1, 9};
    rc = ns_lsa_solve(row, 1, 5, 0, got, &total, &err);
    CHECK(rc == 0 && got[0] == 1 && total == -1, "1x5 minimize: the first smallest (got %lld)",
          (long long)got[0]);
    rc = ns_lsa_solve(row, 1, 5, 1, got, &total, &err);
    CHECK(rc == 0 && got[0] == 4 && total == 9, "1x5 maximize: the largest");
    rc = ns_lsa_solve(row, 5, 1, 0, got, &total, &err);
    CHECK(rc == 0 && total == -1 && got[0] == -1 && got[2] == -1 && got[4] == -1 &&
              (got[1] == 0) + (got[3] == 0) == 1,
          "5x1 minimize: one of the smallest rows gets the column");
    rc = ns_lsa_solve(row, 5, 1, 1, got, &total, &err);
    CHECK(rc == 0 && got[4] == 0 && got[0] == -1 && total == 9, "5x1 maximize: the largest row");

    rc = ns_lsa_solve(row, -1, 5, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "negative"), "negative shape refused (%s)", err.msg);
}

static void test_errors(void) {
    int64_t got[3] = {5, 5, 5};
    double total = 99;
    ns_err err = {{0}};
    double m[9] = {1, 2, 3, 4, NAN, 6, 7, 8, 9};
    int rc = ns_lsa_solve(m, 3, 3, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "NaN at row 1, column 1") && got[0] == -1 && got[2] == -1 &&
              total == 0,
          "NaN refused, outputs reset (%s)", err.msg);
    float mf[4] = {1, 2, NAN, 4};
    rc = ns_lsa_solve_f32(mf, 2, 2, 1, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "NaN at row 1, column 0"), "float NaN refused (%s)", err.msg);

    double lo[4] = {1, -INFINITY, 3, 4};
    rc = ns_lsa_solve(lo, 2, 2, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "-inf") && strstr(err.msg, "unbounded"),
          "-inf refused when minimizing (%s)", err.msg);
    double hi[4] = {1, 2, INFINITY, 4};
    rc = ns_lsa_solve(hi, 2, 2, 1, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "+inf") && strstr(err.msg, "unbounded"),
          "+inf refused when maximizing (%s)", err.msg);
    double huge[4] = {1, 2, 1e307, 4};
    rc = ns_lsa_solve(huge, 2, 2, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "too large"), "huge finite values refused (%s)", err.msg);
    double big[4] = {1e300, -1e300, 3e299, 5e299};
    rc = ns_lsa_solve(big, 2, 2, 0, got, &total, &err);
    CHECK(rc == 0 && got[0] == 1 && got[1] == 0 && total == -1e300 + 3e299,
          "large finite values (1e300) still solved");

    // +inf forbids a pair when minimizing, -inf when maximizing.
    const double I = INFINITY;
    double f1[9] = {I, 1, I, 2, I, I, 3, I, 4};
    rc = ns_lsa_solve(f1, 3, 3, 0, got, &total, &err);
    CHECK(rc == 0 && got[0] == 1 && got[1] == 0 && got[2] == 2 && total == 7,
          "+inf entries avoided when minimizing");
    double f2[9] = {-I, 1, -I, 2, -I, -I, 3, -I, 4};
    rc = ns_lsa_solve(f2, 3, 3, 1, got, &total, &err);
    CHECK(rc == 0 && got[0] == 1 && got[1] == 0 && got[2] == 2 && total == 7,
          "-inf entries avoided when maximizing");
    // Infeasible: two rows can only take column 0 (Hall's condition fails).
    double h[9] = {1, I, I, 2, I, I, 3, 4, 5};
    rc = ns_lsa_solve(h, 3, 3, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "infeasible") && got[0] == -1 && total == 0,
          "infeasible square problem (%s)", err.msg);
    for (int k = 0; k < 9; k++) h[k] = -h[k];
    rc = ns_lsa_solve(h, 3, 3, 1, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "infeasible"), "infeasible when maximizing (%s)", err.msg);
    // Rectangular: a row with nothing allowed; with more rows than columns,
    // a column with nothing allowed (every column must be assigned).
    double rr[6] = {1, 2, 3, I, I, I};
    rc = ns_lsa_solve(rr, 2, 3, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "infeasible") && strstr(err.msg, "every row"),
          "2x3 with a forbidden row is infeasible (%s)", err.msg);
    double rc3[6] = {1, I, 2, I, 3, I};
    rc = ns_lsa_solve(rc3, 3, 2, 0, got, &total, &err);
    CHECK(rc < 0 && strstr(err.msg, "every column"),
          "3x2 with a forbidden column is infeasible (%s)", err.msg);
    // ... but a row with nothing allowed is fine when rows may stay free.
    double ok3[6] = {1, 2, I, I, 3, 4};
    rc = ns_lsa_solve(ok3, 3, 2, 0, got, &total, &err);
    CHECK(rc == 0 && got[1] == -1 && total == 5, "3x2 with a forbidden row leaves it free");
}

static void test_workspace(void) {
    ns_rng rng;
    ns_rng_seed(&rng, 9);
    ns_lsa_ws *ws = ns_lsa_ws_new();
    static const int shapes[][2] = {{50, 50}, {10, 10}, {80, 30}, {30, 80}, {120, 120}, {5, 7}};
    int same = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        double *m = malloc(sizeof(double) * (size_t)(rows * cols));
        float *mf = malloc(sizeof(float) * (size_t)(rows * cols));
        int64_t *a = malloc(sizeof(int64_t) * rows), *b = malloc(sizeof(int64_t) * rows);
        for (int k = 0; k < rows * cols; k++) mf[k] = (float)ns_rng_uniform(&rng), m[k] = mf[k];
        double ta, tb;
        ns_err err;
        for (int rep = 0; rep < 2; rep++) {
            int ra = ns_lsa_ws_solve(ws, m, rows, cols, 1, a, &ta, &err);
            int rb = ns_lsa_ws_solve_f32(ws, mf, rows, cols, 1, b, &tb, &err);
            same = same && ra == 0 && rb == 0 && ta == tb && !memcmp(a, b, sizeof(int64_t) * rows);
            int rc = ns_lsa_solve(m, rows, cols, 1, b, &tb, &err);
            same = same && rc == 0 && ta == tb && !memcmp(a, b, sizeof(int64_t) * rows);
        }
        free(m), free(mf), free(a), free(b);
    }
    ns_lsa_ws_free(ws);
    ns_lsa_ws_free(NULL);
    CHECK(same, "one workspace across growing and shrinking shapes, double and float, "
          "matches one-shot calls");
}

int main(void) {
    test_brute_force();
    test_against_hungarian();
    test_512();
    test_permutation_recovery();
    test_scipy_ties();
    test_shapes();
    test_errors();
    test_workspace();
    return check_done();
}
