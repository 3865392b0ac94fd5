// statedict.c: the state_dict list, reading a file by its first bytes, name
// prefixes, and the mapping between state_dicts and models (statedict.h).
#include "interop/statedict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ns_state_dict_init(ns_state_dict *sd) { memset(sd, 0, sizeof *sd); }

void ns_state_dict_free(ns_state_dict *sd) {
    for (int i = 0; i < sd->n; i++) ns_tensor_free(&sd->items[i].t);
    free(sd->items);
    ns_state_dict_init(sd);
}

int ns_state_dict_find(const ns_state_dict *sd, const char *name) {
    for (int i = 0; i < sd->n; i++)
        if (strcmp(sd->items[i].name, name) == 0) return i;
    return -1;
}

int ns_state_dict_add(ns_state_dict *sd, const char *name, size_t n, ns_tensor *t, ns_err *err) {
    char q[4 * 64 + 4];
    if (!ns_name_ok(name, n, NS_NAME_MAX))
        return ns_errf(err, "bad tensor name '%s' (a letter or '_', then letters, digits, '_', '.' or '-')",
                       ns_quote_bytes(q, 64, name, n));
    char key[NS_NAME_MAX + 1];
    memcpy(key, name, n);
    key[n] = 0;
    if (ns_state_dict_find(sd, key) >= 0) return ns_errf(err, "tensor %s appears twice", key);
    if (sd->n == sd->cap) {
        if (sd->cap >= (1 << 20)) return ns_errf(err, "more than %d tensors", 1 << 20);
        int cap = sd->cap ? 2 * sd->cap : 64;
        ns_sd_entry *grown = realloc(sd->items, (size_t)cap * sizeof *grown);
        if (!grown) return ns_errf(err, "out of memory");
        sd->items = grown;
        sd->cap = cap;
    }
    ns_sd_entry *e = &sd->items[sd->n++];
    memcpy(e->name, key, n + 1);
    e->t = *t;
    memset(t, 0, sizeof *t);
    return 0;
}

int ns_read_whole(const char *path, size_t max, uint8_t **buf, size_t *len, ns_err *err) {
    int std = strcmp(path, "-") == 0;
    FILE *f = std ? stdin : fopen(path, "rb");
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    struct stat st;
    size_t cap = 1 << 16;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
        if ((uint64_t)st.st_size > max) {
            if (!std) fclose(f);
            return ns_errf(err, "%s: %lld bytes, more than %zu", path, (long long)st.st_size, max);
        }
        cap = (size_t)st.st_size + 1;
    }
    uint8_t *b = malloc(cap);
    size_t n = 0;
    int rc = 0;
    while (b) {
        if (n == cap) {
            if (cap > max) {
                rc = ns_errf(err, "%s: more than %zu bytes", path, max);
                break;
            }
            uint8_t *grown = realloc(b, 2 * cap);
            if (!grown) break;
            b = grown;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) rc = ns_errf(err, "%s: read error", path);
            break;
        }
    }
    if (!b && rc == 0) rc = ns_errf(err, "out of memory");
    if (!std) fclose(f);
    if (rc == 0 && n > max) rc = ns_errf(err, "%s: more than %zu bytes", path, max);
    if (rc < 0) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

