// torch_zip.c: torch.save's zip format (statedict.h), both ways. Reading: the
// entries are read with libarchive (sizes as they arrive, never as headers
// claim, within the archive's own length), data.pkl runs through the
// restricted pickle machine, each storage's file must hold exactly the bytes
// its declaration says, and each tensor view is copied out contiguous.
// Writing: an OrderedDict of _rebuild_tensor_v2 calls, one storage per
// tensor, the zip written through stream/'s archive writer.
#include "interop/statedict.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

#include "interop/pickle.h"
#include "stream/dataset.h"

typedef struct zip_entry {
    char *name;   // without the top folder
    uint8_t *data;
    size_t len;
} zip_entry;

typedef struct zip_contents {
    zip_entry *e;
    int n, cap;
    char top[256];
} zip_contents;

static void zip_free(zip_contents *z) {
    for (int i = 0; i < z->n; i++) {
        free(z->e[i].name);
        free(z->e[i].data);
    }
    free(z->e);
}

static const zip_entry *zip_find(const zip_contents *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->e[i].name, name) == 0) return &z->e[i];
    return NULL;
}

// One entry's bytes, growing the buffer as data arrives; never more than
// `budget` in all (a zip cannot inflate past it, the archive being in memory
// and stored by torch, but a hostile one could be deflated).
static int read_entry(struct archive *a, zip_entry *e, size_t *budget, ns_err *err) {
    size_t cap = 0;
    for (;;) {
        if (e->len == cap) {
            size_t next = cap ? 2 * cap : 4096;
            if (next > *budget + 1) next = *budget + 1;
            if (next <= e->len) return ns_errf(err, "torch zip: entries inflate past %zu bytes", e->len);
            uint8_t *grown = realloc(e->data, next);
            if (!grown) return ns_errf(err, "out of memory");
            e->data = grown;
            cap = next;
        }
        la_ssize_t got = archive_read_data(a, e->data + e->len, cap - e->len);
        if (got < 0) return ns_errf(err, "torch zip: %s: %s", e->name, ns_archive_error(a));
        if (got == 0) break;
        e->len += (size_t)got;
        if (e->len > *budget) return ns_errf(err, "torch zip: entries inflate past %zu bytes", *budget);
    }
    *budget -= e->len;
    return 0;
}

static int zip_read(zip_contents *z, const uint8_t *buf, size_t len, ns_err *err) {
    struct archive *a = archive_read_new();
    if (!a) return ns_errf(err, "out of memory");
    archive_read_support_format_zip_seekable(a);
    int rc = 0;
    if (archive_read_open_memory(a, buf, len) != ARCHIVE_OK) {
        rc = ns_errf(err, "torch zip: %s", ns_archive_error(a));
        archive_read_free(a);
        return rc;
    }
    // Inflated bytes are bounded: stored entries by the archive, deflated
    // ones by 16 times the archive plus the pickle's cap.
    size_t budget = len > SIZE_MAX / 32 ? SIZE_MAX / 2 : 16 * len + NS_TORCH_MAX_PICKLE;
    struct archive_entry *ae;
    int r;
    while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
        const char *path = archive_entry_pathname(ae);
        const char *slash = path ? strchr(path, '/') : NULL;
        if (!slash || slash == path || (size_t)(slash - path) >= sizeof z->top) {
            rc = ns_errf(err, "torch zip: an entry outside a top folder (%s)", path ? path : "?");
            break;
        }
        size_t ntop = (size_t)(slash - path);
        if (!z->n && !z->top[0]) memcpy(z->top, path, ntop);
        else if (strlen(z->top) != ntop || memcmp(z->top, path, ntop) != 0) {
            rc = ns_errf(err, "torch zip: entries in two top folders (%s, %s)", z->top, path);
            break;
        }
        if (archive_entry_filetype(ae) != AE_IFREG) continue;
        if (z->n == z->cap) {
            int cap = z->cap ? 2 * z->cap : 64;
            if (z->cap >= (1 << 20)) {
                rc = ns_errf(err, "torch zip: more than %d entries", 1 << 20);
                break;
            }
            zip_entry *grown = realloc(z->e, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = ns_errf(err, "out of memory");
                break;
            }
            z->e = grown;
            z->cap = cap;
        }
        zip_entry *e = &z->e[z->n++];
        memset(e, 0, sizeof *e);
        e->name = strdup(slash + 1);
        if (!e->name) {
            rc = ns_errf(err, "out of memory");
            break;
        }
        if (read_entry(a, e, &budget, err) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF) rc = ns_errf(err, "torch zip: %s", ns_archive_error(a));
    archive_read_free(a);
    return rc;
}

