// dist.c: MPI for data-parallel training (dist.h), with the fallback for a
// build without MPI. Compiled with -DNS_HAVE_MPI when the Makefile found mpicc.
//
// The sums are a reduce-scatter and an all-gather, both written out so that
// the order of the additions is fixed: the buffer is cut into W slices, rank j
// receives slice j of every rank (MPI_Alltoallv), adds the W copies in rank
// order (0 + 1 + ... + W-1) and hands its summed slice to all (MPI_Allgatherv).
// Every value is thus added in the same order whatever MPI's algorithms, run
// after run, so the same job gives the same model bits on every rank.
// MPI_Allreduce would be as fast but not fixed: with 2 ranks a0 + a1 = a1 + a0
// exactly (IEEE addition commutes), but with 3 or more its reduction tree
// may group (a0 + a1) + a2 or a0 + (a1 + a2) depending on the message size,
// and float addition does not associate. Each rank sends and receives
// 2 (W-1)/W of the buffer, as the ring all-reduce does; the gather to rank 0
// and broadcast this replaced moved (W-1) buffers through rank 0 one after
// the other while the others waited (the same sums, the same bits).
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

#define SLICE ((int64_t)1 << 18) // values per rank's slice per round: W x 1-2 MiB of scratch

static int mpi_failed(int rc, const char *what, ns_err *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ns_errf(err, "MPI: %s failed (%.*s)", what, len, msg);
}

// Rounds of at most W x SLICE values; in each, rank j owns values
// [k j / W, k (j+1) / W) of the round's k. counts and displs: 4 x W ints.
static int slice_sum_plan(int64_t k, int size, int *counts, int *displs, int *from_counts, int *from_displs,
                          int rank) {
    for (int j = 0; j < size; j++) {
        displs[j] = (int)(k * j / size);
        counts[j] = (int)(k * (j + 1) / size) - displs[j];
    }
    for (int j = 0; j < size; j++) {
        from_counts[j] = counts[rank];
        from_displs[j] = j * counts[rank];
    }
    return counts[rank];
}

// The fixed-order sum for one element type.
#define DEFINE_SUM(name, type, mpi_type)                                                                  \
    static int name(type *buf, int64_t n, ns_err *err) {                                                  \
        int rank, size;                                                                                   \
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);                                                             \
        MPI_Comm_size(MPI_COMM_WORLD, &size);                                                             \
        int64_t round = SLICE * size;                                                                     \
        int *plan = malloc(4 * (size_t)size * sizeof *plan);                                              \
        type *from = malloc((size_t)(SLICE + 1) * (size_t)size * sizeof *from);                          \
        if (!plan || !from) {                                                                             \
            free(plan);                                                                                   \
            free(from);                                                                                   \
            return ns_errf(err, "out of memory summing %lld values", (long long)n);                     \
        }                                                                                                 \
        int *counts = plan, *displs = plan + size, *from_counts = plan + 2 * size, *from_displs = plan + 3 * size; \
        int rc = MPI_SUCCESS;                                                                             \
        for (int64_t at = 0; at < n && rc == MPI_SUCCESS; at += round) {                                  \
            int64_t k = n - at < round ? n - at : round;                                                  \
            int mine = slice_sum_plan(k, size, counts, displs, from_counts, from_displs, rank);           \
            rc = MPI_Alltoallv(buf + at, counts, displs, mpi_type, from, from_counts, from_displs, mpi_type, \
                               MPI_COMM_WORLD);                                                           \
            if (rc != MPI_SUCCESS) break;                                                                 \
            type *out = buf + at + displs[rank];                                                          \
            for (int i = 0; i < mine; i++) {                                                              \
                type s = from[i];                                                                         \
                for (int r = 1; r < size; r++) s += from[(size_t)r * (size_t)mine + (size_t)i];           \
                out[i] = s;                                                                               \
            }                                                                                             \
            rc = MPI_Allgatherv(MPI_IN_PLACE, 0, mpi_type, buf + at, counts, displs, mpi_type, MPI_COMM_WORLD); \
        }                                                                                                 \
        free(plan);                                                                                       \
        free(from);                                                                                       \
        return rc == MPI_SUCCESS ? 0 : mpi_failed(rc, "summing over the ranks", err);                    \
    }
DEFINE_SUM(sum_f32, float, MPI_FLOAT)
DEFINE_SUM(sum_f64, double, MPI_DOUBLE)

static int gather_bytes(const void *buf, int64_t n, char **out, int64_t *sizes, ns_err *err) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    *out = NULL;
    int rc = MPI_Allgather(&n, 1, MPI_INT64_T, sizes, 1, MPI_INT64_T, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "gathering sizes", err);
    int64_t total = 0;
    for (int r = 0; r < size; r++) total += sizes[r];
    if (total >= ((int64_t)1 << 31)) return ns_errf(err, "%lld bytes to gather: at most 2 GiB", (long long)total);
    int *counts = malloc(2 * (size_t)size * sizeof *counts);
    *out = malloc((size_t)(total ? total : 1));
    if (!counts || !*out) {
        free(counts);
        free(*out);
        *out = NULL;
        return ns_errf(err, "out of memory gathering %lld bytes", (long long)total);
    }
    int *displs = counts + size;
    for (int r = 0, at = 0; r < size; at += (int)sizes[r], r++) {
        counts[r] = (int)sizes[r];
        displs[r] = at;
    }
    rc = MPI_Allgatherv(buf, (int)n, MPI_BYTE, *out, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
    free(counts);
    if (rc != MPI_SUCCESS) {
        free(*out);
        *out = NULL;
        return mpi_failed(rc, "gathering bytes", err);
    }
    return 0;
}

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
        d->gather_bytes = gather_bytes;
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
    d->gather_bytes = NULL;
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
