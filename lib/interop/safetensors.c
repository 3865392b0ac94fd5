// safetensors.c: the safetensors format (statedict.h), both ways:
//   u64 little-endian N, N bytes of JSON {name: {"dtype": "F32", "shape": [..],
//   "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data;
// offsets are relative to the data's start. Reading trusts nothing: the header
// length against the file, each offset against the data, each tensor's bytes
// against its shape, and no two tensors may share bytes. Entries are taken in
// the order of their offsets (the file's order). Writing pads the header with
// spaces to a multiple of 8, as the reference library does.
#include "interop/statedict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/jsonparse.h"
#include "interop/pickle.h"

static const struct {
    const char *name;
    ns_dtype dtype;
} st_dtypes[] = {
    {"F32", NS_F32}, {"F16", NS_F16}, {"BF16", NS_BF16}, {"F64", NS_F64}, {"I64", NS_I64},
    {"I32", NS_I32}, {"I16", NS_I16}, {"I8", NS_I8},     {"U8", NS_U8},   {"BOOL", NS_BOOL},
};

static const char *st_dtype_name(ns_dtype dt) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].dtype == dt) return st_dtypes[i].name;
    return NULL;
}

// A JSON number that is an integer in [0, max].
static int json_uint(const ns_jvalue *v, double max, int64_t *out) {
    if (!v || v->type != NS_JNUM || !(v->num >= 0) || v->num > max || v->num != floor(v->num)) return -1;
    *out = (int64_t)v->num;
    return 0;
}

typedef struct st_entry {
    const char *name;
    ns_dtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t begin, end;
} st_entry;

static int by_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int parse_entry(const char *name, const ns_jvalue *v, size_t data_len, st_entry *e, ns_err *err) {
    char q[4 * 64 + 4];
    const char *qn = ns_quote_bytes(q, 64, name, strlen(name));
    if (v->type != NS_JOBJ) return ns_errf(err, "safetensors: %s is not an object", qn);
    const ns_jvalue *dt = ns_json_get(v, "dtype"), *shape = ns_json_get(v, "shape"),
                    *off = ns_json_get(v, "data_offsets");
    e->name = name;
    int known = 0;
    for (size_t i = 0; dt && dt->type == NS_JSTR && i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (strcmp(dt->str, st_dtypes[i].name) == 0) e->dtype = st_dtypes[i].dtype, known = 1;
    if (!known)
        return ns_errf(err, "safetensors: %s has dtype %s (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL are read)",
                       qn, dt && dt->type == NS_JSTR ? dt->str : "missing");
    if (!shape || shape->type != NS_JARR || shape->n > 8)
        return ns_errf(err, "safetensors: %s has no shape of at most 8 dimensions", qn);
    e->ndim = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++)
        if (json_uint(&shape->items[i], (double)(INT64_C(1) << 40), &e->shape[i]) < 0)
            return ns_errf(err, "safetensors: %s has a bad dimension", qn);
    if (!off || off->type != NS_JARR || off->n != 2 || json_uint(&off->items[0], 9007199254740992.0, &e->begin) < 0 ||
        json_uint(&off->items[1], 9007199254740992.0, &e->end) < 0 || e->begin > e->end)
        return ns_errf(err, "safetensors: %s has no data_offsets [begin, end]", qn);
    if ((uint64_t)e->end > data_len)
        return ns_errf(err, "safetensors: %s ends at byte %lld of the data, which has %zu", qn, (long long)e->end,
                       data_len);
    int64_t numel;
    size_t nbytes;
    if (ns_shape_size(e->ndim, e->shape, e->dtype, &numel, &nbytes, err) < 0)
        return ns_err_prefix(err, "safetensors: %s", qn);
    if (nbytes != (size_t)(e->end - e->begin))
        return ns_errf(err, "safetensors: %s takes %lld bytes, its shape and dtype need %zu", qn,
                       (long long)(e->end - e->begin), nbytes);
    return 0;
}