// Copies a strided view into a new contiguous tensor.
static int copy_view(ns_tensor *t, const ns_pk_tensor *v, const ns_pk_storage *s, const uint8_t *data, ns_err *err) {
    if (ns_tensor_alloc(t, s->dtype, v->ndim, v->shape, err) < 0) return -1;
    size_t es = ns_dtypes[s->dtype].size;
    if (!t->numel) return 0;
    int contiguous = 1;
    int64_t expect = 1;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->shape[d] != 1 && v->stride[d] != expect) contiguous = 0;
        expect *= v->shape[d];
    }
    if (contiguous) {
        memcpy(t->data, data + (size_t)v->offset * es, (size_t)t->numel * es);
        return 0;
    }
    int64_t idx[NS_PICKLE_MAX_DIMS] = {0};
    uint8_t *out = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t at = v->offset;
        for (int d = 0; d < v->ndim; d++) at += idx[d] * v->stride[d];
        memcpy(out + (size_t)i * es, data + (size_t)at * es, es);
        for (int d = v->ndim - 1; d >= 0; d--) {
            if (++idx[d] < v->shape[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}

// Follows key ("a/b") through nested dicts.
static const ns_pk_value *select_dict(const ns_pk_value *root, const char *key, ns_err *err) {
    const ns_pk_value *v = root;
    const char *k = key ? key : "";
    while (*k) {
        const char *end = strchr(k, '/');
        size_t n = end ? (size_t)(end - k) : strlen(k);
        const ns_pk_value *next = ns_pk_dict_get(v, k, n);
        if (!next) {
            ns_errf(err, "torch: no key '%.*s' in the checkpoint (--key %s)", (int)n, k, key);
            return NULL;
        }
        v = next;
        k += n + (end != NULL);
    }
    if (v->type != NS_PK_DICT) {
        ns_errf(err, "torch: the checkpoint%s%s is not a dict", key && *key ? " at " : "", key ? key : "");
        return NULL;
    }
    return v;
}

// "'epoch', 'state_dict', ..." : the keys of a dict, for messages.
static void list_keys(char *buf, size_t cap, const ns_pk_value *d) {
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i + 1 < d->n && o + 8 < cap; i += 2) {
        const ns_pk_value *k = d->items[i];
        if (k->type != NS_PK_STR) continue;
        char q[4 * 48 + 4];
        int w = snprintf(buf + o, cap - o, "%s'%s'", o ? ", " : "", ns_quote_bytes(q, 48, k->s, k->n));
        if (w < 0 || (size_t)w >= cap - o) break;
        o += (size_t)w;
    }
}

// Views may repeat elements (stride 0), so a small storage could ask for a
// huge tensor: what is copied out is capped at 4 times the archive plus 64 MB.
static int collect_tensors(ns_state_dict *sd, const ns_pickle *p, const ns_pk_value *dict,
                           const uint8_t **storage_data, const char *key, size_t archive_len, ns_err *err) {
    uint64_t budget = 4 * (uint64_t)archive_len + (64u << 20);
    size_t ntensors = 0;
    for (size_t i = 1; i < dict->n; i += 2) ntensors += dict->items[i]->type == NS_PK_TENSOR;
    if (!ntensors) {
        char keys[400];
        list_keys(keys, sizeof keys, dict);
        return ns_errf(err, "torch: no tensors in the checkpoint%s%s (its keys: %s): choose the dict of tensors "
                       "with --key", key && *key ? " at " : "", key ? key : "", keys[0] ? keys : "none");
    }
    for (size_t i = 0; i + 1 < dict->n; i += 2) {
        const ns_pk_value *k = dict->items[i], *v = dict->items[i + 1];
        char q[4 * 64 + 4];
        if (k->type != NS_PK_STR) return ns_errf(err, "torch: a key of the state_dict that is not a string");
        if (v->type != NS_PK_TENSOR)
            return ns_errf(err, "torch: '%s' in the state_dict is not a tensor", ns_quote_bytes(q, 64, k->s, k->n));
        const ns_pk_storage *s = &p->storages[v->tensor.storage];
        uint64_t numel = 1;
        for (int d = 0; d < v->tensor.ndim; d++)
            numel = v->tensor.shape[d] && numel > UINT64_MAX / (uint64_t)v->tensor.shape[d] ? UINT64_MAX
                                                                                            : numel * (uint64_t)v->tensor.shape[d];
        uint64_t bytes = numel > UINT64_MAX / 8 ? UINT64_MAX : numel * ns_dtypes[s->dtype].size;
        if (bytes > budget)
            return ns_errf(err, "torch: '%s' repeats its storage's elements into more bytes than the file could hold",
                           ns_quote_bytes(q, 64, k->s, k->n));
        budget -= bytes;
        ns_tensor t = {0};
        if (copy_view(&t, &v->tensor, s, storage_data[v->tensor.storage], err) < 0) return -1;
        int rc = ns_state_dict_add(sd, k->s, k->n, &t, err);
        ns_tensor_free(&t);
        if (rc < 0) return -1;
    }
    return 0;
}

int ns_state_dict_read_torch(ns_state_dict *sd, const uint8_t *buf, size_t len, const char *key, ns_err *err) {
    zip_contents z = {0};
    ns_pickle p = {0};
    const uint8_t **storage_data = NULL;
    int rc = -1;
    if (zip_read(&z, buf, len, err) < 0) goto done;
    const zip_entry *pkl = zip_find(&z, "data.pkl"), *order = zip_find(&z, "byteorder");
    if (!pkl) {
        ns_errf(err, "torch zip: no data.pkl (not a file written by torch.save)");
        goto done;
    }
    if (pkl->len > NS_TORCH_MAX_PICKLE) {
        ns_errf(err, "torch zip: data.pkl of %zu bytes (at most %u)", pkl->len, NS_TORCH_MAX_PICKLE);
        goto done;
    }
    if (order && !(order->len >= 6 && memcmp(order->data, "little", 6) == 0)) {
        ns_errf(err, "torch zip: big-endian storages are not read");
        goto done;
    }
    if (ns_pickle_load(&p, pkl->data, pkl->len, err) < 0) goto done;
    storage_data = calloc((size_t)p.nstorages + 1, sizeof *storage_data);
    if (!storage_data) {
        ns_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < p.nstorages; i++) {
        const ns_pk_storage *s = &p.storages[i];
        char name[NS_PICKLE_MAX_KEY + 8];
        snprintf(name, sizeof name, "data/%s", s->key);
        const zip_entry *e = zip_find(&z, name);
        size_t want = (size_t)s->numel * ns_dtypes[s->dtype].size;
        if (!e) {
            ns_errf(err, "torch zip: no file %s for storage %s", name, s->key);
            goto done;
        }
        if (e->len != want) {
            ns_errf(err, "torch zip: storage %s holds %zu bytes, its %lld %s elements need %zu", s->key, e->len,
                    (long long)s->numel, ns_dtypes[s->dtype].name, want);
            goto done;
        }
        storage_data[i] = e->data;
    }
    const ns_pk_value *dict = select_dict(p.root, key, err);
    if (!dict) goto done;
    rc = collect_tensors(sd, &p, dict, storage_data, key, len, err);
done:
    free(storage_data);
    ns_pickle_free(&p);
    zip_free(&z);
    return rc;
}

// ---------------------------------------------------------------------------
// writing

typedef struct pk_out {
    uint8_t *b;
    size_t n, cap;
    int failed;
} pk_out;

static void put(pk_out *o, const void *s, size_t n) {
    if (o->failed) return;
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->n + n) cap *= 2;
        uint8_t *grown = realloc(o->b, cap);
        if (!grown) {
            o->failed = 1;
            return;
        }
        o->b = grown;
        o->cap = cap;
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
}

