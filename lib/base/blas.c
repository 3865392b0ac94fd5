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
#include "base/blas.h"

#include "base/tensor.h"

#include <blis.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char kernels_desc[320];
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
        int devnull = open("/dev/null", O_WRONLY); // BLIS's abort message is ours to word
        if (devnull >= 0) dup2(devnull, 2);
        bli_init(); // with BLIS_ARCH_TYPE set, BLIS checks the id against its contexts
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

// BLIS 0.9 reads BLIS_ARCH_TYPE as a number (a name reads as 0, i.e. skx).
// A name is translated to its id; an id this BLIS was not built with would
// make BLIS abort on first use, so it is tried in a child first. Returns 1
// when the user's choice stands, 0 when it was dropped (note says why).
static int check_user_arch(const char *user, char *note, size_t cap) {
    char *end;
    long id = strtol(user, &end, 10);
    if (*end) {
        id = -1;
        for (int a = 0; a < (int)BLIS_NUM_ARCHS; a++)
            if (strcmp(bli_arch_string((arch_t)a), user) == 0) id = a;
        if (id < 0) {
            snprintf(note, cap, " (BLIS_ARCH_TYPE=%.20s names no architecture: ignored)", user);
            unsetenv("BLIS_ARCH_TYPE");
            return 0;
        }
        char text[24];
        snprintf(text, sizeof text, "%d", (int)id);
        setenv("BLIS_ARCH_TYPE", text, 1);
    }
    if (probe_blis_arch() < 0) {
        snprintf(note, cap, " (BLIS_ARCH_TYPE=%.20s is not usable with this BLIS: ignored)", user);
        unsetenv("BLIS_ARCH_TYPE");
        return 0;
    }
    snprintf(note, cap, " (BLIS_ARCH_TYPE=%.20s set by the user)", user);
    return 1;
}

