// op_winograd.c: Winograd F(4x4, 3x3) for the 3x3, stride 1, dilation 1,
// ungrouped convolutions with 16k input and output channels (ResNet's and
// VGG's bulk): 36 multiplies per 4x4 outputs and channel pair instead of 144.
// op_conv.c chooses it (ns_wino_usable), runs the forward and input-gradient
// samples over threads and applies the epilogue; this file does one sample's
// arithmetic, and the whole weight gradient. The input gradient is the same
// computation on dout with the kernel flipped and transposed (pad 2 - P).
//
// One sample, Cin input planes (H x W) -> Cout output planes (OH x OW), with
// T = ceil(OH/4) * ceil(OW/4) output tiles of 4x4:
// 1. the input is copied into a zero-padded NHWC buffer (channels innermost),
//    so a tile's 6x6 patch is 36 runs of Cin consecutive floats;
// 2. input transform, 16 channels per AVX-512 vector: V[xi][t][c] = (B^T d B)[xi]
//    for the 36 positions xi of the 6x6 transform domain;
// 3. 36 products M[xi] (T x Cout) = V[xi] (T x Cin) U[xi] (Cin x Cout), U the
//    transformed weights (G g G^T, computed in double once per call), by a
//    register-blocked kernel: R tiles x up to 64 output channels;
// 4. output transform, 16 channels per vector: Y = A^T M A (4x4), transposed
//    in registers and stored into the NCHW planes.
// The weight gradient: dU[xi] = sum over samples and tiles of
// V[xi]^T (A dy A^T)[xi], the same products with the tiles as the summed
// dimension, then dW = G^T dU G in double.
//
// Interpolation points 0, 1, -1, 1/2, -2 (and infinity) rather than the usual
// 0, +-1, +-2: the transforms' entries then span less range, and the float
// error on random data is about 3x smaller (max error over the rms output
// ~8e-6 against ~2.5e-5 for C = 64; the direct sum's is ~5e-7). test_ops
// measures it against a double-precision convolution on every run (forward,
// input and weight gradients: ~1e-5 of the rms at worst, the direct path
// ~2e-6). Every sample (every chunk of samples, for the weight gradient) is
// computed by one thread in a fixed order: results do not depend on the
// thread count.
//
// NETSMITH_WINOGRAD=0 turns the path off (the packed direct path runs); "fwd"
// keeps it for the forward only, "dinp" for the forward and input gradient.
// It needs AVX-512 (checked at run time); elsewhere the direct path runs.
#include "nn/ops.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WINO_AVX512 1
#define AVX512 __attribute__((target("avx512f")))
#endif

