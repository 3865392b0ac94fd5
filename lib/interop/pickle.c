// pickle.c: the restricted pickle machine of pickle.h. One loop over the
// opcodes; values are allocated one by one and chained for freeing, so shared
// references (the memo, DUP) and even cycles cost nothing to free; nothing
// here recurses.
#include "interop/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"

typedef struct vm {
    const uint8_t *buf;
    size_t len, pos, op_pos;
    ns_pickle *p;
    ns_pk_value **stack;
    size_t sp, scap;
    size_t marks[NS_PICKLE_MAX_MARKS];
    int nmarks;
    ns_pk_value **memo;
    size_t memo_cap, memo_count;
    ns_err *err;
} vm;

static int fail(vm *m, const char *fmt, ...) NS_PRINTF(2, 3);
static int fail(vm *m, const char *fmt, ...) {
    char what[NS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ns_errf(m->err, "pickle: %s (at byte %zu)", what, m->op_pos);
}

static int need(vm *m, size_t n) {
    if (m->len - m->pos < n) return fail(m, "truncated: %zu bytes wanted, %zu left", n, m->len - m->pos);
    return 0;
}

static uint64_t read_le(vm *m, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)m->buf[m->pos + (size_t)i] << (8 * i);
    m->pos += (size_t)n;
    return v;
}

static ns_pk_value *new_value(vm *m, ns_pk_type type) {
    if (m->p->nvalues >= NS_PICKLE_MAX_OBJECTS) {
        fail(m, "more than %d values", NS_PICKLE_MAX_OBJECTS);
        return NULL;
    }
    ns_pk_value *v = calloc(1, sizeof *v);
    if (!v) {
        fail(m, "out of memory");
        return NULL;
    }
    v->type = type;
    v->next_alloc = m->p->all;
    m->p->all = v;
    m->p->nvalues++;
    return v;
}

static int push(vm *m, ns_pk_value *v) {
    if (!v) return -1;
    if (m->sp == m->scap) {
        if (m->scap >= NS_PICKLE_MAX_STACK) return fail(m, "stack deeper than %d", NS_PICKLE_MAX_STACK);
        size_t cap = m->scap ? 2 * m->scap : 64;
        ns_pk_value **grown = realloc(m->stack, cap * sizeof *grown);
        if (!grown) return fail(m, "out of memory");
        m->stack = grown;
        m->scap = cap;
    }
    m->stack[m->sp++] = v;
    return 0;
}

