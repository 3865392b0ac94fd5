// tns.c: reading and writing TNS tensor streams (format: man/man5/tns.5).
//
// Reader: bytes come from a descriptor into one growing buffer. ns_scan_value
// finds where the next record ends (and vets every container count) before
// msgpack-c decodes it in place, so memory is bounded by the largest record,
// not the stream, and nothing is allocated from a size the input merely claims.
// Writer: the small head of each record is packed into a reused buffer, the
// payload is written straight from the tensor.
#include "stream/tns.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/strset.h"
#include "base/tempfile.h"
#include "stream/tns_scan.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "TNS payloads are little-endian; this build assumes a little-endian host"
#endif

#define READ_CHUNK ((size_t)1 << 20)

// --- reader ----------------------------------------------------------------------
struct ns_reader {
    int fd, own_fd, eof, failed;
    char *label;
    unsigned char *buf;
    size_t cap, start, end; // unread bytes are buf[start, end)
    size_t max_record;
    uint64_t index;
    msgpack_unpacked unpacked;
    int unique;
    ns_strset names;
};

ns_reader *ns_reader_fdopen(int fd, const char *label, ns_err *err) {
    ns_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->label = strdup(label))) {
        free(r);
        ns_errf(err, "out of memory");
        return NULL;
    }
    r->fd = fd;
    r->max_record = NS_RECORD_MAX_DEFAULT;
    msgpack_unpacked_init(&r->unpacked);
    return r;
}

ns_reader *ns_reader_open(const char *path, ns_err *err) {
    if (strcmp(path, "-") == 0) return ns_reader_fdopen(0, "stdin", err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ns_errf(err, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        ns_errf(err, "%s: is a directory, not a stream", path);
        return NULL;
    }
    ns_reader *r = ns_reader_fdopen(fd, path, err);
    if (!r) close(fd);
    else r->own_fd = 1;
    return r;
}

void ns_reader_set_max_record(ns_reader *r, size_t max_bytes) { r->max_record = max_bytes; }

int ns_reader_unread(ns_reader *r, const void *bytes, size_t n, ns_err *err) {
    if (r->index > 0 || r->end > 0 || n > 4096)
        return ns_errf(err, "%s: bytes can only be put back before the first record", r->label);
    if (!r->buf) {
        if (!(r->buf = malloc(READ_CHUNK))) return ns_errf(err, "out of memory");
        r->cap = READ_CHUNK;
    }
    memcpy(r->buf, bytes, n);
    r->end = n;
    return 0;
}
void ns_reader_require_unique_names(ns_reader *r, int on) { r->unique = on; }
const char *ns_reader_label(const ns_reader *r) { return r->label; }

void ns_reader_close(ns_reader *r) {
    if (!r) return;
    if (r->own_fd) close(r->fd);
    msgpack_unpacked_destroy(&r->unpacked);
    ns_strset_free(&r->names);
    free(r->buf);
    free(r->label);
    free(r);
}

// Errors name the input and the record: "in.tns: record 3: <what>".
static int reader_fail(ns_reader *r, ns_err *err, const char *what) {
    r->failed = 1;
    return ns_errf(err, "%s: record %llu: %s", r->label, (unsigned long long)r->index, what);
}

// Reads more bytes, compacting and growing the buffer as needed. 0 on success
// (possibly with eof set), -1 on error.
static int reader_fill(ns_reader *r, ns_err *err) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        if (r->cap >= r->max_record + READ_CHUNK) {
            char msg[160];
            snprintf(msg, sizeof msg, "record larger than the limit (%zu bytes)", r->max_record);
            return reader_fail(r, err, msg);
        }
        size_t cap = r->cap ? r->cap * 2 : READ_CHUNK;
        if (cap > r->max_record + READ_CHUNK) cap = r->max_record + READ_CHUNK;
        unsigned char *buf = realloc(r->buf, cap);
        if (!buf) return reader_fail(r, err, "out of memory");
        r->buf = buf;
        r->cap = cap;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n > 0) { r->end += (size_t)n; return 0; }
        if (n == 0) { r->eof = 1; return 0; }
        if (errno != EINTR) {
            char msg[160];
            snprintf(msg, sizeof msg, "read error (%s)", strerror(errno));
            return reader_fail(r, err, msg);
        }
    }
}

