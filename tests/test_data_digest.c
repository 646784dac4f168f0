/* MD5 and SHA-256 against the standard test vectors, streamed in odd pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/digest.h"
#include "p7_test_support.h"

static void md5_hex(const void *data, size_t size, size_t piece, char *hex)
{
    p7_md5 ctx;
    uint8_t d[P7_MD5_BYTES];
    p7_md5_init(&ctx);
    const uint8_t *p = data;
    for (size_t off = 0; off < size; off += piece)
        p7_md5_update(&ctx, p + off, size - off < piece ? size - off : piece);
    p7_md5_final(&ctx, d);
    p7_digest_hex(d, sizeof d, hex);
}

static void sha_hex(const void *data, size_t size, size_t piece, char *hex)
{
    p7_sha256 ctx;
    uint8_t d[P7_SHA256_BYTES];
    p7_sha256_init(&ctx);
    const uint8_t *p = data;
    for (size_t off = 0; off < size; off += piece)
        p7_sha256_update(&ctx, p + off, size - off < piece ? size - off : piece);
    p7_sha256_final(&ctx, d);
    p7_digest_hex(d, sizeof d, hex);
}

typedef struct vector {
    const char *text;
    const char *md5, *sha256;
} vector;

static const vector vectors[] = {
    {"", "d41d8cd98f00b204e9800998ecf8427e",
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "900150983cd24fb0d6963f7d28e17f72",
     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0",
     "f7846f55cf23e14eebeab5b4e1550cad5b509e3348fbc4efa3a1413d393cb650"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "8215ef0796a20bcaaae116d3876c664a",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
     "57edf4a22be3c955ac49da2e2107b67a",
     "f371bc4a311f2b009eef952dd83ca80e2b60026c8e935592d0f9c308453c813e"},
};

static void test_vectors(void **state)
{
    (void)state;
    char hex[2 * P7_SHA256_BYTES + 1];
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
        size_t len = strlen(vectors[v].text);
        for (size_t piece = 1; piece <= 65; piece += 7) {
            md5_hex(vectors[v].text, len, piece, hex);
            assert_string_equal(hex, vectors[v].md5);
            sha_hex(vectors[v].text, len, piece, hex);
            assert_string_equal(hex, vectors[v].sha256);
        }
    }
}

static void test_million_a(void **state)
{
    (void)state;
    size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    char hex[2 * P7_SHA256_BYTES + 1];
    md5_hex(a, n, n, hex);
    assert_string_equal(hex, "7707d6ae4e027c70eea2a935c2296f21");
    md5_hex(a, n, 1000, hex);
    assert_string_equal(hex, "7707d6ae4e027c70eea2a935c2296f21");
    sha_hex(a, n, n, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    sha_hex(a, n, 4093, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/p7-digest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    char hex[2 * P7_SHA256_BYTES + 1];
    P7_ASSERT_OK(p7_digest_file(path, P7_DIGEST_MD5, hex, sizeof hex));
    assert_string_equal(hex, "900150983cd24fb0d6963f7d28e17f72");
    P7_ASSERT_OK(p7_digest_file(path, P7_DIGEST_SHA256, hex, sizeof hex));
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(p7_digest_file(path, P7_DIGEST_MD5, hex, sizeof hex), P7_ERROR_IO);
    assert_non_null(strstr(p7_last_error(), path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