// the transforms (exact rationals, from the Cook-Toom construction; that
// A^T ((G g G^T) . (B^T d B)) A is the 4x4 correlation of d with g was checked
// in exact arithmetic)
//   B^T = [1 -3/2 -2  3/2  1   0]    A^T = [1  1  1  1    1  0]
//         [0  -1  1/2 5/2  1   0]          [0  1 -1  1/2 -2  0]
//         [0   1 -5/2 1/2  1   0]          [0  1  1  1/4  4  0]
//         [0  -2  -1   2   1   0]          [0  1 -1  1/8 -8  1]
//         [0  1/2 -1 -1/2  1   0]
//         [0   1 -3/2 -2  3/2  1]
//   G = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15;
//        1/15 -2/15 4/15; 0 0 1]
static const double Gm[6][3] = {{1, 0, 0},
                                {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                {0, 0, 1}};

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t r16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct wplan {
    int64_t Cin, Cout, H, W, PH, PW, OH, OW; // the correlation this sample computes
    int64_t nty, ntx, T, nq, Qmax, R, Tpad, Hp, Wp, OWp, OHp;
    int64_t o_xt, o_V, o_M, thread_floats, U_floats, threads;
    // weight gradient: B samples per product, chunks of samples with their
    // own partial dU, the thread slice's parts
    int64_t B, nchunks, chunk, part_floats, dw_thread_floats, o_dyt, o_Y;
} wplan;

// Chunks of samples with their own partial weight gradient: fixed by N alone
// (so the sums do not depend on the thread count); fewer than the packed
// path's 16, as a partial here is 36/9 times the size of dW.
#define MAX_CHUNKS 8

// dinp: the correlation of dout (OC planes, OH x OW, padded 2 - P) with the
// flipped, transposed kernel gives the C planes of H x W.
static void make_wplan(wplan *p, const ns_conv2d_geom *g, int dinp) {
    memset(p, 0, sizeof *p);
    if (!dinp) {
        p->Cin = g->C, p->Cout = g->OC, p->H = g->H, p->W = g->W;
        p->PH = g->PH, p->PW = g->PW, p->OH = g->OH, p->OW = g->OW;
    } else {
        p->Cin = g->OC, p->Cout = g->C, p->H = g->OH, p->W = g->OW;
        p->PH = 2 - g->PH, p->PW = 2 - g->PW, p->OH = g->H, p->OW = g->W;
    }
    p->nty = cdiv(p->OH, 4);
    p->ntx = cdiv(p->OW, 4);
    p->T = p->nty * p->ntx;
    p->nq = p->Cout / 16;
    p->Qmax = p->nq < 4 ? p->nq : 4;
    const int64_t Rmax = 28 / p->Qmax; // accumulators: R x Q <= 28 of the 32 registers
    const int64_t nblk = cdiv(p->T, Rmax);
    p->R = cdiv(p->T, nblk);
    p->Tpad = nblk * p->R;
    p->Hp = 4 * p->nty + 2;
    p->Wp = 4 * p->ntx + 2;
    p->OHp = 4 * p->nty;
    p->OWp = 4 * p->ntx;
    int64_t t = 0;
    p->o_xt = t;
    t += r16(p->Hp * p->Wp * p->Cin);
    p->o_V = t;
    t += r16(36 * p->Tpad * p->Cin);
    p->o_M = t;
    t += r16(36 * p->Tpad * p->Cout);
    p->thread_floats = t;
    p->U_floats = r16(36 * p->Cin * p->Cout);
    p->threads = ns_threads();
    // weight gradient (forward geometry): xt, then V and Y for B samples,
    // then dout in NHWC
    p->B = cdiv(32, p->T);
    if (p->B > g->N) p->B = g->N;
    p->nchunks = g->N < MAX_CHUNKS ? g->N : MAX_CHUNKS;
    p->chunk = cdiv(g->N, p->nchunks);
    p->nchunks = cdiv(g->N, p->chunk);
    p->part_floats = r16(36 * p->Cin * p->Cout);
    t = r16(p->Hp * p->Wp * p->Cin);
    p->o_Y = t + r16(36 * p->B * p->Tpad * p->Cin); // o_V stays where the forward has it
    t = p->o_Y + r16(36 * p->B * p->Tpad * p->Cout);
    p->o_dyt = t;
    t += r16(p->OHp * p->OWp * p->Cout);
    p->dw_thread_floats = t;
}

static int64_t shared_floats(const wplan *f) {
    // transformed weights, or the partials and their sum in double
    int64_t dw = f->nchunks * f->part_floats + 2 * f->part_floats;
    return f->U_floats > dw ? f->U_floats : dw;
}

static int64_t slice_floats(const wplan *f, const wplan *b) {
    int64_t tf = f->thread_floats > b->thread_floats ? f->thread_floats : b->thread_floats;
    return tf > f->dw_thread_floats ? tf : f->dw_thread_floats;
}

// NETSMITH_WINOGRAD: 0 off, "fwd" the forward only, "dinp" the forward and
// the input gradient; anything else (or unset): the weight gradient too.
// ns_conv2d_set_winograd overrides it (tests, benchmarks).
static int override_mode = -1;

void ns_conv2d_set_winograd(int mode) { override_mode = mode < 0 ? -1 : mode > 3 ? 3 : mode; }

static int env_mode(void) {
    static int mode = -1;
    if (override_mode >= 0) return override_mode;
    if (mode < 0) {
        const char *e = getenv("NETSMITH_WINOGRAD");
        mode = !e                          ? 3
               : strcmp(e, "0") == 0       ? 0
               : strcmp(e, "fwd") == 0     ? 1
               : strcmp(e, "dinp") == 0    ? 2
                                           : 3;
    }
    return mode;
}

int ns_wino_dinp_usable(const ns_conv2d_geom *g) { return env_mode() >= 2 && ns_wino_usable(g); }
int ns_wino_dweight_usable(const ns_conv2d_geom *g) { return env_mode() >= 3 && ns_wino_usable(g); }

// The geometry and the CPU allow it (whatever the switch says).
static int geom_ok(const ns_conv2d_geom *g) {
#ifdef WINO_AVX512
    if (!__builtin_cpu_supports("avx512f")) return 0;
    return g->KH == 3 && g->KW == 3 && g->SH == 1 && g->SW == 1 && g->DH == 1 && g->DW == 1 &&
           g->G == 1 && g->C % 16 == 0 && g->OC % 16 == 0 && g->PH <= 2 && g->PW <= 2;
#else
    (void)g;
    return 0;
#endif
}

int ns_wino_usable(const ns_conv2d_geom *g) { return env_mode() > 0 && geom_ok(g); }

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

int64_t ns_wino_scratch_floats(const ns_conv2d_geom *g) {
    if (!geom_ok(g)) return 0;
    wplan f, b;
    make_wplan(&f, g, 0);
    make_wplan(&b, g, 1);
    // a smaller batch may split into more chunks (MAX_CHUNKS at most): room for them
    f.nchunks = g->N < MAX_CHUNKS ? g->N : MAX_CHUNKS;
    return shared_floats(&f) + f.threads * slice_floats(&f, &b) + 16;
}

// U[xi][ci][co] = (G w G^T)[xi] for the kernel w joining input channel ci to
// output channel co: forward w = W[co][ci], dinp w = W[ci][co] rotated by 180
// degrees. In double, rounded once.
void ns_wino_prepare(float *scratch, const float *weight, const ns_conv2d_geom *g, int dinp) {
    wplan p;
    make_wplan(&p, g, dinp);
    float *U = align64(scratch);
    const int64_t Cin = p.Cin, Cout = p.Cout;
    // by input channel over the threads, 16 output channels side by side
#pragma omp parallel for schedule(static) num_threads(p.threads) if (Cin * Cout >= 1024)
    for (int64_t ci = 0; ci < Cin; ci++)
        for (int64_t co0 = 0; co0 < Cout; co0 += 16) {
            const int64_t nc = Cout - co0 < 16 ? Cout - co0 : 16;
            double w[3][3][16], tmp[6][3][16];
            for (int64_t c = 0; c < nc; c++) {
                const int64_t co = co0 + c;
                const float *src = dinp ? weight + (ci * Cout + co) * 9 : weight + (co * Cin + ci) * 9;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++)
                        w[i][j][c] = dinp ? src[(2 - i) * 3 + 2 - j] : src[i * 3 + j];
            }
            for (int k = 0; k < 6; k++)
                for (int j = 0; j < 3; j++)
                    for (int64_t c = 0; c < nc; c++)
                        tmp[k][j][c] = Gm[k][0] * w[0][j][c] + Gm[k][1] * w[1][j][c] + Gm[k][2] * w[2][j][c];
            for (int k = 0; k < 6; k++)
                for (int l = 0; l < 6; l++) {
                    float *u = U + ((k * 6 + l) * Cin + ci) * Cout + co0;
                    for (int64_t c = 0; c < nc; c++)
                        u[c] = (float)(tmp[k][0][c] * Gm[l][0] + tmp[k][1][c] * Gm[l][1] +
                                       tmp[k][2][c] * Gm[l][2]);
                }
        }
}

