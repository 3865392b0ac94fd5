// test_optim.c: lib/nn/optim.h and lib/stream/augment.h.
//
// Optimisers and schedules against PyTorch 1.13: tests/ref/optim.tns (made by
// tests/ref/gen_optim_ref.py; format described there) holds torch's inputs and
// results. Parameters must agree to 1e-6 relative, lrs to 1e-9 relative.
// Checkpoint state: 3 steps, save through a real TNS stream, 2 more steps;
// restore into a fresh optimiser and repeat the 2 steps: bit-identical.
// Augmentation: identity, flip, a naive pad-crop-flip reference in and out of
// place, offset coverage, determinism across seeds and thread counts.
// Run from the repo root.
// sanitize: yes
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream/augment.h"
#include "check.h"
#include "nn/optim.h"
#include "stream/tns.h"

#define REF_PATH "tests/ref/optim.tns"
#define PARAM_TOL 1e-6
#define LR_TOL 1e-9

// ----------------------------------------------------------------------------
// the reference stream, read whole

typedef struct ref {
    char name[NS_NAME_MAX + 1];
    ns_tensor t; // f32, or f64 for the lr records
    // meta of opt.*.lr
    char kind[16];
    double momentum, dampening, nesterov, beta1, beta2, eps, weight_decay;
    int64_t decay[2];
    // meta of sched.*.lr
    char spec[64], warmup[32], spec_ep[64], warmup_ep[32];
    double base_lr, total_steps, spe;
} ref;

static ref *refs;
static int n_refs;

static int read_meta(ref *r, const msgpack_object *meta, ns_err *err) {
    const char *skeys[] = {"kind", "spec", "warmup", "spec_ep", "warmup_ep"};
    char *sdst[] = {r->kind, r->spec, r->warmup, r->spec_ep, r->warmup_ep};
    size_t scap[] = {sizeof r->kind, sizeof r->spec, sizeof r->warmup, sizeof r->spec_ep,
                     sizeof r->warmup_ep};
    for (int i = 0; i < 5; i++)
        if (ns_obj_str(meta, skeys[i], sdst[i], scap[i], err) < 0) return -1;
    const char *dkeys[] = {"momentum", "dampening", "nesterov", "beta1", "beta2", "eps",
                           "weight_decay", "base_lr", "total_steps", "spe"};
    double *ddst[] = {&r->momentum, &r->dampening, &r->nesterov, &r->beta1, &r->beta2, &r->eps,
                      &r->weight_decay, &r->base_lr, &r->total_steps, &r->spe};
    for (int i = 0; i < 10; i++)
        if (ns_obj_f64(meta, dkeys[i], ddst[i], err) < 0) return -1;
    size_t n = 0;
    if (ns_obj_i64s(meta, "decay", r->decay, 2, &n, err) < 0) return -1;
    return 0;
}

static int load_refs(ns_err *err) {
    ns_reader *rd = ns_reader_open(REF_PATH, err);
    if (!rd) return -1;
    ns_record rec;
    int got, cap = 0;
    while ((got = ns_reader_next(rd, &rec, err)) == 1) {
        if (n_refs == cap) {
            cap = cap ? 2 * cap : 64;
            refs = realloc(refs, (size_t)cap * sizeof *refs);
        }
        ref *r = &refs[n_refs];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", rec.name);
        int rc = rec.dtype == NS_F64 ? ns_record_tensor(&rec, &r->t, err)
                                     : ns_record_tensor_f32(&rec, &r->t, err);
        if (rc < 0 || (rec.meta && read_meta(r, rec.meta, err) < 0)) {
            got = -1;
            break;
        }
        n_refs++;
    }
    ns_reader_close(rd);
    return got;
}

static ref *find(const char *fmt, const char *a, int k) {
    char name[NS_NAME_MAX + 1];
    snprintf(name, sizeof name, fmt, a, k);
    for (int i = 0; i < n_refs; i++)
        if (strcmp(refs[i].name, name) == 0) return &refs[i];
    return NULL;
}

