/* Philox4x32-10: Random123 known-answer vectors, stream positioning, state round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7/rng.h"
#include "p7_test_support.h"

static void check_kat(const uint32_t ctr[4], const uint32_t key[2], const uint32_t want[4])
{
    uint32_t out[4];
    p7_philox4x32_10(ctr, key, out);
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], want[i]);
}

static void test_philox_kat(void **state)
{
    (void)state;
    /* From Random123's kat_vectors (philox4x32 10): zeros, all ones, and pi digits. */
    const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    const uint32_t w0[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    check_kat(c0, k0, w0);
    const uint32_t c1[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
    const uint32_t k1[2] = {0xffffffff, 0xffffffff};
    const uint32_t w1[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
    check_kat(c1, k1, w1);
    const uint32_t c2[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    const uint32_t k2[2] = {0xa4093822, 0x299f31d0};
    const uint32_t w2[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
    check_kat(c2, k2, w2);
}

static void test_stream_convention(void **state)
{
    (void)state;
    /* Word w of (seed, stream) is word w%4 of block w/4 with the documented layout. */
    uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
    p7_rng rng;
    p7_rng_init(&rng, seed, stream);
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (uint64_t block = 0; block < 5; block++) {
        uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)};
        uint32_t want[4];
        p7_philox4x32_10(ctr, key, want);
        for (int i = 0; i < 4; i++) assert_int_equal(p7_rng_u32(&rng), want[i]);
    }
    /* The block number carries from the low into the high word. */
    p7_rng_seek(&rng, 4 * (uint64_t)UINT32_MAX + 3);
    (void)p7_rng_u32(&rng);
    assert_int_equal(rng.counter[0], 0);
    assert_int_equal(rng.counter[1], 1);
}

static void test_seek_save_load(void **state)
{
    (void)state;
    p7_rng a, b;
    p7_rng_init(&a, 42, 7);
    uint32_t seq[64];
    for (int i = 0; i < 64; i++) seq[i] = p7_rng_u32(&a);
    for (int start = 0; start < 64; start += 5) {
        p7_rng_init(&b, 42, 7);
        p7_rng_seek(&b, (uint64_t)start);
        for (int i = start; i < 64; i++) assert_int_equal(p7_rng_u32(&b), seq[i]);
    }
    /* Save mid-block, restore into a fresh struct, continue identically. */
    p7_rng_init(&a, 42, 7);
    for (int i = 0; i < 13; i++) (void)p7_rng_u32(&a);
    uint8_t blob[P7_RNG_STATE_BYTES];
    p7_rng_save(&a, blob);
    memset(&b, 0xa5, sizeof b);
    P7_ASSERT_OK(p7_rng_load(&b, blob));
    for (int i = 13; i < 64; i++) assert_int_equal(p7_rng_u32(&b), seq[i]);
    blob[24] = 4;
    assert_int_equal(p7_rng_load(&b, blob), P7_ERROR_FORMAT);
}

static void test_distributions(void **state)
{
    (void)state;
    p7_rng rng;
    p7_rng_init(&rng, 1, 2);
    double sum = 0, sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = p7_rng_uniform(&rng);
        assert_true(u >= 0.0f && u < 1.0f);
        assert_true(p7_rng_below(&rng, 10) < 10);
        double z = p7_rng_normal(&rng);
        sum += z;
        sq += z * z;
    }
    assert_true(fabs(sum / n) < 0.01);
    assert_true(fabs(sq / n - 1.0) < 0.02);

    uint32_t perm[1000];
    p7_rng_permutation(&rng, perm, 1000);
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++) {
        assert_true(perm[i] < 1000);
        assert_int_equal(seen[perm[i]], 0);
        seen[perm[i]] = 1;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_kat),
        cmocka_unit_test(test_stream_convention),
        cmocka_unit_test(test_seek_save_load),
        cmocka_unit_test(test_distributions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