// The shared part (transformed weights, or the weight gradient's partials),
// then one slice per thread.
static float *thread_slice(float *scratch, int thread, const wplan *f, const wplan *b) {
    int64_t shared = shared_floats(f);
    return align64(scratch) + shared + thread * slice_floats(f, b);
}

float *ns_wino_thread(float *scratch, int thread, const ns_conv2d_geom *g) {
    wplan f, b;
    make_wplan(&f, g, 0);
    make_wplan(&b, g, 1);
    return thread_slice(scratch, thread, &f, &b);
}

// Zeroes what must start zero: the padded input's border, the padding rows
// of V. Once per call and thread.
void ns_wino_thread_init(float *t, const ns_conv2d_geom *g, int dinp) {
    wplan p;
    make_wplan(&p, g, dinp);
    memset(t + p.o_xt, 0, (size_t)(p.Hp * p.Wp * p.Cin) * sizeof(float));
    if (p.Tpad > p.T)
        for (int64_t xi = 0; xi < 36; xi++)
            memset(t + p.o_V + (xi * p.Tpad + p.T) * p.Cin, 0,
                   (size_t)((p.Tpad - p.T) * p.Cin) * sizeof(float));
}

#ifdef WINO_AVX512

// u[k] lane i = r[i] lane k: a 16x16 transpose in registers (r is clobbered).
__attribute__((always_inline)) AVX512 static inline void tr16(__m512 *u, __m512 *r) {
    // unpack pairs of rows, then pairs of pairs: r[4a + b], 128-bit lane L,
    // holds rows 4a..4a+3 of column 4L + b
    for (int i = 0; i < 16; i += 2) {
        u[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        u[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(u[i]), b = _mm512_castps_pd(u[i + 1]);
        __m512d c = _mm512_castps_pd(u[i + 2]), e = _mm512_castps_pd(u[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    // column 4L + b gathers lane L of r[b], r[4 + b], r[8 + b], r[12 + b]
    for (int b = 0; b < 4; b++) {
        __m512 a0 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0x88); // lanes 0, 2
        __m512 a1 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0xdd); // lanes 1, 3
        __m512 b0 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0x88);
        __m512 b1 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0xdd);
        u[b] = _mm512_shuffle_f32x4(a0, b0, 0x88);
        u[8 + b] = _mm512_shuffle_f32x4(a0, b0, 0xdd);
        u[4 + b] = _mm512_shuffle_f32x4(a1, b1, 0x88);
        u[12 + b] = _mm512_shuffle_f32x4(a1, b1, 0xdd);
    }
}

// d[t*ldd + j] = s[j*lds + t] (j < nj, t < nt), or += with acc: by 16x16
// blocks through registers, partial blocks with masks.
AVX512 static void transpose16(float *restrict d, int64_t ldd, const float *restrict s,
                               int64_t lds, int64_t nj, int64_t nt, int acc) {
    for (int64_t j0 = 0; j0 < nj; j0 += 16) {
        const int nr = nj - j0 < 16 ? (int)(nj - j0) : 16;
        const __mmask16 mr = (__mmask16)((1u << nr) - 1);
        for (int64_t t0 = 0; t0 < nt; t0 += 16) {
            const int nc = nt - t0 < 16 ? (int)(nt - t0) : 16;
            const __mmask16 mc = (__mmask16)((1u << nc) - 1);
            __m512 r[16], u[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < nr ? _mm512_maskz_loadu_ps(mc, s + (j0 + i) * lds + t0) : _mm512_setzero_ps();
            tr16(u, r);
            for (int k = 0; k < nc; k++) {
                float *dp = d + (t0 + k) * ldd + j0;
                if (acc) u[k] = _mm512_add_ps(u[k], _mm512_maskz_loadu_ps(mr, dp));
                _mm512_mask_storeu_ps(dp, mr, u[k]);
            }
        }
    }
}

#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET(x) _mm512_set1_ps(x)

// v = B^T d for six vectors
AVX512 static inline void bt6(__m512 *v, __m512 d0, __m512 d1, __m512 d2, __m512 d3, __m512 d4,
                              __m512 d5) {
    __m512 a = _mm512_sub_ps(d3, d1), b = _mm512_sub_ps(d4, d2);
    v[0] = FMA(SET(1.5f), a, FMA(SET(-2.0f), d2, _mm512_add_ps(d0, d4)));
    v[1] = FMA(SET(2.5f), d3, FMA(SET(0.5f), d2, _mm512_sub_ps(d4, d1)));
    v[2] = FMA(SET(0.5f), d3, FMA(SET(-2.5f), d2, _mm512_add_ps(d4, d1)));
    v[3] = FMA(SET(2.0f), a, b);
    v[4] = FMA(SET(-0.5f), a, b);
    v[5] = FMA(SET(1.5f), b, FMA(SET(-2.0f), d3, _mm512_add_ps(d1, d5)));
}

// y = A^T m for six vectors
AVX512 static inline void at6(__m512 *y, __m512 m0, __m512 m1, __m512 m2, __m512 m3, __m512 m4,
                              __m512 m5) {
    __m512 s = _mm512_add_ps(m1, m2), t = _mm512_sub_ps(m1, m2);
    y[0] = _mm512_add_ps(_mm512_add_ps(m0, s), _mm512_add_ps(m3, m4));
    y[1] = FMA(SET(-2.0f), m4, FMA(SET(0.5f), m3, t));
    y[2] = FMA(SET(4.0f), m4, FMA(SET(0.25f), m3, s));
    y[3] = _mm512_add_ps(FMA(SET(-8.0f), m4, FMA(SET(0.125f), m3, t)), m5);
}

// V[xi][t][c0..c0+16) for tile t at xt + base (a 6x6 patch, rows Wp*Cin
// apart, columns Cin apart).
AVX512 static void input_tile(float *V, int64_t vstride, const float *x, int64_t rs, int64_t cs) {
    __m512 tt[6][6];
    for (int j = 0; j < 6; j++) {
        __m512 v[6];
        const float *c = x + j * cs;
        bt6(v, _mm512_loadu_ps(c), _mm512_loadu_ps(c + rs), _mm512_loadu_ps(c + 2 * rs),
            _mm512_loadu_ps(c + 3 * rs), _mm512_loadu_ps(c + 4 * rs), _mm512_loadu_ps(c + 5 * rs));
        for (int k = 0; k < 6; k++) tt[k][j] = v[k];
    }
    for (int k = 0; k < 6; k++) {
        __m512 v[6];
        bt6(v, tt[k][0], tt[k][1], tt[k][2], tt[k][3], tt[k][4], tt[k][5]);
        for (int l = 0; l < 6; l++) _mm512_storeu_ps(V + (k * 6 + l) * vstride, v[l]);
    }
}

// The 4x4 outputs of a tile, 16 channels, straight into their NCHW planes:
// from M[xi] (36 vectors mstride apart), transposed in registers, the rows
// (rows x cols of the tile inside the output) stored at d + oc*ps + a*rs
// (= or, with acc, +=).
AVX512 static void output_tile_nchw(float *d, int64_t ps, int64_t rs, int rows, int cols,
                                    const float *M, int64_t mstride, int acc,
                                    const ns_wino_epi *ep, int64_t c0, const float *res) {
    __m512 s[4][6], y[16], u[16];
    for (int l = 0; l < 6; l++) {
        __m512 v[4];
        const float *m = M + l * mstride;
        at6(v, _mm512_loadu_ps(m), _mm512_loadu_ps(m + 6 * mstride),
            _mm512_loadu_ps(m + 12 * mstride), _mm512_loadu_ps(m + 18 * mstride),
            _mm512_loadu_ps(m + 24 * mstride), _mm512_loadu_ps(m + 30 * mstride));
        for (int a = 0; a < 4; a++) s[a][l] = v[a];
    }
    for (int a = 0; a < 4; a++) at6(y + 4 * a, s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5]);
    tr16(u, y); // u[oc] lane 4a + b: output (a, b) of channel oc
    if (ep) {
        // the epilogue, channel by channel, as op_conv.c's: + bias, * scale
        // + shift, + residual, relu (separate multiply and add: the same bits)
        const __m512 zero = _mm512_setzero_ps();
        const int full = rows == 4 && cols == 4;
        for (int oc = 0; oc < 16; oc++) {
            __m512 v = u[oc];
            if (ep->bias) v = _mm512_add_ps(v, _mm512_set1_ps(ep->bias[c0 + oc]));
            if (ep->scale) {
                v = _mm512_mul_ps(v, _mm512_set1_ps(ep->scale[c0 + oc]));
                v = _mm512_add_ps(v, _mm512_set1_ps(ep->shift[c0 + oc]));
            }
            if (res) {
                const float *r = res + oc * ps;
                __m512 rv;
                if (full) {
                    rv = _mm512_castps128_ps512(_mm_loadu_ps(r));
                    rv = _mm512_insertf32x4(rv, _mm_loadu_ps(r + rs), 1);
                    rv = _mm512_insertf32x4(rv, _mm_loadu_ps(r + 2 * rs), 2);
                    rv = _mm512_insertf32x4(rv, _mm_loadu_ps(r + 3 * rs), 3);
                } else {
                    float t[16] = {0};
                    for (int a = 0; a < rows; a++)
                        for (int b = 0; b < cols; b++) t[4 * a + b] = r[a * rs + b];
                    rv = _mm512_loadu_ps(t);
                }
                v = _mm512_add_ps(v, rv);
            }
            if (ep->relu) v = _mm512_max_ps(v, zero); // v > 0 ? v : 0, NaN to 0 as the select
            u[oc] = v;
        }
    }
    if (rows == 4 && cols == 4 && !acc) {
        for (int oc = 0; oc < 16; oc++) {
            float *o = d + oc * ps;
            _mm_storeu_ps(o, _mm512_extractf32x4_ps(u[oc], 0));
            _mm_storeu_ps(o + rs, _mm512_extractf32x4_ps(u[oc], 1));
            _mm_storeu_ps(o + 2 * rs, _mm512_extractf32x4_ps(u[oc], 2));
            _mm_storeu_ps(o + 3 * rs, _mm512_extractf32x4_ps(u[oc], 3));
        }
        return;
    }
    for (int oc = 0; oc < 16; oc++) {
        float v[16];
        _mm512_storeu_ps(v, u[oc]);
        for (int a = 0; a < rows; a++)
            for (int b = 0; b < cols; b++) {
                float *o = d + oc * ps + a * rs + b;
                *o = acc ? *o + v[4 * a + b] : v[4 * a + b];
            }
    }
}

// m[r*ldm + q*16 ..] (= or, with acc, +=) sum_k v[r*vr + k*vk] u[k*ldu + q*16 ..]
// for r < R, q < Q: R x Q accumulators (at most 28 of the 32 registers).
__attribute__((always_inline)) AVX512 static inline void mkernel(int R, int Q, int64_t K,
                                                                  const float *v, int64_t vr,
                                                                  int64_t vk, const float *u,
                                                                  int64_t ldu, float *m,
                                                                  int64_t ldm, int acc) {
    __m512 a[28];
#pragma GCC unroll 28
    for (int i = 0; i < R * Q; i++) a[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 w[4];
#pragma GCC unroll 4
        for (int q = 0; q < Q; q++) w[q] = _mm512_loadu_ps(u + k * ldu + q * 16);
#pragma GCC unroll 28
        for (int r = 0; r < R; r++) {
            __m512 b = _mm512_set1_ps(v[r * vr + k * vk]);
#pragma GCC unroll 4
            for (int q = 0; q < Q; q++) a[r * Q + q] = FMA(b, w[q], a[r * Q + q]);
        }
    }
#pragma GCC unroll 28
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int q = 0; q < Q; q++) {
            float *mp = m + r * ldm + q * 16;
            _mm512_storeu_ps(mp, acc ? _mm512_add_ps(_mm512_loadu_ps(mp), a[r * Q + q]) : a[r * Q + q]);
        }
}