static float *fdata(ref *r) { return r->t.data; }
static double *ddata(ref *r) { return r->t.data; }

// ----------------------------------------------------------------------------
// optimisers against torch

#define NP 2

typedef struct run {
    ref *lr, *init[NP], *grad[NP], *after[NP];
    int64_t numel[NP];
    float *value[NP], *grad_buf[NP]; // owned
    ns_param params[NP];
    ns_optim_config cfg;
} run;

static int run_setup(run *u, const char *cname, ns_err *err) {
    memset(u, 0, sizeof *u);
    u->lr = find("opt.%s.lr", cname, 0);
    if (!u->lr) return ns_errf(err, "no opt.%s.lr", cname);
    ns_optim_kind kind;
    if (ns_optim_kind_parse(u->lr->kind, &kind, err) < 0) return -1;
    ns_optim_config_default(&u->cfg, kind);
    u->cfg.momentum = u->lr->momentum;
    u->cfg.dampening = u->lr->dampening;
    u->cfg.nesterov = u->lr->nesterov != 0;
    u->cfg.beta1 = u->lr->beta1;
    u->cfg.beta2 = u->lr->beta2;
    u->cfg.eps = u->lr->eps;
    u->cfg.weight_decay = u->lr->weight_decay;
    static const char *pnames[NP] = {"layer.weight", "layer.bias"};
    for (int k = 0; k < NP; k++) {
        u->init[k] = find("opt.%s.p%d.init", cname, k);
        u->grad[k] = find("opt.%s.p%d.grad", cname, k);
        u->after[k] = find("opt.%s.p%d.after", cname, k);
        if (!u->init[k] || !u->grad[k] || !u->after[k]) return ns_errf(err, "case %s incomplete", cname);
        u->numel[k] = u->init[k]->t.numel;
        u->value[k] = malloc((size_t)u->numel[k] * sizeof(float));
        u->grad_buf[k] = malloc((size_t)u->numel[k] * sizeof(float));
        memcpy(u->value[k], u->init[k]->t.data, (size_t)u->numel[k] * sizeof(float));
        u->params[k] = (ns_param){.name = pnames[k], .value = u->value[k], .grad = u->grad_buf[k],
                                  .numel = u->numel[k], .ndim = u->init[k]->t.ndim,
                                  .shape = u->init[k]->t.shape, .decay = (int)u->lr->decay[k]};
    }
    return 0;
}

static void run_free(run *u) {
    for (int k = 0; k < NP; k++) {
        free(u->value[k]);
        free(u->grad_buf[k]);
    }
}

static void set_grads(run *u, int t) {
    for (int k = 0; k < NP; k++)
        memcpy(u->grad_buf[k], fdata(u->grad[k]) + t * u->numel[k], (size_t)u->numel[k] * sizeof(float));
}

static void test_optimiser_case(const char *cname, double *worst_all) {
    ns_err err;
    run u;
    if (run_setup(&u, cname, &err) < 0) {
        CHECK(0, "%s: %s", cname, err.msg);
        return;
    }
    ns_optim *o = ns_optim_create(&u.cfg, u.params, NP, &err);
    CHECK(o != NULL, "%s: optimiser created%s%s", cname, o ? "" : ": ", o ? "" : err.msg);
    if (!o) return;
    double worst = 0, worst_abs = 0;
    int exact = 1;
    int T = (int)u.lr->t.numel;
    for (int t = 0; t < T; t++) {
        set_grads(&u, t);
        ns_optim_step(o, ddata(u.lr)[t]);
        for (int k = 0; k < NP; k++) {
            const float *want = fdata(u.after[k]) + t * u.numel[k];
            double mabs, rel = check_maxdiff(u.value[k], want, (long)u.numel[k], &mabs);
            if (rel > worst) worst = rel;
            if (mabs > worst_abs) worst_abs = mabs;
            if (memcmp(u.value[k], want, (size_t)u.numel[k] * sizeof(float))) exact = 0;
        }
    }
    if (worst > *worst_all) *worst_all = worst;
    CHECK(worst <= PARAM_TOL && ns_optim_steps(o) == T,
          "%s vs torch over %d steps: maxdiff rel %.3g abs %.3g%s", cname, T, worst, worst_abs,
          exact ? " (bit-identical)" : "");
    ns_optim_free(o);
    run_free(&u);
}

