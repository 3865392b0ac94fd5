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
#ifndef NS_DIST_H
#define NS_DIST_H

#include <stdint.h>

#include "base/err.h"

typedef struct ns_dist {
    int rank, size;
    // Sums buf (n values) over the ranks, in rank order (0 + 1 + ... + W-1,
    // each rank's buffer whole): deterministic, the same bits on every rank.
    // NULL when size is 1.
    int (*sum_f32)(float *buf, int64_t n, ns_err *err);
    int (*sum_f64)(double *buf, int64_t n, ns_err *err);
} ns_dist;

// Joins the job mpirun started (MPI_Init) when there is one, else *d is rank
// 0 of 1. Fails when mpirun started this program but it was built without
// MPI (each copy would train alone and write the same files).
int ns_dist_init(ns_dist *d, int *argc, char ***argv, ns_err *err);
// Leaves the job (MPI_Finalize); nothing for a rank of one.
void ns_dist_finalize(ns_dist *d);
// "open mpi x.y.z" or "none": what the build has.
const char *ns_dist_backend(void);

#endif
