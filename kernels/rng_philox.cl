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

/* Philox4x32-10 on sixteen counters at once: lane j of x, y, z, w is word 0..3 of one
 * block, as p7_philox4x32_10 would give it. */
inline void p7_philox16(uint16 *x, uint16 *y, uint16 *z, uint16 *w, uint2 k)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) k += (uint2)(0x9E3779B9u, 0xBB67AE85u);
        const uint16 lo0 = (uint16)(0xD2511F53u) * *x, hi0 = mul_hi((uint16)(0xD2511F53u), *x);
        const uint16 lo1 = (uint16)(0xCD9E8D57u) * *z, hi1 = mul_hi((uint16)(0xCD9E8D57u), *z);
        const uint16 nx = hi1 ^ *y ^ k.x, nz = hi0 ^ *w ^ k.y;
        *x = nx;
        *y = lo1;
        *z = nz;
        *w = lo0;
    }
}

/* Box-Muller's cosine branch on sixteen (u1, u2) pairs of words: u1 in (0, 1], u2 in [0, 1). */
inline float16 p7_box_muller16(const uint16 w1, const uint16 w2, const float mean, const float std)
{
    const float16 u1 = convert_float16((w1 >> 8) + 1u) * (1.0f / 16777216.0f);
    const float16 u2 = convert_float16(w2 >> 8) * (1.0f / 16777216.0f);
    return mean + std * sqrt(-2.0f * log(u1)) * cos(6.2831853071795864769f * u2);
}

/* Normal(mean, std) by Box-Muller from words 2i (u1 in (0, 1]) and 2i+1 (u2), the
 * cosine branch only, so element i depends on its own two words and nothing else.
 * One work-item per 16 blocks, 32 elements, all computed as vectors (a ragged end too,
 * then stored one by one), so every element takes the same arithmetic: one block per
 * work-item with an early return kept PoCL from vectorising log and cos, and IVON's
 * noise for VGG11-BN's 9.2M weights took 260 ms a step (31 ms with 8 blocks per
 * work-item, 16 ms with 16: AVX-512's 16 lanes). */
__kernel void rng_philox_fill_normal(__global float *x, const ulong offset, const ulong count, const ulong seed,
                             const ulong stream, const float mean, const float std)
{
    const ulong first = get_global_id(0) * 16; /* first block */
    const ulong16 blocks = first + (ulong16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint16 w0 = convert_uint16(blocks), w1 = convert_uint16(blocks >> 32);
    uint16 w2 = (uint16)((uint)stream), w3 = (uint16)((uint)(stream >> 32));
    p7_philox16(&w0, &w1, &w2, &w3, (uint2)((uint)seed, (uint)(seed >> 32)));
    /* block b holds element 2b (words 0, 1) and element 2b + 1 (words 2, 3) */
    const float16 even = p7_box_muller16(w0, w1, mean, std), odd = p7_box_muller16(w2, w3, mean, std);
    const float16 lo = shuffle2(even, odd, (uint16)(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    const float16 hi = shuffle2(even, odd, (uint16)(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31));
    const ulong i0 = first * 2;
    if (i0 + 32 <= count) {
        vstore16(lo, 0, x + offset + i0);
        vstore16(hi, 1, x + offset + i0);
    } else if (i0 < count) {
        float v[32];
        vstore16(lo, 0, v);
        vstore16(hi, 1, v);
        for (uint j = 0; j < 32 && i0 + j < count; j++) x[offset + i0 + j] = v[j];
    }
}