static int key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

// Copies a msgpack string into buf (cap bytes with NUL); -1 when too long.
// A string without NUL bytes (one would cut it short) into buf of cap bytes.
static int copy_str(const msgpack_object *o, char *buf, size_t cap) {
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap || memchr(o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return 0;
}

static int parse_shape(ns_reader *r, const msgpack_object *o, ns_record *rec, ns_err *err) {
    if (o->type != MSGPACK_OBJECT_ARRAY) return reader_fail(r, err, "shape is not an array");
    if (o->via.array.size > NS_MAX_NDIM) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many dimensions (%u, at most %d)", o->via.array.size,
                 NS_MAX_NDIM);
        return reader_fail(r, err, msg);
    }
    rec->ndim = (int)o->via.array.size;
    for (int i = 0; i < rec->ndim; i++) {
        const msgpack_object *d = &o->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > (uint64_t)INT64_MAX) {
            char msg[96];
            snprintf(msg, sizeof msg, "dimension %d is not a non-negative integer", i);
            return reader_fail(r, err, msg);
        }
        rec->shape[i] = (int64_t)d->via.u64;
    }
    return 0;
}

// meta.part, when there: [i, n], part i of n of a tensor split on axis 0
// (tns(5)), so 0 <= i < n.
static int check_part(ns_reader *r, const msgpack_object *meta, ns_err *err) {
    const msgpack_object *part = ns_map_get(meta, "part");
    if (!part) return 0;
    const msgpack_object *a = part->type == MSGPACK_OBJECT_ARRAY ? part->via.array.ptr : NULL;
    if (!a || part->via.array.size != 2 || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return reader_fail(r, err, "meta part is not [i, n] (two unsigned integers)");
    if (a[0].via.u64 >= a[1].via.u64) {
        char msg[128];
        snprintf(msg, sizeof msg, "meta part [%llu, %llu]: part %llu of %llu does not exist (0 <= i < n)",
                 (unsigned long long)a[0].via.u64, (unsigned long long)a[1].via.u64,
                 (unsigned long long)a[0].via.u64, (unsigned long long)a[1].via.u64);
        return reader_fail(r, err, msg);
    }
    return 0;
}

// Checks the decoded map and fills rec. Unknown keys are ignored.
static int parse_record(ns_reader *r, const msgpack_object *root, ns_record *rec,
                        ns_err *err) {
    if (root->type != MSGPACK_OBJECT_MAP) return reader_fail(r, err, "not a TNS record (not a map)");
    const msgpack_object_map *m = &root->via.map;
    if (m->size == 0 || !key_is(&m->ptr[0].key, "fmt"))
        return reader_fail(r, err, "not a TNS record (first key is not \"fmt\")");
    const msgpack_object *fmt = NULL, *ver = NULL, *kind = NULL, *name = NULL, *dtype = NULL,
                         *shape = NULL, *data = NULL, *meta = NULL;
    struct { const char *key; const msgpack_object **slot; } known[] = {
        {"fmt", &fmt}, {"ver", &ver}, {"kind", &kind}, {"name", &name},
        {"dtype", &dtype}, {"shape", &shape}, {"data", &data}, {"meta", &meta},
    };
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) return reader_fail(r, err, "a key is not a string");
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
            if (!key_is(k, known[j].key)) continue;
            if (*known[j].slot) {
                char msg[64];
                snprintf(msg, sizeof msg, "duplicate key \"%s\"", known[j].key);
                return reader_fail(r, err, msg);
            }
            *known[j].slot = &m->ptr[i].val;
        }
    }
    if (!key_is(fmt, NS_TNS_MAGIC)) return reader_fail(r, err, "bad magic (fmt is not \"tns\")");
    if (!ver || ver->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return reader_fail(r, err, "missing or invalid version (\"ver\")");
    if (ver->via.u64 > NS_TNS_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "unsupported version (%llu; this reader knows %d)",
                 (unsigned long long)ver->via.u64, NS_TNS_VERSION);
        return reader_fail(r, err, msg);
    }
    if (!kind || copy_str(kind, rec->kind, sizeof rec->kind) < 0 || !rec->kind[0])
        return reader_fail(r, err, "missing or invalid kind (a string of 1 to 31 bytes)");
    rec->name[0] = 0;
    if (name && copy_str(name, rec->name, sizeof rec->name) < 0)
        return reader_fail(r, err, "invalid name (a string of at most 255 bytes)");
    if (meta && meta->type != MSGPACK_OBJECT_MAP) return reader_fail(r, err, "meta is not a map");
    rec->meta = meta;
    rec->root = root;
    rec->has_data = dtype || shape || data;
    if (!rec->has_data) {
        if (strcmp(rec->kind, "tensor") == 0)
            return reader_fail(r, err, "tensor record without dtype, shape and data");
        return 0;
    }
    if (!dtype || !shape || !data)
        return reader_fail(r, err, "dtype, shape and data must come together");
    int d = dtype->type == MSGPACK_OBJECT_STR
                ? ns_dtype_from_name(dtype->via.str.ptr, dtype->via.str.size) : -1;
    if (d < 0) {
        char msg[96], name_buf[16] = "?";
        if (dtype->type == MSGPACK_OBJECT_STR) copy_str(dtype, name_buf, sizeof name_buf);
        snprintf(msg, sizeof msg, "unknown dtype (%s)", name_buf);
        return reader_fail(r, err, msg);
    }
    rec->dtype = (ns_dtype)d;
    if (parse_shape(r, shape, rec, err) < 0) return -1;
    if (data->type != MSGPACK_OBJECT_BIN) return reader_fail(r, err, "data is not a bin");
    size_t nbytes;
    ns_err size_err;
    if (ns_shape_size(rec->ndim, rec->shape, rec->dtype, &rec->numel, &nbytes, &size_err) < 0)
        return reader_fail(r, err, size_err.msg);
    if (nbytes != data->via.bin.size) {
        char msg[200], shp[128];
        ns_shape_format(shp, sizeof shp, rec->ndim, rec->shape);
        snprintf(msg, sizeof msg, "data has %u bytes but dtype %s and shape %s need %zu",
                 data->via.bin.size, ns_dtypes[rec->dtype].name, shp, nbytes);
        return reader_fail(r, err, msg);
    }
    if (rec->dtype == NS_BOOL) { // one byte per element, 0 or 1
        const unsigned char *b = (const unsigned char *)data->via.bin.ptr;
        for (size_t i = 0; i < nbytes; i++)
            if (b[i] > 1) {
                char msg[96];
                snprintf(msg, sizeof msg, "bool element %zu is %u (a bool is 0 or 1)", i, b[i]);
                return reader_fail(r, err, msg);
            }
    }
    if (check_part(r, meta, err) < 0) return -1;
    rec->data = data->via.bin.ptr;
    rec->nbytes = nbytes;
    return 0;
}

