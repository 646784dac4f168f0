/* p7 random numbers: Philox4x32-10, a counter-based generator.
 *
 * Why counter-based: the numbers are a pure function of (key, counter), so any
 * stream position can be reached without generating what precedes it. That makes
 * split, shuffle, augmentation and synthetic data reproducible for a seed, lets a
 * resumed run continue exactly where it stopped, and lets a worker thread or a
 * device kernel produce the same numbers as the host.
 *
 * The block function is Philox4x32 with 10 rounds as published by Salmon, Moraes,
 * Dror and Shaw ("Parallel random numbers: as easy as 1, 2, 3", SC'11) and the
 * Random123 distribution: 128-bit counter ctr[0..3], 64-bit key key[0..1],
 * multipliers 0xD2511F53 (applied to ctr[0]) and 0xCD9E8D57 (applied to ctr[2]),
 * Weyl key increments 0x9E3779B9 and 0xBB67AE85 between rounds. A device
 * implementation must reproduce p7_philox4x32_10 bit for bit; the tests pin it with
 * the Random123 known-answer vectors.
 *
 * Stream convention of p7_rng (host and future device code must both follow it):
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32 }
 * Block b of a stream yields four 32-bit words, used in order out[0..3]; then the
 * 64-bit block number increments. So word w of (seed, stream) is word w % 4 of
 * block w / 4, independent of how it was reached.
 */
#ifndef P7_RNG_H
#define P7_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "p7/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The bare block function: 4 output words for one counter and key. */
P7_API void p7_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* A sequential stream over the block function. Its complete state is key, counter
 * and lane (the next word within the current block); `cache` only avoids
 * recomputing the block and is not part of the serialised state. */
typedef struct p7_rng {
    uint32_t key[2];
    uint32_t counter[4];
    uint32_t lane;       /* 0..3: next word of block `counter` to hand out */
    uint32_t cache[4];
    int cache_valid;
} p7_rng;

#define P7_RNG_STATE_BYTES 28 /* key(8) counter(16) lane(4), little-endian */

/* Stream `stream` of seed `seed`, positioned at word 0. */
P7_API void p7_rng_init(p7_rng *rng, uint64_t seed, uint64_t stream);

/* Jump to word `position` of the stream (position counts 32-bit words). */
P7_API void p7_rng_seek(p7_rng *rng, uint64_t position);

P7_API uint32_t p7_rng_u32(p7_rng *rng);
P7_API uint64_t p7_rng_u64(p7_rng *rng);            /* two words, first one high */
P7_API float p7_rng_uniform(p7_rng *rng);           /* [0, 1), 24 random bits */
P7_API double p7_rng_uniform_double(p7_rng *rng);   /* [0, 1), 53 random bits */

/* Uniform integer in [0, n), n >= 1: a 64-bit word modulo n. The bias is below
 * n / 2^64, far under anything measurable, and the rule is simple to replicate. */
P7_API uint64_t p7_rng_below(p7_rng *rng, uint64_t n);

/* Standard normal via Box-Muller (uses two 53-bit uniforms per call). */
P7_API double p7_rng_normal(p7_rng *rng);

/* Fisher-Yates permutation of 0..n-1 from this stream: for i = n-1 down to 1,
 * swap perm[i] with perm[p7_rng_below(rng, i + 1)]. */
P7_API void p7_rng_permutation(p7_rng *rng, uint32_t *perm, size_t n);

/* Write / read the state in a fixed little-endian byte layout, so a checkpoint can
 * resume the stream on any host. Load fails with P7_ERROR_FORMAT on a lane > 3. */
P7_API void p7_rng_save(const p7_rng *rng, uint8_t out[P7_RNG_STATE_BYTES]);
P7_API p7_status p7_rng_load(p7_rng *rng, const uint8_t in[P7_RNG_STATE_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