// The kernels for each R (a switch over constants, so that the accumulators
// stay in registers) and for row strides vr of 1, 16, 32, 64 as constants as
// well as any: with a constant stride the R broadcasts of a step address
// one register plus constant displacements; with a variable one GCC runs out
// of registers for the R row addresses and the kernel runs at half speed.
#define KCASE(Rv, Qv, VR)                                                                      \
    case Rv:                                                                                   \
        mkernel(Rv, Qv, K, v, VR, vk, u, ldu, m, ldm, acc);                                    \
        break;
#define MK_ARGS                                                                                \
    int R, int64_t K, const float *v, int64_t vr, int64_t vk, const float *u, int64_t ldu,     \
        float *m, int64_t ldm, int acc
#define MK_FUNCS(NAME, VR)                                                                     \
    AVX512 static void NAME##_1(MK_ARGS) {                                                     \
        (void)vr;                                                                              \
        switch (R) {                                                                           \
        KCASE(1, 1, VR) KCASE(2, 1, VR) KCASE(3, 1, VR) KCASE(4, 1, VR) KCASE(5, 1, VR) \
        KCASE(6, 1, VR) KCASE(7, 1, VR) KCASE(8, 1, VR) KCASE(9, 1, VR) KCASE(10, 1, VR) \
        KCASE(11, 1, VR) KCASE(12, 1, VR) KCASE(13, 1, VR) KCASE(14, 1, VR) KCASE(15, 1, VR) \
        KCASE(16, 1, VR) KCASE(17, 1, VR) KCASE(18, 1, VR) KCASE(19, 1, VR) KCASE(20, 1, VR) \
        KCASE(21, 1, VR) KCASE(22, 1, VR) KCASE(23, 1, VR) KCASE(24, 1, VR) KCASE(25, 1, VR) \
        KCASE(26, 1, VR) KCASE(27, 1, VR) KCASE(28, 1, VR)                                                   \
        }                                                                                      \
    }                                                                                          \
    AVX512 static void NAME##_2(MK_ARGS) {                                                     \
        (void)vr;                                                                              \
        switch (R) {                                                                           \
        KCASE(1, 2, VR) KCASE(2, 2, VR) KCASE(3, 2, VR) KCASE(4, 2, VR) KCASE(5, 2, VR) \
        KCASE(6, 2, VR) KCASE(7, 2, VR) KCASE(8, 2, VR) KCASE(9, 2, VR) KCASE(10, 2, VR) \
        KCASE(11, 2, VR) KCASE(12, 2, VR) KCASE(13, 2, VR) KCASE(14, 2, VR)                                                   \
        }                                                                                      \
    }                                                                                          \
    AVX512 static void NAME##_3(MK_ARGS) {                                                     \
        (void)vr;                                                                              \
        switch (R) { KCASE(1, 3, VR) KCASE(2, 3, VR) KCASE(3, 3, VR) KCASE(4, 3, VR) KCASE(5, 3, VR) KCASE(6, 3, VR) KCASE(7, 3, VR) KCASE(8, 3, VR) KCASE(9, 3, VR) }                    \
    }                                                                                          \
    AVX512 static void NAME##_4(MK_ARGS) {                                                     \
        (void)vr;                                                                              \
        switch (R) { KCASE(1, 4, VR) KCASE(2, 4, VR) KCASE(3, 4, VR) KCASE(4, 4, VR) KCASE(5, 4, VR) KCASE(6, 4, VR) KCASE(7, 4, VR) }                                      \
    }                                                                                          \
    AVX512 static void NAME(int Q, MK_ARGS) {                                                  \
        if (Q == 4) NAME##_4(R, K, v, vr, vk, u, ldu, m, ldm, acc);                            \
        else if (Q == 3) NAME##_3(R, K, v, vr, vk, u, ldu, m, ldm, acc);                       \
        else if (Q == 2) NAME##_2(R, K, v, vr, vk, u, ldu, m, ldm, acc);                       \
        else NAME##_1(R, K, v, vr, vk, u, ldu, m, ldm, acc);                                   \
    }