// Whether the n bytes at p can begin a record: a map whose first key is
// "fmt" (tns(5): the magic number), in any of msgpack's str forms. Checked
// when an incomplete record has filled a first read chunk, so that bytes that
// are no stream fail there instead of being read up to the record limit.
// NULL when they can, else why not.
static const char *not_a_record_head(const unsigned char *p, size_t n) {
    size_t h = (p[0] & 0xf0) == 0x80 ? 1 : p[0] == 0xde ? 3 : p[0] == 0xdf ? 5 : 0;
    if (!h) return "not a TNS record (not a map)";
    static const unsigned char keys[4][9] = {
        {4, 0xa3, 'f', 'm', 't'},
        {5, 0xd9, 3, 'f', 'm', 't'},
        {6, 0xda, 0, 3, 'f', 'm', 't'},
        {8, 0xdb, 0, 0, 0, 3, 'f', 'm', 't'},
    };
    for (int k = 0; k < 4; k++) {
        size_t len = keys[k][0], i = 0;
        while (i < len && h + i < n && p[h + i] == keys[k][1 + i]) i++;
        if (i == len || h + i == n) return NULL;
    }
    return "not a TNS record (first key is not \"fmt\")";
}

int ns_reader_next(ns_reader *r, ns_record *rec, ns_err *err) {
    if (r->failed) return ns_errf(err, "%s: read after an error", r->label);
    size_t len = 0;
    for (;;) {
        size_t avail = r->end - r->start;
        ns_scan_result s = avail ? ns_scan_value(r->buf + r->start, avail, &len)
                                 : NS_SCAN_INCOMPLETE;
        if (s == NS_SCAN_INVALID) return reader_fail(r, err, "corrupt record (invalid msgpack)");
        if (s == NS_SCAN_COMPLETE) {
            if (len <= r->max_record) break;
            char msg[160];
            snprintf(msg, sizeof msg, "record larger than the limit (%zu bytes)", r->max_record);
            return reader_fail(r, err, msg);
        }
        if (r->eof) {
            if (avail == 0) return 0;
            char msg[128];
            snprintf(msg, sizeof msg, "truncated record at end of stream (%zu stray bytes)", avail);
            return reader_fail(r, err, msg);
        }
        // A record past its first MiB must at least start like one before more is read.
        const char *why = avail >= READ_CHUNK ? not_a_record_head(r->buf + r->start, avail) : NULL;
        if (why) return reader_fail(r, err, why);
        if (reader_fill(r, err) < 0) return -1;
    }
    size_t off = 0;
    msgpack_unpack_return ret =
        msgpack_unpack_next(&r->unpacked, (const char *)r->buf + r->start, len, &off);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR) return reader_fail(r, err, "out of memory");
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len)
        return reader_fail(r, err, "corrupt record (invalid msgpack)");
    memset(rec, 0, sizeof *rec);
    rec->index = r->index;
    rec->raw = r->buf + r->start;
    rec->raw_len = len;
    if (parse_record(r, &r->unpacked.data, rec, err) < 0) return -1;
    if (r->unique && rec->has_data) {
        int added = ns_strset_add(&r->names, rec->name);
        if (added < 0) return reader_fail(r, err, "out of memory");
        if (added == 0) {
            char msg[320];
            snprintf(msg, sizeof msg, "duplicate tensor name (%s)", rec->name);
            return reader_fail(r, err, msg);
        }
    }
    r->start += len;
    r->index++;
    return 1;
}

