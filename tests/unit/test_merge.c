// test_merge.c: model merging (lib/merge/merge.h) against known answers.
//
// 1. Streaming correlation: features with a large common offset (post-ReLU
//    like, mean 1000, std 1) fed in uneven chunks must give the two-pass
//    double correlation to 1e-5; a constant row counts as dead.
// 2. Solvers: a planted permutation in a noisy cross block is recovered by
//    ns_merge_align; a planted block pairing plus within-block permutations by
//    ns_merge_align_blocks; the greedy zip of a model with a permuted copy of
//    itself pairs every unit with its copy; a zip within blocks keeps blocks;
//    a tie of two groups (qk and v) pairs heads by the sum of their evidence;
//    MuDSC's group zip (within paired heads, with and without a same-model
//    budget) keeps every unit in its paired head.
// 3. Models (resnet20 x0.5 and vgg, random weights and BN statistics): a copy
//    whose every free group is randomly permuted is aligned back to the
//    identity by weight matching and by activation matching (statistics from
//    a small stream written here), and the merged model computes the
//    original's logits (max |diff| < 1e-4); with concatenated heads the merged
//    model's logits are the original's twice. A control merges without
//    matching (plain average) and must differ. Three models (two permuted
//    copies) are aligned as a star onto the first.
//    The same with dead units (a ResNet-20 whose blocks' first 3 inner
//    channels never fire on the data: their correlations tie) for every
//    method, and with a ViT whose heads (q, k, v together) and units within
//    heads are permuted, for every method that reads activations (weight
//    matching alone does not recover the ViT; see the test), and with a
//    GroupNorm net whose groups are moved as whole blocks.
//    ZipIt!'s partial zip (ns_merge_partial) split at the middle node of each
//    model: both kept branches compute the original, so the logits come
//    twice (model 1's branch needs its unmerge layers for that).
// 4. Refusals: another width, another input shape, another architecture.
// sanitize: yes
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/arch.h"
#include "check.h"
#include "nn/chgroups.h"
#include "nn/engine.h"
#include "nn/spec.h"
#include "merge/merge.h"
#include "base/blas.h"
#include "base/rng.h"

static ns_rng rng;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_merge: out of memory\n");
        exit(1);
    }
    return p;
}

// ---------------------------------------------------------------------------
// 1. correlation

static void test_corr(void) {
    int64_t d = 5, total = 3001;
    float *x = xmalloc((size_t)(d * total) * sizeof *x);
    for (int64_t k = 0; k < total; k++) {
        double z = ns_rng_normal(&rng);
        for (int64_t i = 0; i < d; i++)
            x[i * total + k] = i == 4 ? 7.0f : (float)(1000 + z * (i + 1) * 0.3 + ns_rng_normal(&rng));
    }
    // reference: two-pass in double
    double mean[5], ref[25];
    for (int64_t i = 0; i < d; i++) {
        double s = 0;
        for (int64_t k = 0; k < total; k++) s += x[i * total + k];
        mean[i] = s / total;
    }
    for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t k = 0; k < total; k++) s += (x[i * total + k] - mean[i]) * (x[j * total + k] - mean[j]);
            ref[i * d + j] = s;
        }
    ns_corr_acc acc;
    ns_err err;
    CHECK(ns_corr_acc_init(&acc, d, &err) == 0, "corr accumulator allocated");
    int64_t chunks[] = {1, 999, 1000, 1001}, at = 0;
    float *buf = xmalloc((size_t)(d * total) * sizeof *buf);
    for (int c = 0; c < 4; c++) {
        int64_t m = chunks[c];
        for (int64_t i = 0; i < d; i++) memcpy(buf + i * m, x + i * total + at, (size_t)m * sizeof *buf);
        ns_corr_acc_add(&acc, buf, m, &err);
        at += m;
    }
    float corr[25];
    unsigned char marks[5];
    int64_t dead = ns_corr_acc_finish(&acc, corr, marks);
    double worst = 0;
    for (int64_t i = 0; i < 4; i++)
        for (int64_t j = 0; j < 4; j++) {
            double r = ref[i * d + j] / sqrt(ref[i * d + i] * ref[j * d + j]);
            worst = fmax(worst, fabs(r - corr[i * d + j]));
        }
    CHECK(worst < 1e-5, "streamed correlation at mean 1000 equals two-pass double (max diff %.2g)", worst);
    CHECK(corr[0 * d + 1] > 0.1, "the correlated rows correlate (%.3f)", corr[1]);
    CHECK(dead == 1 && marks[4] && !marks[0] && corr[4 * d + 0] == 0 && corr[4 * d + 4] == 1,
          "constant row is dead and marked (%lld)", (long long)dead);
    ns_corr_acc_free(&acc);
    free(x);
    free(buf);
}

