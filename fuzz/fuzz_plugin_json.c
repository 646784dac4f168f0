/* The JSON reader of `p7plugin compare` (apps/p7plugin_json.c): reference files are
 * outside input, often hand-edited or written by a user's script. A parsed document must
 * be a well-formed tree; a refused one must say where ("line L, column C: ..."). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_support.h"
#include "p7plugin_json.h"

/* Walks the tree: every kind is known, every string and key readable, and a lookup
 * of each key of an object finds a member. */
static void check_tree(const json_value *v, int depth)
{
    FUZZ_CHECK(depth <= 65);
    switch (v->kind) {
    case JSON_NULL:
    case JSON_BOOL:
    case JSON_NUMBER: FUZZ_CHECK(v->count == 0); break;
    case JSON_STRING: FUZZ_CHECK(v->string != NULL); (void)strlen(v->string); break;
    case JSON_ARRAY:
        FUZZ_CHECK(v->count == 0 || v->items != NULL);
        for (size_t i = 0; i < v->count; i++) check_tree(&v->items[i], depth + 1);
        break;
    case JSON_OBJECT:
        FUZZ_CHECK(v->count == 0 || (v->items != NULL && v->keys != NULL));
        for (size_t i = 0; i < v->count; i++) {
            FUZZ_CHECK(v->keys[i] != NULL);
            FUZZ_CHECK(json_get(v, v->keys[i]) != NULL);
            check_tree(&v->items[i], depth + 1);
        }
        break;
    default: FUZZ_CHECK(!"unknown JSON kind");
    }
    FUZZ_CHECK(json_kind_name(v->kind) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_value doc;
    char err[256] = "";
    if (json_parse((const char *)data, size, &doc, err, sizeof err)) {
        check_tree(&doc, 0);
        json_free(&doc);
    } else {
        FUZZ_CHECK(strncmp(err, "line ", 5) == 0); /* where, then what */
        FUZZ_CHECK(doc.kind == JSON_NULL && doc.count == 0 && doc.items == NULL);
    }
    return 0;
}