int ns_record_tensor(const ns_record *rec, ns_tensor *out, ns_err *err) {
    if (!rec->has_data) return ns_errf(err, "record %s has no tensor data", rec->name);
    if (ns_tensor_alloc(out, rec->dtype, rec->ndim, rec->shape, err) < 0) return -1;
    memcpy(out->data, rec->data, rec->nbytes);
    return 0;
}

int ns_record_tensor_f32(const ns_record *rec, ns_tensor *out, ns_err *err) {
    if (rec->has_data && rec->dtype == NS_F32) return ns_record_tensor(rec, out, err);
    if (!rec->has_data) return ns_errf(err, "record %s has no tensor data", rec->name);
    if (ns_tensor_alloc(out, NS_F32, rec->ndim, rec->shape, err) < 0) return -1;
    // The payload may be unaligned: convert from an aligned copy.
    void *tmp = ns_aligned_alloc(rec->nbytes);
    if (!tmp) {
        ns_tensor_free(out);
        return ns_errf(err, "out of memory");
    }
    memcpy(tmp, rec->data, rec->nbytes);
    ns_convert_to_f32(out->data, tmp, rec->dtype, (size_t)rec->numel);
    free(tmp);
    return 0;
}

// --- metadata access -----------------------------------------------------------
const msgpack_object *ns_map_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