// Saves the state through a real TNS stream (as a checkpoint would) into a
// temporary file; returns its path in path (caller unlinks).
static int save_state(const ns_optim *o, char *path, ns_err *err) {
    strcpy(path, "/tmp/ns_test_optim_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return ns_errf(err, "mkstemp");
    FILE *f = fdopen(fd, "wb");
    ns_writer w;
    ns_writer_init(&w, f);
    int rc = 0;
    for (int i = 0; i < ns_optim_state_count(o) && rc == 0; i++) {
        const char *name;
        ns_tensor view;
        rc = ns_optim_state_tensor(o, i, &name, &view, err);
        if (rc == 0) rc = ns_write_tensor(&w, name, &view, NULL, err);
    }
    // A record the optimiser must leave to the caller.
    ns_tensor other;
    int64_t one = 1;
    ns_tensor_alloc(&other, NS_F32, 1, &one, err);
    if (rc == 0) rc = ns_write_tensor(&w, "layer.weight", &other, NULL, err);
    ns_tensor_free(&other);
    ns_writer_free(&w);
    if (fclose(f) != 0 && rc == 0) rc = ns_errf(err, "fclose");
    return rc;
}

static int restore_state(ns_optim *o, const char *path, int *n_loaded, int *n_other, ns_err *err) {
    *n_loaded = *n_other = 0;
    ns_reader *rd = ns_reader_open(path, err);
    if (!rd) return -1;
    ns_record rec;
    int got;
    while ((got = ns_reader_next(rd, &rec, err)) == 1) {
        ns_tensor t;
        if (ns_record_tensor(&rec, &t, err) < 0) {
            got = -1;
            break;
        }
        int rc = ns_optim_load(o, rec.name, &t, err);
        ns_tensor_free(&t);
        if (rc < 0) {
            got = -1;
            break;
        }
        if (rc == 1) ++*n_loaded;
        else ++*n_other;
    }
    ns_reader_close(rd);
    if (got < 0) return -1;
    return ns_optim_load_finish(o, err);
}

static void test_resume(const char *cname) {
    ns_err err;
    run u;
    if (run_setup(&u, cname, &err) < 0) {
        CHECK(0, "%s: %s", cname, err.msg);
        return;
    }
    ns_optim *o = ns_optim_create(&u.cfg, u.params, NP, &err);
    for (int t = 0; t < 3; t++) {
        set_grads(&u, t);
        ns_optim_step(o, ddata(u.lr)[t]);
    }
    float *saved[NP], *first[NP];
    for (int k = 0; k < NP; k++) {
        saved[k] = malloc((size_t)u.numel[k] * sizeof(float));
        first[k] = malloc((size_t)u.numel[k] * sizeof(float));
        memcpy(saved[k], u.value[k], (size_t)u.numel[k] * sizeof(float));
    }
    char path[64];
    int rc = save_state(o, path, &err);
    CHECK(rc == 0, "%s: state saved (%d tensors)%s%s", cname, ns_optim_state_count(o), rc ? ": " : "",
          rc ? err.msg : "");
    for (int t = 3; t < 5; t++) {
        set_grads(&u, t);
        ns_optim_step(o, ddata(u.lr)[t]);
    }
    for (int k = 0; k < NP; k++) memcpy(first[k], u.value[k], (size_t)u.numel[k] * sizeof(float));
    ns_optim_free(o);

    // Fresh optimiser over the parameters as they were at the save.
    for (int k = 0; k < NP; k++) memcpy(u.value[k], saved[k], (size_t)u.numel[k] * sizeof(float));
    o = ns_optim_create(&u.cfg, u.params, NP, &err);
    int n_loaded = 0, n_other = 0;
    rc = restore_state(o, path, &n_loaded, &n_other, &err);
    CHECK(rc == 0 && n_loaded == ns_optim_state_count(o) && n_other == 1 && ns_optim_steps(o) == 3,
          "%s: state restored (%d loaded, %d left to the caller, step %lld)%s%s", cname, n_loaded,
          n_other, (long long)ns_optim_steps(o), rc ? ": " : "", rc ? err.msg : "");
    for (int t = 3; t < 5; t++) {
        set_grads(&u, t);
        ns_optim_step(o, ddata(u.lr)[t]);
    }
    int same = 1;
    for (int k = 0; k < NP; k++)
        same &= memcmp(first[k], u.value[k], (size_t)u.numel[k] * sizeof(float)) == 0;
    CHECK(same, "%s: 3 steps, save, 2 steps == restore, 2 steps (bit-identical)", cname);

    // Loading twice without finish is refused; finish with nothing loaded names what is missing.
    ns_tensor view;
    const char *name;
    ns_optim_state_tensor(o, 0, &name, &view, &err);
    ns_tensor copy = view;
    CHECK(ns_optim_load(o, name, &copy, &err) == 1 && ns_optim_load(o, name, &copy, &err) == -1 &&
              strstr(err.msg, "twice"), "%s: a repeated state tensor is refused (%s)", cname, err.msg);
    ns_optim_load_finish(o, &err); // ends that restore, whatever it lacked
    CHECK(ns_optim_load_finish(o, &err) == -1 && strstr(err.msg, "optim."),
          "%s: finishing a restore with nothing loaded names what is missing (%s)", cname, err.msg);
    unlink(path);
    for (int k = 0; k < NP; k++) {
        free(saved[k]);
        free(first[k]);
    }
    ns_optim_free(o);
    run_free(&u);
}

static void test_state_errors(void) {
    ns_err err;
    run u;
    if (run_setup(&u, "adam", &err) < 0) {
        CHECK(0, "adam: %s", err.msg);
        return;
    }
    ns_optim_config sgd;
    ns_optim_config_default(&sgd, NS_OPTIM_SGD);
    sgd.momentum = 0.9;
    ns_optim *o = ns_optim_create(&sgd, u.params, NP, &err);
    float buf[12] = {0};
    ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {3, 4}, .numel = 12, .data = buf};
    CHECK(ns_optim_load(o, "optim.layer.weight.exp_avg", &t, &err) == -1 && strstr(err.msg, "exp_avg") &&
              strstr(err.msg, "sgd"), "Adam state given to SGD is refused (%s)", err.msg);
    CHECK(ns_optim_load(o, "optim.layer.weight.momentum_buffer", &t, &err) == -1 &&
              strstr(err.msg, "3x4") && strstr(err.msg, "9x19"), "a wrong shape is refused (%s)", err.msg);
    CHECK(ns_optim_load(o, "model.layer.weight", &t, &err) == 0, "a non-optimiser record is left alone");
    ns_optim_free(o);

    ns_param dup[2] = {u.params[0], u.params[0]};
    CHECK(!ns_optim_create(&u.cfg, dup, 2, &err) && strstr(err.msg, "layer.weight"),
          "duplicate parameter names are refused (%s)", err.msg);
    ns_optim_config bad = sgd;
    bad.momentum = 0, bad.nesterov = 1;
    CHECK(!ns_optim_create(&bad, u.params, NP, &err) && strstr(err.msg, "nesterov"),
          "nesterov without momentum is refused (%s)", err.msg);
    bad = u.cfg;
    bad.beta2 = 1.0;
    CHECK(!ns_optim_create(&bad, u.params, NP, &err) && strstr(err.msg, "beta2") && strstr(err.msg, "1"),
          "beta2 = 1 is refused (%s)", err.msg);
    ns_optim_kind k;
    CHECK(ns_optim_kind_parse("adagrad", &k, &err) == -1 && strstr(err.msg, "adagrad"),
          "unknown optimiser named (%s)", err.msg);
    ns_optim_config plain;
    ns_optim_config_default(&plain, NS_OPTIM_SGD);
    o = ns_optim_create(&plain, u.params, NP, &err);
    CHECK(o && ns_optim_state_count(o) == 1, "plain SGD has only optim.step as state");
    ns_optim_free(o);
    run_free(&u);
}

