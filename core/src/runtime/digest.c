/* MD5 (RFC 1321) and SHA-256 (FIPS 180-4), streaming, written from the specs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "runtime/digest.h"
#include "runtime/runtime.h"

static uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }
static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* ---- MD5 ---- */

static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

static const unsigned md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                   5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                   4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                   6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(uint32_t s[4], const uint8_t *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) { f = (b & c) | (~b & d); g = i; }
        else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
        else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
        else { f = c ^ (b | ~d); g = (7 * i) % 16; }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rotl(a + f + md5_k[i] + m[g], md5_r[i]);
        a = t;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d;
}

void p7_md5_init(p7_md5 *ctx)
{
    ctx->state[0] = 0x67452301;
    ctx->state[1] = 0xefcdab89;
    ctx->state[2] = 0x98badcfe;
    ctx->state[3] = 0x10325476;
    ctx->length = 0;
    ctx->fill = 0;
}

void p7_md5_update(p7_md5 *ctx, const void *data, size_t size)
{
    const uint8_t *p = data;
    ctx->length += size;
    if (ctx->fill > 0) {
        size_t take = 64 - ctx->fill < size ? 64 - ctx->fill : size;
        memcpy(ctx->block + ctx->fill, p, take);
        ctx->fill += take; p += take; size -= take;
        if (ctx->fill < 64) return;
        md5_block(ctx->state, ctx->block);
        ctx->fill = 0;
    }
    for (; size >= 64; p += 64, size -= 64) md5_block(ctx->state, p);
    memcpy(ctx->block, p, size);
    ctx->fill = size;
}

void p7_md5_final(p7_md5 *ctx, uint8_t digest[P7_MD5_BYTES])
{
    uint64_t bits = ctx->length * 8;
    uint8_t pad[72] = {0x80};
    /* Pad to 56 mod 64, then the bit length little-endian. */
    size_t padlen = ctx->fill < 56 ? 56 - ctx->fill : 120 - ctx->fill;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (8 * i));
    p7_md5_update(ctx, pad, padlen);
    p7_md5_update(ctx, len, 8);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(ctx->state[i] >> (8 * j));
}

/* ---- SHA-256 ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static void sha256_block(uint32_t s[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

void p7_sha256_init(p7_sha256 *ctx)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, h0, sizeof h0);
    ctx->length = 0;
    ctx->fill = 0;
}

void p7_sha256_update(p7_sha256 *ctx, const void *data, size_t size)
{
    const uint8_t *p = data;
    ctx->length += size;
    if (ctx->fill > 0) {
        size_t take = 64 - ctx->fill < size ? 64 - ctx->fill : size;
        memcpy(ctx->block + ctx->fill, p, take);
        ctx->fill += take; p += take; size -= take;
        if (ctx->fill < 64) return;
        sha256_block(ctx->state, ctx->block);
        ctx->fill = 0;
    }
    for (; size >= 64; p += 64, size -= 64) sha256_block(ctx->state, p);
    memcpy(ctx->block, p, size);
    ctx->fill = size;
}

void p7_sha256_final(p7_sha256 *ctx, uint8_t digest[P7_SHA256_BYTES])
{
    uint64_t bits = ctx->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = ctx->fill < 56 ? 56 - ctx->fill : 120 - ctx->fill;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    p7_sha256_update(ctx, pad, padlen);
    p7_sha256_update(ctx, len, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(ctx->state[i] >> (24 - 8 * j));
}

void p7_digest_hex(const uint8_t *digest, size_t size, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * size] = '\0';
}

p7_status p7_digest_file(const char *path, p7_digest_kind kind, char *hex_out, size_t hex_size)
{
    size_t bytes = kind == P7_DIGEST_MD5 ? P7_MD5_BYTES : P7_SHA256_BYTES;
    if (!path || !hex_out || hex_size < 2 * bytes + 1)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "digest: bad arguments");
    FILE *f = fopen(path, "rb");
    if (!f) return p7_fail(P7_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    p7_md5 md5;
    p7_sha256 sha;
    p7_md5_init(&md5);
    p7_sha256_init(&sha);
    static _Thread_local uint8_t chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (kind == P7_DIGEST_MD5) p7_md5_update(&md5, chunk, n);
        else p7_sha256_update(&sha, chunk, n);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return p7_fail(P7_ERROR_IO, "%s: read error", path);
    uint8_t digest[P7_SHA256_BYTES];
    if (kind == P7_DIGEST_MD5) p7_md5_final(&md5, digest);
    else p7_sha256_final(&sha, digest);
    p7_digest_hex(digest, bytes, hex_out);
    return P7_SUCCESS;
}