int ns_obj_str(const msgpack_object *map, const char *key, char *buf, size_t cap,
               ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    if (!v) return 0;
    if (copy_str(v, buf, cap) < 0)
        return ns_errf(err, "%s: not a string of at most %zu bytes", key, cap - 1);
    return 1;
}

static int obj_as_f64(const msgpack_object *v, double *out) {
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)v->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)v->via.i64; return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = v->via.f64; return 0;
    default: return -1;
    }
}

static int obj_as_i64(const msgpack_object *v, int64_t *out) {
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *out = v->via.i64; return 0; }
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v->via.u64;
        return 0;
    }
    return -1;
}

int ns_obj_i64(const msgpack_object *map, const char *key, int64_t *out, ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    if (!v) return 0;
    if (obj_as_i64(v, out) < 0) return ns_errf(err, "%s: not an integer", key);
    return 1;
}

int ns_obj_f64(const msgpack_object *map, const char *key, double *out, ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    if (!v) return 0;
    if (obj_as_f64(v, out) < 0) return ns_errf(err, "%s: not a number", key);
    return 1;
}

int ns_obj_f64s(const msgpack_object *map, const char *key, double *out, size_t n,
                ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    if (!v) return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != n)
        return ns_errf(err, "%s: not an array of %zu numbers", key, n);
    for (size_t i = 0; i < n; i++)
        if (obj_as_f64(&v->via.array.ptr[i], &out[i]) < 0)
            return ns_errf(err, "%s: element %zu is not a number", key, i);
    return 1;
}

int ns_obj_i64s(const msgpack_object *map, const char *key, int64_t *out, size_t cap,
                size_t *n, ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    if (!v) return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY) return ns_errf(err, "%s: not an array", key);
    if (v->via.array.size > cap)
        return ns_errf(err, "%s: %u integers where at most %zu fit", key, v->via.array.size, cap);
    for (uint32_t i = 0; i < v->via.array.size; i++)
        if (obj_as_i64(&v->via.array.ptr[i], &out[i]) < 0)
            return ns_errf(err, "%s: element %u is not an integer", key, i);
    *n = v->via.array.size;
    return 1;
}

int ns_obj_strs(const msgpack_object *map, const char *key, char ***out, size_t *n,
                ns_err *err) {
    const msgpack_object *v = ns_map_get(map, key);
    *out = NULL;
    *n = 0;
    if (!v) return 0;
    if (v->type != MSGPACK_OBJECT_ARRAY) return ns_errf(err, "%s: not an array of strings", key);
    char **strs = calloc(v->via.array.size ? v->via.array.size : 1, sizeof *strs);
    if (!strs) return ns_errf(err, "out of memory");
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        const msgpack_object *s = &v->via.array.ptr[i];
        int nul = s->type == MSGPACK_OBJECT_STR && memchr(s->via.str.ptr, 0, s->via.str.size);
        if (s->type != MSGPACK_OBJECT_STR || nul || !(strs[i] = strndup(s->via.str.ptr, s->via.str.size))) {
            ns_strings_free(strs, i);
            if (nul) return ns_errf(err, "%s: element %u holds a NUL byte (it would cut the name short)", key, i);
            return ns_errf(err, "%s: element %u is not a string", key, i);
        }
    }
    *out = strs;
    *n = v->via.array.size;
    return 1;
}

void ns_strings_free(char **strs, size_t n) {
    if (!strs) return;
    for (size_t i = 0; i < n; i++) free(strs[i]);
    free(strs);
}

// --- map builder ---------------------------------------------------------------
void ns_map_init(ns_map *m) {
    msgpack_sbuffer_init(&m->buf);
    msgpack_packer_init(&m->pk, &m->buf, msgpack_sbuffer_write);
    m->count = 0;
}

void ns_map_free(ns_map *m) {
    msgpack_sbuffer_destroy(&m->buf);
    m->count = 0;
}

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

