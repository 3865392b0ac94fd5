// rng.c: xoshiro256** (Blackman and Vigna) with splitmix64 seeding.
#include "base/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void ns_rng_seed(ns_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

void ns_rng_seed_stream(ns_rng *rng, uint64_t seed, uint64_t stream, uint64_t index) {
    ns_rng_seed(rng, seed ^ (stream * 0x9e3779b97f4a7c15ull) ^ (index * 0xd1b54a32d192ed03ull) ^
                         (index >> 32) * 0x8cb92ba72f3d8dd7ull);
}

uint64_t ns_rng_next(ns_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ns_rng_uniform(ns_rng *rng) { return (double)(ns_rng_next(rng) >> 11) * 0x1.0p-53; }

double ns_rng_normal(ns_rng *rng) {
    double u1 = ns_rng_uniform(rng), u2 = ns_rng_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

uint64_t ns_rng_below(ns_rng *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; // reject the biased tail
    uint64_t x;
    do x = ns_rng_next(rng);
    while (x >= limit);
    return x % n;
}

void ns_rng_shuffle(ns_rng *rng, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ns_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
}
