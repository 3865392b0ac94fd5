// optim.c: SGD, Adam and AdamW with PyTorch 1.13's arithmetic, their state for
// checkpoints, and the learning-rate schedules with their spec parser.
// The contract and the formulas are in optim.h.
//
// Matching torch: its single-tensor optimisers run one float32 tensor op at a
// time (d_p.add(param, alpha=wd), buf.mul_(m).add_(d_p), addcdiv_ ...), with
// Python doubles as scalars that the kernels round to float. Each loop below
// does the same operations on one element in the same order, fusing the
// multiply-adds that torch's vector kernels fuse (see "the updates"), so the
// results are bit-identical to torch's on x86-64.
//
// Memory (llm.c style): one aligned block holds every state buffer, slot-major:
// slot 0 (momentum_buffer or exp_avg) for all parameters, then slot 1
// (exp_avg_sq). ns_optim_step only walks pointers into it.
#include "nn/optim.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/tns.h" // NS_NAME_MAX, the record-name limit state names must fit

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

// Parameters of fewer chunks (CHUNK floats each, below) than this are updated
// by one thread (no fork/join cost).
#define PAR_MIN_CHUNKS 4

// ----------------------------------------------------------------------------
// tables

typedef struct kind_info {
    const char *name;
    int slots;                 // state buffers per parameter (SGD: 1 with momentum)
    const char *slot_name[2];  // torch's state keys
} kind_info;

static const kind_info kinds[NS_OPTIM_KIND_COUNT] = {
    [NS_OPTIM_SGD] = {"sgd", 1, {"momentum_buffer", NULL}},
    [NS_OPTIM_ADAM] = {"adam", 2, {"exp_avg", "exp_avg_sq"}},
    [NS_OPTIM_ADAMW] = {"adamw", 2, {"exp_avg", "exp_avg_sq"}},
};
_Static_assert(NS_OPTIM_KIND_COUNT == 3, "kinds[] must cover ns_optim_kind");

static const char *const lr_kind_names[NS_LR_KIND_COUNT] = {
    [NS_LR_CONSTANT] = "constant",
    [NS_LR_STEP] = "step",
    [NS_LR_MULTISTEP] = "multistep",
    [NS_LR_COSINE] = "cosine",
};
_Static_assert(NS_LR_KIND_COUNT == 4, "lr_kind_names[] must cover ns_lr_kind");

#define STEP_NAME "optim.step"
#define STATE_PREFIX "optim."
_Static_assert(NS_OPTIM_PARAM_NAME_MAX + sizeof STATE_PREFIX - 1 + sizeof ".momentum_buffer" - 1 <= NS_NAME_MAX,
               "state names must fit a record name");

// ----------------------------------------------------------------------------
// the optimiser object

typedef struct pslot {
    char name[NS_OPTIM_PARAM_NAME_MAX + 1];
    float *value;        // (numel)
    const float *grad;   // (numel)
    int64_t numel;
    int ndim;            // >= 1 (a 0-dim parameter is stored as shape (numel))
    int64_t shape[NS_MAX_NDIM];
    int decay;
    float *buf[2];       // (numel) each, into ns_optim.mem; NULL when unused
} pslot;

typedef struct state_entry {
    char name[NS_NAME_MAX + 1]; // "optim.<param>.<slot name>"
    int param;
    int slot;
} state_entry;

struct ns_optim {
    ns_optim_config cfg;
    int slots;             // state buffers per parameter in use (0, 1 or 2)
    int n_params;
    pslot *params;         // (n_params)
    int n_state;           // n_params * slots; "optim.step" is entry n_state
    state_entry *state;    // (n_state)
    unsigned char *loaded; // (n_state + 1) flags for ns_optim_load
    int64_t step;          // updates taken
    float *mem;            // (slots * total numel), zeroed
};

void ns_optim_config_default(ns_optim_config *cfg, ns_optim_kind kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = kind == NS_OPTIM_ADAMW ? 1e-2 : 0.0;
}