// ----------------------------------------------------------------------------
// schedules against torch

static double lr_maxdiff(const ns_lr_schedule *s, int64_t spe, const double *want, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double got = ns_lr_at(s, i, spe);
        double d = fabs(got - want[i]);
        double rel = want[i] != 0 ? d / fabs(want[i]) : d;
        if (rel > worst) worst = rel;
    }
    return worst;
}

static int make_schedule(ns_lr_schedule *s, const char *spec, const char *warmup, const ref *r,
                         int64_t spe, ns_err *err) {
    if (ns_lr_parse(s, spec, r->base_lr, err) < 0) return -1;
    if (warmup[0] && ns_lr_parse_warmup(s, warmup, err) < 0) return -1;
    s->total_steps = (int64_t)r->total_steps;
    return ns_lr_check(s, spe, err);
}

static void test_schedules(void) {
    int cases = 0;
    for (int i = 0; i < n_refs; i++) {
        ref *r = &refs[i];
        if (strncmp(r->name, "sched.", 6) != 0) continue;
        cases++;
        ns_err err;
        ns_lr_schedule s;
        int rc = make_schedule(&s, r->spec, r->warmup, r, 1, &err);
        double d = rc ? 1 : lr_maxdiff(&s, 1, ddata(r), r->t.numel);
        CHECK(rc == 0 && d <= LR_TOL, "%s ('%s', warm-up '%s') vs torch over %lld steps: maxdiff rel %.3g%s%s",
              r->name, r->spec, r->warmup, (long long)r->t.numel, d, rc ? ": " : "", rc ? err.msg : "");
        int64_t spe = (int64_t)r->spe;
        rc = make_schedule(&s, r->spec_ep, r->warmup_ep, r, spe, &err);
        d = rc ? 1 : lr_maxdiff(&s, spe, ddata(r), r->t.numel);
        CHECK(rc == 0 && d <= LR_TOL, "%s in epochs of %lld steps ('%s', warm-up '%s'): maxdiff rel %.3g%s%s",
              r->name, (long long)spe, r->spec_ep, r->warmup_ep, d, rc ? ": " : "", rc ? err.msg : "");
    }
    CHECK(cases == 6, "six schedule cases in the reference (%d)", cases);
}

