// optim.h: optimisers (SGD, Adam, AdamW) and learning-rate schedules for the
// training engine. This file owns the update rules, their saved state and the
// schedule arithmetic; it does not own parameters, gradients or checkpoints.
//
// Optimisers follow PyTorch 1.13's torch.optim exactly (single-tensor code
// path), operation by operation in float32, with the scalar coefficients
// computed in double and rounded to float where torch rounds them:
//   SGD    g = grad + wd*p (wd only where the parameter allows it)
//          buf = g on the first step, else buf = momentum*buf + (1-dampening)*g
//          g = nesterov ? g + momentum*buf : buf        (when momentum != 0)
//          p = p - lr*g
//   Adam   t += 1; g = grad + wd*p (coupled L2, as torch.optim.Adam)
//          m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
//          p = p - (lr / (1-beta1^t)) * m / (sqrt(v) / sqrt(1-beta2^t) + eps)
//   AdamW  as Adam without the coupled term, and first p = p * (1 - lr*wd)
// The step takes the current lr (a schedule below decides it). Every state
// buffer is allocated once by ns_optim_create; ns_optim_step never allocates
// and cannot fail.
//
// Checkpoints: the state is a list of named tensors that point into the
// optimiser ("optim.<param>.momentum_buffer", "optim.<param>.exp_avg",
// "optim.<param>.exp_avg_sq", each f32 with the parameter's shape, and
// "optim.step", an i64 scalar). Write each with ns_write_tensor; on --resume
// hand each record named "optim.*" back to ns_optim_load, then call
// ns_optim_load_finish, which insists every state tensor came back exactly once.
// Restored state continues bit-identically.
//
// Schedules are pure functions lr(step, steps_per_epoch), step counted from 0:
// the lr used by the (step+1)-th update, i.e. torch's lr after `step` calls of
// scheduler.step() with the scheduler stepped once per batch.
#ifndef NS_OPTIM_H
#define NS_OPTIM_H

#include <stdint.h>

#include "base/err.h"
#include "base/tensor.h"

// ----------------------------------------------------------------------------
// optimisers

// Append-only (tables in optim.c are indexed by it).
typedef enum ns_optim_kind {
    NS_OPTIM_SGD,
    NS_OPTIM_ADAM,
    NS_OPTIM_ADAMW,
    NS_OPTIM_KIND_COUNT
} ns_optim_kind;

typedef struct ns_optim_config {
    ns_optim_kind kind;
    double momentum;     // SGD: >= 0; 0 is plain SGD (no state)
    double dampening;    // SGD: >= 0; must be 0 with nesterov (torch's rule)
    int nesterov;        // SGD: 1 for Nesterov momentum (needs momentum > 0)
    double beta1, beta2; // Adam/AdamW: in [0, 1)
    double eps;          // Adam/AdamW: >= 0
    double weight_decay; // >= 0; coupled L2 for SGD and Adam, decoupled for AdamW
} ns_optim_config;

// torch's defaults for kind: SGD momentum 0; Adam betas (0.9, 0.999), eps 1e-8,
// weight decay 0; AdamW the same with weight decay 0.01.
void ns_optim_config_default(ns_optim_config *cfg, ns_optim_kind kind);
// "sgd", "adam" or "adamw" into *kind; the error names the bad value.
int ns_optim_kind_parse(const char *s, ns_optim_kind *kind, ns_err *err);
const char *ns_optim_kind_name(ns_optim_kind kind);

// One trainable tensor as the optimiser sees it. The pointers must stay valid
// (and the arrays in place) for the optimiser's life; name and shape are copied.
typedef struct ns_param {
    const char *name;      // unique, at most NS_OPTIM_PARAM_NAME_MAX bytes
    float *value;          // (numel) updated in place by ns_optim_step
    const float *grad;     // (numel) read by ns_optim_step
    int64_t numel;         // >= 0
    int ndim;              // shape of the state tensors; 0 means 1-D (numel)
    const int64_t *shape;  // (ndim), product must be numel; may be NULL if ndim == 0
    int decay;             // 1: weight decay applies; 0: excluded (biases, BN)
} ns_param;

// Longest parameter name: room for "optim." and ".momentum_buffer" in a
// record name of NS_NAME_MAX (255) bytes.
#define NS_OPTIM_PARAM_NAME_MAX 233

typedef struct ns_optim ns_optim;

// Validates cfg (errors name the bad value) and the parameter table (names
// unique and short enough, shapes consistent), copies the table and allocates
// all state, zeroed. n_params may be 0.
ns_optim *ns_optim_create(const ns_optim_config *cfg, const ns_param *params, int n_params,
                          ns_err *err);
void ns_optim_free(ns_optim *o);

// One update of every parameter from its gradient, with learning rate lr.
// Elementwise, so the result does not depend on the thread count.
void ns_optim_step(ns_optim *o, double lr);

// Updates taken so far (torch's state "step"; 0 before the first).
int64_t ns_optim_steps(const ns_optim *o);
const ns_optim_config *ns_optim_get_config(const ns_optim *o);

