/* Philox4x32-10 (see p7/rng.h for the algorithm and the stream convention). */
#include <math.h>
#include <string.h>

#include "p7/rng.h"
#include "runtime/runtime.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void p7_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void p7_rng_init(p7_rng *rng, uint64_t seed, uint64_t stream)
{
    memset(rng, 0, sizeof *rng);
    rng->key[0] = (uint32_t)seed;
    rng->key[1] = (uint32_t)(seed >> 32);
    rng->counter[2] = (uint32_t)stream;
    rng->counter[3] = (uint32_t)(stream >> 32);
}

void p7_rng_seek(p7_rng *rng, uint64_t position)
{
    uint64_t block = position / 4;
    rng->counter[0] = (uint32_t)block;
    rng->counter[1] = (uint32_t)(block >> 32);
    rng->lane = (uint32_t)(position % 4);
    rng->cache_valid = 0;
}

uint32_t p7_rng_u32(p7_rng *rng)
{
    if (!rng->cache_valid) {
        p7_philox4x32_10(rng->counter, rng->key, rng->cache);
        rng->cache_valid = 1;
    }
    uint32_t word = rng->cache[rng->lane];
    if (++rng->lane == 4) {
        rng->lane = 0;
        rng->cache_valid = 0;
        /* The block number is the low 64 bits; the stream id (high 64) stays fixed so
         * streams never run into each other. */
        if (++rng->counter[0] == 0) rng->counter[1]++;
    }
    return word;
}

uint64_t p7_rng_u64(p7_rng *rng)
{
    uint64_t hi = p7_rng_u32(rng);
    return (hi << 32) | p7_rng_u32(rng);
}

float p7_rng_uniform(p7_rng *rng)
{
    return (float)(p7_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

double p7_rng_uniform_double(p7_rng *rng)
{
    return (double)(p7_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t p7_rng_below(p7_rng *rng, uint64_t n)
{
    if (n <= 1) return 0;
    return p7_rng_u64(rng) % n;
}

double p7_rng_normal(p7_rng *rng)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - p7_rng_uniform_double(rng);
    double u2 = p7_rng_uniform_double(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void p7_rng_permutation(p7_rng *rng, uint32_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)p7_rng_below(rng, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void p7_rng_save(const p7_rng *rng, uint8_t out[P7_RNG_STATE_BYTES])
{
    put32(out, rng->key[0]);
    put32(out + 4, rng->key[1]);
    for (int i = 0; i < 4; i++) put32(out + 8 + 4 * i, rng->counter[i]);
    put32(out + 24, rng->lane);
}

p7_status p7_rng_load(p7_rng *rng, const uint8_t in[P7_RNG_STATE_BYTES])
{
    uint32_t lane = get32(in + 24);
    if (lane > 3) return p7_fail(P7_ERROR_FORMAT, "rng state: lane %u is out of range 0..3", lane);
    memset(rng, 0, sizeof *rng);
    rng->key[0] = get32(in);
    rng->key[1] = get32(in + 4);
    for (int i = 0; i < 4; i++) rng->counter[i] = get32(in + 8 + 4 * i);
    rng->lane = lane;
    return P7_SUCCESS;
}
