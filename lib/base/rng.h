// rng.h: the one seeded random number generator (xoshiro256**, seeded through
// splitmix64). Same seed, same sequence, on every machine: shuffles, init,
// dropout and augmentation all draw from it.
#ifndef NS_RNG_H
#define NS_RNG_H

#include <stdint.h>

typedef struct ns_rng {
    uint64_t s[4];
} ns_rng;

void ns_rng_seed(ns_rng *rng, uint64_t seed);
// Seeds rng for stream `stream`, item `index` of one seed: independent
// sequences (labels, edges, per-node features, a split, ...) that do not
// depend on the order or the thread they are drawn in.
void ns_rng_seed_stream(ns_rng *rng, uint64_t seed, uint64_t stream, uint64_t index);
uint64_t ns_rng_next(ns_rng *rng);
// Uniform in [0, 1) with 53 random bits.
double ns_rng_uniform(ns_rng *rng);
// Standard normal (Box-Muller; one value per call).
double ns_rng_normal(ns_rng *rng);
// Uniform integer in [0, n), without modulo bias. n > 0.
uint64_t ns_rng_below(ns_rng *rng, uint64_t n);
// Fisher-Yates shuffle of a[0..n).
void ns_rng_shuffle(ns_rng *rng, int64_t *a, int64_t n);

#endif
