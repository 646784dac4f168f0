/* Internal streaming digests: MD5 (to check CIFAR files against the md5s published
 * for them) and SHA-256 (CIFAR-100 checksums, kernel cache keys).
 * Usage: init, any number of update calls, final. Not installed. */
#ifndef P7_DIGEST_H
#define P7_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "p7/status.h"

typedef struct p7_md5 {
    uint32_t state[4];
    uint64_t length;      /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;          /* bytes waiting in `block` */
} p7_md5;

typedef struct p7_sha256 {
    uint32_t state[8];
    uint64_t length;
    uint8_t block[64];
    size_t fill;
} p7_sha256;

#define P7_MD5_BYTES 16
#define P7_SHA256_BYTES 32

void p7_md5_init(p7_md5 *ctx);
void p7_md5_update(p7_md5 *ctx, const void *data, size_t size);
void p7_md5_final(p7_md5 *ctx, uint8_t digest[P7_MD5_BYTES]);

void p7_sha256_init(p7_sha256 *ctx);
void p7_sha256_update(p7_sha256 *ctx, const void *data, size_t size);
void p7_sha256_final(p7_sha256 *ctx, uint8_t digest[P7_SHA256_BYTES]);

/* Lower-case hex of `size` bytes into `out`, which must hold 2 * size + 1 chars. */
void p7_digest_hex(const uint8_t *digest, size_t size, char *out);

typedef enum p7_digest_kind { P7_DIGEST_MD5 = 0, P7_DIGEST_SHA256 = 1 } p7_digest_kind;

/* Hex digest of a whole file (read in chunks). Fails with P7_ERROR_IO naming the file. */
p7_status p7_digest_file(const char *path, p7_digest_kind kind, char *hex_out, size_t hex_size);

#endif