// The single-threaded gemm under ns_merge_gram, on every op() pair, a k over
// one block, sizes off the tile grid, alpha and beta: against a double sum.
static void test_sgemm_serial(void) {
    const int64_t m = 37, n = 21, k = 300; // k: two blocks of NS_SGEMM_SERIAL_KBLOCK
    float *a = xmalloc((size_t)(m * k) * sizeof *a), *b = xmalloc((size_t)(k * n) * sizeof *b);
    float *c = xmalloc((size_t)(m * n) * sizeof *c), *c0 = xmalloc((size_t)(m * n) * sizeof *c0);
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)ns_rng_normal(&rng);
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)ns_rng_normal(&rng);
    for (int64_t i = 0; i < m * n; i++) c0[i] = (float)ns_rng_normal(&rng);
    ns_err err;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int with_beta = 0; with_beta < 2; with_beta++) {
                // a holds op(A) (m, k) stored as A (m, k) or A^T (k, m); b likewise
                int64_t lda = ta ? m : k, ldb = tb ? k : n;
                float alpha = 0.5f, beta = with_beta ? -2.0f : 0.0f;
                for (int64_t i = 0; i < m * n; i++) c[i] = with_beta ? c0[i] : NAN; // beta 0: C not read
                int rc = ns_sgemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n, &err);
                double worst = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double s = 0;
                        for (int64_t t = 0; t < k; t++)
                            s += (double)(ta ? a[t * lda + i] : a[i * lda + t]) * (tb ? b[j * ldb + t] : b[t * ldb + j]);
                        double want = alpha * s + (with_beta ? beta * c0[i * n + j] : 0.0);
                        worst = fmax(worst, fabs(c[i * n + j] - want));
                    }
                CHECK(rc == 0 && worst < 1e-4, "ns_sgemm_serial trans %d%d beta %g: max diff %.2g", ta, tb, beta, worst);
            }
    free(a);
    free(b);
    free(c);
    free(c0);
}

// perm-align's refusal of grouped convolutions (ns_merge_check_groups): c1's
// channels feed g, a 2-group convolution, so their group cannot be permuted;
// the same net with an ordinary convolution passes.
static void test_grouped_refused(void) {
    const char *specs[2] = {
        "[input]\nshape = 4x8x8\n[conv2d c1]\nout = 8\npad = 1\n[relu]\n"
        "[conv2d g]\nout = 8\ngroups = 2\npad = 1\n[relu]\n[global_avgpool]\n[linear fc]\nout = 3\n",
        "[input]\nshape = 4x8x8\n[conv2d c1]\nout = 8\npad = 1\n[relu]\n"
        "[conv2d g]\nout = 8\npad = 1\n[relu]\n[global_avgpool]\n[linear fc]\nout = 3\n",
    };
    for (int grouped = 1; grouped >= 0; grouped--) {
        const char *spec = specs[!grouped];
        ns_model m;
        ns_model_init(&m);
        ns_chgroups g;
        ns_err err;
        int built = ns_spec_parse(&m, spec, strlen(spec), "grouped", &err) == 0 && ns_chgroups_build(&g, &m, &err) == 0;
        int rc = built ? ns_merge_check_groups(&g, &m, &err) : -2;
        if (grouped)
            CHECK(rc == -1 && strstr(err.msg, "grouped convolutions are not supported yet (g)"),
                  "a group read by a grouped convolution is refused: %s", rc == -1 ? err.msg : "accepted");
        else
            CHECK(rc == 0, "the same net without conv groups passes (%d)", rc);
        if (built) ns_chgroups_free(&g);
        ns_model_free(&m);
    }
}

// ---------------------------------------------------------------------------
// 2. solvers

static void random_perm(int64_t *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = i;
    ns_rng_shuffle(&rng, p, n);
}

// C for n = 2 models whose model-1 channel perm[u] is model-0 channel u.
static float *planted(int64_t om, const int64_t *perm, double noise) {
    int64_t O = 2 * om;
    float *C = xmalloc((size_t)(O * O) * sizeof *C);
    for (int64_t r = 0; r < O; r++)
        for (int64_t c = 0; c <= r; c++) C[r * O + c] = C[c * O + r] = (float)(noise * (ns_rng_uniform(&rng) - 0.5));
    for (int64_t u = 0; u < om; u++) C[u * O + om + perm[u]] = C[(om + perm[u]) * O + u] = 0.9f;
    for (int64_t r = 0; r < O; r++) C[r * O + r] = 1;
    return C;
}

