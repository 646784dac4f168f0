/* Learning-rate schedules against their closed forms, their text form, and the recipes
 * (valid for their plugins, user keys replacing single recipe keys). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p7_test_support.h"

static const double pi = 3.14159265358979323846;

static void assert_lr(const p7_schedule *s, uint64_t position, uint64_t total, uint64_t per_epoch, double want)
{
    double got = p7_schedule_lr(s, 0.1, position, total, per_epoch);
    if (fabs(got - want) > 1e-15) fail_msg("lr at %llu of %llu: %.17g, expected %.17g", (unsigned long long)position,
                                           (unsigned long long)total, got, want);
}

static void test_constant(void **state)
{
    (void)state;
    p7_schedule s;
    P7_ASSERT_OK(p7_schedule_parse("constant", &s));
    for (uint64_t i = 0; i < 12; i++) assert_lr(&s, i, 10, 1, 0.1);
}

static void test_cosine(void **state)
{
    (void)state;
    p7_schedule s;
    P7_ASSERT_OK(p7_schedule_parse("cosine", &s));
    assert_int_equal(s.per_step, 0);
    assert_lr(&s, 0, 10, 1, 0.1);
    assert_lr(&s, 5, 10, 1, 0.05);
    assert_lr(&s, 10, 10, 1, 0.0);
    for (uint64_t i = 0; i <= 10; i++) assert_lr(&s, i, 10, 1, 0.05 * (1 + cos(pi * (double)i / 10)));
    P7_ASSERT_OK(p7_schedule_parse("cosine:floor=0.1,per=step", &s));
    assert_int_equal(s.per_step, 1);
    assert_lr(&s, 50, 100, 7, 0.01 + 0.09 * 0.5); /* per_epoch plays no part without a warm-up */
    assert_lr(&s, 100, 100, 7, 0.01);
}

static void test_warmup_cosine(void **state)
{
    (void)state;
    p7_schedule s;
    /* two epochs of linear warm-up from lr/5, then cosine over the other 8 */
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:warmup=2", &s));
    assert_lr(&s, 0, 10, 1, 0.02);
    assert_lr(&s, 1, 10, 1, 0.1 * (0.2 + 0.8 * 0.5));
    assert_lr(&s, 2, 10, 1, 0.1);
    assert_lr(&s, 6, 10, 1, 0.05);
    assert_lr(&s, 9, 10, 1, 0.05 * (1 + cos(pi * 7.0 / 8.0)));
    /* per step: the warm-up in epochs becomes per_epoch steps each */
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:warmup=1,per=step,start=0.5", &s));
    assert_lr(&s, 0, 200, 50, 0.05);
    assert_lr(&s, 25, 200, 50, 0.1 * (0.5 + 0.5 * 0.5));
    assert_lr(&s, 50, 200, 50, 0.1);
    assert_lr(&s, 125, 200, 50, 0.05);
    /* a fraction of the run */
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:warmup=10%,per=step", &s));
    assert_lr(&s, 5, 100, 3, 0.1 * (0.2 + 0.8 * 0.5));
    assert_lr(&s, 10, 100, 3, 0.1);
    assert_lr(&s, 55, 100, 3, 0.05);
    /* a floor in steps: 5% of 200 steps is 10, at least 40 makes it 40; past it, 5% rules */
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:per=step,warmup=5%,min-warmup=40", &s));
    assert_lr(&s, 20, 200, 50, 0.1 * (0.2 + 0.8 * 0.5));
    assert_lr(&s, 40, 200, 50, 0.1);
    assert_lr(&s, 120, 200, 50, 0.05);
    assert_lr(&s, 100, 2000, 50, 0.1 * (0.5 + 0.5 * cos(pi * 0.0 / 1900.0)));
    assert_lr(&s, 50, 2000, 50, 0.1 * (0.2 + 0.8 * 0.5));
    /* a warm-up longer than the run is all warm-up */
    P7_ASSERT_OK(p7_schedule_parse("warmup-cosine:warmup=4", &s));
    assert_lr(&s, 1, 2, 1, 0.1 * (0.2 + 0.8 * 0.5));
}

static void expect_parse_error(const char *text, const char *needle)
{
    p7_schedule s;
    assert_int_equal(p7_schedule_parse(text, &s), P7_ERROR_INVALID_ARGUMENT);
    if (!strstr(p7_last_error(), needle)) fail_msg("'%s': no '%s' in: %s", text, needle, p7_last_error());
}

