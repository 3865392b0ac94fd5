// op_conv_phase.c: the packed convolution's input planes (op_conv.c): images
// copied into zero-padded planes, and for stride 2 split into phase planes
// (padded[r*SH + a][s*SW + b] in phase (a, b)), with the stride-2 copy and
// its transpose, the strided add of dinp. Shapes: planes of H x W, padded
// Hp x Wp, phase planes Hph x Wph (plan in conv_packed.h).
#include "nn/conv_packed.h"

// nplanes images (H x W) into padded planes (Hp x Wp, stride Lp), the image
// at row r0, column c0 (either may be negative: then it is cropped). Only the
// image is written: the caller zeroes the planes once per call, and the
// borders stay zero from sample to sample.
NS_SIMD_CLONES void ns_conv_copy_planes(float *restrict dst, int64_t Lp, int64_t Hp, int64_t Wp,
                                        const float *restrict src, int64_t nplanes, int64_t H, int64_t W,
                                        int64_t r0, int64_t c0) {
    int64_t rlo = max64(0, -r0), rhi = min64(H, Hp - r0);
    int64_t clo = max64(0, -c0), chi = min64(W, Wp - c0);
    if (rlo >= rhi || clo >= chi) return;
    for (int64_t c = 0; c < nplanes; c++)
        for (int64_t r = rlo; r < rhi; r++)
            copy_wide(dst + c * Lp + (r + r0) * Wp + clo + c0, src + (c * H + r) * W + clo, chi - clo);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_STRIDE2 1
// The two below with AVX-512 masks: 16 results at a time, the last partial,
// touching only the floats the scalar loops would.
__attribute__((target("avx512f"))) static void copy_stride2_512(float *restrict d,
                                                                const float *restrict s,
                                                                int64_t n) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t r = n - i < 16 ? n - i : 16, m = 2 * r - 1; // floats read: s[2i .. 2i+m)
        const __mmask16 m0 = (__mmask16)(m >= 16 ? 0xffff : (1u << m) - 1);
        const __mmask16 m1 = (__mmask16)(m > 16 ? (1u << (m - 16)) - 1 : 0);
        __m512 a = _mm512_maskz_loadu_ps(m0, s + 2 * i);
        __m512 b = m1 ? _mm512_maskz_loadu_ps(m1, s + 2 * i + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(d + i, (__mmask16)((1u << r) - 1), _mm512_permutex2var_ps(a, even, b));
    }
}

__attribute__((target("avx512f"))) static void add_stride2_512(float *restrict d,
                                                               const float *restrict s,
                                                               int64_t n) {
    const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t r = n - i < 16 ? n - i : 16, m = 2 * r - 1; // d[2i .. 2i+m), even ones
        const __mmask16 m0 = (__mmask16)((m >= 16 ? 0xffff : (1u << m) - 1) & 0x5555);
        const __mmask16 m1 = (__mmask16)((m > 16 ? (1u << (m - 16)) - 1 : 0) & 0x5555);
        __m512 sv = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1), s + i);
        float *d0 = d + 2 * i;
        __m512 a = _mm512_maskz_loadu_ps(m0, d0);
        _mm512_mask_storeu_ps(d0, m0, _mm512_add_ps(a, _mm512_permutexvar_ps(lo, sv)));
        if (m1) {
            __m512 b = _mm512_maskz_loadu_ps(m1, d0 + 16);
            _mm512_mask_storeu_ps(d0 + 16, m1, _mm512_add_ps(b, _mm512_permutexvar_ps(hi, sv)));
        }
    }
}
#endif

// d[i] = s[2 i] for i < n, where avail floats from s on may be read: vectors
// of 32 deinterleaved while they fit, then one by one (AVX-512: all with
// masked vectors).
NS_SIMD_CLONES static void copy_stride2(float *restrict d, const float *restrict s, int64_t n,
                                int64_t avail) {
#ifdef HAVE_AVX512_STRIDE2
    if (__builtin_cpu_supports("avx512f")) {
        copy_stride2_512(d, s, n);
        return;
    }
#endif
    int64_t i = 0;
    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {
        vf16 a = *(const vf16 *)(s + 2 * i), b = *(const vf16 *)(s + 2 * i + 16);
        *(vf16 *)(d + i) = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                                   22, 24, 26, 28, 30);
    }
    for (; i < n; i++) d[i] = s[2 * i];
}