static size_t frame_base(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static ns_pk_value *pop(vm *m) {
    if (m->sp <= frame_base(m)) {
        fail(m, "stack underflow");
        return NULL;
    }
    return m->stack[--m->sp];
}

static ns_pk_value *top(vm *m) {
    if (m->sp <= frame_base(m)) {
        fail(m, "stack underflow");
        return NULL;
    }
    return m->stack[m->sp - 1];
}

// Ends the innermost MARK: the values above it are stack[*start .. sp).
static int pop_mark(vm *m, size_t *start) {
    if (!m->nmarks) return fail(m, "no MARK to close");
    *start = m->marks[--m->nmarks];
    return 0;
}

static int append_item(vm *m, ns_pk_value *seq, ns_pk_value *item) {
    if (seq->n == seq->cap) {
        size_t cap = seq->cap ? 2 * seq->cap : 8;
        ns_pk_value **grown = realloc(seq->items, cap * sizeof *grown);
        if (!grown) return fail(m, "out of memory");
        seq->items = grown;
        seq->cap = cap;
    }
    seq->items[seq->n++] = item;
    return 0;
}

// A tuple, list or dict of the values stack[start .. sp), which are removed.
static int collect(vm *m, ns_pk_type type, size_t start) {
    size_t n = m->sp - start;
    if (type == NS_PK_DICT && n % 2) return fail(m, "odd number of values for a dict (%zu)", n);
    ns_pk_value *v = new_value(m, type);
    if (!v) return -1;
    if (n) {
        v->items = malloc(n * sizeof *v->items);
        if (!v->items) return fail(m, "out of memory");
        memcpy(v->items, m->stack + start, n * sizeof *v->items);
        v->n = v->cap = n;
    }
    m->sp = start;
    return push(m, v);
}

static int extend(vm *m, ns_pk_type type) {
    size_t start = 0;
    if (pop_mark(m, &start) < 0) return -1;
    size_t n = m->sp - start;
    if (type == NS_PK_DICT && n % 2) return fail(m, "odd number of values for SETITEMS (%zu)", n);
    if (start <= frame_base(m)) return fail(m, "stack underflow");
    ns_pk_value *target = m->stack[start - 1];
    if (target->type != type)
        return fail(m, "%s on something that is not a %s", type == NS_PK_DICT ? "SETITEMS" : "APPENDS",
                    type == NS_PK_DICT ? "dict" : "list");
    for (size_t i = start; i < start + n; i++)
        if (append_item(m, target, m->stack[i]) < 0) return -1;
    m->sp = start;
    return 0;
}

static int push_string(vm *m, ns_pk_type type, uint64_t n) {
    if (n > m->len - m->pos) return fail(m, "a string of %llu bytes, %zu left", (unsigned long long)n, m->len - m->pos);
    ns_pk_value *v = new_value(m, type);
    if (!v) return -1;
    v->s = (const char *)m->buf + m->pos;
    v->n = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

static int push_int(vm *m, int64_t i) {
    ns_pk_value *v = new_value(m, NS_PK_INT);
    if (!v) return -1;
    v->i = i;
    return push(m, v);
}

// LONG1 / LONG4: n bytes of little-endian two's complement, up to 8.
static int push_long(vm *m, uint64_t n) {
    if (n > 8) return fail(m, "an integer of %llu bytes (at most 8 are read)", (unsigned long long)n);
    if (need(m, (size_t)n) < 0) return -1;
    uint64_t u = read_le(m, (int)n);
    if (n && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n);
    return push_int(m, (int64_t)u);
}

static const struct {
    const char *name;
    ns_dtype dtype;
} storage_types[] = {
    {"FloatStorage", NS_F32}, {"HalfStorage", NS_F16},  {"BFloat16Storage", NS_BF16},
    {"DoubleStorage", NS_F64}, {"LongStorage", NS_I64}, {"IntStorage", NS_I32},
    {"ShortStorage", NS_I16}, {"CharStorage", NS_I8},   {"ByteStorage", NS_U8},
    {"BoolStorage", NS_BOOL},
};

const char *ns_pk_storage_name(ns_dtype dt) {
    for (size_t i = 0; i < sizeof storage_types / sizeof *storage_types; i++)
        if (storage_types[i].dtype == dt) return storage_types[i].name;
    return NULL;
}

static int is(const char *s, size_t n, const char *word) { return strlen(word) == n && memcmp(s, word, n) == 0; }

static int push_global(vm *m, const char *mod, size_t nmod, const char *name, size_t nname) {
    ns_pk_value *v = new_value(m, NS_PK_GLOBAL);
    if (!v) return -1;
    if (is(mod, nmod, "collections") && is(name, nname, "OrderedDict")) v->g = NS_PKG_ORDERED_DICT;
    else if (is(mod, nmod, "torch._utils") && is(name, nname, "_rebuild_tensor_v2")) v->g = NS_PKG_REBUILD_TENSOR_V2;
    else if (is(mod, nmod, "torch._utils") && is(name, nname, "_rebuild_parameter")) v->g = NS_PKG_REBUILD_PARAMETER;
    else if (is(mod, nmod, "torch._utils") && is(name, nname, "_rebuild_parameter_with_state"))
        v->g = NS_PKG_REBUILD_PARAMETER_WITH_STATE;
    else if (is(mod, nmod, "torch") && is(name, nname, "device")) v->g = NS_PKG_DEVICE;
    else {
        int found = 0;
        for (size_t i = 0; is(mod, nmod, "torch") && i < sizeof storage_types / sizeof *storage_types; i++)
            if (is(name, nname, storage_types[i].name)) {
                v->g = NS_PKG_STORAGE_TYPE;
                v->dtype = storage_types[i].dtype;
                found = 1;
            }
        if (!found) {
            char qm[4 * 64 + 4], qn[4 * 64 + 4];
            return fail(m, "forbidden global %s.%s: a checkpoint may only hold tensors, storages and dicts",
                        ns_quote_bytes(qm, 64, mod, nmod), ns_quote_bytes(qn, 64, name, nname));
        }
    }
    return push(m, v);
}

// GLOBAL's two text lines, "module\nname\n".
static int read_line(vm *m, const char **s, size_t *n) {
    const uint8_t *nl = memchr(m->buf + m->pos, '\n', m->len - m->pos);
    if (!nl) return fail(m, "truncated GLOBAL");
    *s = (const char *)m->buf + m->pos;
    *n = (size_t)(nl - (m->buf + m->pos));
    m->pos += *n + 1;
    return 0;
}

static int storage_key_ok(const char *s, size_t n) {
    if (n < 1 || n > NS_PICKLE_MAX_KEY) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')) return 0;
    }
    return 1;
}

// BINPERSID: ('storage', torch.XStorage, key, location, numel) -> a storage.
static int persistent_load(vm *m) {
    ns_pk_value *pid = pop(m);
    if (!pid) return -1;
    if (pid->type != NS_PK_TUPLE || pid->n != 5 || pid->items[0]->type != NS_PK_STR ||
        !is(pid->items[0]->s, pid->items[0]->n, "storage"))
        return fail(m, "a persistent id that is not ('storage', type, key, location, numel)");
    const ns_pk_value *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->type != NS_PK_GLOBAL || type->g != NS_PKG_STORAGE_TYPE)
        return fail(m, "a storage whose type is not a torch storage class");
    if (key->type != NS_PK_STR || !storage_key_ok(key->s, key->n))
        return fail(m, "a storage key that is not 1 to %d letters, digits or '_'", NS_PICKLE_MAX_KEY);
    if (numel->type != NS_PK_INT || numel->i < 0 || numel->i > (INT64_C(1) << 40))
        return fail(m, "a storage of %lld elements", numel->type == NS_PK_INT ? (long long)numel->i : -1LL);
    ns_pickle *p = m->p;
    int index = -1;
    for (int i = 0; i < p->nstorages && index < 0; i++)
        if (is(key->s, key->n, p->storages[i].key)) index = i;
    if (index >= 0) {
        const ns_pk_storage *s = &p->storages[index];
        if (s->dtype != type->dtype || s->numel != numel->i)
            return fail(m, "storage %s declared twice (%s x %lld, then %s x %lld)", s->key,
                        ns_dtypes[s->dtype].name, (long long)s->numel, ns_dtypes[type->dtype].name,
                        (long long)numel->i);
    } else {
        if (p->nstorages == p->cap_storages) {
            if (p->cap_storages >= (1 << 16)) return fail(m, "more than %d storages", 1 << 16);
            int cap = p->cap_storages ? 2 * p->cap_storages : 16;
            ns_pk_storage *grown = realloc(p->storages, (size_t)cap * sizeof *grown);
            if (!grown) return fail(m, "out of memory");
            p->storages = grown;
            p->cap_storages = cap;
        }
        ns_pk_storage *s = &p->storages[p->nstorages];
        memcpy(s->key, key->s, key->n);
        s->key[key->n] = 0;
        s->dtype = type->dtype;
        s->numel = numel->i;
        index = p->nstorages++;
    }
    ns_pk_value *v = new_value(m, NS_PK_STORAGE);
    if (!v) return -1;
    v->i = index;
    return push(m, v);
}