MK_FUNCS(mk_v1, 1)
MK_FUNCS(mk_v16, 16)
MK_FUNCS(mk_v32, 32)
MK_FUNCS(mk_v64, 64)
MK_FUNCS(mk_vany, vr)

// Q (1 to 4) vectors of columns, R <= 28 / Q rows.
AVX512 static void mk(int Q, MK_ARGS) {
    switch (vr) {
    case 1: mk_v1(Q, R, K, v, vr, vk, u, ldu, m, ldm, acc); break;
    case 16: mk_v16(Q, R, K, v, vr, vk, u, ldu, m, ldm, acc); break;
    case 32: mk_v32(Q, R, K, v, vr, vk, u, ldu, m, ldm, acc); break;
    case 64: mk_v64(Q, R, K, v, vr, vk, u, ldu, m, ldm, acc); break;
    default: mk_vany(Q, R, K, v, vr, vk, u, ldu, m, ldm, acc);
    }
}

// -DWINO_PROF: seconds per stage of sample() in wino_prof (a development aid)
#ifdef WINO_PROF
double wino_prof[4];
#include "base/report.h"
#define WP(k)                                                                                  \
    do {                                                                                       \
        double t_ = ns_now();                                                                  \
        wino_prof[k] += t_ - tp_;                                                              \
        tp_ = t_;                                                                              \
    } while (0)