msgpack_packer *ns_map_key(ns_map *m, const char *key) {
    pack_str(&m->pk, key);
    m->count++;
    return &m->pk;
}

void ns_map_str(ns_map *m, const char *key, const char *val) { pack_str(ns_map_key(m, key), val); }
void ns_map_i64(ns_map *m, const char *key, int64_t val) { msgpack_pack_int64(ns_map_key(m, key), val); }
void ns_map_f64(ns_map *m, const char *key, double val) { msgpack_pack_double(ns_map_key(m, key), val); }

void ns_map_bool(ns_map *m, const char *key, int val) {
    msgpack_packer *pk = ns_map_key(m, key);
    if (val) msgpack_pack_true(pk);
    else msgpack_pack_false(pk);
}

void ns_map_strs(ns_map *m, const char *key, const char *const *vals, size_t n) {
    msgpack_packer *pk = ns_map_key(m, key);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) pack_str(pk, vals[i]);
}

void ns_map_i64s(ns_map *m, const char *key, const int64_t *vals, size_t n) {
    msgpack_packer *pk = ns_map_key(m, key);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_int64(pk, vals[i]);
}

void ns_map_i32s(ns_map *m, const char *key, const int32_t *vals, size_t n) {
    msgpack_packer *pk = ns_map_key(m, key);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_int32(pk, vals[i]);
}

void ns_map_f64s(ns_map *m, const char *key, const double *vals, size_t n) {
    msgpack_packer *pk = ns_map_key(m, key);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) msgpack_pack_double(pk, vals[i]);
}

void ns_map_obj(ns_map *m, const char *key, const msgpack_object *val) {
    msgpack_pack_object(ns_map_key(m, key), *val);
}

void ns_map_submap(ns_map *m, const char *key, const ns_map *sub) {
    msgpack_packer *pk = ns_map_key(m, key);
    msgpack_pack_map(pk, sub->count);
    msgpack_sbuffer_write(&m->buf, sub->buf.data, sub->buf.size);
}

// --- writer --------------------------------------------------------------------
void ns_writer_init(ns_writer *w, FILE *f) {
    w->f = f;
    msgpack_sbuffer_init(&w->head);
    msgpack_packer_init(&w->pk, &w->head, msgpack_sbuffer_write);
}

void ns_writer_free(ns_writer *w) { msgpack_sbuffer_destroy(&w->head); }

static int write_bytes(ns_writer *w, const void *p, size_t n, ns_err *err) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return ns_errf(err, "write error (%s)", strerror(errno ? errno : EIO));
    return 0;
}

int ns_write_record(ns_writer *w, const char *kind, const char *name, const ns_tensor *t,
                    const ns_map *extra, const ns_map *meta, ns_err *err) {
    if (strlen(kind) >= NS_KIND_MAX || !kind[0])
        return ns_errf(err, "invalid record kind (%s)", kind);
    if (strlen(name) > NS_NAME_MAX)
        return ns_errf(err, "record name longer than %d bytes (%.40s...)", NS_NAME_MAX, name);
    size_t nbytes = t ? ns_tensor_nbytes(t) : 0;
    if (nbytes > 0xffffffffu)
        return ns_errf(err, "tensor %s is %zu bytes, over the 4 GiB record limit: split it on axis 0",
                       name, nbytes);
    msgpack_sbuffer_clear(&w->head);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 4 + (t ? 3 : 0) + (extra ? extra->count : 0) + (meta ? 1 : 0));
    pack_str(pk, "fmt");
    pack_str(pk, NS_TNS_MAGIC);
    pack_str(pk, "ver");
    msgpack_pack_uint8(pk, NS_TNS_VERSION);
    pack_str(pk, "kind");
    pack_str(pk, kind);
    pack_str(pk, "name");
    pack_str(pk, name);
    if (t) {
        pack_str(pk, "dtype");
        pack_str(pk, ns_dtypes[t->dtype].name);
        pack_str(pk, "shape");
        msgpack_pack_array(pk, (size_t)t->ndim);
        for (int i = 0; i < t->ndim; i++) msgpack_pack_uint64(pk, (uint64_t)t->shape[i]);
    }
    if (extra) msgpack_sbuffer_write(&w->head, extra->buf.data, extra->buf.size);
    if (meta) {
        pack_str(pk, "meta");
        msgpack_pack_map(pk, meta->count);
        msgpack_sbuffer_write(&w->head, meta->buf.data, meta->buf.size);
    }
    if (t) {
        pack_str(pk, "data");
        msgpack_pack_bin(pk, nbytes);
    }
    if (write_bytes(w, w->head.data, w->head.size, err) < 0) return -1;
    return t ? write_bytes(w, t->data, nbytes, err) : 0;
}