static void test_solvers(void) {
    ns_err err;
    ns_lsa_ws *ws = ns_lsa_ws_new();
    int64_t om = 24, perm[24], dest[48];
    random_perm(perm, om);
    float *C = planted(om, perm, 0.6);
    double score;
    int ok = ns_merge_align(C, 2, om, om, ws, dest, &score, &err) == 0;
    int exact = ok;
    for (int64_t u = 0; u < om; u++) exact &= dest[u] == u && dest[om + perm[u]] == u;
    CHECK(exact, "align recovers a planted permutation");
    CHECK(fabs(score - 0.9) < 1e-6, "align score is the mean matched entry (%.6f)", score);
    // zip: every unit pairs with its copy (the 0.9 entries beat noise of 0.3)
    int64_t count[24];
    ok = ns_merge_zip(C, 2, om, om, 0.5, 1, dest, &score, &err) == 0;
    int paired = ok;
    for (int64_t u = 0; u < om; u++) paired &= dest[u] == dest[om + perm[u]];
    ns_merge_count(dest, 2, om, count);
    for (int64_t j = 0; j < om; j++) paired &= count[j] == 2;
    CHECK(paired, "zip pairs every unit with its copy");
    CHECK(fabs(score - 0.9) < 1e-6, "zip score %.6f", score);
    free(C);
    // zip within blocks of 6: a permutation within blocks, and blocks kept
    int64_t bperm[24];
    for (int64_t b = 0; b < 4; b++) {
        random_perm(bperm + b * 6, 6);
        for (int k = 0; k < 6; k++) bperm[b * 6 + k] += b * 6;
    }
    C = planted(om, bperm, 0.6);
    ok = ns_merge_zip(C, 2, om, 6, 0.5, 1, dest, &score, &err) == 0;
    int blocks = ok;
    for (int64_t u = 0; u < om; u++) blocks &= dest[u] / 6 == u / 6 && dest[om + bperm[u]] == dest[u];
    CHECK(blocks, "zip within blocks pairs copies and keeps blocks");
    ok = ns_merge_align(C, 2, om, 6, ws, dest, &score, &err) == 0;
    exact = ok;
    for (int64_t u = 0; u < om; u++) exact &= dest[om + bperm[u]] == u;
    CHECK(exact, "align within blocks recovers the permutation");
    free(C);
    // group alignment: model 1's block b is model 0's block pair[b], shuffled inside
    int64_t pair[4], within[24], gperm[24];
    random_perm(pair, 4);
    for (int64_t a = 0; a < 4; a++) {
        random_perm(within + a * 6, 6);
        for (int k = 0; k < 6; k++) gperm[a * 6 + k] = pair[a] * 6 + within[a * 6 + k];
    }
    C = planted(om, gperm, 0.6);
    ok = ns_merge_align_blocks(C, 2, om, 4, ws, dest, &score, &err) == 0;
    exact = ok;
    for (int64_t u = 0; u < om; u++) exact &= dest[om + gperm[u]] == u;
    CHECK(exact, "group alignment pairs the blocks and the channels within (4^2 + 1 LSAs)");
    CHECK(ns_merge_align(C, 2, om, 5, ws, dest, &score, &err) < 0 && strstr(err.msg, "does not divide"),
          "a block size that does not divide is refused: %s", err.msg);
    // a tie of two groups (a head's qk and v): group 1 plants the true head
    // pairing clearly, group 0 a different one weakly; the pairing follows the
    // sum over the tie, and both groups get the same head pairing
    int64_t other[24], bp[8];
    for (int64_t a = 0; a < 4; a++)
        for (int k = 0; k < 6; k++) other[a * 6 + k] = ((a + 1) % 4) * 6 + within[a * 6 + k];
    float *Cq = planted(om, other, 0.2), *Cv = planted(om, gperm, 0.2);
    for (int64_t r = 0; r < 2 * om; r++) // group 0's evidence weaker: 0.9 -> 0.5
        for (int64_t c = 0; c < 2 * om; c++)
            if (r != c && Cq[r * 2 * om + c] > 0.8f) Cq[r * 2 * om + c] = 0.5f;
    const float *tie[2] = {Cq, Cv};
    int64_t oms[2] = {om, om};
    ok = ns_merge_pair_blocks(tie, 2, 2, oms, 4, ws, bp, &err) == 0;
    for (int64_t a = 0; a < 4; a++) ok &= bp[a] == a && bp[4 + a] == gperm[a * 6] / 6;
    CHECK(ok, "a tie's blocks are paired by the sum of its groups' evidence");
    // MuDSC's group zip: zip within paired blocks; with no same-model budget
    // (b = 0) every merged unit holds one unit of each model, from paired
    // blocks, and the merged blocks are model 0's
    float *Cr = xmalloc((size_t)(4 * om * om) * sizeof *Cr);
    int64_t dr[48], dz[48], cnt[24];
    ns_merge_reorder_blocks(Cv, 2, om, 4, bp, Cr);
    ok = ns_merge_zip(Cr, 2, om, 6, 0.5, 0, dr, &score, &err) == 0;
    ns_merge_unorder_dest(dr, 2, om, 4, bp, dz);
    ns_merge_count(dz, 2, om, cnt);
    for (int64_t u = 0; u < om; u++) ok &= cnt[u] == 2 && dz[u] / 6 == u / 6 && bp[4 + dz[om + u] / 6] == u / 6;
    int copies = ok;
    for (int64_t u = 0; u < om; u++) copies &= dz[om + gperm[u]] == dz[u];
    CHECK(ok && copies, "group zip: units merge across models within paired heads, with their copies");
    // with the full same-model budget (b = 1) of a block of 6 (3 merges per
    // model), units still stay in their paired blocks
    ok = ns_merge_zip(Cr, 2, om, 6, 0.5, 1, dr, &score, &err) == 0;
    ns_merge_unorder_dest(dr, 2, om, 4, bp, dz);
    for (int64_t u = 0; u < om; u++) ok &= dz[u] / 6 == u / 6 && bp[4 + dz[om + u] / 6] == u / 6;
    CHECK(ok, "group zip with a same-model budget keeps every unit in its paired head");
    free(Cr);
    free(Cq);
    free(Cv);
    free(C);
    ns_lsa_ws_free(ws);
}

