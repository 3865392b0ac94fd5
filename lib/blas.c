// blas.c: BLIS set-up and the row-major sgemm every dense product uses.
//
// Debian 12's BLIS 0.9 picks its kernels from the CPU id and knows AMD only up
// to family 0x19: on family 0x1A (Zen 5) it silently runs the portable
// "generic" kernels, about 5x slower for sgemm. Its choice is made once, on
// first use, from BLIS_ARCH_TYPE when set (a numeric arch id in 0.9; names are
// not parsed). We cannot ask BLIS what it would pick without fixing the choice,
// so a short-lived child process asks it. When the answer is generic and the
// CPU has AVX-512 (or AVX2+FMA) we set BLIS_ARCH_TYPE to skx (or haswell) before
// BLIS initialises. A user's own BLIS_ARCH_TYPE is never overridden, and
// NETSMITH_BLIS_SELECT=0 turns the selection off (benchmarks compare both).
#include "blas.h"

#include <blis.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char kernels_desc[128];
static int thread_count = 1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

// What BLIS would choose on its own, asked in a child so our process's choice
// stays open. Returns -1 when that cannot be found out.
static int probe_blis_arch(void) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        int id = (int)bli_arch_query_id();
        ssize_t wrote = write(fds[1], &id, sizeof id);
        _exit(wrote == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fds[1]);
    int id = -1;
    if (read(fds[0], &id, sizeof id) != (ssize_t)sizeof id) id = -1;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {}
    return id;
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static void choose_kernels(void) {
    const char *user = getenv("BLIS_ARCH_TYPE");
    const char *select = getenv("NETSMITH_BLIS_SELECT");
    const char *note = "";
    if (user && *user) {
        note = " (BLIS_ARCH_TYPE set by the user)";
    } else if (select && strcmp(select, "0") == 0) {
        note = " (BLIS's own choice: NETSMITH_BLIS_SELECT=0)";
    } else if (probe_blis_arch() == (int)BLIS_ARCH_GENERIC) {
        int pick = cpu_has_avx512() ? (int)BLIS_ARCH_SKX
                 : cpu_has_avx2()   ? (int)BLIS_ARCH_HASWELL
                                    : -1;
        if (pick >= 0) {
            char id[16];
            snprintf(id, sizeof id, "%d", pick);
            setenv("BLIS_ARCH_TYPE", id, 1);
            note = " (selected by netsmith: BLIS would use generic on this CPU)";
        }
    }
    bli_init();
    snprintf(kernels_desc, sizeof kernels_desc, "%s%s",
             bli_arch_string(bli_arch_query_id()), note);
}

static void choose_threads(void) {
    const char *s = getenv("NETSMITH_THREADS");
    int n = 0;
    if (s && *s) n = atoi(s);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    thread_count = n;
    bli_thread_set_num_threads(n);
    omp_set_num_threads(n);
}

// The gemm microkernel and its tile, for ns_tile_gemm. BLIS kernels prefer C
// stored by columns (skx: 32x12) or by rows (haswell, zen: 6x16); the tile is
// described here as column-stored, so a row-preferring kernel computes its
// transpose: the p panel becomes its B operand and q its A.
typedef void (*sgemm_ukr)(dim_t m, dim_t n, dim_t k, float *alpha, float *a, float *b,
                          float *beta, float *c, inc_t rs_c, inc_t cs_c, auxinfo_t *data,
                          cntx_t *cntx);
static sgemm_ukr ukr;
static cntx_t *ukr_cntx;
static int ukr_cols, tile_rows, tile_cols;

static void choose_ukernel(void) {
    ukr_cntx = bli_gks_query_cntx();
    ukr = (sgemm_ukr)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, ukr_cntx);
    int mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, ukr_cntx);
    int nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, ukr_cntx);
    ukr_cols = bli_cntx_l3_nat_ukr_prefers_cols_dt(BLIS_FLOAT, BLIS_GEMM_UKR, ukr_cntx);
    tile_rows = ukr_cols ? mr : nr;
    tile_cols = ukr_cols ? nr : mr;
}

static void init_once_body(void) {
    choose_kernels();
    choose_threads();
    choose_ukernel();
}

void ns_blas_init(void) { pthread_once(&init_once, init_once_body); }

const char *ns_blas_kernels(void) {
    ns_blas_init();
    return kernels_desc;
}

int ns_threads(void) {
    ns_blas_init();
    return thread_count;
}

int ns_tile_rows(void) {
    ns_blas_init();
    return tile_rows;
}

int ns_tile_cols(void) {
    ns_blas_init();
    return tile_cols;
}

void ns_tile_gemm(int64_t k, const float *p, const float *q, float beta, float *c, int64_t ldc) {
    float one = 1.0f;
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    bli_auxinfo_set_next_ab((void *)p, (void *)q, &aux);
    if (ukr_cols)
        ukr(tile_rows, tile_cols, (dim_t)k, &one, (float *)p, (float *)q, &beta, c, 1,
            (inc_t)ldc, &aux, ukr_cntx);
    else
        ukr(tile_cols, tile_rows, (dim_t)k, &one, (float *)q, (float *)p, &beta, c,
            (inc_t)ldc, 1, &aux, ukr_cntx);
}

// Below this many multiply-adds a product runs on one thread: splitting it
// costs more in synchronisation than it saves (measured: a 64x64x576 product
// fell from 64 to 0.2 GFLOP/s on two busy cores).
#define SMALL_GEMM_MACS ((int64_t)4 << 20)

void ns_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc) {
    ns_blas_init();
    if (m <= 0 || n <= 0) return;
    // Inside a parallel region of our own, or for a small product, one thread.
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    int threads = omp_in_parallel() || m * n * k < SMALL_GEMM_MACS ? 1 : thread_count;
    bli_rntm_set_num_threads(threads, &rntm);
    // Row-major: element (i, j) of A sits at a[i * lda + j]: row stride lda, column stride 1.
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k,
                 &alpha, (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb, 1, &beta, c,
                 (inc_t)ldc, 1, NULL, &rntm);
}
