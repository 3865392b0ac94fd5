// dist.c: MPI for data-parallel training (dist.h), with the fallback for a
// build without MPI. Compiled with -DNS_HAVE_MPI when the Makefile found mpicc.
//
// The sums gather every rank's buffer on rank 0 (MPI_Gather, in chunks),
// add them in rank order, and broadcast the result (MPI_Bcast): a fixed order
// whatever the reduction algorithm MPI_Allreduce would have picked, so the
// same job gives the same model bits, run after run, on every rank.
#include "nn/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Launched by mpirun (Open MPI, or a PMI launcher) as one of several ranks.
static int launched_with_ranks(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) return 1;
    }
    return 0;
}

#ifdef NS_HAVE_MPI
#include <mpi.h>

#define CHUNK ((int64_t)1 << 20) // values per gather: W x 8 MiB at most on rank 0

static int mpi_failed(int rc, const char *what, ns_err *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ns_errf(err, "MPI: %s failed (%.*s)", what, len, msg);
}

// The fixed-order sum for one element type.
#define DEFINE_SUM(name, type, mpi_type)                                                          \
    static int name(type *buf, int64_t n, ns_err *err) {                                          \
        int rank, size;                                                                           \
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);                                                     \
        MPI_Comm_size(MPI_COMM_WORLD, &size);                                                     \
        int64_t chunk = n < CHUNK ? n : CHUNK;                                                    \
        type *all = rank == 0 ? malloc((size_t)(chunk ? chunk : 1) * (size_t)size * sizeof *all) : NULL; \
        if (rank == 0 && !all) return ns_errf(err, "out of memory summing %lld values", (long long)n); \
        int rc = MPI_SUCCESS;                                                                     \
        for (int64_t at = 0; at < n && rc == MPI_SUCCESS; at += chunk) {                          \
            int k = (int)(n - at < chunk ? n - at : chunk);                                       \
            rc = MPI_Gather(buf + at, k, mpi_type, all, k, mpi_type, 0, MPI_COMM_WORLD);          \
            if (rc != MPI_SUCCESS) break;                                                         \
            if (rank == 0)                                                                        \
                for (int i = 0; i < k; i++) {                                                     \
                    type s = all[i];                                                              \
                    for (int r = 1; r < size; r++) s += all[(size_t)r * (size_t)k + (size_t)i];   \
                    buf[at + i] = s;                                                              \
                }                                                                                 \
            rc = MPI_Bcast(buf + at, k, mpi_type, 0, MPI_COMM_WORLD);                             \
        }                                                                                         \
        free(all);                                                                                \
        return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, "summing gradients", err);                  \
    }
DEFINE_SUM(sum_f32, float, MPI_FLOAT)
DEFINE_SUM(sum_f64, double, MPI_DOUBLE)

int ns_dist_init(ns_dist *d, int *argc, char ***argv, ns_err *err) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    if (!launched_with_ranks()) return 0;
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Init", err);
    // A failing rank ends the whole job (the default, said once more).
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    if (d->size > 1) {
        d->sum_f32 = sum_f32;
        d->sum_f64 = sum_f64;
    }
    return 0;
}

void ns_dist_finalize(ns_dist *d) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Finalize();
    d->sum_f32 = NULL;
    d->sum_f64 = NULL;
}

const char *ns_dist_backend(void) {
    static char name[64];
    int major = 0, minor = 0, release = 0;
#ifdef OMPI_MAJOR_VERSION
    major = OMPI_MAJOR_VERSION, minor = OMPI_MINOR_VERSION, release = OMPI_RELEASE_VERSION;
    snprintf(name, sizeof name, "open mpi %d.%d.%d", major, minor, release);
#else
    MPI_Get_version(&major, &minor);
    snprintf(name, sizeof name, "mpi %d.%d", major, minor);
    (void)release;
#endif
    return name;
}

#else // no MPI in this build

int ns_dist_init(ns_dist *d, int *argc, char ***argv, ns_err *err) {
    (void)argc;
    (void)argv;
    memset(d, 0, sizeof *d);
    d->size = 1;
    if (launched_with_ranks())
        return ns_errf(err, "started by mpirun as one of several ranks, but built without MPI "
                            "(install libopenmpi-dev and rebuild: make deps build)");
    return 0;
}

void ns_dist_finalize(ns_dist *d) { (void)d; }

const char *ns_dist_backend(void) { return "none"; }

#endif