#else
#define WP(k)                                                                                  \
    do {                                                                                       \
    } while (0)
#endif

// Prefetches slice `part` of `parts` of n floats at x (for writing when w):
// while one sample computes, the next sample's input and output are brought
// in, a slice per product (a layer's activations come from memory, sample
// after sample, and the first touches of 16 or more planes would otherwise
// stall). noipa: GCC would delete calls with no effect it can see.
__attribute__((noipa)) static void prefetch_part(const float *x, int64_t n, int64_t part,
                                                 int64_t parts, int w) {
    if (!x) return;
    int64_t step = (n + parts - 1) / parts;
    for (int64_t i = part * step; i < (part + 1) * step && i < n; i += 16) {
        if (w) __builtin_prefetch(x + i, 1);
        else __builtin_prefetch(x + i);
    }
}

AVX512 static void sample(float *dst, int acc, const float *x, const float *U, float *t,
                          const wplan *p, const float *next_x, const float *next_dst,
                          const ns_wino_epi *epi) {
#ifdef WINO_PROF
    double tp_ = ns_now();
#endif
    const int64_t Cin = p->Cin, Cout = p->Cout, Wp = p->Wp, Tpad = p->Tpad;
    float *xt = t + p->o_xt, *V = t + p->o_V, *M = t + p->o_M;
    // 1. padded NHWC copy: xt[((ih + PH)*Wp + iw + PW)*Cin + c] = x[c][ih][iw]
    for (int64_t ih = 0; ih < p->H; ih++)
        transpose16(xt + ((ih + p->PH) * Wp + p->PW) * Cin, Cin, x + ih * p->W, p->H * p->W, Cin,
                    p->W, 0);
    // 2. input transform
    WP(0);
    for (int64_t ty = 0, tile = 0; ty < p->nty; ty++)
        for (int64_t tx = 0; tx < p->ntx; tx++, tile++)
            for (int64_t c = 0; c < Cin; c += 16)
                input_tile(V + tile * Cin + c, Tpad * Cin, xt + (4 * ty * Wp + 4 * tx) * Cin + c,
                           Wp * Cin, Cin);
    WP(1);
    // 3. the 36 products, R tiles x up to 4 vectors of output channels at a time
    const int R = (int)p->R;
    for (int64_t xi = 0; xi < 36; xi++) {
        prefetch_part(next_x, Cin * p->H * p->W, xi, 36, 0);
        prefetch_part(next_dst, Cout * p->OH * p->OW, xi, 36, 1);
        const float *Vx = V + xi * Tpad * Cin, *Ux = U + xi * Cin * Cout;
        float *Mx = M + xi * Tpad * Cout;
        for (int64_t r0 = 0; r0 < Tpad; r0 += R)
            for (int64_t q0 = 0; q0 < p->nq; q0 += 4) {
                int64_t Q = p->nq - q0 < 4 ? p->nq - q0 : 4;
                mk((int)Q, R, Cin, Vx + r0 * Cin, Cin, 1, Ux + q0 * 16, Cout,
                   Mx + r0 * Cout + q0 * 16, Cout, 0);
            }
    }
    WP(2);
    // 4. output transform, transposed in registers into the NCHW planes
    const int64_t OHW = p->OH * p->OW, OW = p->OW;
    for (int64_t ty = 0, tile = 0; ty < p->nty; ty++)
        for (int64_t tx = 0; tx < p->ntx; tx++, tile++) {
            const int rows = p->OH - 4 * ty < 4 ? (int)(p->OH - 4 * ty) : 4;
            const int cols = OW - 4 * tx < 4 ? (int)(OW - 4 * tx) : 4;
            for (int64_t c = 0; c < Cout; c += 16)
                output_tile_nchw(dst + c * OHW + 4 * ty * OW + 4 * tx, OHW, OW, rows, cols,
                                 M + tile * Cout + c, Tpad * Cout, acc, epi, c,
                                 epi && epi->res ? epi->res + c * OHW + 4 * ty * OW + 4 * tx : NULL);
        }
    WP(3);
}
// z = A y: the adjoint of the output transform, four vectors to six
AVX512 static inline void a6(__m512 *z, __m512 y0, __m512 y1, __m512 y2, __m512 y3) {
    __m512 s02 = _mm512_add_ps(y0, y2), s13 = _mm512_add_ps(y1, y3);
    z[0] = y0;
    z[1] = _mm512_add_ps(s02, s13);
    z[2] = _mm512_sub_ps(s02, s13);
    z[3] = FMA(SET(0.125f), y3, FMA(SET(0.5f), y1, FMA(SET(0.25f), y2, y0)));
    z[4] = FMA(SET(-8.0f), y3, FMA(SET(-2.0f), y1, FMA(SET(4.0f), y2, y0)));
    z[5] = y3;
}