int ns_state_dict_read_safetensors(ns_state_dict *sd, const uint8_t *buf, size_t len, ns_err *err) {
    if (len < 8) return ns_errf(err, "safetensors: %zu bytes, shorter than the header length", len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
    if (hlen > NS_SAFETENSORS_MAX_HEADER || hlen > len - 8)
        return ns_errf(err, "safetensors: a header of %llu bytes in a file of %zu", (unsigned long long)hlen, len);
    ns_jvalue root;
    if (ns_json_parse((const char *)buf + 8, (size_t)hlen, &root, err) < 0)
        return ns_err_prefix(err, "safetensors header");
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    st_entry *e = NULL;
    int rc = -1, n = 0;
    if (root.type != NS_JOBJ) {
        ns_errf(err, "safetensors: the header is not a JSON object");
        goto done;
    }
    e = calloc(root.n + 1, sizeof *e);
    if (!e) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < root.n; i++) {
        if (strcmp(root.keys[i], "__metadata__") == 0) continue;
        if (parse_entry(root.keys[i], &root.items[i], data_len, &e[n], err) < 0) goto done;
        n++;
    }
    qsort(e, (size_t)n, sizeof *e, by_offset);
    for (int i = 1, last = 0; i < n; i++) { // last: the entry reaching furthest so far
        if (e[i].begin < e[last].end && e[i].end > e[i].begin) {
            ns_errf(err, "safetensors: %s and %s share bytes %lld..%lld", e[last].name, e[i].name,
                    (long long)e[i].begin, (long long)e[last].end);
            goto done;
        }
        if (e[i].end > e[last].end) last = i;
    }
    for (int i = 0; i < n; i++) {
        ns_tensor t = {0};
        if (ns_tensor_alloc(&t, e[i].dtype, e[i].ndim, e[i].shape, err) < 0) goto done;
        memcpy(t.data, data + e[i].begin, (size_t)(e[i].end - e[i].begin));
        int added = ns_state_dict_add(sd, e[i].name, strlen(e[i].name), &t, err);
        ns_tensor_free(&t);
        if (added < 0) goto done;
    }
    rc = 0;
done:
    free(e);
    ns_json_free(&root);
    return rc;
}

int ns_state_dict_write_safetensors(const ns_state_dict *sd, FILE *f, const char *const *metadata, int nmeta,
                                    ns_err *err) {
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = open_memstream(&hdr, &hlen);
    if (!h) return ns_errf(err, "out of memory");
    fputc('{', h);
    if (nmeta) {
        fputs("\"__metadata__\":{", h);
        for (int i = 0; i < nmeta; i++) {
            const char *eq = strchr(metadata[i], '=');
            size_t nk = eq ? (size_t)(eq - metadata[i]) : strlen(metadata[i]);
            if (i) fputc(',', h);
            ns_json_string(h, metadata[i], nk);
            fputc(':', h);
            ns_json_string(h, eq ? eq + 1 : "", eq ? strlen(eq + 1) : 0);
        }
        fputs(sd->n ? "}," : "}", h);
    }
    uint64_t at = 0;
    for (int i = 0; i < sd->n; i++) {
        const ns_tensor *t = &sd->items[i].t;
        const char *dt = st_dtype_name(t->dtype);
        if (!dt) {
            fclose(h);
            free(hdr);
            return ns_errf(err, "safetensors: %s has dtype %s", sd->items[i].name, ns_dtypes[t->dtype].name);
        }
        uint64_t nb = ns_tensor_nbytes(t);
        if (i) fputc(',', h);
        ns_json_string(h, sd->items[i].name, strlen(sd->items[i].name));
        fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < t->ndim; d++) fprintf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at, (unsigned long long)(at + nb));
        at += nb;
    }
    fputc('}', h);
    if (fclose(h) != 0) {
        free(hdr);
        return ns_errf(err, "out of memory");
    }
    size_t padded = (hlen + 7) / 8 * 8;
    uint8_t lenbytes[8];
    for (int i = 0; i < 8; i++) lenbytes[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lenbytes, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(hdr);
    for (int i = 0; ok && i < sd->n; i++) {
        size_t nb = ns_tensor_nbytes(&sd->items[i].t);
        ok = fwrite(sd->items[i].t.data, 1, nb, f) == nb;
    }
    return ok ? 0 : ns_errf(err, "safetensors: write failed");
}