static void test_schedule_parsing(void) {
    ns_err err;
    ns_lr_schedule s;
    struct { const char *spec, *needle; } bad[] = {
        {"linear", "linear"},           {"step:x", "(x)"},         {"step:0", "(0)"},
        {"step", "step:30"},            {"step:30:0", "(0)"},      {"step:30:0.1:5", "too many"},
        {"multistep:60,40", "40"},      {"multistep:", "()"},      {"multistep:60,,120", "()"},
        {"multistep:60,120:-1", "(-1)"}, {"cosine:-1", "(-1)"},    {"cosine:abc", "(abc)"},
        {"constant:3", "too many"},     {"step:30:nan", "(nan)"},  {"", "()"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ns_lr_parse(&s, bad[i].spec, 0.1, &err);
        CHECK(rc == -1 && strstr(err.msg, bad[i].needle), "schedule '%s' refused: %s", bad[i].spec,
              rc ? err.msg : "(accepted)");
    }
    CHECK(ns_lr_parse(&s, "cosine", 0, &err) == -1 && strstr(err.msg, "(0)"), "lr 0 refused (%s)", err.msg);
    struct { const char *spec, *needle; } badw[] = {
        {"5xx", "(xx)"}, {"-1", "(-1)"}, {"5:0", "(0)"}, {"5:1.5", "(1.5)"}, {"st", "(st)"}, {"5:0.1:2", "N"},
    };
    for (size_t i = 0; i < sizeof badw / sizeof badw[0]; i++) {
        int rc = ns_lr_parse_warmup(&s, badw[i].spec, &err);
        CHECK(rc == -1 && strstr(err.msg, badw[i].needle), "warm-up '%s' refused: %s", badw[i].spec,
              rc ? err.msg : "(accepted)");
    }
    ns_lr_parse(&s, "cosine", 0.1, &err);
    CHECK(ns_lr_parse_warmup(&s, "5", &err) == 0 && s.warmup == 5 && s.warmup_epochs &&
              s.warmup_start == NS_LR_WARMUP_START_DEFAULT, "warm-up '5' is 5 epochs from 1/3");
    CHECK(ns_lr_parse_warmup(&s, "500st:0.01", &err) == 0 && s.warmup == 500 && !s.warmup_epochs &&
              s.warmup_start == 0.01, "warm-up '500st:0.01' is 500 steps from 0.01");
    s.total_steps = 500;
    CHECK(ns_lr_check(&s, 100, &err) == -1 && strstr(err.msg, "500"),
          "cosine shorter than its warm-up refused (%s)", err.msg);
    s.total_steps = 1000;
    CHECK(ns_lr_check(&s, 100, &err) == 0 && ns_lr_at(&s, 0, 100) == 0.1 * 0.01 &&
              ns_lr_at(&s, 500, 100) == 0.1 && ns_lr_at(&s, 1000, 100) == 0 && ns_lr_at(&s, 5000, 100) == 0,
          "warm-up ends at the peak, cosine at its minimum, and stays there");
    const char *canon[] = {"constant", "step:30:0.1", "multistep:60,120,160:0.2", "cosine:1e-05",
                           "cosine:0", "step:7:0.30000000000000004"};
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        char buf[128];
        int rc = ns_lr_parse(&s, canon[i], 0.1, &err);
        ns_lr_format(&s, buf, sizeof buf);
        CHECK(rc == 0 && strcmp(buf, canon[i]) == 0, "'%s' formats back as '%s'", canon[i], buf);
    }
    CHECK(ns_lr_parse(&s, "step:30", 0.1, &err) == 0 && s.gamma == 0.1, "gamma defaults to 0.1 (torch)");
}