// Y[xi] (36 vectors ystride apart) = (A dy A^T)[xi] for a 4x4 tile of dout,
// 16 channels (rows rs apart, columns cs apart).
AVX512 static void dout_tile(float *Y, int64_t ystride, const float *d, int64_t rs, int64_t cs) {
    __m512 z[6][4];
    for (int b = 0; b < 4; b++) {
        __m512 v[6];
        const float *c = d + b * cs;
        a6(v, _mm512_loadu_ps(c), _mm512_loadu_ps(c + rs), _mm512_loadu_ps(c + 2 * rs),
           _mm512_loadu_ps(c + 3 * rs));
        for (int k = 0; k < 6; k++) z[k][b] = v[k];
    }
    for (int k = 0; k < 6; k++) {
        __m512 v[6];
        a6(v, z[k][0], z[k][1], z[k][2], z[k][3]);
        for (int l = 0; l < 6; l++) _mm512_storeu_ps(Y + (k * 6 + l) * ystride, v[l]);
    }
}

// part[xi][c][oc] (= or, with acc, +=) the sum over the samples' tiles of
// V[xi][t][c] Y[xi][t][oc], for samples n0 .. n0 + nb - 1 (nb <= B), in
// thread slice t.
AVX512 static void dweight_batch(float *part, int acc, const float *dout, const float *inp, int64_t n0,
                                 int64_t nb, float *t, const wplan *p, const float *next_x,
                                 const float *next_dy) {
    const int64_t Cin = p->Cin, Cout = p->Cout, Wp = p->Wp, OWp = p->OWp, Tpad = p->Tpad;
    const int64_t HW = p->H * p->W, OHW = p->OH * p->OW, K = nb * Tpad, KB = p->B * Tpad;
    float *xt = t + p->o_xt, *V = t + p->o_V, *Y = t + p->o_Y, *dyt = t + p->o_dyt;
#ifdef WINO_PROF
    double tp_ = ns_now();
#endif
    for (int64_t j = 0; j < nb; j++) {
        const float *x = inp + (n0 + j) * Cin * HW, *dy = dout + (n0 + j) * Cout * OHW;
        for (int64_t ih = 0; ih < p->H; ih++)
            transpose16(xt + ((ih + p->PH) * Wp + p->PW) * Cin, Cin, x + ih * p->W, HW, Cin, p->W, 0);
        for (int64_t oh = 0; oh < p->OH; oh++)
            transpose16(dyt + oh * OWp * Cout, Cout, dy + oh * p->OW, OHW, Cout, p->OW, 0);
        WP(0);
        for (int64_t ty = 0, tile = j * Tpad; ty < p->nty; ty++)
            for (int64_t tx = 0; tx < p->ntx; tx++, tile++) {
                for (int64_t c = 0; c < Cin; c += 16)
                    input_tile(V + tile * Cin + c, KB * Cin, xt + (4 * ty * Wp + 4 * tx) * Cin + c,
                               Wp * Cin, Cin);
                for (int64_t c = 0; c < Cout; c += 16)
                    dout_tile(Y + tile * Cout + c, KB * Cout,
                              dyt + (4 * ty * OWp + 4 * tx) * Cout + c, OWp * Cout, Cout);
            }
    }
    WP(1);
    // rows of Cin (R at a time, balanced) x up to 4 vectors of Cout
    const int64_t nq = p->nq, Qmax = p->Qmax, Rmax = 28 / Qmax;
    const int64_t nblk = cdiv(Cin, Rmax), R = cdiv(Cin, nblk);
    for (int64_t xi = 0; xi < 36; xi++) {
        prefetch_part(next_x, nb * Cin * HW, xi, 36, 0);
        prefetch_part(next_dy, nb * Cout * OHW, xi, 36, 0);
        const float *Vx = V + xi * KB * Cin, *Yx = Y + xi * KB * Cout;
        float *Px = part + xi * Cin * Cout;
        for (int64_t c0 = 0; c0 < Cin; c0 += R) {
            const int64_t r = Cin - c0 < R ? Cin - c0 : R;
            for (int64_t q0 = 0; q0 < nq; q0 += 4) {
                const int64_t Q = nq - q0 < 4 ? nq - q0 : 4;
                mk((int)Q, (int)r, K, Vx + c0, 1, Cin, Yx + q0 * 16, Cout, Px + c0 * Cout + q0 * 16,
                   Cout, acc);
            }
        }
    }
    WP(2);
}
#endif

