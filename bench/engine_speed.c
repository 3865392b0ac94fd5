// engine_speed.c: images/s of the engine on resnet20 (width 1, 1x28x28 inputs,
// 10 classes) for a batch of random images: inference (eval-mode forward) and
// training (train-mode forward, softmax cross-entropy, backward), each the
// median of timed repeats after warm-up, with the GFLOP/s that is (forward
// 2 * macs per image, training 3x forward) and where the time goes per op type.
// bench/torch_speed.py runs the same network and work in PyTorch.
//
//   build/bench/engine_speed [--batch N] [--iters K] [--warmup W] [--no-profile]
//                            [--nodes] [--dump FILE | --compare FILE] [--perturb]
//                            [--arch NAME]
//
// --arch picks another built-in (default resnet20), with its default options:
// vit is the network of bench/vit_torch.py.
//
// Threads come from NETSMITH_THREADS (default: all cores); NETSMITH_WINOGRAD=0
// (or fwd) turns the Winograd convolutions off (or off in backward). --nodes
// adds the training time of every node.
//
// Both of the engine's modes are timed: the default, where every node's
// activations and gradients are written, and fused mode
// (ns_engine_set_fused, what net-eval and net-train use), where the inner
// nodes of conv-bn(-add)-relu groups are not; the bench checks that the two
// give the same results bit for bit. The per-op breakdown (inference, and
// training forward and backward) comes from the engine's own per-node timers
// (ns_engine.prof_fwd, prof_bwd); a fused group's time is booked to its
// convolution (with the epilogue: in eval the batch norm, add and relu are
// there) and its batch norm (training: statistics merge and the one
// elementwise pass for batch norm, add and relu; backward: the fused pass).
//
// --dump FILE writes the eval logits, the training logits and every parameter
// gradient for a fixed model and input; --compare FILE prints the largest
// relative differences against such a file (to check a kernel change against
// the previous build: logits should move by float reassociation, ~1e-6).
// Gradients move more: an activation within rounding of a ReLU's kink can
// change sides, which switches its gradient on or off. --perturb (every input
// moved one ulp) shows how much that is for the same build: the floor for a
// comparison. Every run also checks that two identical runs give
// bit-identical results.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "base/blas.h"
#include "cli/cli.h"
#include "nn/engine.h"
#include "nn/ops.h"

#define CLASSES 10

