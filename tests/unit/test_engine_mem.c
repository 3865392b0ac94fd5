// test_engine_mem.c: the activation memory of a forward-only engine in fused
// mode (engine.c): buffers shared between nodes that are not alive at the
// same time. For each built-in architecture and the example specs:
// - outputs bit-identical to a forward-only engine outside fused mode (a
//   buffer per node), for a second batch after a first (a kernel reading
//   what an earlier node left in a shared buffer would show), in eval and in
//   training (running statistics too);
// - a node kept after the first forward (planned again) holds its values;
// - resnet20 uses a handful of buffers instead of one per node;
// - an engine with gradients in fused mode leaves out the act[] and grad[]
//   of the nodes fused mode never writes.
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "check.h"
#include "nn/arch.h"
#include "nn/engine.h"
#include "nn/spec.h"

static float *random_batch(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) abort();
    ns_rng rng;
    ns_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)ns_rng_normal(&rng);
    return x;
}

static float **save_tensors(const ns_model *m) {
    float **s = calloc((size_t)(m->ntensors + 1), sizeof *s);
    for (int t = 0; s && t < m->ntensors; t++) {
        s[t] = malloc((size_t)m->tensors[t].t.numel * sizeof(float));
        if (s[t]) memcpy(s[t], m->tensors[t].t.data, (size_t)m->tensors[t].t.numel * sizeof(float));
    }
    return s;
}

static void restore_tensors(ns_model *m, float **s) {
    for (int t = 0; t < m->ntensors; t++) memcpy(m->tensors[t].t.data, s[t], (size_t)m->tensors[t].t.numel * sizeof(float));
}

static int same_tensors(const ns_model *m, float **s) {
    for (int t = 0; t < m->ntensors; t++)
        if (memcmp(m->tensors[t].t.data, s[t], (size_t)m->tensors[t].t.numel * sizeof(float))) return 0;
    return 1;
}

static void free_tensors(const ns_model *m, float **s) {
    for (int t = 0; s && t < m->ntensors; t++) free(s[t]);
    free(s);
}

// Forward-only engine on batch b (after batch a when a != NULL); out gets
// the output, kept the activations of node keep (when >= 0, kept after the
// first forward). Returns the number of distinct act[] buffers, -1 on error.
static int run(ns_model *m, int fused, int training, const float *a, const float *b, int64_t N, int keep,
               float *out, float *kept) {
    ns_engine e;
    ns_err err;
    if (ns_engine_init(&e, m, N, 0, &err) < 0) return -1;
    ns_engine_set_fused(&e, fused);
    const float *y = NULL;
    if (!a || ns_engine_forward(&e, a, N, training, &err)) {
        if (keep >= 0) ns_engine_keep(&e, keep);
        y = ns_engine_forward(&e, b, N - 1, training, &err);
    }
    int distinct = -1;
    if (y) {
        memcpy(out, y, (size_t)((N - 1) * ns_engine_output_numel(&e)) * sizeof *out);
        if (keep >= 0) memcpy(kept, e.act[keep], (size_t)((N - 1) * m->nodes[keep].numel) * sizeof *kept);
        distinct = 0;
        for (int i = 0; i < m->nnodes; i++) {
            int seen = !e.act[i];
            for (int j = 0; j < i && !seen; j++) seen = e.act[j] == e.act[i];
            distinct += !seen;
        }
    }
    ns_engine_free(&e);
    return distinct;
}

// Checks model m (parameters initialised); returns the shared run's number of buffers.
static int check_model(const char *what, ns_model *m, int keep) {
    const int64_t N = 6, nin = m->nodes[0].numel, nout = m->nodes[m->output].numel;
    float *a = random_batch(N * nin, 1), *b = random_batch(N * nin, 2);
    float *ref = calloc((size_t)(N * nout), sizeof *ref), *got = calloc((size_t)(N * nout), sizeof *got);
    int64_t nk = keep >= 0 ? N * m->nodes[keep].numel : 1;
    float *ref_kept = calloc((size_t)nk, sizeof *ref_kept), *got_kept = calloc((size_t)nk, sizeof *got_kept);
    float **params = save_tensors(m);
    int buffers = -1;
    for (int training = 0; training <= 1; training++) {
        const char *mode = training ? "training" : "eval";
        restore_tensors(m, params);
        int rc = run(m, 0, training, NULL, b, N, -1, ref, NULL);
        float **stats = save_tensors(m);
        restore_tensors(m, params);
        // the first batch's training forward moves the running statistics: the reference takes both too
        if (training) {
            rc = rc < 0 ? rc : run(m, 0, training, a, b, N, -1, ref, NULL);
            free_tensors(m, stats);
            stats = save_tensors(m);
            restore_tensors(m, params);
        }
        int n = run(m, 1, training, a, b, N, -1, got, NULL);
        if (!training) buffers = n;
        CHECK(rc >= 0 && n >= 0 && !memcmp(ref, got, (size_t)((N - 1) * nout) * sizeof *ref),
              "%s, %s: shared buffers give the same output bit for bit (second batch)", what, mode);
        CHECK(same_tensors(m, stats), "%s, %s: and the same running statistics", what, mode);
        free_tensors(m, stats);
        if (keep < 0) continue;
        restore_tensors(m, params);
        rc = run(m, 0, training, NULL, b, N, keep, ref, ref_kept);
        restore_tensors(m, params);
        if (training && rc >= 0) rc = run(m, 0, training, a, b, N, keep, ref, ref_kept);
        restore_tensors(m, params);
        n = run(m, 1, training, a, b, N, keep, got, got_kept);
        CHECK(rc >= 0 && n >= 0 && !memcmp(ref_kept, got_kept, (size_t)((N - 1) * m->nodes[keep].numel) * sizeof *ref_kept),
              "%s, %s: node %s kept after a forward holds its activations", what, mode, m->nodes[keep].name);
    }
    restore_tensors(m, params);
    free_tensors(m, params);
    free(a), free(b), free(ref), free(got), free(ref_kept), free(got_kept);
    return buffers;
}