// safetensors starts with its header's length, whose low byte may be 0x80,
// the pickle PROTO opcode: the JSON brace at byte 8 decides first.
int ns_state_dict_read(ns_state_dict *sd, const uint8_t *buf, size_t len, const char *key, ns_err *err) {
    if (len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0) return ns_state_dict_read_torch(sd, buf, len, key, err);
    if (len >= 9 && buf[8] == '{') {
        if (key && *key) return ns_errf(err, "--key is for torch.save files; safetensors holds one flat dict");
        return ns_state_dict_read_safetensors(sd, buf, len, err);
    }
    if (len >= 2 && buf[0] == 0x80)
        return ns_errf(err, "a bare pickle: torch.save's legacy format (before torch 1.6, or "
                            "_use_new_zipfile_serialization=False) is not read; load it in torch and save it again");
    return ns_errf(err, "neither a torch.save zip nor a safetensors file");
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int strip_one(ns_state_dict *sd, const char *prefix, ns_err *err) {
    size_t np = strlen(prefix);
    for (int i = 0; i < sd->n; i++) {
        char *name = sd->items[i].name;
        if (!starts_with(name, prefix)) continue;
        if (!name[np]) return ns_errf(err, "stripping '%s' leaves %s empty", prefix, name);
        memmove(name, name + np, strlen(name + np) + 1);
    }
    for (int i = 0; i < sd->n; i++)
        for (int j = i + 1; j < sd->n; j++)
            if (strcmp(sd->items[i].name, sd->items[j].name) == 0)
                return ns_errf(err, "stripping '%s' makes two tensors %s", prefix, sd->items[i].name);
    return 0;
}

int ns_state_dict_strip(ns_state_dict *sd, const char *prefix, ns_err *err) {
    if (prefix && *prefix && strip_one(sd, prefix, err) < 0) return -1;
    int all_module = sd->n > 0;
    for (int i = 0; i < sd->n && all_module; i++) all_module = starts_with(sd->items[i].name, "module.");
    return all_module ? strip_one(sd, "module.", err) : 0;
}

// Shapes equal once dimensions of size 1 are dropped ((1, 1, D) and (D)).
static int same_shape(const ns_tensor *a, const ns_tensor *b) {
    int i = 0, j = 0;
    for (;;) {
        while (i < a->ndim && a->shape[i] == 1) i++;
        while (j < b->ndim && b->shape[j] == 1) j++;
        if (i == a->ndim || j == b->ndim) return i == a->ndim && j == b->ndim;
        if (a->shape[i++] != b->shape[j++]) return 0;
    }
}

static int is_float(ns_dtype dt) { return dt == NS_F32 || dt == NS_F64 || dt == NS_F16 || dt == NS_BF16; }

// num_batches_tracked of a batchnorm node of m: an integer scalar PyTorch keeps.
static int batch_counter(const ns_model *m, const ns_sd_entry *e) {
    const char *suffix = ".num_batches_tracked";
    size_t n = strlen(e->name), ns = strlen(suffix);
    if (n <= ns || strcmp(e->name + n - ns, suffix) != 0 || n - ns >= NS_NODE_NAME_MAX) return 0;
    char node[NS_NODE_NAME_MAX];
    memcpy(node, e->name, n - ns);
    node[n - ns] = 0;
    int id = ns_model_find_node(m, node);
    return id >= 0 && m->nodes[id].op == NS_OP_BATCHNORM && e->t.numel == 1 && !is_float(e->t.dtype);
}

int ns_model_load_state_dict(ns_model *m, const ns_state_dict *sd, ns_err *err) {
    char *taken = calloc((size_t)sd->n + 1, 1);
    int *source = calloc((size_t)m->ntensors + 1, sizeof *source);
    if (!taken || !source) {
        free(taken);
        free(source);
        return ns_errf(err, "out of memory");
    }
    // Names first: a wrong architecture is told by what is missing.
    int rc = 0, missing = 0, first_missing = -1;
    for (int i = 0; i < m->ntensors; i++) {
        source[i] = m->tensors[i].used ? ns_state_dict_find(sd, m->tensors[i].name) : -1;
        if (source[i] >= 0) taken[source[i]] = 1;
        else if (m->tensors[i].used && !missing++) first_missing = i;
    }
    if (missing) {
        const ns_named_tensor *nt = &m->tensors[first_missing];
        char want[96];
        ns_shape_format(want, sizeof want, nt->t.ndim, nt->t.shape);
        rc = ns_errf(err, "the checkpoint lacks %s (%s)%s", nt->name, want,
                     missing > 1 ? ", and more: wrong --arch, or names to strip (--strip)?" : "");
    }
    int leftover = 0, first_leftover = -1;
    for (int j = 0; j < sd->n && rc == 0; j++)
        if (!taken[j] && !batch_counter(m, &sd->items[j]) && !leftover++) first_leftover = j;
    if (rc == 0 && leftover) {
        const ns_sd_entry *e = &sd->items[first_leftover];
        char got[96];
        ns_shape_format(got, sizeof got, e->t.ndim, e->t.shape);
        rc = ns_errf(err, "the checkpoint's %s (%s) is not in the model%s", e->name, got,
                     leftover > 1 ? ", nor are others: wrong --arch?" : "");
    }
    for (int i = 0; i < m->ntensors && rc == 0; i++) {
        if (source[i] < 0) continue;
        ns_named_tensor *nt = &m->tensors[i];
        const ns_tensor *src = &sd->items[source[i]].t;
        char want[96], got[96];
        ns_shape_format(want, sizeof want, nt->t.ndim, nt->t.shape);
        ns_shape_format(got, sizeof got, src->ndim, src->shape);
        if (!same_shape(&nt->t, src))
            rc = ns_errf(err, "%s is %s in the checkpoint, the model needs %s", nt->name, got, want);
        else if (!is_float(src->dtype))
            rc = ns_errf(err, "%s has dtype %s in the checkpoint, the model needs a float", nt->name,
                         ns_dtypes[src->dtype].name);
        else
            ns_convert_to_f32(nt->t.data, src->data, src->dtype, (size_t)src->numel);
    }
    free(taken);
    free(source);
    return rc;
}

static int add_copy(ns_state_dict *sd, const char *name, const ns_tensor *src, ns_err *err) {
    ns_tensor t = {0};
    if (ns_tensor_alloc(&t, src->dtype, src->ndim, src->shape, err) < 0) return -1;
    memcpy(t.data, src->data, ns_tensor_nbytes(src));
    int rc = ns_state_dict_add(sd, name, strlen(name), &t, err);
    ns_tensor_free(&t);
    return rc;
}

int ns_state_dict_from_model(ns_state_dict *sd, const ns_model *m, ns_err *err) {
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *node = &m->nodes[i];
        for (int p = 0; p < NS_MAX_PARAMS; p++) {
            int ti = node->params[p];
            if (ti < 0 || !ns_node_uses_param(node, p) || !m->tensors[ti].used) continue;
            if (add_copy(sd, m->tensors[ti].name, &m->tensors[ti].t, err) < 0) return -1;
        }
        if (node->op == NS_OP_BATCHNORM) {
            char name[NS_NAME_MAX + 1];
            snprintf(name, sizeof name, "%s.num_batches_tracked", node->name);
            ns_tensor t = {0};
            if (ns_tensor_alloc(&t, NS_I64, 0, NULL, err) < 0) return -1;
            int rc = ns_state_dict_add(sd, name, strlen(name), &t, err);
            ns_tensor_free(&t);
            if (rc < 0) return -1;
        }
    }
    return 0;
}