// dweight += the weight gradient, Winograd's way: dU[xi] = sum over samples
// and tiles of (B^T d B)[xi] (A dy A^T)[xi]^T, then dW = G^T dU G. Samples go in
// chunks fixed by N (as the packed path's), each chunk summed into its own
// partial by one thread, the partials added in chunk order in double: the
// result does not depend on the thread count.
void ns_wino_dweight(float *dweight, float *scratch, const float *dout, const float *inp,
                     const ns_conv2d_geom *g) {
#ifdef WINO_AVX512
    wplan p, pb;
    make_wplan(&p, g, 0);
    make_wplan(&pb, g, 1);
    float *parts = align64(scratch);
    const int64_t N = g->N, Cin = p.Cin, Cout = p.Cout, per = 36 * Cin * Cout;
#pragma omp parallel num_threads(p.threads) if (p.nchunks > 1)
    {
        float *t = thread_slice(scratch, omp_get_thread_num(), &p, &pb);
        memset(t + p.o_xt, 0, (size_t)(p.Hp * p.Wp * Cin) * sizeof(float));
        memset(t + p.o_dyt, 0, (size_t)(p.OHp * p.OWp * Cout) * sizeof(float));
        // the padding tiles of each sample's block stay zero in V and Y
        memset(t + p.o_V, 0, (size_t)(36 * p.B * p.Tpad * Cin) * sizeof(float));
        memset(t + p.o_Y, 0, (size_t)(36 * p.B * p.Tpad * Cout) * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < p.nchunks; ch++) {
            float *part = parts + ch * p.part_floats;
            const int64_t end = (ch + 1) * p.chunk < N ? (ch + 1) * p.chunk : N;
            for (int64_t n0 = ch * p.chunk; n0 < end; n0 += p.B) {
                const int64_t nb = end - n0 < p.B ? end - n0 : p.B;
                const int more = n0 + nb < end;
                dweight_batch(part, n0 > ch * p.chunk, dout, inp, n0, nb, t, &p,
                              more ? inp + (n0 + nb) * Cin * g->H * g->W : NULL,
                              more ? dout + (n0 + nb) * Cout * g->OH * g->OW : NULL);
            }
        }
        // the partials summed in chunk order, in double, into S, streaming
        // through blocks
        double *S = (double *)(parts + p.nchunks * p.part_floats);
#pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < per; i0 += 1024) {
            const int64_t i1 = i0 + 1024 < per ? i0 + 1024 : per;
            for (int64_t i = i0; i < i1; i++) S[i] = parts[i];
            for (int64_t ch = 1; ch < p.nchunks; ch++) {
                const float *pc = parts + ch * p.part_floats;
                for (int64_t i = i0; i < i1; i++) S[i] += pc[i];
            }
        }
        // dW[co][ci] += G^T S G, 64 output channels at a time (vectorised over them)
        const int64_t CC = Cin * Cout, nco = cdiv(Cout, 64);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < Cin * nco; b++) {
            const int64_t ci = b / nco, co0 = b % nco * 64, nc = Cout - co0 < 64 ? Cout - co0 : 64;
            double T[3][6][64];
            for (int i = 0; i < 3; i++)
                for (int l = 0; l < 6; l++) {
                    double *Tr = T[i][l];
                    for (int64_t c = 0; c < nc; c++) Tr[c] = 0;
                    for (int k = 0; k < 6; k++) {
                        const double gk = Gm[k][i];
                        if (gk == 0) continue;
                        const double *Sr = S + (k * 6 + l) * CC + ci * Cout + co0;
                        for (int64_t c = 0; c < nc; c++) Tr[c] += gk * Sr[c];
                    }
                }
            for (int64_t c = 0; c < nc; c++) {
                float *dw = dweight + ((co0 + c) * Cin + ci) * 9;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) {
                        double a = 0;
                        for (int l = 0; l < 6; l++) a += T[i][l][c] * Gm[l][j];
                        dw[i * 3 + j] += (float)a;
                    }
            }
        }
    }
#else
    (void)dweight, (void)scratch, (void)dout, (void)inp, (void)g;
#endif
}

// One sample: dst (Cout planes) = (or += with acc) the correlation of x (Cin
// planes), with the weights ns_wino_prepare transformed, in thread slice t.
void ns_wino_sample(float *dst, int acc, const float *x, const float *scratch, float *t,
                    const ns_conv2d_geom *g, int dinp, const float *next_x,
                    const float *next_dst, const ns_wino_epi *epi) {
#ifdef WINO_AVX512
    wplan p;
    make_wplan(&p, g, dinp);
    sample(dst, acc, x, align64((float *)scratch), t, &p, next_x, next_dst, epi);
#else
    (void)dst, (void)acc, (void)x, (void)scratch, (void)t, (void)g, (void)dinp, (void)next_x;
    (void)next_dst, (void)epi;
#endif
}