static int int_tuple(const ns_pk_value *t, int64_t *out, int max) {
    if (t->type != NS_PK_TUPLE || t->n > (size_t)max) return -1;
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->type != NS_PK_INT || t->items[i]->i < 0 || t->items[i]->i > (INT64_C(1) << 40)) return -1;
        out[i] = t->items[i]->i;
    }
    return (int)t->n;
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
static int rebuild_tensor(vm *m, const ns_pk_value *args) {
    if (args->n != 6 && args->n != 7) return fail(m, "_rebuild_tensor_v2 with %zu arguments", args->n);
    const ns_pk_value *st = args->items[0], *off = args->items[1];
    if (st->type != NS_PK_STORAGE) return fail(m, "_rebuild_tensor_v2 of something that is not a storage");
    if (off->type != NS_PK_INT || off->i < 0) return fail(m, "_rebuild_tensor_v2 with a bad offset");
    ns_pk_tensor t = {.storage = (int)st->i, .offset = off->i};
    int nd = int_tuple(args->items[2], t.shape, NS_PICKLE_MAX_DIMS);
    int ns = int_tuple(args->items[3], t.stride, NS_PICKLE_MAX_DIMS);
    if (nd < 0 || ns != nd)
        return fail(m, "_rebuild_tensor_v2 with sizes and strides that are not tuples of at most %d equal "
                       "lengths of small non-negative integers", NS_PICKLE_MAX_DIMS);
    t.ndim = nd;
    // The last element the view reaches must lie inside the storage. Each
    // term is below 2^80 at worst, so the sums are checked for overflow.
    const ns_pk_storage *s = &m->p->storages[t.storage];
    int empty = 0;
    int64_t last = t.offset;
    for (int i = 0; i < nd; i++) {
        if (t.shape[i] == 0) empty = 1;
        int64_t reach;
        if (t.shape[i] > 0 && (__builtin_mul_overflow(t.shape[i] - 1, t.stride[i], &reach) ||
                               __builtin_add_overflow(last, reach, &last)))
            return fail(m, "a tensor view too large for any storage");
    }
    if (empty ? t.offset > s->numel : last >= s->numel)
        return fail(m, "a tensor reaching element %lld of storage %s, which holds %lld", (long long)last, s->key,
                    (long long)s->numel);
    ns_pk_value *v = new_value(m, NS_PK_TENSOR);
    if (!v) return -1;
    v->tensor = t;
    return push(m, v);
}

