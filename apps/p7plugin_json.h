/* A small JSON reader for `p7plugin compare`'s reference files: the whole document into a
 * tree. Besides standard JSON it reads NaN, Infinity and -Infinity, which Python's json
 * module writes for such floats. */
#ifndef P7PLUGIN_JSON_H
#define P7PLUGIN_JSON_H

#include <stddef.h>

typedef enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_value json_value;
struct json_value {
    json_kind kind;
    int boolean;
    double number;
    char *string;      /* JSON_STRING: NUL-terminated UTF-8 */
    size_t count;      /* JSON_ARRAY: items; JSON_OBJECT: members */
    json_value *items; /* array items, or member values */
    char **keys;       /* JSON_OBJECT: member names */
};

/* Parses text[0 .. size) (a NUL inside is an error). On failure returns 0 and writes
 * "line L, column C: what was expected" into err. Nesting deeper than 64 is refused. */
int json_parse(const char *text, size_t size, json_value *out, char *err, size_t err_size);
void json_free(json_value *value);

/* The member `key` of an object, or NULL (also when `object` is not an object). */
const json_value *json_get(const json_value *object, const char *key);

/* A name for the kind, for messages ("an array", "a number"). */
const char *json_kind_name(json_kind kind);

#endif
