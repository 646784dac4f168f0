/* JSON reader: recursive descent over the whole text, with every failure reported as a
 * position and what was expected there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p7plugin_json.h"

#define MAX_DEPTH 64

typedef struct reader {
    const char *text;
    size_t size, at;
    char *err;
    size_t err_size;
    int failed;
} reader;

static int fail_at(reader *r, const char *what)
{
    if (r->failed) return 0;
    size_t line = 1, column = 1;
    for (size_t i = 0; i < r->at && i < r->size; i++) {
        if (r->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    snprintf(r->err, r->err_size, "line %zu, column %zu: %s", line, column, what);
    r->failed = 1;
    return 0;
}

static void skip_space(reader *r)
{
    while (r->at < r->size && (r->text[r->at] == ' ' || r->text[r->at] == '\t' || r->text[r->at] == '\n' ||
                               r->text[r->at] == '\r'))
        r->at++;
}

static int take_word(reader *r, const char *word)
{
    size_t n = strlen(word);
    if (r->size - r->at < n || memcmp(r->text + r->at, word, n) != 0) return 0;
    r->at += n;
    return 1;
}

static int parse_value(reader *r, json_value *v, int depth);

static int hex4(reader *r, unsigned *code)
{
    if (r->size - r->at < 4) return fail_at(r, "expected four hex digits after \\u");
    *code = 0;
    for (int i = 0; i < 4; i++) {
        char c = r->text[r->at++];
        unsigned d = (c >= '0' && c <= '9') ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                              : 16u;
        if (d == 16) return fail_at(r, "expected four hex digits after \\u");
        *code = *code * 16 + d;
    }
    return 1;
}

static size_t put_utf8(char *out, unsigned code)
{
    if (code < 0x80) {
        out[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char)(0xC0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[3] = (char)(0x80 | (code & 0x3F));
    return 4;
}

/* At the opening quote. The decoded string is never longer than its source. */
static int parse_string(reader *r, char **out)
{
    r->at++;
    size_t start = r->at;
    while (r->at < r->size && r->text[r->at] != '"') r->at += r->text[r->at] == '\\' ? 2 : 1;
    if (r->at >= r->size) return fail_at(r, "a string without its closing quote");
    size_t end = r->at;
    char *s = malloc(end - start + 1), *w = s;
    if (!s) return fail_at(r, "out of memory");
    for (r->at = start; r->at < end;) {
        char c = r->text[r->at++];
        if ((unsigned char)c < 0x20) {
            free(s);
            r->at--;
            return fail_at(r, "a control character inside a string (escape it)");
        }
        if (c != '\\') {
            *w++ = c;
            continue;
        }
        char e = r->text[r->at++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            *w++ = decoded[simple - "\"\\/bfnrt"];
        } else if (e == 'u') {
            unsigned code;
            if (!hex4(r, &code)) {
                free(s);
                return 0;
            }
            if (code >= 0xD800 && code < 0xDC00 && end - r->at >= 6 && r->text[r->at] == '\\' &&
                r->text[r->at + 1] == 'u') {
                unsigned low;
                r->at += 2;
                if (!hex4(r, &low)) {
                    free(s);
                    return 0;
                }
                if (low >= 0xDC00 && low < 0xE000) code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                else {
                    free(s);
                    return fail_at(r, "a \\u surrogate pair with an invalid second half");
                }
            }
            if (code == 0) {
                free(s);
                return fail_at(r, "\\u0000 inside a string");
            }
            w += put_utf8(w, code);
        } else {
            free(s);
            r->at--;
            return fail_at(r, "an unknown escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
        }
    }
    *w = '\0';
    r->at = end + 1;
    *out = s;
    return 1;
}

static int parse_number(reader *r, json_value *v)
{
    if (take_word(r, "NaN")) {
        v->number = NAN;
        return 1;
    }
    if (take_word(r, "Infinity")) {
        v->number = INFINITY;
        return 1;
    }
    if (take_word(r, "-Infinity")) {
        v->number = -INFINITY;
        return 1;
    }
    size_t start = r->at;
    if (r->at < r->size && r->text[r->at] == '-') r->at++;
    size_t digits = r->at;
    while (r->at < r->size && r->text[r->at] >= '0' && r->text[r->at] <= '9') r->at++;
    if (r->at == digits) return fail_at(r, "expected a value (a number, string, array, object, true, false or null)");
    if (r->at < r->size && r->text[r->at] == '.') {
        r->at++;
        size_t frac = r->at;
        while (r->at < r->size && r->text[r->at] >= '0' && r->text[r->at] <= '9') r->at++;
        if (r->at == frac) return fail_at(r, "expected digits after the decimal point");
    }
    if (r->at < r->size && (r->text[r->at] == 'e' || r->text[r->at] == 'E')) {
        r->at++;
        if (r->at < r->size && (r->text[r->at] == '+' || r->text[r->at] == '-')) r->at++;
        size_t exp = r->at;
        while (r->at < r->size && r->text[r->at] >= '0' && r->text[r->at] <= '9') r->at++;
        if (r->at == exp) return fail_at(r, "expected digits in the exponent");
    }
    char token[64];
    size_t n = r->at - start;
    if (n >= sizeof token) {
        r->at = start;
        return fail_at(r, "a number longer than 63 characters");
    }
    memcpy(token, r->text + start, n);
    token[n] = '\0';
    v->number = strtod(token, NULL);
    return 1;
}

static int parse_array(reader *r, json_value *v, int depth)
{
    r->at++;
    size_t cap = 0;
    skip_space(r);
    if (r->at < r->size && r->text[r->at] == ']') {
        r->at++;
        return 1;
    }
    for (;;) {
        if (v->count == cap) {
            cap = cap ? 2 * cap : 8;
            json_value *grown = realloc(v->items, cap * sizeof *grown);
            if (!grown) return fail_at(r, "out of memory");
            v->items = grown;
        }
        json_value *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->count++;
        if (!parse_value(r, item, depth + 1)) return 0;
        skip_space(r);
        if (r->at < r->size && r->text[r->at] == ',') {
            r->at++;
            continue;
        }
        if (r->at < r->size && r->text[r->at] == ']') {
            r->at++;
            return 1;
        }
        return fail_at(r, "expected ',' or ']' in an array");
    }
}

static int parse_object(reader *r, json_value *v, int depth)
{
    r->at++;
    size_t cap = 0;
    skip_space(r);
    if (r->at < r->size && r->text[r->at] == '}') {
        r->at++;
        return 1;
    }
    for (;;) {
        skip_space(r);
        if (r->at >= r->size || r->text[r->at] != '"') return fail_at(r, "expected a member name in double quotes");
        if (v->count == cap) {
            cap = cap ? 2 * cap : 8;
            json_value *items = realloc(v->items, cap * sizeof *items);
            if (!items) return fail_at(r, "out of memory");
            v->items = items;
            char **keys = realloc(v->keys, cap * sizeof *keys);
            if (!keys) return fail_at(r, "out of memory");
            v->keys = keys;
        }
        json_value *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->keys[v->count] = NULL;
        v->count++;
        if (!parse_string(r, &v->keys[v->count - 1])) return 0;
        skip_space(r);
        if (r->at >= r->size || r->text[r->at] != ':') return fail_at(r, "expected ':' after a member name");
        r->at++;
        if (!parse_value(r, item, depth + 1)) return 0;
        skip_space(r);
        if (r->at < r->size && r->text[r->at] == ',') {
            r->at++;
            continue;
        }
        if (r->at < r->size && r->text[r->at] == '}') {
            r->at++;
            return 1;
        }
        return fail_at(r, "expected ',' or '}' in an object");
    }
}

static int parse_value(reader *r, json_value *v, int depth)
{
    if (depth > MAX_DEPTH) return fail_at(r, "nesting deeper than 64 levels");
    skip_space(r);
    if (r->at >= r->size) return fail_at(r, "expected a value, found the end of the text");
    char c = r->text[r->at];
    if (c == '{') {
        v->kind = JSON_OBJECT;
        return parse_object(r, v, depth);
    }
    if (c == '[') {
        v->kind = JSON_ARRAY;
        return parse_array(r, v, depth);
    }
    if (c == '"') {
        v->kind = JSON_STRING;
        return parse_string(r, &v->string);
    }
    if (take_word(r, "true")) {
        v->kind = JSON_BOOL;
        v->boolean = 1;
        return 1;
    }
    if (take_word(r, "false")) {
        v->kind = JSON_BOOL;
        return 1;
    }
    if (take_word(r, "null")) {
        v->kind = JSON_NULL;
        return 1;
    }
    v->kind = JSON_NUMBER;
    return parse_number(r, v);
}

int json_parse(const char *text, size_t size, json_value *out, char *err, size_t err_size)
{
    reader r = {text, size, 0, err, err_size, 0};
    memset(out, 0, sizeof *out);
    if (memchr(text, '\0', size)) {
        r.at = (size_t)((const char *)memchr(text, '\0', size) - text);
        fail_at(&r, "a NUL byte (this is not a text file)");
        return 0;
    }
    int ok = parse_value(&r, out, 0);
    if (ok) {
        skip_space(&r);
        if (r.at < r.size) ok = fail_at(&r, "text after the end of the document");
    }
    if (!ok) json_free(out);
    return ok;
}

void json_free(json_value *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->count; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    memset(v, 0, sizeof *v);
}

const json_value *json_get(const json_value *object, const char *key)
{
    if (!object || object->kind != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < object->count; i++)
        if (object->keys[i] && strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

const char *json_kind_name(json_kind kind)
{
    static const char *const names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "a value";
}