// --- state for checkpoints ---------------------------------------------------
// Number of state tensors, "optim.step" included (always >= 1).
int ns_optim_state_count(const ns_optim *o);
// State tensor i (0 <= i < count): *name receives its record name and *view a
// tensor whose data points INTO the optimiser (do not free it; valid until
// ns_optim_free). Pass it straight to ns_write_tensor. Returns -1 when i is out
// of range.
int ns_optim_state_tensor(const ns_optim *o, int i, const char **name, ns_tensor *view,
                          ns_err *err);
// Restores one state tensor by record name. Returns 1 when it was loaded, 0
// when name does not start with "optim." (not optimiser state: the caller
// handles it), -1 on an unknown "optim.*" name (e.g. Adam state given to SGD),
// a repeated name, or a dtype/shape mismatch. "optim.step" takes an i64 or i32
// scalar, or an integral f32/f64 one, >= 0; the rest take f32 of the parameter's shape.
int ns_optim_load(ns_optim *o, const char *name, const ns_tensor *t, ns_err *err);
// Ends a restore: fails (naming the first missing tensor) unless every state
// tensor was loaded since create or the previous finish.
int ns_optim_load_finish(ns_optim *o, ns_err *err);

// ----------------------------------------------------------------------------
// learning-rate schedules

typedef enum ns_lr_kind {
    NS_LR_CONSTANT,  // "constant"
    NS_LR_STEP,      // "step:S[:GAMMA]"  multiply by GAMMA (0.1) every S epochs
    NS_LR_MULTISTEP, // "multistep:E1,E2,...[:GAMMA]"  multiply by GAMMA at each epoch Ei
    NS_LR_COSINE,    // "cosine[:MIN_LR]"  cosine from lr to MIN_LR (0) over the run, per step
    NS_LR_KIND_COUNT
} ns_lr_kind;

#define NS_LR_MAX_MILESTONES 64

typedef struct ns_lr_schedule {
    ns_lr_kind kind;
    double base_lr;          // the peak lr; > 0
    double gamma;            // step, multistep: factor per decay, > 0
    int64_t step_epochs;     // step: epochs between decays, >= 1
    int n_milestones;        // multistep
    int64_t milestones[NS_LR_MAX_MILESTONES]; // multistep: epochs, strictly increasing, >= 1
    double min_lr;           // cosine: torch's eta_min, >= 0 (absolute, not a factor)
    int64_t total_steps;     // cosine: updates in the whole run, warm-up included
    int64_t warmup;          // warm-up length (0: none), in epochs or steps
    int warmup_epochs;       // 1: warmup counts epochs, 0: steps
    double warmup_start;     // warm-up starts at base_lr * warmup_start, in (0, 1]
} ns_lr_schedule;

// Default warm-up start factor: torch.optim.lr_scheduler.LinearLR's 1/3.
#define NS_LR_WARMUP_START_DEFAULT (1.0 / 3.0)

// Parses a schedule spec (forms above, e.g. "cosine", "step:30:0.1",
// "multistep:60,120:0.2", "cosine:1e-5") into *s with the given base lr and no
// warm-up. total_steps is left 0: the caller sets it (cosine needs it). Errors
// quote the spec and name the bad field.
int ns_lr_parse(ns_lr_schedule *s, const char *spec, double base_lr, ns_err *err);
// Parses a warm-up spec into s: "N" or "Nep" (N epochs), "Nst" (N steps), each
// optionally followed by ":START" (start factor, default 1/3); "0" is none.
int ns_lr_parse_warmup(ns_lr_schedule *s, const char *spec, ns_err *err);
// Checks a schedule for use with steps_per_epoch >= 1 (the parsers only check
// syntax): values in range, and for cosine total_steps > the warm-up steps.
int ns_lr_check(const ns_lr_schedule *s, int64_t steps_per_epoch, ns_err *err);

// The learning rate for update number `step` (from 0), as torch computes it
// with LinearLR(start_factor=warmup_start, total_iters=W) and the main
// scheduler chained by SequentialLR(milestones=[W]), stepped once per batch:
//   step < W:  base_lr * (warmup_start + (1 - warmup_start) * step / W)
//   else the main schedule at m = step - W (its clock starts when warm-up ends):
//     constant  base_lr
//     step      base_lr * gamma^floor(e / step_epochs),  e = floor(m / steps_per_epoch)
//     multistep base_lr * gamma^(number of milestones <= e)
//     cosine    min_lr + (base_lr - min_lr) * (1 + cos(pi * m / T)) / 2,
//               T = total_steps - W; held at min_lr for m > T
// W is warmup, times steps_per_epoch when warmup_epochs. Assumes ns_lr_check passed.
double ns_lr_at(const ns_lr_schedule *s, int64_t step, int64_t steps_per_epoch);

// Writes a canonical spec of s (main schedule only, e.g. "multistep:60,120:0.2")
// into buf, for logs and checkpoint metadata.
void ns_lr_format(const ns_lr_schedule *s, char *buf, size_t cap);

#endif