static void put_byte(pk_out *o, uint8_t c) { put(o, &c, 1); }

static void put_str(pk_out *o, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    uint8_t h[5] = {'X', (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    put(o, h, 5);
    put(o, s, n);
}

static void put_int(pk_out *o, int64_t v) { // LONG1 with 8 bytes: any int64
    uint8_t h[10] = {0x8a, 8};
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)v >> (8 * i));
    put(o, h, 10);
}

static void put_global(pk_out *o, const char *mod, const char *name) {
    put_byte(o, 'c');
    put(o, mod, strlen(mod));
    put_byte(o, '\n');
    put(o, name, strlen(name));
    put_byte(o, '\n');
}

int ns_state_dict_write_torch(const ns_state_dict *sd, FILE *f, const char *archive_name, ns_err *err) {
    pk_out o = {0};
    put(&o, "\x80\x02", 2);
    put_global(&o, "collections", "OrderedDict");
    put(&o, ")R", 2);
    if (sd->n) put_byte(&o, '(');
    for (int i = 0; i < sd->n; i++) {
        const ns_tensor *t = &sd->items[i].t;
        const char *storage = ns_pk_storage_name(t->dtype);
        if (!storage) {
            free(o.b);
            return ns_errf(err, "torch: %s has dtype %s, which torch storages lack", sd->items[i].name,
                           ns_dtypes[t->dtype].name);
        }
        char key[32];
        snprintf(key, sizeof key, "%d", i);
        put_str(&o, sd->items[i].name);
        put_global(&o, "torch._utils", "_rebuild_tensor_v2");
        put(&o, "((", 2);
        put_str(&o, "storage");
        put_global(&o, "torch", storage);
        put_str(&o, key);
        put_str(&o, "cpu");
        put_int(&o, t->numel);
        put(&o, "tQ", 2);
        put_int(&o, 0);
        put_byte(&o, '(');
        for (int d = 0; d < t->ndim; d++) put_int(&o, t->shape[d]);
        put_byte(&o, 't');
        put_byte(&o, '(');
        int64_t stride = 1, strides[NS_MAX_NDIM];
        for (int d = t->ndim - 1; d >= 0; d--) {
            strides[d] = stride;
            stride *= t->shape[d];
        }
        for (int d = 0; d < t->ndim; d++) put_int(&o, strides[d]);
        put_byte(&o, 't');
        put_byte(&o, 0x89);
        put_global(&o, "collections", "OrderedDict");
        put(&o, ")Rt", 3);
        put_byte(&o, 'R');
    }
    if (sd->n) put_byte(&o, 'u');
    put_byte(&o, '.');
    if (o.failed) {
        free(o.b);
        return ns_errf(err, "out of memory");
    }
    ns_archive_writer *aw = ns_archive_writer_open(f, "zip-stored", err);
    if (!aw) {
        free(o.b);
        return -1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/data.pkl", archive_name);
    int rc = ns_archive_add(aw, path, o.b, o.n, err);
    for (int i = 0; rc == 0 && i < sd->n; i++) {
        snprintf(path, sizeof path, "%s/data/%d", archive_name, i);
        rc = ns_archive_add(aw, path, sd->items[i].t.data, ns_tensor_nbytes(&sd->items[i].t), err);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/version", archive_name);
        rc = ns_archive_add(aw, path, "3\n", 2, err);
    }
    free(o.b);
    if (rc < 0) {
        ns_archive_writer_abort(aw);
        return -1;
    }
    return ns_archive_writer_close(aw, err);
}