// ---------------------------------------------------------------------------
// 3. models

// "gn": a GroupNorm net (its groups move as whole blocks; g1 and g2 share
// their channels through the add, so their groups are tied)
static const char gn_spec[] =
    "[input]\nshape = 1x12x12\n"
    "[conv2d c1]\nout = 12\npad = 1\n[groupnorm g1]\ngroups = 3\n[relu r1]\n"
    "[conv2d c2]\nout = 12\npad = 1\n[groupnorm g2]\ngroups = 3\n[relu r2]\n"
    "[add]\nfrom = r1, r2\n"
    "[conv2d c3]\nout = 8\npad = 1\n[groupnorm g3]\ngroups = 2\n[relu]\n[global_avgpool]\n"
    "[linear fc]\nout = 5\n";

#define TEXT_VOCAB 10 // text-transformer: ids 0..9, the largest marking the end of the text

static int build(ns_model *m, const char *arch, double width, int in_h, uint64_t seed) {
    ns_err err;
    if (strcmp(arch, "gn") == 0) {
        ns_model_init(m);
        if (ns_spec_parse(m, gn_spec, strlen(gn_spec), "gn", &err) < 0) {
            printf("# %s\n", err.msg);
            return -1;
        }
        ns_model_init_params(m, seed);
        for (int t = 0; t < m->ntensors; t++) // GroupNorm not the identity
            if (strncmp(m->tensors[t].name, "g", 1) == 0) {
                float *v = m->tensors[t].t.data;
                for (int64_t i = 0; i < m->tensors[t].t.numel; i++) v[i] = (float)(0.5 + ns_rng_uniform(&rng));
            }
        return 0;
    }
    ns_arch_opts o = {.in_c = 1, .in_h = in_h, .in_w = in_h, .classes = 5, .width = width, .depth = 4};
    if (strcmp(arch, "vit") == 0) o.depth = 2, o.patch = 4, o.heads = 4; // 9 patches, heads of 8
    int text = strcmp(arch, "text-transformer") == 0;
    if (text) o = (ns_arch_opts){.in_c = in_h, .classes = 5, .width = width, .depth = 2, .heads = 4}; // in_h ids
    ns_model_init(m);
    if ((text ? ns_arch_build_text(m, &o, TEXT_VOCAB, &err) : ns_arch_build(m, arch, &o, &err)) < 0) {
        printf("# %s\n", err.msg);
        return -1;
    }
    ns_model_init_params(m, seed);
    // BN not the identity: random affine parameters and running statistics
    for (int t = 0; t < m->ntensors; t++) {
        const char *name = m->tensors[t].name;
        float *v = m->tensors[t].t.data;
        int64_t k = m->tensors[t].t.numel;
        const char *dot = strrchr(name, '.');
        int bn = strstr(name, "bn") || strstr(name, "shortcut.1");
        if (!bn || !dot) continue;
        for (int64_t i = 0; i < k; i++) {
            if (strcmp(dot, ".running_var") == 0) v[i] = (float)(0.5 + ns_rng_uniform(&rng));
            else if (strcmp(dot, ".weight") == 0) v[i] = (float)(0.5 + ns_rng_uniform(&rng));
            else v[i] = (float)(0.5 + ns_rng_normal(&rng) * 0.3); // mostly alive after ReLU
        }
    }
    return 0;
}

