// dist_grads.c: the sum of an optimiser's gradients over the ranks (dist.h),
// through the ns_dist's own sum. Apart from dist.c so that the trainers that
// call it link no MPI: only the programs that start a job (ns_dist_init) do.
#include <string.h>

#include "nn/dist.h"

int64_t ns_dist_grads_numel(const ns_param *params, int nparams) {
    int64_t n = 0;
    for (int i = 0; i < nparams; i++) n += params[i].numel;
    return n;
}

int ns_dist_sum_grads(const ns_dist *d, const ns_param *params, int nparams, float *buf, ns_err *err) {
    if (d->size < 2) return 0;
    int64_t at = 0;
    for (int i = 0; i < nparams; i++) {
        memcpy(buf + at, params[i].grad, (size_t)params[i].numel * sizeof *buf);
        at += params[i].numel;
    }
    if (d->sum_f32(buf, at, err) < 0) return -1;
    at = 0;
    for (int i = 0; i < nparams; i++) {
        memcpy((float *)params[i].grad, buf + at, (size_t)params[i].numel * sizeof *buf);
        at += params[i].numel;
    }
    return 0;
}