// ----------------------------------------------------------------------------
// augmentation

static void fill_random(float *x, int64_t n, uint64_t seed) {
    ns_rng r;
    ns_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)ns_rng_uniform(&r) + 0.5f; // never 0
}

// torchvision's steps one by one: pad with zeros, crop at the draw, mirror.
static void naive_augment(const ns_augment *a, float *out, const float *inp, int64_t N) {
    const int64_t C = a->C, H = a->H, W = a->W, P = a->pad, PH = H + 2 * P, PW = W + 2 * P;
    float *padded = calloc((size_t)(PH * PW), sizeof(float));
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *in = inp + (n * C + c) * H * W;
            float *o = out + (n * C + c) * H * W;
            memset(padded, 0, (size_t)(PH * PW) * sizeof(float));
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) padded[(y + P) * PW + x + P] = in[y * W + x];
            const ns_augment_draw *d = &a->draws[n];
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    int64_t sx = d->flip ? W - 1 - x : x;
                    o[y * W + x] = padded[(y + d->top) * PW + sx + d->left];
                }
        }
    free(padded);
}

static void test_augment_identity_and_flip(void) {
    enum { N = 3, C = 2, H = 5, W = 6, NUM = N * C * H * W };
    float inp[NUM], out[NUM], tmp[NUM];
    fill_random(inp, NUM, 1);
    ns_err err;
    ns_rng rng;
    ns_rng_seed(&rng, 7);
    ns_augment a;
    ns_augment_init(&a, N, C, H, W, 0, 0.0, &err);
    ns_augment_batch(&a, out, inp, N, &rng, &err);
    memcpy(tmp, inp, sizeof tmp);
    ns_augment_batch(&a, tmp, tmp, N, &rng, &err);
    CHECK(!memcmp(out, inp, sizeof out) && !memcmp(tmp, inp, sizeof tmp),
          "padding 0, no flip: the identity (in and out of place)");
    ns_augment_free(&a);

    ns_augment_init(&a, N, C, H, W, 0, 1.0, &err);
    ns_augment_batch(&a, out, inp, N, &rng, &err);
    int ok = 1;
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) ok &= out[(p * H + y) * W + x] == inp[(p * H + y) * W + W - 1 - x];
    memcpy(tmp, inp, sizeof tmp);
    ns_augment_batch(&a, tmp, tmp, N, &rng, &err);
    CHECK(ok && !memcmp(tmp, out, sizeof tmp), "flip forced on mirrors every row (in and out of place)");
    CHECK(ns_augment_batch(&a, out, inp, N + 1, &rng, &err) == -1 && strstr(err.msg, "4"),
          "a batch over the size given at init is refused (%s)", err.msg);
    ns_augment_free(&a);
    CHECK(ns_augment_init(&a, N, C, H, W, -1, 0.5, &err) == -1 && strstr(err.msg, "(-1)"),
          "negative padding refused (%s)", err.msg);
    CHECK(ns_augment_init(&a, N, C, H, W, 2, 1.5, &err) == -1 && strstr(err.msg, "(1.5)"),
          "flip probability over 1 refused (%s)", err.msg);
}

