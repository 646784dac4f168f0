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

/* Philox4x32-10 on eight counters at once: lane j of x, y, z, w is word 0..3 of one
 * block, as p7_philox4x32_10 would give it. */
inline void p7_philox8(uint8 *x, uint8 *y, uint8 *z, uint8 *w, uint2 k)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) k += (uint2)(0x9E3779B9u, 0xBB67AE85u);
        const uint8 lo0 = (uint8)(0xD2511F53u) * *x, hi0 = mul_hi((uint8)(0xD2511F53u), *x);
        const uint8 lo1 = (uint8)(0xCD9E8D57u) * *z, hi1 = mul_hi((uint8)(0xCD9E8D57u), *z);
        const uint8 nx = hi1 ^ *y ^ k.x, nz = hi0 ^ *w ^ k.y;
        *x = nx;
        *y = lo1;
        *z = nz;
        *w = lo0;
    }
}

/* Box-Muller's cosine branch on eight (u1, u2) pairs of words: u1 in (0, 1], u2 in [0, 1). */
inline float8 p7_box_muller8(const uint8 w1, const uint8 w2, const float mean, const float std)
{
    const float8 u1 = convert_float8((w1 >> 8) + 1u) * (1.0f / 16777216.0f);
    const float8 u2 = convert_float8(w2 >> 8) * (1.0f / 16777216.0f);
    return mean + std * sqrt(-2.0f * log(u1)) * cos(6.2831853071795864769f * u2);
}

/* Normal(mean, std) by Box-Muller from words 2i (u1 in (0, 1]) and 2i+1 (u2), the
 * cosine branch only, so element i depends on its own two words and nothing else.
 * One work-item per 8 blocks, 16 elements, all computed as vectors (a ragged end too,
 * then stored one by one), so every element takes the same arithmetic: one block per
 * work-item with an early return kept PoCL from vectorising log and cos, and IVON's
 * noise for VGG11-BN's 9.2M weights took 260 ms a step. */
__kernel void rng_philox_fill_normal(__global float *x, const ulong offset, const ulong count, const ulong seed,
                             const ulong stream, const float mean, const float std)
{
    const ulong first = get_global_id(0) * 8; /* first block */
    const ulong8 blocks = first + (ulong8)(0, 1, 2, 3, 4, 5, 6, 7);
    uint8 w0 = convert_uint8(blocks), w1 = convert_uint8(blocks >> 32);
    uint8 w2 = (uint8)((uint)stream), w3 = (uint8)((uint)(stream >> 32));
    p7_philox8(&w0, &w1, &w2, &w3, (uint2)((uint)seed, (uint)(seed >> 32)));
    /* block b holds element 2b (words 0, 1) and element 2b + 1 (words 2, 3) */
    const float8 even = p7_box_muller8(w0, w1, mean, std), odd = p7_box_muller8(w2, w3, mean, std);
    const float16 z = shuffle2(even, odd, (uint16)(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15));
    const ulong i0 = first * 2;
    if (i0 + 16 <= count) {
        vstore16(z, 0, x + offset + i0);
    } else if (i0 < count) {
        float v[16];
        vstore16(z, 0, v);
        for (uint j = 0; j < 16 && i0 + j < count; j++) x[offset + i0 + j] = v[j];
    }
}
