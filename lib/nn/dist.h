// dist.h: data-parallel training over MPI (Open MPI), the one file that
// speaks MPI. Built without MPI (no mpicc when make ran), or run without
// mpirun, a program is one rank of one and nothing changes.
//
// The trainer (nn/trainer.h) takes an ns_dist through its config: rank r of
// W holds the samples at stream positions p with p mod W == r
// (ns_samples_load_shard, by position), every rank draws the same global
// shuffle, takes its own samples of each global batch, and the parameter
// gradients are summed over the ranks in rank order (ns_dist.sum_f32): every
// rank gets the same bits, so the models stay identical without broadcasts.
// vlm-train (cav/vlm_train.h) does the same, and gathers the global batch's
// embeddings for CLIP's loss with the same sum (x + 0 is x exactly).
#ifndef NS_DIST_H
#define NS_DIST_H

#include <stdint.h>

#include "base/err.h"
#include "nn/optim.h"

typedef struct ns_dist {
    int rank, size;
    // Sums buf (n values) over the ranks, in rank order (0 + 1 + ... + W-1,
    // each rank's buffer whole): deterministic, the same bits on every rank.
    // NULL when size is 1.
    int (*sum_f32)(float *buf, int64_t n, ns_err *err);
    int (*sum_f64)(double *buf, int64_t n, ns_err *err);
    // Every rank's n bytes, concatenated in rank order, to every rank: *out
    // (malloc'd, the caller frees it) and sizes[r] (size entries), rank r's
    // count. NULL when size is 1.
    int (*gather_bytes)(const void *buf, int64_t n, char **out, int64_t *sizes, ns_err *err);
} ns_dist;

// Sums the optimiser's gradients (params[i].grad, numel values each, written
// in place: their owners, the engines, lend them) over the ranks with one
// sum_f32 through buf, which holds the sum of the params' numel floats.
int ns_dist_sum_grads(const ns_dist *d, const ns_param *params, int nparams, float *buf, ns_err *err);
// The floats ns_dist_sum_grads needs in buf.
int64_t ns_dist_grads_numel(const ns_param *params, int nparams);

// Joins the job mpirun started (MPI_Init) when there is one, else *d is rank
// 0 of 1. Fails when mpirun started this program but it was built without
// MPI (each copy would train alone and write the same files).
int ns_dist_init(ns_dist *d, int *argc, char ***argv, ns_err *err);
// Leaves the job (MPI_Finalize); nothing for a rank of one.
void ns_dist_finalize(ns_dist *d);
// "open mpi x.y.z" or "none": what the build has.
const char *ns_dist_backend(void);

#endif