// d[2 i] += s[i] for i < n, where avail floats from d on may be touched:
// vectors of 32 while they fit (the odd floats rewritten unchanged), then one
// by one.
NS_SIMD_CLONES void ns_conv_add_stride2(float *restrict d, const float *restrict s, int64_t n,
                                        int64_t avail) {
#ifdef HAVE_AVX512_STRIDE2
    if (__builtin_cpu_supports("avx512f")) {
        add_stride2_512(d, s, n);
        return;
    }
#endif
    int64_t i = 0;
    const vf16 z = {0};
    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {
        vf16 sv = *(const vf16 *)(s + i);
        vf16 lo = __builtin_shufflevector(sv, z, 0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16);
        vf16 hi = __builtin_shufflevector(sv, z, 8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16);
        vf16 d0 = *(vf16 *)(d + 2 * i), d1 = *(vf16 *)(d + 2 * i + 16);
        vf16 a0 = d0 + lo, a1 = d1 + hi;
        // even floats from the sums, odd ones as they were (bit for bit: -0 stays -0)
        *(vf16 *)(d + 2 * i) = __builtin_shufflevector(a0, d0, 0, 17, 2, 19, 4, 21, 6, 23, 8, 25,
                                                       10, 27, 12, 29, 14, 31);
        *(vf16 *)(d + 2 * i + 16) = __builtin_shufflevector(a1, d1, 0, 17, 2, 19, 4, 21, 6, 23, 8,
                                                            25, 10, 27, 12, 29, 14, 31);
    }
    for (; i < n; i++) d[2 * i] += s[i];
}

// Whether some tap reads phase (a, b): kh*DH = a mod SH and kw*DW = b mod SW.
static int phase_used(int64_t a, int64_t b, const ns_conv2d_geom *g) {
    int ra = 0, rb = 0;
    for (int64_t kh = 0; kh < g->KH; kh++) ra |= kh * g->DH % g->SH == a;
    for (int64_t kw = 0; kw < g->KW; kw++) rb |= kw * g->DW % g->SW == b;
    return ra && rb;
}

// The zero-padded planes (pad PH, PW) split into SH x SW phase planes:
// phase (a, b) of channel c, at dst + c*Lp + (a*SW + b)*PL, holds
// padded[r*SH + a][s*SW + b] at r*Wph + s; the rest of each plane is zero
// (the caller zeroes the buffer once per call). With stride 1 that is the
// padded plane itself. Phases no tap reads are left alone.
void ns_conv_phase_planes(float *dst, const float *src, const ns_conv2d_geom *g, const plan *p) {
    if (g->SH == 1 && g->SW == 1) {
        ns_conv_copy_planes(dst, p->PL, p->Hph, p->Wph, src, p->Cg, g->H, g->W, g->PH, g->PW);
        return;
    }
    const int64_t H = g->H, W = g->W, SH = g->SH, SW = g->SW, Wph = p->Wph;
    for (int64_t c = 0; c < p->Cg; c++)
        for (int64_t a = 0; a < SH; a++)
            for (int64_t b = 0; b < SW; b++) {
                if (!phase_used(a, b, g)) continue;
                float *d = dst + c * p->Lp + (a * SW + b) * p->PL;
                // padded column s*SW + b is input column s*SW + b - PW
                int64_t slo, shi;
                valid_range(b - g->PW, SW, W, Wph, &slo, &shi);
                for (int64_t r = 0; r < p->Hph; r++) {
                    int64_t ih = r * SH + a - g->PH;
                    if (ih < 0 || ih >= H) continue;
                    const float *sr = src + (c * H + ih) * W + b - g->PW;
                    float *dr = d + r * Wph;
                    if (SW == 2 && shi > slo) {
                        // the row's input from column 2 slo + b - PW on
                        copy_stride2(dr + slo, sr + 2 * slo, shi - slo, W - (2 * slo + b - g->PW));
                        continue;
                    }
                    for (int64_t s2 = slo; s2 < shi; s2++) dr[s2] = sr[s2 * SW];
                }
            }
}