static void die(const char *msg) {
    fprintf(stderr, "engine_speed: %s\n", msg);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

// ----------------------------------------------------------------------------
// one training step and one inference pass through the engine

typedef struct bench {
    ns_model m;
    ns_engine e;
    int64_t N;
    float *x;         // (N, 1, 28, 28)
    int32_t *y;       // (N)
    float *dlogits;   // (N, CLASSES)
} bench;

static void infer(bench *b) {
    ns_err err;
    if (!ns_engine_forward(&b->e, b->x, b->N, 0, &err)) die(err.msg);
}

static float train_step(bench *b) {
    ns_err err;
    const float *logits = ns_engine_forward(&b->e, b->x, b->N, 1, &err);
    if (!logits) die(err.msg);
    float loss = ns_softmax_ce_forward(NULL, logits, b->y, NULL, 0.0f, b->N, CLASSES);
    memset(b->dlogits, 0, (size_t)(b->N * CLASSES) * sizeof(float));
    ns_softmax_ce_backward(b->dlogits, 1.0f, logits, b->y, NULL, 0.0f, b->N, CLASSES);
    ns_engine_zero_grad(&b->e);
    ns_engine_backward(&b->e, b->dlogits);
    return loss;
}

// ----------------------------------------------------------------------------
// per-op breakdown from the engine's per-node timers

static int per_node;

static void profile(bench *b, int iters) {
    const ns_model *m = &b->m;
    int nn = m->nnodes;
    double *pf = calloc((size_t)nn, sizeof *pf), *pb = calloc((size_t)nn, sizeof *pb);
    double op_inf[NS_OP_COUNT] = {0}, op_fwd[NS_OP_COUNT] = {0}, op_bwd[NS_OP_COUNT] = {0};
    if (!pf || !pb) die("out of memory");
    b->e.prof_fwd = pf;
    b->e.prof_bwd = pb;
    double tinf = 0;
    for (int it = 0; it < iters; it++) {
        double t0 = ns_now();
        infer(b);
        tinf += ns_now() - t0;
    }
    for (int i = 0; i < nn; i++) op_inf[m->nodes[i].op] += pf[i];
    if (per_node) {
        printf("\nper-node inference time, %s mode, ms per batch\n", b->e.fused ? "fused" : "default");
        for (int i = 1; i < nn; i++)
            if (pf[i] > 0)
                printf("  %-22s %-10s %8.2f\n", m->nodes[i].name, ns_ops[m->nodes[i].op].name,
                       pf[i] / iters * 1e3);
    }
    memset(pf, 0, (size_t)nn * sizeof *pf);
    double total = 0;
    for (int it = 0; it < iters; it++) {
        double t0 = ns_now();
        train_step(b);
        total += ns_now() - t0;
    }
    for (int i = 0; i < nn; i++) {
        op_fwd[m->nodes[i].op] += pf[i];
        op_bwd[m->nodes[i].op] += pb[i];
    }
    if (per_node) {
        printf("\nper-node training time, %s mode, ms per batch\n", b->e.fused ? "fused" : "default");
        for (int i = 1; i < nn; i++)
            if (pf[i] + pb[i] > 0)
                printf("  %-22s %-10s %8.2f %8.2f\n", m->nodes[i].name, ns_ops[m->nodes[i].op].name,
                       pf[i] / iters * 1e3, pb[i] / iters * 1e3);
    }
    b->e.prof_fwd = b->e.prof_bwd = NULL;
    free(pf);
    free(pb);
    printf("\nper-op time, %s mode, ms per batch (mean of %d)\n", b->e.fused ? "fused" : "default",
           iters);
    printf("  %-16s %9s %6s | %9s %9s %9s %6s\n", "op", "inference", "share", "train fwd",
           "train bwd", "train", "share");
    double acc_i = 0, acc_t = 0;
    for (int op = 0; op < NS_OP_COUNT; op++) {
        double fi = op_inf[op] / iters, f = op_fwd[op] / iters, bk = op_bwd[op] / iters;
        if (fi + f + bk == 0) continue;
        acc_i += fi;
        acc_t += f + bk;
        printf("  %-16s %9.2f %5.1f%% | %9.2f %9.2f %9.2f %5.1f%%\n", ns_ops[op].name, fi * 1e3,
               100 * fi / (tinf / iters), f * 1e3, bk * 1e3, (f + bk) * 1e3,
               100 * (f + bk) / (total / iters));
    }
    double ri = tinf / iters - acc_i, rt = total / iters - acc_t;
    printf("  %-16s %9.2f %5.1f%% | %9s %9s %9.2f %5.1f%%\n", "(other)", ri * 1e3,
           100 * ri / (tinf / iters), "", "", rt * 1e3, 100 * rt / (total / iters));
    printf("  %-16s %9.2f %6s | %9s %9s %9.2f\n", "total", tinf / iters * 1e3, "", "", "",
           total / iters * 1e3);
}

// ----------------------------------------------------------------------------
// results to a file, and comparisons

// eval logits, train logits, then each parameter gradient in tensor order
static int64_t result_floats(const bench *b) {
    int64_t n = 2 * b->N * CLASSES;
    for (int t = 0; t < b->m.ntensors; t++)
        if (b->e.param_grad[t]) n += b->m.tensors[t].t.numel;
    return n;
}

static void collect(bench *b, float *r) {
    int64_t nl = b->N * CLASSES, k = 0;
    // A fresh copy of the running statistics, so every collection sees the same model.
    infer(b);
    memcpy(r + k, b->e.act[b->m.output], (size_t)nl * sizeof(float));
    k += nl;
    train_step(b);
    memcpy(r + k, b->e.act[b->m.output], (size_t)nl * sizeof(float));
    k += nl;
    for (int t = 0; t < b->m.ntensors; t++) {
        if (!b->e.param_grad[t]) continue;
        int64_t n = b->m.tensors[t].t.numel;
        memcpy(r + k, b->e.param_grad[t], (size_t)n * sizeof(float));
        k += n;
    }
}

// Largest |a - b| / max |a| within each part (eval logits, train logits, each
// gradient); rel[0], rel[1] for the logits, rel[2] the worst gradient, named
// in *worst.
static void max_rel_diff(const bench *b, const float *x, const float *y, double rel[3],
                         const char **worst) {
    int64_t k = 0;
    rel[0] = rel[1] = rel[2] = 0;
    *worst = "";
    for (int part = -2; part < b->m.ntensors; part++) {
        int64_t n;
        const char *name;
        if (part < 0) {
            n = b->N * CLASSES;
            name = part == -2 ? "eval logits" : "train logits";
        } else {
            if (!b->e.param_grad[part]) continue;
            n = b->m.tensors[part].t.numel;
            name = b->m.tensors[part].name;
        }
        double amax = 0, dmax = 0;
        for (int64_t i = 0; i < n; i++) {
            amax = fmax(amax, fabs(x[k + i]));
            dmax = fmax(dmax, fabs((double)x[k + i] - y[k + i]));
        }
        double r = amax > 0 ? dmax / amax : dmax;
        if (getenv("ENGINE_SPEED_VERBOSE")) printf("  %-28s %.3g\n", name, r);
        int slot = part < 0 ? part + 2 : 2;
        if (r > rel[slot] || isnan(r)) {
            rel[slot] = r;
            if (slot == 2) *worst = name;
        }
        k += n;
    }
}

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    int64_t N = 256;
    int iters = 10, warmup = 2, prof = 1, perturb = 0;
    const char *dump = NULL, *compare = NULL, *arch = "resnet20";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--batch") == 0 && v) N = atoll(argv[++i]);
        else if (strcmp(a, "--iters") == 0 && v) iters = atoi(argv[++i]);
        else if (strcmp(a, "--warmup") == 0 && v) warmup = atoi(argv[++i]);
        else if (strcmp(a, "--no-profile") == 0) prof = 0;
        else if (strcmp(a, "--dump") == 0 && v) dump = argv[++i];
        else if (strcmp(a, "--compare") == 0 && v) compare = argv[++i];
        else if (strcmp(a, "--perturb") == 0) perturb = 1;
        else if (strcmp(a, "--nodes") == 0) per_node = 1;
        else if (strcmp(a, "--arch") == 0 && v) arch = argv[++i];
        else {
            fprintf(stderr, "usage: engine_speed [--batch N] [--iters K] [--warmup W] "
                            "[--no-profile] [--nodes] [--dump FILE | --compare FILE] [--perturb] [--arch NAME]\n");
            return 2;
        }
    }
    if (N < 1 || iters < 1 || warmup < 0) die("batch and iters must be positive");

    bench b = {.N = N};
    ns_err err;
    ns_model_init(&b.m);
    ns_arch_opts o = {.in_c = 1, .in_h = 28, .in_w = 28, .classes = CLASSES, .width = 1};
    if (ns_arch_build(&b.m, arch, &o, &err) < 0) die(err.msg);
    ns_model_init_params(&b.m, 1);
    if (ns_engine_init(&b.e, &b.m, N, 1, &err) < 0) die(err.msg);
    int64_t in_numel = b.m.nodes[0].numel;
    b.x = malloc((size_t)(N * in_numel) * sizeof(float));
    b.y = malloc((size_t)N * sizeof(int32_t));
    b.dlogits = malloc((size_t)(N * CLASSES) * sizeof(float));
    if (!b.x || !b.y || !b.dlogits) die("out of memory");
    for (int64_t i = 0; i < N * in_numel; i++)
        b.x[i] = (float)((double)(ns_rand_u64(7, (uint64_t)i) >> 11) / 9007199254740992.0 * 2 - 1);
    for (int64_t i = 0; i < N; i++) b.y[i] = (int32_t)(ns_rand_u64(8, (uint64_t)i) % CLASSES);
    // --perturb moves every input value one ulp up or down: how far results
    // move for a change that small is the floor for --compare (activations
    // near a ReLU's kink change sides, which moves gradients visibly).
    if (perturb)
        for (int64_t i = 0; i < N * in_numel; i++)
            b.x[i] = nextafterf(b.x[i], ns_rand_u64(9, (uint64_t)i) & 1 ? 2.0f : -2.0f);

    double macs = (double)ns_model_macs(&b.m);
    printf("%s (default options, width 1, 1x28x28, %d classes): %.1f M multiply-adds per image; batch %lld, "
           "threads %d, BLIS kernels %s, conv tiles %s\n",
           arch, CLASSES, macs / 1e6, (long long)N, ns_threads(), ns_blas_kernels(), ns_tile_kernel());

    // Determinism (and the reference results) before timing: the running
    // statistics move with every training forward, so each collection starts
    // from the same saved copy of the model's tensors.
    int64_t nr = result_floats(&b);
    float *r1 = malloc((size_t)nr * sizeof(float)), *r2 = malloc((size_t)nr * sizeof(float));
    float **saved = calloc((size_t)(b.m.ntensors > 0 ? b.m.ntensors : 1), sizeof *saved);
    if (!r1 || !r2 || !saved) die("out of memory");
    for (int t = 0; t < b.m.ntensors; t++) {
        size_t bytes = (size_t)b.m.tensors[t].t.numel * sizeof(float);
        if (!(saved[t] = malloc(bytes))) die("out of memory");
        memcpy(saved[t], b.m.tensors[t].t.data, bytes);
    }
    collect(&b, r1);
    for (int t = 0; t < b.m.ntensors; t++)
        memcpy(b.m.tensors[t].t.data, saved[t], (size_t)b.m.tensors[t].t.numel * sizeof(float));
    collect(&b, r2);
    printf("two identical runs: %s\n",
           memcmp(r1, r2, (size_t)nr * sizeof(float)) == 0 ? "bit-identical" : "DIFFER");
    for (int t = 0; t < b.m.ntensors; t++)
        memcpy(b.m.tensors[t].t.data, saved[t], (size_t)b.m.tensors[t].t.numel * sizeof(float));
    ns_engine_set_fused(&b.e, 1);
    collect(&b, r2);
    ns_engine_set_fused(&b.e, 0);
    printf("fused mode against the default: %s\n",
           memcmp(r1, r2, (size_t)nr * sizeof(float)) == 0 ? "bit-identical" : "DIFFER");
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(r1, sizeof(float), (size_t)nr, f) != (size_t)nr || fclose(f) != 0)
            die("cannot write the dump file");
        printf("results written to %s (%lld floats)\n", dump, (long long)nr);
    }
    if (compare) {
        FILE *f = fopen(compare, "rb");
        if (!f || fread(r2, sizeof(float), (size_t)nr, f) != (size_t)nr) die("cannot read the compare file");
        fclose(f);
        const char *worst;
        double rel[3];
        max_rel_diff(&b, r2, r1, rel, &worst);
        printf("against %s, largest difference relative to each tensor's largest value:\n"
               "  eval logits %.2g, train logits %.2g, gradients %.2g (%s)\n",
               compare, rel[0], rel[1], rel[2], worst);
    }
    for (int t = 0; t < b.m.ntensors; t++) free(saved[t]);
    free(saved);
    free(r1);
    free(r2);

    // GFLOP/s counts the direct convolution's multiply-adds (Winograd does
    // fewer): a rate of useful work, comparable across builds and with torch
    double *t = malloc((size_t)iters * sizeof *t);
    if (!t) die("out of memory");
    for (int fused = 1; fused >= 0; fused--) {
        ns_engine_set_fused(&b.e, fused);
        for (int i = 0; i < warmup; i++) infer(&b);
        for (int i = 0; i < iters; i++) {
            double t0 = ns_now();
            infer(&b);
            t[i] = ns_now() - t0;
        }
        double ti = median(t, iters);
        for (int i = 0; i < warmup; i++) train_step(&b);
        for (int i = 0; i < iters; i++) {
            double t0 = ns_now();
            train_step(&b);
            t[i] = ns_now() - t0;
        }
        double tt = median(t, iters);
        const char *mode = fused ? "fused mode" : "default mode";
        printf("%-13s inference: %7.0f images/s (%7.1f ms/batch) %6.1f GFLOP/s\n", mode, N / ti,
               ti * 1e3, 2 * macs * N / ti / 1e9);
        printf("%-13s training:  %7.0f images/s (%7.1f ms/batch) %6.1f GFLOP/s\n", mode, N / tt,
               tt * 1e3, 3 * 2 * macs * N / tt / 1e9);
    }
    free(t);
    if (prof) {
        for (int fused = 1; fused >= 0; fused--) {
            ns_engine_set_fused(&b.e, fused);
            profile(&b, iters);
        }
        printf("  conv2d includes its fused epilogue (eval: batch norm, add, relu); batchnorm in\n"
               "  training includes the fused add and relu; (other): the engine's own work\n"
               "  (copying the input, zeroing gradients where no op writes them), the loss\n");
    }

    ns_engine_free(&b.e);
    ns_model_free(&b.m);
    free(b.x);
    free(b.y);
    free(b.dlogits);
    return 0;
}