static int copy_model(ns_model *dst, const ns_model *src) {
    ns_err err;
    ns_model_init(dst);
    char path[] = "/tmp/test_merge_modelXXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    int rc = ns_model_write(src, &w, NULL, 0, &err);
    ns_writer_free(&w);
    fclose(f);
    if (rc == 0) rc = ns_model_load(dst, path, &err);
    unlink(path);
    if (rc < 0) printf("# copy: %s\n", err.msg);
    return rc;
}

#define NSAMPLES 40

static float *forward(ns_model *m, const float *x, int64_t *k) {
    ns_err err;
    ns_engine e;
    if (ns_engine_init(&e, m, NSAMPLES, 0, &err) < 0) return NULL;
    const float *out = ns_engine_forward(&e, x, NSAMPLES, 0, &err);
    *k = ns_engine_output_numel(&e);
    float *copy = xmalloc((size_t)(NSAMPLES * *k) * sizeof *copy);
    memcpy(copy, out, (size_t)(NSAMPLES * *k) * sizeof *copy);
    ns_engine_free(&e);
    return copy;
}

// The inputs as a data stream for the activation statistics.
static int write_stream(const char *path, const float *x, const ns_model *m) {
    ns_err err;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    ns_writer w;
    ns_writer_init(&w, f);
    const ns_node *in = &m->nodes[0];
    ns_tensor t = {.dtype = NS_F32, .ndim = 1 + in->ndim, .shape = {NSAMPLES}, .numel = NSAMPLES * in->numel,
                   .data = (void *)x};
    memcpy(t.shape + 1, in->shape, (size_t)in->ndim * sizeof *in->shape);
    int rc = ns_write_tensor(&w, "images", &t, NULL, &err);
    ns_writer_free(&w);
    fclose(f);
    return rc;
}

