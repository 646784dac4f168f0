/* Random fills from Philox4x32-10, the same generator and stream convention as the
 * host's p7_rng (core/include/p7/rng.h): key = seed, counter = {block lo, block hi,
 * stream lo, stream hi}; word w of a stream is word w % 4 of block w / 4. So element
 * i of a uniform or sign fill uses word i, and a normal fill uses words 2i, 2i+1:
 * the host and every device draw the same bits for a seed. */

/* Scaling must round the same way everywhere: no fused multiply-add contraction. */
#pragma OPENCL FP_CONTRACT OFF

inline uint4 p7_philox4x32_10(uint4 c, uint2 k)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) k += (uint2)(0x9E3779B9u, 0xBB67AE85u);
        const uint lo0 = 0xD2511F53u * c.x, hi0 = mul_hi(0xD2511F53u, c.x);
        const uint lo1 = 0xCD9E8D57u * c.z, hi1 = mul_hi(0xCD9E8D57u, c.z);
        c = (uint4)(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

/* Words 4*block .. 4*block+3 of (seed, stream). */
inline uint4 p7_philox_block(const ulong seed, const ulong stream, const ulong block)
{
    const uint4 counter = (uint4)((uint)block, (uint)(block >> 32), (uint)stream, (uint)(stream >> 32));
    return p7_philox4x32_10(counter, (uint2)((uint)seed, (uint)(seed >> 32)));
}

inline uint p7_word(const uint4 w, const uint lane)
{
    return lane == 0 ? w.x : lane == 1 ? w.y : lane == 2 ? w.z : w.w;
}

/* 24 random bits in [0, 1), exactly like p7_rng_uniform */
inline float p7_unit(const uint w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

/* kind 0: uniform in [a, b); kind 1: +1 with probability a, else -1 (the study's
 * random-sign init). One work-item per block of four elements. */
__kernel void rng_philox_fill_random_words(__global float *x, const ulong offset, const ulong count, const ulong seed,
                                   const ulong stream, const int kind, const float a, const float b)
{
    const ulong block = get_global_id(0);
    const uint4 w = p7_philox_block(seed, stream, block);
    for (uint lane = 0; lane < 4; lane++) {
        const ulong i = block * 4 + lane;
        if (i >= count) return;
        const float u = p7_unit(p7_word(w, lane));
        x[offset + i] = kind == 0 ? a + (b - a) * u : (u < a ? 1.0f : -1.0f);
    }
}

/* Normal(mean, std) by Box-Muller from words 2i (u1 in (0, 1]) and 2i+1 (u2). One
 * work-item per block: two elements. Uses the cosine branch only, so element i
 * depends on its own two words and nothing else. */
__kernel void rng_philox_fill_normal(__global float *x, const ulong offset, const ulong count, const ulong seed,
                             const ulong stream, const float mean, const float std)
{
    const ulong block = get_global_id(0);
    const uint4 w = p7_philox_block(seed, stream, block);
    for (uint pair = 0; pair < 2; pair++) {
        const ulong i = block * 2 + pair;
        if (i >= count) return;
        const float u1 = (float)((p7_word(w, 2 * pair) >> 8) + 1u) * (1.0f / 16777216.0f);
        const float u2 = p7_unit(p7_word(w, 2 * pair + 1));
        x[offset + i] = mean + std * sqrt(-2.0f * log(u1)) * cos(6.2831853071795864769f * u2);
    }
}