static void choose_kernels(void) {
    const char *user = getenv("BLIS_ARCH_TYPE");
    const char *select = getenv("NETSMITH_BLIS_SELECT");
    static char user_note[200];
    const char *note = "";
    if (user && *user && check_user_arch(user, user_note, sizeof user_note)) {
        note = user_note;
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
    if (user_note[0] && note != user_note) { // the user's value was dropped: say so too
        size_t used = strlen(user_note);
        snprintf(user_note + used, sizeof user_note - used, "%s", note);
        note = user_note;
    }
    bli_init();
    snprintf(kernels_desc, sizeof kernels_desc, "%s%s",
             bli_arch_string(bli_arch_query_id()), note);
}

// OpenMP's wait policy. libgomp's idle threads spin for a few milliseconds
// (GOMP_SPINCOUNT 300000) before they sleep, unless OMP_WAIT_POLICY or
// GOMP_SPINCOUNT say otherwise, and it reads those once, in a constructor
// that runs when the program is loaded: setting them here, or anywhere in
// the program, changes nothing (checked: setenv before the first parallel
// region still spins). On a machine with other load the spinning takes CPU
// from the thread that is late. Measured with build/bench/engine_speed
// (resnet20, batch 256, 2 threads, next to one process busy on one core):
// training 554 images/s with the default policy, 681 with
// OMP_WAIT_POLICY=passive, 685 on one thread; on an idle machine passive
// costs 4-8%. So: the default here, and OMP_WAIT_POLICY=passive in the
// environment of runs on shared machines. (Before the kernels ran a
// parallel region per sample, the default policy under the same load gave
// 88 images/s.)
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

// ----------------------------------------------------------------------------
// tiles for kernels that pack their own operands (ns_tile_gemm)
//
// With AVX-512 a 32x8 tile of our own: convolutions have 16, 32, 64 output
// channels, and BLIS's skx tile (32x12) leaves a third of its columns empty
// on 16 of them; the 32x8 one measured 265 GFLOP/s on one core here against
// 175 for the skx microkernel on 16 columns and 240 on wider ones. Elsewhere,
// or with NETSMITH_TILE_KERNEL=blis, the microkernel of BLIS's own kernels:
// they prefer C stored by columns (skx: 32x12) or by rows (haswell, zen:
// 6x16); the tile is described here as column-stored, so a row-preferring
// kernel computes its transpose: the p panel becomes its B operand and q its A.
typedef void (*sgemm_ukr)(dim_t m, dim_t n, dim_t k, float *alpha, float *a, float *b,
                          float *beta, float *c, inc_t rs_c, inc_t cs_c, auxinfo_t *data,
                          cntx_t *cntx);
static sgemm_ukr ukr;
static cntx_t *ukr_cntx;
static int ukr_cols, tile_rows, tile_cols, tile_own;
static char tile_desc[64];

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_TILE_AVX512 1

// C (32 x 8, column j at c + j*ldc) = beta C + sum_t p[t*32 + 0..31] q[t*8 + j]:
// 16 accumulators, two FMAs per broadcast weight.
// Writes the 32x8 accumulators c<j>0, c<j>1 to column j of C (beta 0 or not):
// shared by both tile kernels below.
#define TILE_STORE(j)                                                                          \
    if (beta == 0.0f) {                                                                        \
        _mm512_storeu_ps(c + j * ldc, c##j##0);                                                \
        _mm512_storeu_ps(c + j * ldc + 16, c##j##1);                                           \
    } else {                                                                                   \
        __m512 bv = _mm512_set1_ps(beta);                                                      \
        _mm512_storeu_ps(c + j * ldc, _mm512_fmadd_ps(bv, _mm512_loadu_ps(c + j * ldc), c##j##0)); \
        _mm512_storeu_ps(c + j * ldc + 16,                                                     \
                         _mm512_fmadd_ps(bv, _mm512_loadu_ps(c + j * ldc + 16), c##j##1));     \
    }
#define TILE_STORE_ALL                                                                         \
    TILE_STORE(0) TILE_STORE(1) TILE_STORE(2) TILE_STORE(3)                                    \
    TILE_STORE(4) TILE_STORE(5) TILE_STORE(6) TILE_STORE(7)

__attribute__((target("avx512f"))) static void tile_avx512_32x8(int64_t k, const float *p,
                                                                 const float *q, float beta,
                                                                 float *c, int64_t ldc) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
    for (int64_t t = 0; t < k; t++, p += 32, q += 8) {
        __m512 a0 = _mm512_load_ps(p), a1 = _mm512_load_ps(p + 16), b;
#define STEP(j)                                                                                \
    b = _mm512_set1_ps(q[j]);                                                                  \
    c##j##0 = _mm512_fmadd_ps(a0, b, c##j##0);                                                 \
    c##j##1 = _mm512_fmadd_ps(a1, b, c##j##1);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
    }
    TILE_STORE_ALL
}

// The same with rows read in place (ns_tile_gemm_rows).
__attribute__((target("avx512f"))) static void tile_avx512_32x8_rows(
    int64_t k, const float *base, const int64_t *off, const float *q, int64_t ldq, int64_t cq,
    float beta, float *c, int64_t ldc) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
    const float *q0 = q, *q1 = q + cq, *q2 = q + 2 * cq, *q3 = q + 3 * cq, *q4 = q + 4 * cq,
                *q5 = q + 5 * cq, *q6 = q + 6 * cq, *q7 = q + 7 * cq;
    for (int64_t t = 0; t < k; t++) {
        const float *p = base + off[t];
        __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16), b;
#define STEP(j)                                                                                \
    b = _mm512_set1_ps(q##j[t * ldq]);                                                         \
    c##j##0 = _mm512_fmadd_ps(a0, b, c##j##0);                                                 \
    c##j##1 = _mm512_fmadd_ps(a1, b, c##j##1);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
    }
    TILE_STORE_ALL
}
#undef TILE_STORE_ALL
#undef TILE_STORE
#endif

static void choose_ukernel(void) {
    ukr_cntx = bli_gks_query_cntx();
    ukr = (sgemm_ukr)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, ukr_cntx);
    int mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, ukr_cntx);
    int nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, ukr_cntx);
    ukr_cols = bli_cntx_l3_nat_ukr_prefers_cols_dt(BLIS_FLOAT, BLIS_GEMM_UKR, ukr_cntx);
    tile_rows = ukr_cols ? mr : nr;
    tile_cols = ukr_cols ? nr : mr;
    snprintf(tile_desc, sizeof tile_desc, "BLIS %s %dx%d", bli_arch_string(bli_arch_query_id()),
             tile_rows, tile_cols);
#ifdef HAVE_TILE_AVX512
    const char *want = getenv("NETSMITH_TILE_KERNEL");
    if (!(want && strcmp(want, "blis") == 0) && __builtin_cpu_supports("avx512f")) {
        tile_own = 1;
        tile_rows = 32;
        tile_cols = 8;
        snprintf(tile_desc, sizeof tile_desc, "netsmith avx512 32x8");
    }
#endif
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

const char *ns_tile_kernel(void) {
    ns_blas_init();
    return tile_desc;
}

int ns_tile_packs(void) {
    ns_blas_init();
    return !tile_own;
}

void ns_tile_gemm_rows(int64_t k, const float *base, const int64_t *off, const float *q,
                       int64_t ldq, int64_t cq, float beta, float *c, int64_t ldc,
                       float *pack) {
#ifdef HAVE_TILE_AVX512
    if (tile_own) {
        tile_avx512_32x8_rows(k, base, off, q, ldq, cq, beta, c, ldc);
        return;
    }
#endif
    float *pp = pack, *qq = pack + (((int64_t)tile_rows * k + 15) & ~(int64_t)15);
    for (int64_t t = 0; t < k; t++) {
        memcpy(pp + t * tile_rows, base + off[t], (size_t)tile_rows * sizeof(float));
        for (int64_t j = 0; j < tile_cols; j++) qq[t * tile_cols + j] = q[t * ldq + j * cq];
    }
    ns_tile_gemm(k, pp, qq, beta, c, ldc);
}

void ns_tile_gemm(int64_t k, const float *p, const float *q, float beta, float *c, int64_t ldc) {
#ifdef HAVE_TILE_AVX512
    if (tile_own) {
        tile_avx512_32x8(k, p, q, beta, c, ldc);
        return;
    }
#endif
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

// Packs rows [0, nb * r) of op(X) for steps [k0, k0 + kb) into panels of r
// rows: panel[b][t][i] = op(X)[b*r + i][k0 + t], zero past rows. op(X)[i][t]
// is x[i * ldx + t], or x[t * ldx + i] when trans.
static void pack_panels(float *panel, const float *x, int64_t ldx, int trans, int64_t rows, int64_t nb,
                        int64_t r, int64_t k0, int64_t kb) {
    for (int64_t b = 0; b < nb; b++)
        for (int64_t i = 0; i < r; i++) {
            int64_t row = b * r + i;
            float *dst = panel + b * r * kb + i;
            if (row >= rows) {
                for (int64_t t = 0; t < kb; t++) dst[t * r] = 0.0f;
            } else if (trans) {
                const float *src = x + k0 * ldx + row;
                for (int64_t t = 0; t < kb; t++) dst[t * r] = src[t * ldx];
            } else {
                const float *src = x + row * ldx + k0;
                for (int64_t t = 0; t < kb; t++) dst[t * r] = src[t];
            }
        }
}

int ns_sgemm_serial(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                    float *c, int64_t ldc, ns_err *err) {
    ns_blas_init();
    if (m <= 0 || n <= 0) return 0;
    const int64_t R = tile_rows, Q = tile_cols, KB = NS_SGEMM_SERIAL_KBLOCK;
    const int64_t nr = (m + R - 1) / R, nq = (n + Q - 1) / Q, kmax = k < KB ? k : KB;
    // p: A's panels, q: B's (op(B)^T's rows), acc: the tiles, each column-stored
    float *p = ns_aligned_alloc((size_t)(nr * R * (kmax ? kmax : 1)) * sizeof *p);
    float *q = ns_aligned_alloc((size_t)(nq * Q * (kmax ? kmax : 1)) * sizeof *q);
    float *acc = ns_aligned_alloc((size_t)(nr * nq * R * Q) * sizeof *acc);
    if (!p || !q || !acc) {
        free(p);
        free(q);
        free(acc);
        return ns_errf(err, "out of memory for a %lld x %lld x %lld product", (long long)m, (long long)n,
                       (long long)k);
    }
    if (k == 0) memset(acc, 0, (size_t)(nr * nq * R * Q) * sizeof *acc);
    for (int64_t k0 = 0; k0 < k; k0 += KB) {
        int64_t kb = k - k0 < KB ? k - k0 : KB;
        pack_panels(p, a, lda, trans_a, m, nr, R, k0, kb);
        pack_panels(q, b, ldb, !trans_b, n, nq, Q, k0, kb);
        for (int64_t bi = 0; bi < nr; bi++)
            for (int64_t bj = 0; bj < nq; bj++)
                ns_tile_gemm(kb, p + bi * R * kb, q + bj * Q * kb, k0 ? 1.0f : 0.0f, acc + (bi * nq + bj) * R * Q, R);
    }
    for (int64_t bi = 0; bi < nr; bi++)
        for (int64_t bj = 0; bj < nq; bj++) {
            const float *tile = acc + (bi * nq + bj) * R * Q;
            float *cb = c + bi * R * ldc + bj * Q;
            for (int64_t i = 0; i < R && bi * R + i < m; i++)
                for (int64_t j = 0; j < Q && bj * Q + j < n; j++)
                    cb[i * ldc + j] = beta == 0.0f ? alpha * tile[i + j * R]
                                                   : alpha * tile[i + j * R] + beta * cb[i * ldc + j];
        }
    free(p);
    free(q);
    free(acc);
    return 0;
}
