// splitmix.h: the tests' small reproducible random source (splitmix64) and a
// uniform float from it, shared by test_chgroups (chgroups_cases.h) and
// test_prune. The state is rng_state, a static uint64_t defined here with a
// default seed; a test that needs another sequence sets rng_state before
// drawing. Static functions: include it once per test program.
#ifndef NS_TEST_SPLITMIX_H
#define NS_TEST_SPLITMIX_H

#include <stdint.h>

#ifndef SPLITMIX_SEED
#define SPLITMIX_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t rng_state = SPLITMIX_SEED;

static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [lo, hi) from the top 24 bits of rnd().
static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) / 16777216.0); }

#endif
