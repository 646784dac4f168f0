/* Model state files: parameters and buffers by name (see p7/nn.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/tensor_internal.h"
#include "p7/nn.h"

static const char MAGIC[8] = {'P', '7', 'M', 'O', 'D', 'E', 'L', '\0'};
#define BYTE_ORDER_MARK 0x01020304u
#define FORMAT_VERSION 1u
#define MAX_NAME 256

/* Every tensor of the model's state: parameters first, then buffers. */
static size_t state_count(const p7_model *m) { return p7_model_param_count(m) + p7_model_buffer_count(m); }

static p7_tensor *state_at(const p7_model *m, size_t i, const char **name)
{
    size_t np = p7_model_param_count(m);
    return i < np ? p7_model_param(m, i, name) : p7_model_buffer(m, i - np, name);
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }
static int get(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

p7_status p7_model_save_stream(const p7_model *m, FILE *f, const char *name)
{
    if (!m || !f) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_save: NULL argument");
    if (!name) name = "(stream)";
    uint32_t mark = BYTE_ORDER_MARK, version = FORMAT_VERSION, count = (uint32_t)state_count(m);
    if (!put(f, MAGIC, sizeof MAGIC) || !put(f, &mark, 4) || !put(f, &version, 4) || !put(f, &count, 4))
        return p7_fail(P7_ERROR_IO, "p7_model_save: cannot write the header of %s", name);
    float *host = NULL;
    size_t cap = 0;
    p7_status st = P7_SUCCESS;
    for (size_t i = 0; i < count && st == P7_SUCCESS; i++) {
        const char *tname;
        p7_tensor *t = state_at(m, i, &tname);
        char label[MAX_NAME];
        snprintf(label, sizeof label, "%s", tname); /* p7_model_buffer's name is reused per call */
        size_t n = p7_tensor_numel(t);
        if (n > cap) {
            float *grown = realloc(host, n * sizeof *host);
            if (!grown) { st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_model_save: out of host memory"); break; }
            host = grown;
            cap = n;
        }
        st = p7_tensor_download(t, host, n);
        if (st != P7_SUCCESS) break;
        uint32_t len = (uint32_t)strlen(label), ndim = (uint32_t)p7_tensor_ndim(t);
        int ok = put(f, &len, 4) && put(f, label, len) && put(f, &ndim, 4);
        for (uint32_t d = 0; ok && d < ndim; d++) {
            uint64_t extent = (uint64_t)p7_tensor_dim(t, (int)d);
            ok = put(f, &extent, 8);
        }
        if (!(ok && put(f, host, n * sizeof *host)))
            st = p7_fail(P7_ERROR_IO, "p7_model_save: cannot write %s to %s", label, name);
    }
    free(host);
    return st;
}

p7_status p7_model_save(const p7_model *m, const char *path)
{
    if (!m || !path) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_save: NULL argument");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp)
        return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_save: path too long: %s", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return p7_fail(P7_ERROR_IO, "p7_model_save: cannot create %s", tmp);
    p7_status st = p7_model_save_stream(m, f, path);
    if (fclose(f) != 0 && st == P7_SUCCESS) st = p7_fail(P7_ERROR_IO, "p7_model_save: cannot write %s", tmp);
    if (st == P7_SUCCESS && rename(tmp, path) != 0) st = p7_fail(P7_ERROR_IO, "p7_model_save: cannot rename %s to %s", tmp, path);
    if (st != P7_SUCCESS) remove(tmp);
    return st;
}

static const char *shape_text(uint32_t ndim, const uint64_t *dims, char *buf, size_t size)
{
    int64_t s[P7_MAX_DIMS];
    for (uint32_t i = 0; i < ndim && i < P7_MAX_DIMS; i++) s[i] = (int64_t)dims[i];
    return p7_shape_format((int)ndim, s, buf, size);
}

p7_status p7_model_load_stream(p7_model *m, FILE *f, const char *name)
{
    if (!m || !f) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_load: NULL argument");
    if (!name) name = "(stream)";
    char magic[8];
    uint32_t mark = 0, version = 0, count = 0;
    if (!get(f, magic, 8) || memcmp(magic, MAGIC, 8) != 0)
        return p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s is not a p7 model state file (bad magic)", name);
    if (!get(f, &mark, 4) || !get(f, &version, 4) || !get(f, &count, 4))
        return p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s: truncated header", name);
    if (mark != BYTE_ORDER_MARK)
        return p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s was written with the other byte order", name);
    if (version != FORMAT_VERSION)
        return p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s has format version %u; this p7 reads version %u", name,
                       version, FORMAT_VERSION);
    const size_t want = state_count(m);
    if (count != want)
        return p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s holds %u tensors; the model has %zu", name, count, want);

    /* Read and check everything before touching the model: all or nothing. */
    float **staged = calloc(want ? want : 1, sizeof *staged);
    if (!staged) return p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_model_load: out of host memory");
    p7_status st = P7_SUCCESS;
    for (uint32_t e = 0; e < count && st == P7_SUCCESS; e++) {
        uint32_t len = 0, ndim = 0;
        char tname[MAX_NAME];
        uint64_t dims[P7_MAX_DIMS];
        if (!get(f, &len, 4) || len == 0 || len >= MAX_NAME || !get(f, tname, len)) {
            st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s: entry %u is truncated or has a bad name", name, e);
            break;
        }
        tname[len] = '\0';
        if (!get(f, &ndim, 4) || ndim < 1 || ndim > P7_MAX_DIMS) {
            st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s: %s has a bad rank", name, tname);
            break;
        }
        for (uint32_t d = 0; d < ndim && st == P7_SUCCESS; d++)
            if (!get(f, &dims[d], 8)) st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s: %s is truncated", name, tname);
        if (st != P7_SUCCESS) break;
        size_t slot = want;
        for (size_t i = 0; i < want; i++) {
            const char *n;
            state_at(m, i, &n);
            if (strcmp(n, tname) == 0) { slot = i; break; }
        }
        if (slot == want) {
            st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s holds %s, which the model does not have", name, tname);
            break;
        }
        if (staged[slot]) {
            st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s holds %s twice", name, tname);
            break;
        }
        p7_tensor *t = state_at(m, slot, NULL);
        int same = (int)ndim == p7_tensor_ndim(t);
        for (uint32_t d = 0; same && d < ndim; d++) same = dims[d] == (uint64_t)p7_tensor_dim(t, (int)d);
        if (!same) {
            char a[128], b[128];
            st = p7_fail(P7_ERROR_INVALID_SHAPE, "p7_model_load: %s: %s is %s in the file but %s in the model", name,
                         tname, shape_text(ndim, dims, a, sizeof a),
                         p7_shape_format(p7_tensor_ndim(t), p7_tensor_shape(t), b, sizeof b));
            break;
        }
        size_t n = p7_tensor_numel(t);
        staged[slot] = malloc(n * sizeof(float));
        if (!staged[slot]) st = p7_fail(P7_ERROR_OUT_OF_MEMORY, "p7_model_load: out of host memory");
        else if (!get(f, staged[slot], n * sizeof(float)))
            st = p7_fail(P7_ERROR_FORMAT, "p7_model_load: %s: the values of %s are truncated", name, tname);
    }
    for (size_t i = 0; i < want && st == P7_SUCCESS; i++)
        st = p7_tensor_upload(state_at(m, i, NULL), staged[i], p7_tensor_numel(state_at(m, i, NULL)));
    for (size_t i = 0; i < want; i++) free(staged[i]);
    free(staged);
    return st;
}

p7_status p7_model_load(p7_model *m, const char *path)
{
    if (!m || !path) return p7_fail(P7_ERROR_INVALID_ARGUMENT, "p7_model_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return p7_fail(P7_ERROR_IO, "p7_model_load: cannot open %s", path);
    p7_status st = p7_model_load_stream(m, f, path);
    fclose(f);
    return st;
}