// Permutes every free group of m; perms[p] gets the permutation (NULL:
// fixed). Tied groups (attention heads) move their blocks by one random map
// per tie and permute within blocks.
static void permute_all(ns_model *m, const ns_chgroups *g, int64_t **perms) {
    ns_err err;
    int64_t *sigma[64] = {0};
    for (int p = 0; p < g->ngroups; p++) {
        const ns_chgroup *gr = &g->groups[p];
        perms[p] = NULL;
        if (gr->fixed) continue;
        int64_t *q = perms[p] = xmalloc((size_t)gr->size * sizeof **perms), B = gr->block, nb = gr->size / B;
        if (gr->tie < 0 && B == gr->size) {
            random_perm(q, gr->size);
            continue;
        }
        if (gr->tie >= 0 && gr->tie < 64 && !sigma[gr->tie]) {
            sigma[gr->tie] = xmalloc((size_t)nb * sizeof **sigma);
            random_perm(sigma[gr->tie], nb);
        }
        for (int64_t b = 0; b < nb; b++) {
            int64_t to = gr->tie >= 0 ? sigma[gr->tie][b] : b;
            random_perm(q + b * B, B);
            for (int64_t j = 0; j < B; j++) q[b * B + j] += to * B;
        }
    }
    if (ns_chgroups_permute_many(m, g, (const int64_t *const *)perms, &err) < 0) printf("# permute: %s\n", err.msg);
    for (int t = 0; t < 64; t++) free(sigma[t]);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

// kill > 0: channels 0..kill-1 of every block's inner space (layerX.Y.bn1)
// are dead on the data (BN bias -50 before the ReLU), as units of a briefly
// trained model can be: their correlations tie, and only the weights can
// tell which copy is whose.
static void kill_units(ns_model *m, int kill) {
    for (int t = 0; t < m->ntensors; t++) {
        const char *name = m->tensors[t].name;
        if (strncmp(name, "layer", 5) || !strstr(name, ".bn1.bias")) continue;
        float *v = m->tensors[t].t.data;
        for (int k = 0; k < kill && k < m->tensors[t].t.numel; k++) v[k] = -50.0f;
    }
}

static void test_model(const char *arch, double width, int kill) {
    ns_err err;
    ns_model a, b;
    if (build(&a, arch, width, 12, 7) < 0) {
        CHECK(0, "%s: model built", arch);
        return;
    }
    float *x = xmalloc((size_t)(NSAMPLES * a.nodes[0].numel) * sizeof *x);
    int text = strcmp(arch, "text-transformer") == 0;
    for (int64_t i = 0; i < NSAMPLES * a.nodes[0].numel; i++)
        x[i] = text ? (float)ns_rng_below(&rng, TEXT_VOCAB) : (float)ns_rng_normal(&rng);
    char path[] = "/tmp/test_merge_dataXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_stream(path, x, &a);
    // BN statistics of this data (the reset), so that few units are dead
    CHECK(ns_merge_reset_bn(&a, path, 0, 16, NULL, &err) == 0, "%s: batch-norm reset", arch);
    char label[64];
    snprintf(label, sizeof label, "%s%s", arch, kill ? " with dead units" : "");
    arch = label;
    kill_units(&a, kill);
    if (copy_model(&b, &a) < 0) return;
    ns_chgroups g;
    CHECK(ns_chgroups_build(&g, &a, &err) == 0, "%s: groups", arch);
    int64_t **perms = xmalloc((size_t)g.ngroups * sizeof *perms);
    permute_all(&b, &g, perms);
    int64_t k;
    float *ref = forward(&a, x, &k), *permuted = forward(&b, x, &k);
    CHECK(max_diff(ref, permuted, NSAMPLES * k) < 1e-4, "%s: the permuted copy computes the same function", arch);
    ns_model *models[2] = {&a, &b};
    float **act = xmalloc((size_t)g.ngroups * sizeof *act);
    int64_t *dead = xmalloc((size_t)g.ngroups * sizeof *dead), ndead = 0;
    unsigned char **dead_units = xmalloc((size_t)g.ngroups * sizeof *dead_units);
    CHECK(ns_merge_act_corr(models, 2, &g, path, 0, 16, NULL, act, dead_units, dead, NULL, &err) == 0,
          "%s: activation statistics", arch);
    for (int p = 0; p < g.ngroups; p++) ndead += dead[p] > 0 ? dead[p] : 0;
    if (kill) CHECK(ndead >= 2 * kill * 9, "%s: %lld dead units over both models", arch, (long long)ndead);
    const char *variants[] = {"average", "weight matching", "activation matching", "zip on activations", "mudsc-zip",
                              "mudsc-align", "weight matching from the activation matching"};
    ns_merge_opts opts[] = {
        {NS_MERGE_AVERAGE, 0, 0, 0, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ALIGN, 1, 0, 1, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ALIGN, 0, 1, 0, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ZIP, 0, 1, 0, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ZIP, 0.5, 1, 1, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ALIGN, 0.5, 1, 1, 100, 5, 0.5, 1, 0, NULL},
        {NS_MERGE_ALIGN, 1, 1, 1, 100, 5, 0.5, 1, 0, NULL}, // the copy is a fixed point of C_w's descent
    };
    for (int v = 0; v < 7; v++) {
        ns_merge_state st;
        ns_merge_report rep = {0};
        ns_merge_state_init(&st, &g, 2, &err);
        int ok = ns_merge_match(models, &st, act, dead_units, &opts[v], &rep, &err) == 0;
        if (!ok) printf("# %s\n", err.msg);
        int identity = ok;
        for (int p = 0; p < g.ngroups; p++) {
            if (!perms[p]) continue;
            int64_t om = g.groups[p].size;
            for (int64_t j = 0; j < om; j++) identity &= st.dest[p][om + j] == st.dest[p][perms[p][j]];
        }
        // weight matching alone (Git Re-Basin from the identity) finds a ViT's
        // permuted copy too: its first pass matches the residual stream on its
        // anchored slices (patch embedding, positions, norms, classifier) before
        // the blocks' heads and hidden units, which then follow exactly
        if (v > 0) CHECK(identity, "%s, %s: every channel goes with its original", arch, variants[v]);
        ns_model out;
        copy_model(&out, &a);
        ok = ok && ns_merge_weights(models, &st, NULL, &out, &err) == 0;
        float *merged = forward(&out, x, &k);
        double d = max_diff(ref, merged, NSAMPLES * k);
        if (v == 0) CHECK(ok && d > 1e-2, "%s, average: plain averaging changes the function (%.3g)", arch, d);
        else
            CHECK(ok && d < 1e-4, "%s, %s: the merged model computes the original (max diff %.2g)", arch, variants[v], d);
        free(merged);
        if (v == 3) { // ZipIt!'s partial zip at the middle node: the logits twice
            ns_model cat, part;
            copy_model(&cat, &a);
            int split = a.nnodes / 2, unmerges = 0;
            int rc = ns_merge_concat_head(&cat, models, 2, &st, &err) == 0 &&
                     ns_merge_weights(models, &st, NULL, &cat, &err) == 0 &&
                     ns_merge_partial(&part, &cat, models, 2, &st, split, &err) == 0;
            if (!rc) printf("# partial: %s\n", err.msg);
            int64_t k2 = 0;
            float *both = rc ? forward(&part, x, &k2) : NULL;
            double dd = 1;
            if (both && k2 == 2 * k) {
                dd = 0;
                for (int64_t s2 = 0; s2 < NSAMPLES; s2++)
                    for (int64_t c = 0; c < 2 * k; c++) dd = fmax(dd, fabs(both[s2 * 2 * k + c] - ref[s2 * k + c % k]));
            }
            for (int j = 0; rc && j < part.nnodes; j++) unmerges += strncmp(part.nodes[j].name, "m1.unmerge.", 11) == 0;
            CHECK(rc && dd < 1e-4 && unmerges > 0 && part.nlabels == (size_t)(2 * k),
                  "%s: partial zip after %s: each model's own layers after it, reading the merged features through "
                  "%d unmerge layer(s), give the logits twice (%.2g)", arch, rc ? a.nodes[split].name : "?", unmerges, dd);
            free(both);
            if (rc) ns_model_free(&part);
            ns_model_free(&cat);
        }
        if (v == 2) { // concatenated heads: the logits twice
            ns_model cat;
            copy_model(&cat, &a);
            int rc = ns_merge_concat_head(&cat, models, 2, &st, &err) == 0 && ns_merge_weights(models, &st, NULL, &cat, &err) == 0;
            int64_t k2;
            float *both = rc ? forward(&cat, x, &k2) : NULL;
            double dd = 1;
            if (both && k2 == 2 * k) {
                dd = 0;
                for (int64_t s = 0; s < NSAMPLES; s++)
                    for (int64_t c = 0; c < 2 * k; c++) dd = fmax(dd, fabs(both[s * 2 * k + c] - ref[s * k + c % k]));
            }
            CHECK(rc && dd < 1e-4 && cat.nlabels == (size_t)(2 * k), "%s: concatenated heads give the logits twice (%.2g)", arch, dd);
            free(both);
            ns_model_free(&cat);
        }
        ns_model_free(&out);
        ns_merge_state_free(&st);
        ns_merge_report_free(&rep);
    }
    unlink(path);
    for (int p = 0; p < g.ngroups; p++) {
        free(act[p]);
        free(dead_units[p]);
        free(perms[p]);
    }
    free(dead_units);
    free(act);
    free(dead);
    free(perms);
    free(ref);
    free(permuted);
    free(x);
    ns_chgroups_free(&g);
    ns_model_free(&a);
    ns_model_free(&b);
}

// Three models (the original and two permuted copies): alignment is a star
// onto the first, so activation matching and weight matching both recover
// every copy and the merge computes the original.
static void test_three(void) {
    ns_err err;
    ns_model a, b, c;
    if (build(&a, "resnet20", 0.5, 12, 11) < 0) return;
    float *x = xmalloc((size_t)(NSAMPLES * a.nodes[0].numel) * sizeof *x);
    for (int64_t i = 0; i < NSAMPLES * a.nodes[0].numel; i++) x[i] = (float)ns_rng_normal(&rng);
    char path[] = "/tmp/test_merge_dataXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_stream(path, x, &a);
    ns_merge_reset_bn(&a, path, 0, 16, NULL, &err);
    copy_model(&b, &a);
    copy_model(&c, &a);
    ns_chgroups g;
    ns_chgroups_build(&g, &a, &err);
    int64_t **pb = xmalloc((size_t)g.ngroups * sizeof *pb), **pc = xmalloc((size_t)g.ngroups * sizeof *pc);
    permute_all(&b, &g, pb);
    permute_all(&c, &g, pc);
    ns_model *models[3] = {&a, &b, &c};
    float **act = xmalloc((size_t)g.ngroups * sizeof *act);
    int64_t *dead = xmalloc((size_t)g.ngroups * sizeof *dead);
    ns_merge_act_corr(models, 3, &g, path, 0, 16, NULL, act, NULL, dead, NULL, &err);
    int64_t k;
    float *ref = forward(&a, x, &k);
    ns_merge_opts opts[2] = {{NS_MERGE_ALIGN, 0, 1, 0, 100, 5, 0.5, 1, 0, NULL},
                             {NS_MERGE_ALIGN, 1, 0, 1, 100, 5, 0.5, 1, 0, NULL}};
    for (int v = 0; v < 2; v++) {
        ns_merge_state st;
        ns_merge_report rep = {0};
        ns_merge_state_init(&st, &g, 3, &err);
        int ok = ns_merge_match(models, &st, act, NULL, &opts[v], &rep, &err) == 0;
        for (int p = 0; ok && p < g.ngroups; p++) {
            if (!pb[p]) continue;
            int64_t om = g.groups[p].size;
            for (int64_t j = 0; j < om; j++)
                ok &= st.dest[p][om + j] == pb[p][j] && st.dest[p][2 * om + j] == pc[p][j];
        }
        CHECK(ok, "three models, %s: both copies aligned to the first", v ? "weight matching" : "activation matching");
        ns_model out;
        copy_model(&out, &a);
        ok = ns_merge_weights(models, &st, NULL, &out, &err) == 0;
        float *merged = forward(&out, x, &k);
        double d = max_diff(ref, merged, NSAMPLES * k);
        CHECK(ok && d < 1e-4, "three models, %s: the merge computes the original (%.2g)",
              v ? "weight matching" : "activation matching", d);
        free(merged);
        ns_model_free(&out);
        ns_merge_state_free(&st);
        ns_merge_report_free(&rep);
    }
    unlink(path);
    for (int p = 0; p < g.ngroups; p++) {
        free(act[p]);
        free(pb[p]);
        free(pc[p]);
    }
    free(act);
    free(dead);
    free(pb);
    free(pc);
    free(ref);
    free(x);
    ns_chgroups_free(&g);
    ns_model_free(&a);
    ns_model_free(&b);
    ns_model_free(&c);
}

// ---------------------------------------------------------------------------
// 4. refusals

static void test_refusals(void) {
    ns_err err;
    ns_model a, b, c, d;
    build(&a, "resnet20", 0.5, 12, 1);
    build(&b, "resnet20", 1, 12, 1);
    build(&c, "resnet20", 0.5, 16, 1);
    build(&d, "vgg", 0.5, 12, 1);
    const char *names[2] = {"a.tns", "b.tns"};
    ns_model *ab[2] = {&a, &b}, *ac[2] = {&a, &c}, *ad[2] = {&a, &d};
    CHECK(ns_merge_check_compatible(ab, names, 2, 1, &err) < 0 && strstr(err.msg, "conv1 out: 16 against 8"),
          "another width is refused: %s", err.msg);
    CHECK(ns_merge_check_compatible(ac, names, 2, 1, &err) < 0 && strstr(err.msg, "inputs of 1x16x16"),
          "another input shape is refused: %s", err.msg);
    CHECK(ns_merge_check_compatible(ad, names, 2, 1, &err) < 0 && strstr(err.msg, "not the architecture"),
          "another architecture is refused: %s", err.msg);
    ns_model *aa[2] = {&a, &a};
    CHECK(ns_merge_check_compatible(aa, names, 2, 0, &err) == 0, "the same architecture is accepted");
    ns_model_free(&a);
    ns_model_free(&b);
    ns_model_free(&c);
    ns_model_free(&d);
}

int main(void) {
    ns_rng_seed(&rng, 12345);
    test_corr();
    test_solvers();
    test_model("resnet20", 0.5, 0);
    test_model("vgg", 0.5, 0);
    test_model("resnet20", 0.5, 3);
    test_model("vit", 0.5, 0);
    test_model("text-transformer", 0.5, 0);
    test_model("gn", 1, 0);
    test_three();
    test_refusals();
    test_sgemm_serial(); // last: its draws would move the others' data
    test_grouped_refused();
    return check_done();
}