static void test_parse_errors_and_format(void **state)
{
    (void)state;
    expect_parse_error("cosin", "unknown name 'cosin'");
    expect_parse_error("cosine:warmup=2", "warmup= belongs to warmup-cosine only");
    expect_parse_error("warmup-cosine:warmup=-1", "warmup=-1: expected epochs >= 0");
    expect_parse_error("warmup-cosine:warmup=150%", "warmup=150%: expected a percentage");
    expect_parse_error("cosine:per=hour", "per=hour: expected epoch or step");
    expect_parse_error("cosine:floor=1", "floor=1: expected a fraction");
    expect_parse_error("cosine:speed=2", "no key 'speed'");
    expect_parse_error("cosine:", "nothing after ':'");
    expect_parse_error("cosine:per", "'per' is no key=value");
    expect_parse_error("constant:floor=0.1", "floor= belongs to cosine");
    expect_parse_error("cosine:min-warmup=10", "min-warmup= belongs to warmup-cosine only");
    expect_parse_error("warmup-cosine:min-warmup=-3", "min-warmup=-3: expected positions");

    const char *texts[] = {"constant", "cosine:floor=0.01", "warmup-cosine:warmup=2,per=step",
                           "warmup-cosine:warmup=5%,start=0.5,floor=0.1",
                           "warmup-cosine:per=step,warmup=5%,min-warmup=100"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        p7_schedule a, b;
        char buf[256];
        P7_ASSERT_OK(p7_schedule_parse(texts[i], &a));
        P7_ASSERT_OK(p7_schedule_parse(p7_schedule_format(&a, buf, sizeof buf), &b));
        for (uint64_t pos = 0; pos < 40; pos++)
            assert_true(p7_schedule_lr(&a, 1.0, pos, 40, 4) == p7_schedule_lr(&b, 1.0, pos, 40, 4));
    }
}

static void test_recipes(void **state)
{
    (void)state;
    const char *names[] = {"sgd", "adam", "ivon"};
    for (size_t i = 0; i < 3; i++) {
        const p7_recipe *r = p7_recipe_find(names[i]);
        assert_non_null(r);
        assert_string_equal(r->optimizer, names[i]);
        p7_optimizer_plugin *plugin;
        P7_ASSERT_OK(p7_optimizer_plugin_open(p7_test_plugin(names[i]), &plugin));
        P7_ASSERT_OK(p7_optimizer_plugin_check_hparams(plugin, r->hparams));
        p7_optimizer_plugin_close(plugin);
        p7_schedule s;
        P7_ASSERT_OK(p7_schedule_parse(r->schedule, &s));
        assert_true(strlen(r->why) > 20);
    }
    assert_null(p7_recipe_find("lion"));
    /* IVON's recipe follows its authors: ess is left to the training-set size */
    assert_null(strstr(p7_recipe_find("ivon")->hparams, "ess="));

    char out[256];
    P7_ASSERT_OK(p7_recipe_merge_hparams("lr=0.2,hess_init=0.5", " lr = 0.1 , mc_samples=2", out, sizeof out));
    assert_string_equal(out, "lr=0.1,hess_init=0.5,mc_samples=2");
    P7_ASSERT_OK(p7_recipe_merge_hparams("lr=0.2", NULL, out, sizeof out));
    assert_string_equal(out, "lr=0.2");
    P7_ASSERT_OK(p7_recipe_merge_hparams(NULL, "momentum=0.9", out, sizeof out));
    assert_string_equal(out, "momentum=0.9");
    assert_int_equal(p7_recipe_merge_hparams("lr=0.2", "lr", out, sizeof out), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_recipe_merge_hparams("lr=0.2,beta2=0.99999", NULL, out, 8), P7_ERROR_INVALID_ARGUMENT);
}

/* IVON's beta2 from the run's length: 1 - 2/steps, so its average spans half the run (the
 * authors' 0.99999 over 200 epochs of 1,000 steps), within [0.99, 0.999]. */
static void test_recipe_for_run(void **state)
{
    (void)state;
    const p7_recipe *ivon = p7_recipe_find("ivon"), *adam = p7_recipe_find("adam");
    char out[256], want[256];
    const struct { uint64_t steps; double beta2; } rows[] = {
        {470, 1.0 - 2.0 / 470.0}, {1056, 1.0 - 2.0 / 1056.0}, {1900, 1.0 - 2.0 / 1900.0},
        {5280, 0.999}, {10, 0.99}, {1000000000, 0.999},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        P7_ASSERT_OK(p7_recipe_hparams_for_run(ivon, rows[i].steps, out, sizeof out));
        const char *b = strstr(out, "beta2=");
        assert_non_null(b);
        assert_true(fabs(strtod(b + 6, NULL) - rows[i].beta2) < 1e-6);
        /* the other assignments stay as written */
        assert_non_null(strstr(out, "lr=0.2,hess_init=1.0,weight_decay=2e-4"));
        p7_optimizer_plugin *plugin;
        P7_ASSERT_OK(p7_optimizer_plugin_open(p7_test_plugin("ivon"), &plugin));
        P7_ASSERT_OK(p7_optimizer_plugin_check_hparams(plugin, out));
        p7_optimizer_plugin_close(plugin);
    }
    /* an unknown length keeps the recipe as written; a recipe without a horizon is unchanged */
    P7_ASSERT_OK(p7_recipe_hparams_for_run(ivon, 0, out, sizeof out));
    assert_string_equal(out, ivon->hparams);
    P7_ASSERT_OK(p7_recipe_hparams_for_run(adam, 470, out, sizeof out));
    snprintf(want, sizeof want, "%s", adam->hparams);
    assert_string_equal(out, want);
    assert_int_equal(p7_recipe_hparams_for_run(ivon, 470, out, 8), P7_ERROR_INVALID_ARGUMENT);
    assert_int_equal(p7_recipe_hparams_for_run(NULL, 470, out, sizeof out), P7_ERROR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_warmup_cosine),
        cmocka_unit_test(test_parse_errors_and_format),
        cmocka_unit_test(test_recipes),
        cmocka_unit_test(test_recipe_for_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
