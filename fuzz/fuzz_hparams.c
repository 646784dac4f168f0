/* The hyperparameter text parser (p7_opt_parse_assignments, optimizer_loader.c)
 * against each bundled plugin's schema; the first byte picks the plugin, the rest is
 * the text. Every value it hands on must be in the schema's range. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "optimizer/optimizer_internal.h"

static p7_optimizer_plugin *plugins[FUZZ_OPTIMIZERS]; /* open for the process's life */
static const p7_opt_plugin *tables[FUZZ_OPTIMIZERS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int i = 0; i < FUZZ_OPTIMIZERS; i++) {
        FUZZ_CHECK(p7_optimizer_plugin_open(fuzz_plugin_path(fuzz_optimizer_names[i]), &plugins[i]) == P7_SUCCESS);
        tables[i] = p7_optimizer_plugin_table(plugins[i]);
    }
    return 0;
}

typedef struct seen {
    const p7_opt_plugin *vt;
    unsigned calls;
} seen;

static p7_status record(void *ctx, int index, double value)
{
    seen *s = ctx;
    FUZZ_CHECK(index >= 0 && (uint32_t)index < s->vt->hparam_count);
    FUZZ_CHECK(p7_opt_hparam_check(s->vt, index, value) == P7_SUCCESS);
    s->calls++;
    return P7_SUCCESS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const p7_opt_plugin *vt = tables[data[0] % FUZZ_OPTIMIZERS];
    char *text = malloc(size);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    unsigned char set[64] = {0};
    FUZZ_CHECK(vt->hparam_count <= sizeof set);
    seen s = {vt, 0};
    p7_status st = p7_opt_parse_assignments(vt, text, record, &s, set);
    if (st != P7_SUCCESS) FUZZ_CHECK(p7_last_error()[0] != '\0');
    unsigned flagged = 0;
    for (size_t i = 0; i < sizeof set; i++) flagged += set[i] != 0;
    FUZZ_CHECK(flagged <= s.calls && (s.calls == 0) == (flagged == 0));
    free(text);
    return 0;
}