static void test_augment_reference(int pad, int64_t H, int64_t W) {
    enum { N = 40, C = 3 };
    const int64_t num = N * C * H * W;
    float *inp = malloc((size_t)num * sizeof(float)), *out = malloc((size_t)num * sizeof(float));
    float *want = malloc((size_t)num * sizeof(float)), *inplace = malloc((size_t)num * sizeof(float));
    fill_random(inp, num, 2);
    ns_err err;
    ns_rng rng;
    ns_rng_seed(&rng, 11);
    ns_augment a;
    ns_augment_init(&a, N, C, H, W, pad, 0.5, &err);
    ns_augment_batch(&a, out, inp, N, &rng, &err);
    naive_augment(&a, want, inp, N);
    memcpy(inplace, inp, (size_t)num * sizeof(float));
    ns_augment_apply(&a, inplace, inplace, N);
    // Padded area: exactly the pixels whose source falls outside the image are 0.
    int64_t zeros = 0, expect_zeros = 0;
    for (int64_t i = 0; i < num; i++) zeros += out[i] == 0.0f;
    for (int n = 0; n < N; n++) {
        int64_t oy = a.draws[n].top - pad, ox = a.draws[n].left - pad;
        int64_t rows = H - (oy < 0 ? -oy : oy), cols = W - (ox < 0 ? -ox : ox);
        expect_zeros += C * (H * W - (rows > 0 && cols > 0 ? rows * cols : 0));
    }
    CHECK(!memcmp(out, want, (size_t)num * sizeof(float)) && !memcmp(inplace, want, (size_t)num * sizeof(float)),
          "pad %d on %lldx%lld: matches pad-crop-flip done naively (in and out of place)", pad,
          (long long)H, (long long)W);
    CHECK(zeros == expect_zeros, "pad %d on %lldx%lld: padded area is zero (%lld zeros, %lld expected)", pad,
          (long long)H, (long long)W, (long long)zeros, (long long)expect_zeros);
    ns_augment_free(&a);
    free(inp), free(out), free(want), free(inplace);
}