static int reduce(vm *m) {
    ns_pk_value *args = pop(m), *fn = args ? pop(m) : NULL;
    if (!fn) return -1;
    if (fn->type != NS_PK_GLOBAL) return fail(m, "REDUCE of something that is not an allowed global");
    if (args->type != NS_PK_TUPLE) return fail(m, "REDUCE with arguments that are not a tuple");
    switch (fn->g) {
    case NS_PKG_ORDERED_DICT:
        if (args->n) return fail(m, "OrderedDict called with %zu arguments", args->n);
        return push(m, new_value(m, NS_PK_DICT));
    case NS_PKG_DEVICE:
        if (args->n < 1 || args->n > 2 || args->items[0]->type != NS_PK_STR)
            return fail(m, "torch.device called with other than a name");
        return push(m, args->items[0]);
    case NS_PKG_REBUILD_TENSOR_V2:
        return rebuild_tensor(m, args);
    case NS_PKG_REBUILD_PARAMETER:
    case NS_PKG_REBUILD_PARAMETER_WITH_STATE:
        if (args->n != (fn->g == NS_PKG_REBUILD_PARAMETER ? 3u : 4u) || args->items[0]->type != NS_PK_TENSOR)
            return fail(m, "_rebuild_parameter of something that is not a tensor");
        return push(m, args->items[0]);
    case NS_PKG_STORAGE_TYPE:
        break;
    }
    return fail(m, "a storage class called as a function");
}

static int memo_put(vm *m, uint64_t index) {
    ns_pk_value *v = top(m);
    if (!v) return -1;
    if (index >= NS_PICKLE_MAX_MEMO) return fail(m, "memo index %llu (at most %d)", (unsigned long long)index, NS_PICKLE_MAX_MEMO);
    if (index >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= index) cap *= 2;
        ns_pk_value **grown = realloc(m->memo, cap * sizeof *grown);
        if (!grown) return fail(m, "out of memory");
        memset(grown + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *grown);
        m->memo = grown;
        m->memo_cap = cap;
    }
    if (!m->memo[index]) m->memo_count++;
    m->memo[index] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t index) {
    if (index >= m->memo_cap || !m->memo[index]) return fail(m, "memo slot %llu is empty", (unsigned long long)index);
    return push(m, m->memo[index]);
}

static int tuple_of(vm *m, int n) {
    if (m->sp < frame_base(m) + (size_t)n) return fail(m, "stack underflow");
    return collect(m, NS_PK_TUPLE, m->sp - (size_t)n);
}