static void check_arch(const char *name, ns_arch_opts o, const char *keep_name) {
    ns_model m;
    ns_err err;
    ns_model_init(&m);
    if (ns_arch_build(&m, name, &o, &err) < 0) {
        CHECK(0, "%s: %s", name, err.msg);
        return;
    }
    ns_model_init_params(&m, 7);
    int keep = keep_name ? ns_model_find_node(&m, keep_name) : -1;
    if (keep_name) CHECK(keep >= 0, "%s has a node %s", name, keep_name);
    int buffers = check_model(name, &m, keep);
    if (strcmp(name, "resnet20") == 0)
        CHECK(buffers > 0 && buffers <= 4, "resnet20: %d shared buffers for %d nodes (at most 4)", buffers, m.nnodes);
    ns_model_free(&m);
}

static void check_spec(const char *path, const char *keep_name) {
    ns_model m;
    ns_err err;
    if (ns_spec_load(&m, path, &err) < 0) {
        CHECK(0, "%s: %s", path, err.msg);
        return;
    }
    ns_model_init_params(&m, 7);
    int keep = keep_name ? ns_model_find_node(&m, keep_name) : -1;
    if (keep_name) CHECK(keep >= 0, "%s has a node %s", path, keep_name);
    check_model(path, &m, keep);
    ns_model_free(&m);
}

static int count_buffers(float *const *bufs, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += bufs[i] != NULL;
    return k;
}

// An engine with gradients in fused mode has no act[] or grad[] for the 28
// batch norms and adds inside resnet20's groups (45 of 73 nodes keep them);
// outside fused mode, all 73 again.
static void check_training_buffers(void) {
    ns_model m;
    ns_err err;
    ns_model_init(&m);
    ns_arch_opts o = {.in_c = 1, .in_h = 12, .in_w = 12, .classes = 10, .width = 1};
    if (ns_arch_build(&m, "resnet20", &o, &err) < 0) {
        CHECK(0, "resnet20: %s", err.msg);
        return;
    }
    ns_model_init_params(&m, 7);
    const int64_t N = 4;
    float *x = random_batch(N * m.nodes[0].numel, 3);
    ns_engine e;
    if (ns_engine_init(&e, &m, N, 1, &err) < 0) {
        CHECK(0, "resnet20 engine with gradients: %s", err.msg);
        free(x);
        ns_model_free(&m);
        return;
    }
    ns_engine_set_fused(&e, 1);
    int ok = ns_engine_forward(&e, x, N, 1, &err) != NULL;
    int acts = count_buffers(e.act, m.nnodes), grads = count_buffers(e.grad, m.nnodes);
    CHECK(ok && acts == 45 && grads == 45, "training engine, fused mode: act[] for %d and grad[] for %d of %d nodes (45)",
          acts, grads, m.nnodes);
    ns_engine_set_fused(&e, 0);
    ok = ns_engine_forward(&e, x, N, 1, &err) != NULL;
    acts = count_buffers(e.act, m.nnodes), grads = count_buffers(e.grad, m.nnodes);
    CHECK(ok && acts == m.nnodes && grads == m.nnodes, "training engine, default mode: act[] for %d and grad[] for %d of %d nodes",
          acts, grads, m.nnodes);
    ns_engine_free(&e);
    free(x);
    ns_model_free(&m);
}

int main(void) {
    check_training_buffers();
    check_arch("resnet20", (ns_arch_opts){.in_c = 1, .in_h = 12, .in_w = 12, .classes = 10, .width = 1},
               "layer2.1.bn1");
    check_arch("resnet18", (ns_arch_opts){.in_c = 3, .in_h = 8, .in_w = 8, .classes = 5, .width = 0.25}, NULL);
    check_arch("vgg", (ns_arch_opts){.in_c = 3, .in_h = 16, .in_w = 16, .classes = 4, .width = 0.5, .depth = 4},
               "features.bn1");
    check_arch("lenet", (ns_arch_opts){.in_c = 1, .in_h = 28, .in_w = 28, .classes = 10, .width = 1}, NULL);
    check_arch("mlp", (ns_arch_opts){.in_c = 20, .classes = 3, .width = 1, .hidden = {16, 8}, .nhidden = 2}, NULL);
    check_spec("examples/specs/branches.cfg", "b3x3");
    check_spec("examples/specs/cnn.cfg", "pool1");
    check_spec("examples/specs/mlp.cfg", "layernorm1");
    check_spec("examples/specs/resnet.cfg", NULL);
    return check_done();
}