static void test_augment_offsets(void) {
    enum { P = 3, SPAN = 2 * P + 1, BATCH = 500, ROUNDS = 140 };
    ns_err err;
    ns_rng rng;
    ns_rng_seed(&rng, 3);
    ns_augment a;
    ns_augment_init(&a, BATCH, 1, 4, 4, P, 0.5, &err);
    int64_t top[SPAN] = {0}, left[SPAN] = {0}, flips = 0, bad = 0;
    for (int r = 0; r < ROUNDS; r++) {
        ns_augment_draw_batch(&a, BATCH, &rng, &err);
        for (int i = 0; i < BATCH; i++) {
            const ns_augment_draw *d = &a.draws[i];
            if (d->top < 0 || d->top >= SPAN || d->left < 0 || d->left >= SPAN) {
                bad++;
                continue;
            }
            top[d->top]++, left[d->left]++, flips += d->flip;
        }
    }
    const double expect = (double)BATCH * ROUNDS / SPAN; // 10000; sd about 93
    double worst = 0;
    for (int k = 0; k < SPAN; k++) {
        worst = fmax(worst, fabs(top[k] - expect) / expect);
        worst = fmax(worst, fabs(left[k] - expect) / expect);
    }
    CHECK(bad == 0 && worst < 0.05, "crop offsets cover [0, %d] evenly over %d draws (worst bucket %.1f%% off)",
          2 * P, BATCH * ROUNDS, 100 * worst);
    double frac = (double)flips / (BATCH * ROUNDS);
    CHECK(fabs(frac - 0.5) < 0.01, "flips with p = 0.5 (%.4f)", frac);
    ns_augment_free(&a);
}

static void test_augment_determinism(void) {
    enum { N = 64, C = 3, H = 32, W = 32, NUM = N * C * H * W }; // large enough for the threads
    float *inp = malloc(NUM * sizeof(float)), *o1 = malloc(NUM * sizeof(float));
    float *o2 = malloc(NUM * sizeof(float)), *o3 = malloc(NUM * sizeof(float));
    fill_random(inp, NUM, 5);
    ns_err err;
    ns_augment a;
    ns_augment_init(&a, N, C, H, W, 4, 0.5, &err);
    int saved = omp_get_max_threads();
    ns_rng rng;
    omp_set_num_threads(1);
    ns_rng_seed(&rng, 42);
    ns_augment_batch(&a, o1, inp, N, &rng, &err);
    omp_set_num_threads(4);
    ns_rng_seed(&rng, 42);
    ns_augment_batch(&a, o2, inp, N, &rng, &err);
    ns_rng_seed(&rng, 43);
    ns_augment_batch(&a, o3, inp, N, &rng, &err);
    omp_set_num_threads(saved);
    CHECK(!memcmp(o1, o2, NUM * sizeof(float)), "same seed, same batch (1 thread vs 4)");
    CHECK(memcmp(o1, o3, NUM * sizeof(float)) != 0, "another seed, another batch");
    ns_augment_free(&a);
    free(inp), free(o1), free(o2), free(o3);
}

int main(void) {
    ns_err err;
    if (load_refs(&err) < 0) {
        CHECK(0, "reading %s: %s", REF_PATH, err.msg);
        return check_done();
    }
    const char *cases[] = {"sgd", "sgd_momentum", "sgd_momentum_damp_wd", "sgd_nesterov_wd",
                           "adam", "adam_wd", "adamw"};
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_optimiser_case(cases[i], &worst);
    printf("# optimisers: worst relative difference from torch %.3g\n", worst);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_resume(cases[i]);
    test_state_errors();
    test_schedules();
    test_schedule_parsing();
    test_augment_identity_and_flip();
    test_augment_reference(4, 9, 7);
    test_augment_reference(10, 6, 5); // padding beyond the image: whole rows of zeros
    test_augment_reference(1, 1, 1);
    test_augment_offsets();
    test_augment_determinism();
    for (int i = 0; i < n_refs; i++) ns_tensor_free(&refs[i].t);
    free(refs);
    return check_done();
}