static ns_pk_value *bool_value(vm *m, int b) {
    ns_pk_value *v = new_value(m, NS_PK_BOOL);
    if (v) v->i = b;
    return v;
}

// One opcode; 1 at STOP, 0 to go on, -1 on failure.
static int step(vm *m) {
    m->op_pos = m->pos;
    if (need(m, 1) < 0) return -1;
    uint8_t op = m->buf[m->pos++];
    size_t start = 0;
    switch (op) {
    case 0x80: // PROTO
        if (need(m, 1) < 0) return -1;
        if (m->buf[m->pos] < 2 || m->buf[m->pos] > 5) return fail(m, "protocol %d (2 to 5 are read)", m->buf[m->pos]);
        m->pos++;
        return 0;
    case 0x95: // FRAME: a length, then the frame's opcodes inline
        if (need(m, 8) < 0) return -1;
        m->pos += 8;
        return 0;
    case '.': { // STOP
        ns_pk_value *v = pop(m);
        if (!v) return -1;
        m->p->root = v;
        return 1;
    }
    case '(': // MARK
        if (m->nmarks >= NS_PICKLE_MAX_MARKS) return fail(m, "MARKs nested deeper than %d", NS_PICKLE_MAX_MARKS);
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case '0': // POP
        if (m->sp > frame_base(m)) {
            m->sp--;
            return 0;
        }
        return pop_mark(m, &start);
    case '1': // POP_MARK
        if (pop_mark(m, &start) < 0) return -1;
        m->sp = start;
        return 0;
    case '2': { // DUP
        ns_pk_value *v = top(m);
        return v ? push(m, v) : -1;
    }
    case 'N': return push(m, new_value(m, NS_PK_NONE));
    case 0x88: return push(m, bool_value(m, 1));
    case 0x89: return push(m, bool_value(m, 0));
    case 'J':
        if (need(m, 4) < 0) return -1;
        return push_int(m, (int32_t)(uint32_t)read_le(m, 4));
    case 'K':
        if (need(m, 1) < 0) return -1;
        return push_int(m, (int64_t)read_le(m, 1));
    case 'M':
        if (need(m, 2) < 0) return -1;
        return push_int(m, (int64_t)read_le(m, 2));
    case 0x8a: // LONG1
        if (need(m, 1) < 0) return -1;
        return push_long(m, read_le(m, 1));
    case 0x8b: // LONG4
        if (need(m, 4) < 0) return -1;
        return push_long(m, read_le(m, 4));
    case 'G': { // BINFLOAT, big-endian
        if (need(m, 8) < 0) return -1;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = u << 8 | m->buf[m->pos + (size_t)i];
        m->pos += 8;
        ns_pk_value *v = new_value(m, NS_PK_FLOAT);
        if (v) memcpy(&v->f, &u, sizeof v->f);
        return push(m, v);
    }
    case 'X': // BINUNICODE
    case 'T': // BINSTRING
        if (need(m, 4) < 0) return -1;
        return push_string(m, NS_PK_STR, read_le(m, 4));
    case 0x8c: // SHORT_BINUNICODE
    case 'U':  // SHORT_BINSTRING
        if (need(m, 1) < 0) return -1;
        return push_string(m, NS_PK_STR, read_le(m, 1));
    case 0x8d: // BINUNICODE8
        if (need(m, 8) < 0) return -1;
        return push_string(m, NS_PK_STR, read_le(m, 8));
    case 'B': // BINBYTES
        if (need(m, 4) < 0) return -1;
        return push_string(m, NS_PK_BYTES, read_le(m, 4));
    case 'C': // SHORT_BINBYTES
        if (need(m, 1) < 0) return -1;
        return push_string(m, NS_PK_BYTES, read_le(m, 1));
    case 0x8e: // BINBYTES8
    case 0x96: // BYTEARRAY8
        if (need(m, 8) < 0) return -1;
        return push_string(m, NS_PK_BYTES, read_le(m, 8));
    case ')': return push(m, new_value(m, NS_PK_TUPLE));
    case ']': return push(m, new_value(m, NS_PK_LIST));
    case '}': return push(m, new_value(m, NS_PK_DICT));
    case 0x85: return tuple_of(m, 1);
    case 0x86: return tuple_of(m, 2);
    case 0x87: return tuple_of(m, 3);
    case 't': return pop_mark(m, &start) < 0 ? -1 : collect(m, NS_PK_TUPLE, start);
    case 'l': return pop_mark(m, &start) < 0 ? -1 : collect(m, NS_PK_LIST, start);
    case 'd': return pop_mark(m, &start) < 0 ? -1 : collect(m, NS_PK_DICT, start);
    case 'a': { // APPEND
        ns_pk_value *v = pop(m), *list = v ? top(m) : NULL;
        if (!list) return -1;
        if (list->type != NS_PK_LIST) return fail(m, "APPEND to something that is not a list");
        return append_item(m, list, v);
    }
    case 'e': return extend(m, NS_PK_LIST);
    case 's': { // SETITEM
        ns_pk_value *v = pop(m), *k = v ? pop(m) : NULL, *d = k ? top(m) : NULL;
        if (!d) return -1;
        if (d->type != NS_PK_DICT) return fail(m, "SETITEM on something that is not a dict");
        return append_item(m, d, k) < 0 ? -1 : append_item(m, d, v);
    }
    case 'u': return extend(m, NS_PK_DICT);
    case 'q':
        if (need(m, 1) < 0) return -1;
        return memo_put(m, read_le(m, 1));
    case 'r':
        if (need(m, 4) < 0) return -1;
        return memo_put(m, read_le(m, 4));
    case 0x94: return memo_put(m, m->memo_count);
    case 'h':
        if (need(m, 1) < 0) return -1;
        return memo_get(m, read_le(m, 1));
    case 'j':
        if (need(m, 4) < 0) return -1;
        return memo_get(m, read_le(m, 4));
    case 'c': { // GLOBAL
        const char *mod, *name;
        size_t nmod, nname;
        if (read_line(m, &mod, &nmod) < 0 || read_line(m, &name, &nname) < 0) return -1;
        return push_global(m, mod, nmod, name, nname);
    }
    case 0x93: { // STACK_GLOBAL
        ns_pk_value *name = pop(m), *mod = name ? pop(m) : NULL;
        if (!mod) return -1;
        if (name->type != NS_PK_STR || mod->type != NS_PK_STR) return fail(m, "STACK_GLOBAL of non-strings");
        return push_global(m, mod->s, mod->n, name->s, name->n);
    }
    case 'R': return reduce(m);
    case 'Q': return persistent_load(m);
    case 'b': { // BUILD: only the attributes torch puts on a state_dict (_metadata)
        ns_pk_value *state = pop(m), *obj = state ? top(m) : NULL;
        if (!obj) return -1;
        if (obj->type != NS_PK_DICT) return fail(m, "BUILD on something that is not a dict");
        return 0;
    }
    default:
        break;
    }
    return fail(m, "opcode 0x%02x is not allowed (it builds objects or is not used by torch.save)", op);
}

int ns_pickle_load(ns_pickle *p, const uint8_t *buf, size_t len, ns_err *err) {
    memset(p, 0, sizeof *p);
    vm m = {.buf = buf, .len = len, .p = p, .err = err};
    int rc;
    while ((rc = step(&m)) == 0) continue;
    free(m.stack);
    free(m.memo);
    if (rc < 0) {
        ns_pickle_free(p);
        return -1;
    }
    return 0;
}

void ns_pickle_free(ns_pickle *p) {
    for (ns_pk_value *v = p->all, *next; v; v = next) {
        next = v->next_alloc;
        free(v->items);
        free(v);
    }
    free(p->storages);
    memset(p, 0, sizeof *p);
}

const ns_pk_value *ns_pk_dict_get(const ns_pk_value *dict, const char *key, size_t n) {
    if (!dict || dict->type != NS_PK_DICT) return NULL;
    const ns_pk_value *found = NULL; // the last setting wins, as in Python
    for (size_t i = 0; i + 1 < dict->n; i += 2)
        if (dict->items[i]->type == NS_PK_STR && dict->items[i]->n == n && memcmp(dict->items[i]->s, key, n) == 0)
            found = dict->items[i + 1];
    return found;
}