int ns_optim_kind_parse(const char *s, ns_optim_kind *kind, ns_err *err) {
    for (int k = 0; k < NS_OPTIM_KIND_COUNT; k++)
        if (strcmp(s, kinds[k].name) == 0) {
            *kind = (ns_optim_kind)k;
            return 0;
        }
    return ns_errf(err, "unknown optimiser (%s): expected sgd, adam or adamw", s);
}

const char *ns_optim_kind_name(ns_optim_kind kind) {
    return (unsigned)kind < NS_OPTIM_KIND_COUNT ? kinds[kind].name : "?";
}

static int config_check(const ns_optim_config *c, ns_err *err) {
    if ((unsigned)c->kind >= NS_OPTIM_KIND_COUNT)
        return ns_errf(err, "unknown optimiser kind (%d)", (int)c->kind);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return ns_errf(err, "weight decay must be finite and >= 0 (%g)", c->weight_decay);
    if (c->kind == NS_OPTIM_SGD) {
        if (!(c->momentum >= 0) || !isfinite(c->momentum))
            return ns_errf(err, "momentum must be finite and >= 0 (%g)", c->momentum);
        if (!(c->dampening >= 0) || !isfinite(c->dampening))
            return ns_errf(err, "dampening must be finite and >= 0 (%g)", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return ns_errf(err, "nesterov momentum needs momentum > 0 (%g) and dampening 0 (%g)",
                           c->momentum, c->dampening);
        return 0;
    }
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return ns_errf(err, "beta1 must be in [0, 1) (%g)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return ns_errf(err, "beta2 must be in [0, 1) (%g)", c->beta2);
    if (!(c->eps >= 0) || !isfinite(c->eps)) return ns_errf(err, "eps must be finite and >= 0 (%g)", c->eps);
    return 0;
}

// Checks params[i] and copies it into *p (shape normalised to ndim >= 1).
static int param_copy(pslot *p, const ns_param *src, int i, ns_err *err) {
    if (!src->name || !src->name[0]) return ns_errf(err, "parameter %d has no name", i);
    size_t len = strlen(src->name);
    if (len > NS_OPTIM_PARAM_NAME_MAX)
        return ns_errf(err, "parameter name longer than %d bytes (%.40s...)",
                       NS_OPTIM_PARAM_NAME_MAX, src->name);
    memcpy(p->name, src->name, len + 1);
    if (src->numel < 0) return ns_errf(err, "parameter %s: negative size (%lld)", p->name, (long long)src->numel);
    if (src->numel > 0 && (!src->value || !src->grad))
        return ns_errf(err, "parameter %s: value or gradient pointer is NULL", p->name);
    if (src->ndim < 0 || src->ndim > NS_MAX_NDIM)
        return ns_errf(err, "parameter %s: bad number of dimensions (%d)", p->name, src->ndim);
    p->value = src->value;
    p->grad = src->grad;
    p->numel = src->numel;
    p->decay = src->decay != 0;
    if (src->ndim == 0) {
        p->ndim = 1;
        p->shape[0] = src->numel;
        return 0;
    }
    if (!src->shape) return ns_errf(err, "parameter %s: ndim %d but no shape", p->name, src->ndim);
    int64_t numel;
    size_t nbytes;
    if (ns_shape_size(src->ndim, src->shape, NS_F32, &numel, &nbytes, err) < 0)
        return ns_err_prefix(err, "parameter %s", p->name);
    if (numel != src->numel)
        return ns_errf(err, "parameter %s: shape has %lld elements but numel is %lld", p->name,
                       (long long)numel, (long long)src->numel);
    p->ndim = src->ndim;
    memcpy(p->shape, src->shape, (size_t)src->ndim * sizeof *p->shape);
    return 0;
}

ns_optim *ns_optim_create(const ns_optim_config *cfg, const ns_param *params, int n_params,
                          ns_err *err) {
    if (config_check(cfg, err) < 0) return NULL;
    if (n_params < 0 || n_params > (INT_MAX - 1) / 2 || (n_params > 0 && !params)) {
        ns_errf(err, "bad parameter table (%d parameters)", n_params);
        return NULL;
    }
    ns_optim *o = calloc(1, sizeof *o);
    if (!o) goto oom;
    o->cfg = *cfg;
    o->slots = kinds[cfg->kind].slots;
    if (cfg->kind == NS_OPTIM_SGD && cfg->momentum == 0) o->slots = 0;
    o->n_params = n_params;
    o->n_state = n_params * o->slots;
    o->params = calloc((size_t)n_params + 1, sizeof *o->params);
    o->state = calloc((size_t)o->n_state + 1, sizeof *o->state);
    o->loaded = calloc((size_t)o->n_state + 1, 1);
    if (!o->params || !o->state || !o->loaded) goto oom;

    int64_t total = 0;
    for (int i = 0; i < n_params; i++) {
        if (param_copy(&o->params[i], &params[i], i, err) < 0) goto fail;
        for (int j = 0; j < i; j++)
            if (strcmp(o->params[j].name, o->params[i].name) == 0) {
                ns_errf(err, "parameter name used twice (%s)", o->params[i].name);
                goto fail;
            }
        if (o->params[i].numel > (INT64_MAX / 4 - total) / 2) {
            ns_errf(err, "parameters too large for the optimiser state");
            goto fail;
        }
        total += o->params[i].numel;
    }
    if ((uint64_t)total * (uint64_t)o->slots > SIZE_MAX / sizeof(float)) {
        ns_errf(err, "optimiser state too large (%lld floats)", (long long)(total * o->slots));
        goto fail;
    }
    size_t nbytes = (size_t)total * (size_t)o->slots * sizeof(float);
    o->mem = ns_aligned_alloc(nbytes);
    if (!o->mem) goto oom;
    memset(o->mem, 0, nbytes);
    for (int k = 0; k < o->slots; k++) {
        float *at = o->mem + (size_t)k * (size_t)total;
        for (int i = 0; i < n_params; i++) {
            o->params[i].buf[k] = at;
            at += o->params[i].numel;
            state_entry *e = &o->state[k * n_params + i];
            e->param = i;
            e->slot = k;
            snprintf(e->name, sizeof e->name, STATE_PREFIX "%s.%s", o->params[i].name,
                     kinds[cfg->kind].slot_name[k]);
        }
    }
    return o;
oom:
    ns_errf(err, "out of memory for the optimiser");
fail:
    ns_optim_free(o);
    return NULL;
}

void ns_optim_free(ns_optim *o) {
    if (!o) return;
    free(o->mem);
    free(o->params);
    free(o->state);
    free(o->loaded);
    free(o);
}

int64_t ns_optim_steps(const ns_optim *o) { return o->step; }
const ns_optim_config *ns_optim_get_config(const ns_optim *o) { return &o->cfg; }

// ----------------------------------------------------------------------------
// the updates
//
// Where torch's CPU kernels (AVX2/AVX-512 builds, i.e. any x86 of the last
// decade) compute a + alpha*b or a + v*t1*t2 they use a fused multiply-add, so
// we call fmaf there: add_(x, alpha=...) and addcmul_. fmaf is correctly
// rounded everywhere, so every build gives the same bits; on x86-64 the chunk
// kernels get an FMA clone (picked at load time) so fmaf is one instruction
// rather than a libm call. The rest (mul_, sqrt, division, addcdiv_) is plain
// float arithmetic, unfused (-std=c11 turns contraction off).

#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

// Elements per call of a chunk kernel; parallel over chunks.
#define CHUNK 8192

typedef struct sgd_coef {
    float wd, mom, keep, neg_lr; // keep = 1 - dampening
    int has_mom, nesterov, first;
} sgd_coef;

FMA_CLONES
static void sgd_chunk(float *restrict val, float *restrict buf, const float *restrict grad,
                      int64_t n, const sgd_coef *k) {
    for (int64_t i = 0; i < n; i++) {
        float d = grad[i];
        if (k->wd != 0.0f) d = fmaf(k->wd, val[i], d);              // d_p.add(param, alpha=wd)
        if (k->has_mom) {
            float b = k->first ? d : fmaf(k->keep, d, buf[i] * k->mom); // buf.mul_(m).add_(d_p, alpha)
            buf[i] = b;
            d = k->nesterov ? fmaf(k->mom, b, d) : b;                 // d_p.add(buf, alpha=m)
        }
        val[i] = fmaf(k->neg_lr, d, val[i]);                         // param.add_(d_p, alpha=-lr)
    }
}

typedef struct adam_coef {
    float wd, shrink, b1, b2, one_b1, one_b2, neg_step_size, bc2_sqrt, eps;
} adam_coef;

FMA_CLONES
static void adam_chunk(float *restrict val, float *restrict m, float *restrict v,
                       const float *restrict grad, int64_t n, const adam_coef *k) {
    for (int64_t i = 0; i < n; i++) {
        float x = val[i];
        if (k->shrink != 1.0f) x = x * k->shrink;                   // param.mul_(1 - lr*wd)
        float g = grad[i];
        if (k->wd != 0.0f) g = fmaf(k->wd, x, g);                   // grad.add(param, alpha=wd)
        float mi = fmaf(k->one_b1, g, m[i] * k->b1);                // exp_avg.mul_(b1).add_(g, alpha=1-b1)
        float vi = fmaf(k->one_b2 * g, g, v[i] * k->b2);            // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
        float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;             // (sqrt / bc2_sqrt).add_(eps)
        m[i] = mi;
        v[i] = vi;
        val[i] = x + k->neg_step_size * mi / denom;                 // addcdiv_(m, denom, -step_size)
    }
}

static void sgd_update(pslot *p, const ns_optim_config *c, int first, double lr) {
    const sgd_coef k = {
        .wd = p->decay ? (float)c->weight_decay : 0.0f,
        .mom = (float)c->momentum,
        .keep = (float)(1.0 - c->dampening),
        .neg_lr = (float)-lr,
        .has_mom = c->momentum != 0,
        .nesterov = c->nesterov,
        .first = first,
    };
    const int64_t n = p->numel, chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (chunks >= PAR_MIN_CHUNKS)
    for (int64_t j = 0; j < chunks; j++) {
        const int64_t lo = j * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
        sgd_chunk(p->value + lo, k.has_mom ? p->buf[0] + lo : NULL, p->grad + lo, len, &k);
    }
}

// Adam (coupled decay) and AdamW (decoupled) share the moment updates.
static void adam_update(pslot *p, const ns_optim_config *c, int64_t step, double lr) {
    const int decoupled = c->kind == NS_OPTIM_ADAMW;
    // torch's step is a float32 tensor, read back as a Python float.
    const double t = (double)(float)step;
    const double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
    const adam_coef k = {
        .wd = (!decoupled && p->decay) ? (float)c->weight_decay : 0.0f,
        // multiplying by exactly 1 is skipped
        .shrink = (decoupled && p->decay) ? (float)(1.0 - lr * c->weight_decay) : 1.0f,
        .b1 = (float)c->beta1,
        .b2 = (float)c->beta2,
        .one_b1 = (float)(1.0 - c->beta1),
        .one_b2 = (float)(1.0 - c->beta2),
        .neg_step_size = (float)-(lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)c->eps,
    };
    const int64_t n = p->numel, chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (chunks >= PAR_MIN_CHUNKS)
    for (int64_t j = 0; j < chunks; j++) {
        const int64_t lo = j * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
        adam_chunk(p->value + lo, p->buf[0] + lo, p->buf[1] + lo, p->grad + lo, len, &k);
    }
}

void ns_optim_step(ns_optim *o, double lr) {
    int first = o->step == 0;
    o->step++;
    for (int i = 0; i < o->n_params; i++) {
        pslot *p = &o->params[i];
        if (p->numel == 0) continue;
        if (o->cfg.kind == NS_OPTIM_SGD)
            sgd_update(p, &o->cfg, first, lr);
        else
            adam_update(p, &o->cfg, o->step, lr);
    }
}

// ----------------------------------------------------------------------------
// state for checkpoints

int ns_optim_state_count(const ns_optim *o) { return o->n_state + 1; }

int ns_optim_state_tensor(const ns_optim *o, int i, const char **name, ns_tensor *view,
                          ns_err *err) {
    if (i < 0 || i > o->n_state)
        return ns_errf(err, "optimiser state index out of range (%d of %d)", i, o->n_state + 1);
    memset(view, 0, sizeof *view);
    if (i == o->n_state) {
        *name = STEP_NAME;
        view->dtype = NS_I64;
        view->ndim = 0;
        view->numel = 1;
        view->data = (void *)&o->step;
        return 0;
    }
    const state_entry *e = &o->state[i];
    const pslot *p = &o->params[e->param];
    *name = e->name;
    view->dtype = NS_F32;
    view->ndim = p->ndim;
    memcpy(view->shape, p->shape, (size_t)p->ndim * sizeof *p->shape);
    view->numel = p->numel;
    view->data = p->buf[e->slot];
    return 0;
}

static int load_step(ns_optim *o, const ns_tensor *t, ns_err *err) {
    if (t->numel != 1 || t->ndim > 1)
        return ns_errf(err, STEP_NAME ": expected a scalar, got %lld elements", (long long)t->numel);
    int64_t step;
    if (t->dtype == NS_I64) {
        memcpy(&step, t->data, sizeof step);
    } else if (t->dtype == NS_I32) {
        int32_t s32;
        memcpy(&s32, t->data, sizeof s32);
        step = s32;
    } else if (t->dtype == NS_F32 || t->dtype == NS_F64) {
        double d = ns_value_at(t->data, t->dtype, 0);
        if (!(d >= 0 && d < 9e15) || d != floor(d))
            return ns_errf(err, STEP_NAME ": not a whole number of steps (%g)", d);
        step = (int64_t)d;
    } else {
        return ns_errf(err, STEP_NAME ": expected i64, got %s", ns_dtypes[t->dtype].name);
    }
    if (step < 0) return ns_errf(err, STEP_NAME ": negative (%lld)", (long long)step);
    o->step = step;
    return 0;
}

int ns_optim_load(ns_optim *o, const char *name, const ns_tensor *t, ns_err *err) {
    if (strncmp(name, STATE_PREFIX, strlen(STATE_PREFIX)) != 0) return 0;
    int idx = -1;
    if (strcmp(name, STEP_NAME) == 0) {
        idx = o->n_state;
    } else {
        for (int i = 0; i < o->n_state; i++)
            if (strcmp(o->state[i].name, name) == 0) {
                idx = i;
                break;
            }
    }
    if (idx < 0)
        return ns_errf(err, "unknown optimiser state %s (the optimiser is %s%s with %d parameters)",
                       name, kinds[o->cfg.kind].name,
                       o->cfg.kind == NS_OPTIM_SGD ? (o->slots ? " with momentum" : " without momentum") : "",
                       o->n_params);
    if (o->loaded[idx]) return ns_errf(err, "optimiser state %s given twice", name);
    if (idx == o->n_state) {
        if (load_step(o, t, err) < 0) return -1;
    } else {
        const pslot *p = &o->params[o->state[idx].param];
        if (t->dtype != NS_F32)
            return ns_errf(err, "%s: expected f32, got %s", name, ns_dtypes[t->dtype].name);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char want[128], got[128];
            ns_shape_format(want, sizeof want, p->ndim, p->shape);
            ns_shape_format(got, sizeof got, t->ndim, t->shape);
            return ns_errf(err, "%s: shape %s does not match the parameter's %s", name, got, want);
        }
        if (p->numel) memcpy(p->buf[o->state[idx].slot], t->data, (size_t)p->numel * sizeof(float));
    }
    o->loaded[idx] = 1;
    return 1;
}

int ns_optim_load_finish(ns_optim *o, ns_err *err) {
    int missing = -1;
    for (int i = 0; i <= o->n_state && missing < 0; i++)
        if (!o->loaded[i]) missing = i;
    memset(o->loaded, 0, (size_t)(unsigned)o->n_state + 1);
    if (missing >= 0)
        return ns_errf(err, "checkpoint lacks optimiser state %s",
                       missing == o->n_state ? STEP_NAME : o->state[missing].name);
    return 0;
}

// ----------------------------------------------------------------------------
// learning-rate schedules

double ns_lr_at(const ns_lr_schedule *s, int64_t step, int64_t steps_per_epoch) {
    const double base = s->base_lr;
    const int64_t W = s->warmup * (s->warmup_epochs ? steps_per_epoch : 1);
    if (step < 0) step = 0;
    if (steps_per_epoch < 1) steps_per_epoch = 1; // ns_lr_check refuses it; never divide by 0
    if (step < W) // LinearLR's closed form, end_factor 1
        return base * (s->warmup_start + (1.0 - s->warmup_start) * (double)step / (double)W);
    const int64_t m = step - W;
    const int64_t epoch = m / steps_per_epoch;
    switch (s->kind) {
    case NS_LR_STEP:
        return base * pow(s->gamma, (double)(epoch / s->step_epochs));
    case NS_LR_MULTISTEP: {
        int k = 0;
        while (k < s->n_milestones && s->milestones[k] <= epoch) k++;
        return base * pow(s->gamma, (double)k);
    }
    case NS_LR_COSINE: {
        const int64_t T = s->total_steps - W;
        if (m >= T) return s->min_lr;
        return s->min_lr + (base - s->min_lr) * (1.0 + cos(M_PI * (double)m / (double)T)) / 2.0;
    }
    case NS_LR_CONSTANT:
    default:
        return base;
    }
}

int ns_lr_check(const ns_lr_schedule *s, int64_t steps_per_epoch, ns_err *err) {
    if ((unsigned)s->kind >= NS_LR_KIND_COUNT)
        return ns_errf(err, "unknown learning-rate schedule kind (%d)", (int)s->kind);
    if (!(s->base_lr > 0) || !isfinite(s->base_lr))
        return ns_errf(err, "learning rate must be positive and finite (%g)", s->base_lr);
    if (steps_per_epoch < 1)
        return ns_errf(err, "steps per epoch must be >= 1 (%lld)", (long long)steps_per_epoch);
    if (s->warmup < 0) return ns_errf(err, "warm-up must be >= 0 (%lld)", (long long)s->warmup);
    if (s->warmup_epochs && s->warmup > INT64_MAX / steps_per_epoch)
        return ns_errf(err, "warm-up too long (%lld epochs)", (long long)s->warmup);
    if (s->warmup > 0 && !(s->warmup_start > 0 && s->warmup_start <= 1))
        return ns_errf(err, "warm-up start factor must be in (0, 1] (%g)", s->warmup_start);
    const int64_t W = s->warmup * (s->warmup_epochs ? steps_per_epoch : 1);
    switch (s->kind) {
    case NS_LR_STEP:
        if (s->step_epochs < 1)
            return ns_errf(err, "step schedule: epochs between decays must be >= 1 (%lld)",
                           (long long)s->step_epochs);
        break;
    case NS_LR_MULTISTEP:
        if (s->n_milestones < 1 || s->n_milestones > NS_LR_MAX_MILESTONES)
            return ns_errf(err, "multistep schedule: 1 to %d milestones (%d)", NS_LR_MAX_MILESTONES,
                           s->n_milestones);
        for (int i = 0; i < s->n_milestones; i++)
            if (s->milestones[i] < 1 || (i > 0 && s->milestones[i] <= s->milestones[i - 1]))
                return ns_errf(err, "multistep schedule: milestones must be >= 1 and increasing (%lld)",
                               (long long)s->milestones[i]);
        break;
    case NS_LR_COSINE:
        if (!(s->min_lr >= 0) || !isfinite(s->min_lr))
            return ns_errf(err, "cosine schedule: minimum lr must be finite and >= 0 (%g)", s->min_lr);
        if (s->total_steps <= W)
            return ns_errf(err, "cosine schedule: total steps (%lld) must exceed the warm-up (%lld steps)",
                           (long long)s->total_steps, (long long)W);
        break;
    default:
        break;
    }
    if ((s->kind == NS_LR_STEP || s->kind == NS_LR_MULTISTEP) && (!(s->gamma > 0) || !isfinite(s->gamma)))
        return ns_errf(err, "%s schedule: gamma must be positive and finite (%g)",
                       lr_kind_names[s->kind], s->gamma);
    return 0;
}

// --- parsing ---------------------------------------------------------------------

// A whole field as a finite double / an integer >= 1; -1 when it is not one.
static int parse_f64(const char *f, double *out) {
    if (!*f || isspace((unsigned char)*f)) return -1;
    char *end;
    errno = 0;
    double v = strtod(f, &end);
    if (*end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_count(const char *f, int64_t *out) {
    if (!isdigit((unsigned char)*f)) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(f, &end, 10);
    if (*end || errno || v < 1) return -1;
    *out = v;
    return 0;
}

// Splits s (modified) at ':' into at most cap fields; returns the count, or
// cap + 1 when there are more.
static int split_fields(char *s, char **fields, int cap) {
    int n = 0;
    for (char *p = s;;) {
        if (n == cap) return cap + 1;
        fields[n++] = p;
        char *colon = strchr(p, ':');
        if (!colon) return n;
        *colon = 0;
        p = colon + 1;
    }
}

int ns_lr_parse(ns_lr_schedule *s, const char *spec, double base_lr, ns_err *err) {
    memset(s, 0, sizeof *s);
    s->base_lr = base_lr;
    s->gamma = 0.1;
    s->warmup_start = NS_LR_WARMUP_START_DEFAULT;
    if (!(base_lr > 0) || !isfinite(base_lr))
        return ns_errf(err, "learning rate must be positive and finite (%g)", base_lr);
    char buf[1024];
    if (strlen(spec) >= sizeof buf) return ns_errf(err, "learning-rate schedule too long (%.40s...)", spec);
    strcpy(buf, spec);
    char *f[4];
    int nf = split_fields(buf, f, 3);
    int kind = -1;
    for (int k = 0; k < NS_LR_KIND_COUNT; k++)
        if (strcmp(f[0], lr_kind_names[k]) == 0) kind = k;
    if (kind < 0)
        return ns_errf(err, "unknown learning-rate schedule '%s' (%s): expected constant, "
                       "step:S[:GAMMA], multistep:E1,E2,...[:GAMMA] or cosine[:MIN_LR]", spec, f[0]);
    s->kind = (ns_lr_kind)kind;
    static const int max_fields[NS_LR_KIND_COUNT] = {
        [NS_LR_CONSTANT] = 1, [NS_LR_STEP] = 3, [NS_LR_MULTISTEP] = 3, [NS_LR_COSINE] = 2};
    if (nf > max_fields[kind])
        return ns_errf(err, "learning-rate schedule '%s': too many ':' fields for %s", spec, f[0]);
    if ((kind == NS_LR_STEP || kind == NS_LR_MULTISTEP) && nf < 2)
        return ns_errf(err, "learning-rate schedule '%s': %s needs %s", spec, f[0],
                       kind == NS_LR_STEP ? "the epochs between decays, as step:30" : "milestones, as multistep:60,120");
    if (kind == NS_LR_STEP && parse_count(f[1], &s->step_epochs) < 0)
        return ns_errf(err, "learning-rate schedule '%s': epochs between decays must be an integer >= 1 (%s)",
                       spec, f[1]);
    if (kind == NS_LR_MULTISTEP) {
        for (char *tok = f[1], *next; tok; tok = next) {
            next = strchr(tok, ',');
            if (next) *next++ = 0;
            if (s->n_milestones == NS_LR_MAX_MILESTONES)
                return ns_errf(err, "learning-rate schedule '%s': more than %d milestones", spec,
                               NS_LR_MAX_MILESTONES);
            int64_t e;
            if (parse_count(tok, &e) < 0)
                return ns_errf(err, "learning-rate schedule '%s': milestone must be an integer >= 1 (%s)",
                               spec, tok);
            if (s->n_milestones > 0 && e <= s->milestones[s->n_milestones - 1])
                return ns_errf(err, "learning-rate schedule '%s': milestones must increase (%lld after %lld)",
                               spec, (long long)e, (long long)s->milestones[s->n_milestones - 1]);
            s->milestones[s->n_milestones++] = e;
        }
    }
    if ((kind == NS_LR_STEP || kind == NS_LR_MULTISTEP) && nf == 3 &&
        (parse_f64(f[2], &s->gamma) < 0 || !(s->gamma > 0)))
        return ns_errf(err, "learning-rate schedule '%s': gamma must be a positive number (%s)", spec, f[2]);
    if (kind == NS_LR_COSINE && nf == 2 && (parse_f64(f[1], &s->min_lr) < 0 || s->min_lr < 0))
        return ns_errf(err, "learning-rate schedule '%s': minimum lr must be a number >= 0 (%s)", spec, f[1]);
    return 0;
}

int ns_lr_parse_warmup(ns_lr_schedule *s, const char *spec, ns_err *err) {
    char buf[256];
    if (strlen(spec) >= sizeof buf) return ns_errf(err, "warm-up spec too long (%.40s...)", spec);
    strcpy(buf, spec);
    char *f[3];
    int nf = split_fields(buf, f, 2);
    if (nf > 2) return ns_errf(err, "warm-up '%s': expected N[ep|st][:START]", spec);
    const char *p = f[0];
    if (!isdigit((unsigned char)*p))
        return ns_errf(err, "warm-up '%s': length must be a whole number of epochs or steps (%s)", spec, f[0]);
    char *unit;
    errno = 0;
    long long n = strtoll(p, &unit, 10);
    if (errno || n < 0) return ns_errf(err, "warm-up '%s': length out of range (%s)", spec, f[0]);
    int epochs;
    if (!*unit || !strcmp(unit, "ep") || !strcmp(unit, "epochs") || !strcmp(unit, "epoch"))
        epochs = 1;
    else if (!strcmp(unit, "st") || !strcmp(unit, "steps") || !strcmp(unit, "step"))
        epochs = 0;
    else
        return ns_errf(err, "warm-up '%s': unknown unit (%s): use ep (epochs) or st (steps)", spec, unit);
    double start = NS_LR_WARMUP_START_DEFAULT;
    if (nf == 2 && (parse_f64(f[1], &start) < 0 || !(start > 0 && start <= 1)))
        return ns_errf(err, "warm-up '%s': start factor must be in (0, 1] (%s)", spec, f[1]);
    s->warmup = n;
    s->warmup_epochs = epochs;
    s->warmup_start = start;
    return 0;
}

// Shortest of %.15g / %.17g that reads back as v.
static int fmt_g(char *buf, size_t cap, double v) {
    int n = snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) n = snprintf(buf, cap, "%.17g", v);
    return n;
}

void ns_lr_format(const ns_lr_schedule *s, char *buf, size_t cap) {
    char num[40];
    size_t used = 0;
    if (!cap) return;
    buf[0] = 0;
#define PUT(...) \
    do { \
        int k_ = snprintf(buf + used, cap - used, __VA_ARGS__); \
        if (k_ < 0 || (size_t)k_ >= cap - used) return; \
        used += (size_t)k_; \
    } while (0)
    PUT("%s", (unsigned)s->kind < NS_LR_KIND_COUNT ? lr_kind_names[s->kind] : "?");
    if (s->kind == NS_LR_STEP) PUT(":%lld", (long long)s->step_epochs);
    if (s->kind == NS_LR_MULTISTEP)
        for (int i = 0; i < s->n_milestones; i++) PUT("%c%lld", i ? ',' : ':', (long long)s->milestones[i]);
    if (s->kind == NS_LR_STEP || s->kind == NS_LR_MULTISTEP) {
        fmt_g(num, sizeof num, s->gamma);
        PUT(":%s", num);
    }
    if (s->kind == NS_LR_COSINE) {
        fmt_g(num, sizeof num, s->min_lr);
        PUT(":%s", num);
    }
#undef PUT
}