int ns_write_tensor(ns_writer *w, const char *name, const ns_tensor *t, const ns_map *meta,
                    ns_err *err) {
    return ns_write_record(w, "tensor", name, t, NULL, meta, err);
}

int ns_write_meta(ns_writer *w, const char *name, const ns_map *meta, ns_err *err) {
    return ns_write_record(w, "meta", name, NULL, NULL, meta, err);
}

int ns_write_raw(ns_writer *w, const ns_record *rec, ns_err *err) {
    return write_bytes(w, rec->raw, rec->raw_len, err);
}

// --- whole-or-nothing output files ----------------------------------------------
int ns_output_open(ns_output *o, const char *path, ns_err *err) {
    memset(o, 0, sizeof *o);
    o->temp_slot = -1;
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        // A device or pipe (/dev/null, a FIFO) is written in place: renaming a
        // temporary file over it would replace it.
        if (S_ISDIR(st.st_mode)) return ns_errf(err, "%s: is a directory", path);
        if (!(o->f = fopen(path, "wb"))) return ns_errf(err, "%s: cannot open (%s)", path, strerror(errno));
        o->direct = 1;
        return 0;
    }
    size_t cap = strlen(path) + 16;
    o->path = strdup(path);
    o->tmp = malloc(cap);
    if (!o->path || !o->tmp) {
        free(o->tmp);
        o->tmp = NULL; // not created yet: nothing to remove
        ns_output_abort(o);
        return ns_errf(err, "out of memory");
    }
    // Registered as it is created, so a signal or an error exit removes it.
    int fd = ns_tempfile_create(path, o->tmp, cap, &o->temp_slot, err);
    if (fd < 0) {
        free(o->tmp);
        o->tmp = NULL;
        ns_output_abort(o);
        return -1;
    }
    if (!(o->f = fdopen(fd, "wb"))) {
        close(fd);
        ns_output_abort(o);
        return ns_errf(err, "%s: cannot open (%s)", path, strerror(errno));
    }
    return 0;
}

int ns_output_commit(ns_output *o, ns_err *err) {
    const char *label = o->path ? o->path : o->direct ? "output" : "stdout";
    int e;
    if (o->direct || o->path) {
        e = ns_file_close(o->f);
        o->f = NULL;
        if (!e && o->path && rename(o->tmp, o->path) != 0) e = errno;
    } else { // standard output stays open
        errno = 0;
        e = fflush(o->f) != 0 || ferror(o->f) ? (errno ? errno : EIO) : 0;
    }
    if (e) {
        ns_errf(err, "%s: write failed (%s)", label, strerror(e)); // before abort frees label
        ns_output_abort(o);
        return -1;
    }
    if (o->tmp) ns_tempfile_forget(o->temp_slot);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    return 0;
}

void ns_output_abort(ns_output *o) {
    if ((o->path || o->direct) && o->f) fclose(o->f);
    if (o->tmp) {
        unlink(o->tmp);
        if (o->temp_slot >= 0) ns_tempfile_forget(o->temp_slot);
    }
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int ns_output_finish(ns_output *o, ns_writer *w, int failed, ns_err *err) {
    if (w) ns_writer_free(w);
    if (failed) {
        ns_output_abort(o);
        return -1;
    }
    return ns_output_commit(o, err);
}
