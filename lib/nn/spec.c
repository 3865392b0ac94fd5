// spec.c: the text architecture format of spec.h and netsmith-spec(5).
//
// Parsing makes two passes. The first (lex) splits the text into sections
// (op, node name, header line) and "key = value" entries. It checks the
// syntax, the op names and that node names are unique. The second (build)
// walks the sections in order: it checks each entry against the op's
// attributes in ns_ops, resolves from= references and adds the node with the
// builder of model.h. Resolving references needs every name, so that a
// reference to a later node can say so. Finally ns_model_resolve infers the
// shapes. Its messages name a node, and the node maps back to the line of its
// section header.
//
// The text is bytes with lengths, never NUL-terminated strings. Every value
// is checked before it is used: names against a character set and
// NS_NODE_NAME_MAX, integers against [-2^31, 2^31), reals for syntax and
// finiteness. The number of sections is capped (NS_SPEC_MAX_NODES), because
// each added node costs a linear search in ns_model_add_node.
#include "nn/spec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INT_VALUE_MAX 2147483647LL // integer values lie in [-2^31, 2^31 - 1]
#define QUOTE_MAX 40               // bytes of bad text quoted in a message
#define TABLE_SIZE 16384           // name hash table, a power of two
_Static_assert(TABLE_SIZE >= 2 * NS_SPEC_MAX_NODES, "name table must stay half empty");

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct entry { // "key = value"
    span key, val;
    int line;
} entry;

typedef struct section { // "[op name]" and its entries ent[first .. first + count)
    int op, line;
    int first, count;
    char name[NS_NODE_NAME_MAX];
} section;

typedef struct parser {
    const char *label;
    ns_err *err;
    section *sec;
    int nsec, cap_sec;
    entry *ent;
    int nent, cap_ent;
    int counts[NS_OP_COUNT]; // unnamed sections of each op so far, for default names
    int *table;              // (TABLE_SIZE) section index + 1, 0 when empty
} parser;

// ---------------------------------------------------------------------------
// small helpers

static int fail(const parser *ps, int line, const char *fmt, ...) NS_PRINTF(3, 4);
static int fail(const parser *ps, int line, const char *fmt, ...) {
    char msg[NS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ns_errf(ps->err, "%s:%d: %s", ps->label, line, msg);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static span trim(span s) {
    while (s.n && is_space(s.p[0])) s.p++, s.n--;
    while (s.n && is_space(s.p[s.n - 1])) s.n--;
    return s;
}

static int span_eq(span s, const char *c) { return strlen(c) == s.n && memcmp(s.p, c, s.n) == 0; }

// The bad text for a message (ns_quote_bytes): cut after QUOTE_MAX bytes.
#define QUOTE_BUF (4 * QUOTE_MAX + 4)
static const char *show(char *buf, span s) { return ns_quote_bytes(buf, QUOTE_MAX, s.p, s.n); }

// A node name (ns_name_ok): a letter or '_', then letters, digits, '_', '.', '-'.
static int name_ok(span s) { return ns_name_ok(s.p, s.n, NS_NODE_NAME_MAX - 1); }

// Levenshtein distance of two short words (longer ones count as far apart).
static size_t distance(span a, const char *b) {
    size_t nb = strlen(b);
    if (a.n > 64 || nb > 64) return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= a.n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a.p[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

// The closest of the candidates to a misspelt word, or NULL when none is close:
// one edit for words of up to 4 bytes, two up to 8, three beyond.
static const char *closest(span word, const char *const *cands, int ncands) {
    size_t limit = word.n <= 4 ? 1 : word.n <= 8 ? 2 : 3, best = SIZE_MAX;
    const char *pick = NULL;
    for (int i = 0; i < ncands; i++) {
        size_t d = distance(word, cands[i]);
        if (d <= limit && d < best) best = d, pick = cands[i];
    }
    return pick;
}

// Names that users of darknet, PyTorch or Keras may reach for: an op name or
// key, and what to write instead. A hint for the message, never an alias.
typedef struct hint {
    const char *word, *advice;
} hint;

static const hint op_hints[] = {
    {"convolutional", "conv2d"}, {"conv", "conv2d"}, {"conv2", "conv2d"}, {"connected", "linear"},
    {"fc", "linear"}, {"dense", "linear"}, {"fully_connected", "linear"}, {"route", "concat"},
    {"cat", "concat"}, {"shortcut", "add"}, {"residual", "add"}, {"bn", "batchnorm"},
    {"batch_norm", "batchnorm"}, {"batchnorm2d", "batchnorm"}, {"ln", "layernorm"},
    {"layer_norm", "layernorm"}, {"net", "input"}, {"network", "input"}, {"data", "input"},
    {"leaky", "leaky_relu"}, {"leakyrelu", "leaky_relu"}, {"max_pool", "maxpool"},
    {"avg_pool", "avgpool"}, {"gap", "global_avgpool"}, {"adaptive_avgpool", "global_avgpool"},
    {"view", "reshape"}, {"embed", "embedding"},
};

static const hint key_hints[] = {
    {"filters", "out"},   {"size", "kernel"},   {"padding", "pad"},       {"layers", "from"},
    {"input", "from"},    {"inputs", "from"},   {"out_channels", "out"},  {"out_features", "out"},
    {"kernel_size", "kernel"},
};

static const char *hint_for(const hint *h, size_t n, span word) {
    for (size_t i = 0; i < n; i++)
        if (span_eq(word, h[i].word)) return h[i].advice;
    return NULL;
}

// ---------------------------------------------------------------------------
// numbers

// An integer: optional sign, decimal digits. 0, -1 when it is not one, -2
// when it lies outside [-2^31, 2^31 - 1].
static int parse_int(span s, int64_t *v) {
    size_t i = 0;
    int neg = 0;
    if (s.n && (s.p[0] == '+' || s.p[0] == '-')) neg = s.p[i++] == '-';
    if (i == s.n) return -1;
    int64_t acc = 0;
    int big = 0;
    for (; i < s.n; i++) {
        if (!is_digit(s.p[i])) return -1;
        if (!big) {
            acc = acc * 10 + (s.p[i] - '0');
            if (acc > INT_VALUE_MAX + 1) big = 1;
        }
    }
    if (neg) acc = -acc;
    if (big || acc > INT_VALUE_MAX || acc < -INT_VALUE_MAX - 1) return -2;
    *v = acc;
    return 0;
}

// A real: [+-] digits [. digits] [e [+-] digits], or with the digits only
// after the point. 0, -1 when it is not one, -2 when it is not finite.
static int parse_real(span s, double *v) {
    size_t i = 0, mant = 0;
    if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
    while (i < s.n && is_digit(s.p[i])) i++, mant++;
    if (i < s.n && s.p[i] == '.') {
        i++;
        while (i < s.n && is_digit(s.p[i])) i++, mant++;
    }
    if (!mant) return -1;
    if (i < s.n && (s.p[i] == 'e' || s.p[i] == 'E')) {
        i++;
        if (i < s.n && (s.p[i] == '+' || s.p[i] == '-')) i++;
        size_t exp = 0;
        while (i < s.n && is_digit(s.p[i])) i++, exp++;
        if (!exp) return -1;
    }
    if (i != s.n) return -1;
    char buf[128];
    if (s.n >= sizeof buf) return -1;
    memcpy(buf, s.p, s.n);
    buf[s.n] = 0;
    double d = strtod(buf, NULL); // the syntax is checked, so all of buf is used
    if (!isfinite(d)) return -2;
    *v = d;
    return 0;
}

// The shortest %g form that reads back as exactly v.
static void format_real(char *buf, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

// ---------------------------------------------------------------------------
// the name table

static uint32_t hash(span s) {
    uint32_t h = 2166136261u; // FNV-1a
    for (size_t i = 0; i < s.n; i++) h = (h ^ (unsigned char)s.p[i]) * 16777619u;
    return h;
}

// The index of the section with this node name, or -1.
static int lookup(const parser *ps, span name) {
    for (uint32_t h = hash(name) & (TABLE_SIZE - 1);; h = (h + 1) & (TABLE_SIZE - 1)) {
        int k = ps->table[h];
        if (!k) return -1;
        if (span_eq(name, ps->sec[k - 1].name)) return k - 1;
    }
}

static void insert(parser *ps, int index) {
    span name = {ps->sec[index].name, strlen(ps->sec[index].name)};
    uint32_t h = hash(name) & (TABLE_SIZE - 1);
    while (ps->table[h]) h = (h + 1) & (TABLE_SIZE - 1);
    ps->table[h] = index + 1;
}

// ---------------------------------------------------------------------------
// pass 1: sections and entries

static int grow(void **items, int *cap, int count, size_t size, ns_err *err) {
    if (count < *cap) return 0;
    int next = *cap ? *cap * 2 : 64;
    void *p = realloc(*items, (size_t)next * size);
    if (!p) return ns_errf(err, "out of memory");
    *items = p;
    *cap = next;
    return 0;
}

static int lex_header(parser *ps, span s, int line) {
    char q[QUOTE_BUF];
    const char *close = memchr(s.p, ']', s.n);
    if (!close) return fail(ps, line, "section header without a closing ']' (%s)", show(q, s));
    if (close != s.p + s.n - 1)
        return fail(ps, line, "text after the ']' of a section header (%s)", show(q, s));
    span in = trim((span){s.p + 1, s.n - 2});
    size_t k = 0;
    while (k < in.n && !is_space(in.p[k])) k++;
    span opw = {in.p, k};
    span rest = trim((span){in.p + k, in.n - k});
    k = 0;
    while (k < rest.n && !is_space(rest.p[k])) k++;
    span namew = {rest.p, k};
    span extra = trim((span){rest.p + k, rest.n - k});
    if (!opw.n) return fail(ps, line, "empty section header (%s)", show(q, s));
    if (extra.n) return fail(ps, line, "a section header holds an op and a name, no more (%s)", show(q, s));

    int op = -1;
    for (int i = 0; i < NS_OP_COUNT; i++)
        if (span_eq(opw, ns_ops[i].name)) op = i;
    if (op < 0) {
        const char *names[NS_OP_COUNT];
        for (int i = 0; i < NS_OP_COUNT; i++) names[i] = ns_ops[i].name;
        const char *near = hint_for(op_hints, sizeof op_hints / sizeof *op_hints, opw);
        if (!near) near = closest(opw, names, NS_OP_COUNT);
        if (near) return fail(ps, line, "unknown op '%s' (did you mean '%s'?)", show(q, opw), near);
        return fail(ps, line, "unknown op '%s' (netsmith-spec(5) lists the ops)", show(q, opw));
    }
    if (ps->nsec == 0 && op != NS_OP_INPUT)
        return fail(ps, line, "the first section must be [input], not [%s]", ns_ops[op].name);
    if (ps->nsec > 0 && op == NS_OP_INPUT)
        return fail(ps, line, "a second [input]: the input is the first section only (line %d)",
                    ps->sec[0].line);
    if (ps->nsec >= NS_SPEC_MAX_NODES)
        return fail(ps, line, "more than %d sections", NS_SPEC_MAX_NODES);
    if (grow((void **)&ps->sec, &ps->cap_sec, ps->nsec, sizeof *ps->sec, ps->err) < 0) return -1;

    section *sc = &ps->sec[ps->nsec];
    memset(sc, 0, sizeof *sc);
    sc->op = op;
    sc->line = line;
    sc->first = ps->nent;
    if (namew.n) {
        if (!name_ok(namew))
            return fail(ps, line, "bad node name '%s' (a letter or '_', then letters, digits, '_', '.' "
                                  "or '-'; at most %d bytes)", show(q, namew), NS_NODE_NAME_MAX - 1);
        memcpy(sc->name, namew.p, namew.n);
    } else if (op == NS_OP_INPUT) {
        snprintf(sc->name, sizeof sc->name, "input");
    } else {
        snprintf(sc->name, sizeof sc->name, "%s%d", ns_ops[op].name, ++ps->counts[op]);
    }
    int prev = lookup(ps, (span){sc->name, strlen(sc->name)});
    if (prev >= 0) {
        if (namew.n)
            return fail(ps, line, "node name '%s' is already used (line %d)", sc->name, ps->sec[prev].line);
        return fail(ps, line, "this [%s] would get the default name '%s', which line %d already uses: "
                              "name it ([%s NAME])", ns_ops[op].name, sc->name, ps->sec[prev].line,
                    ns_ops[op].name);
    }
    insert(ps, ps->nsec);
    ps->nsec++;
    return 0;
}

static int lex_line(parser *ps, const char *p, size_t n, int line) {
    char q[QUOTE_BUF];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
            return fail(ps, line, "control character 0x%02x (a spec is text)", c);
    }
    const char *hash_mark = memchr(p, '#', n);
    span s = trim((span){p, hash_mark ? (size_t)(hash_mark - p) : n});
    if (!s.n) return 0;
    if (s.p[0] == '[') return lex_header(ps, s, line);
    const char *eq = memchr(s.p, '=', s.n);
    if (!eq) return fail(ps, line, "expected 'key = value' or a [section], got '%s'", show(q, s));
    if (!ps->nsec) return fail(ps, line, "'%s' comes before the first section, [input]", show(q, s));
    span key = trim((span){s.p, (size_t)(eq - s.p)});
    span val = trim((span){eq + 1, (size_t)(s.p + s.n - eq - 1)});
    if (!key.n) return fail(ps, line, "no key before '=' (%s)", show(q, s));
    if (!val.n) return fail(ps, line, "%s: no value after '='", show(q, key));
    if (grow((void **)&ps->ent, &ps->cap_ent, ps->nent, sizeof *ps->ent, ps->err) < 0) return -1;
    ps->ent[ps->nent++] = (entry){key, val, line};
    ps->sec[ps->nsec - 1].count++;
    return 0;
}

static int lex(parser *ps, const char *text, size_t len) {
    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if (line == INT32_MAX) return fail(ps, line, "too many lines");
        if (lex_line(ps, p, (size_t)(eol - p), line) < 0) return -1;
        if (eol == end) break;
        p = eol + 1;
    }
    if (!ps->nsec) return fail(ps, 1, "no sections: a spec begins with [input] and shape = CxHxW");
    return 0;
}

// ---------------------------------------------------------------------------
// pass 2: nodes

static int attr_find(const char *const *names, span key) {
    for (int i = 0; i < NS_MAX_ATTRS && names[i]; i++)
        if (span_eq(key, names[i])) return i;
    return -1;
}

static int unknown_key(const parser *ps, const section *sc, const entry *e) {
    char q[QUOTE_BUF];
    const ns_op_info *info = &ns_ops[sc->op];
    if (sc->op == NS_OP_INPUT)
        return fail(ps, e->line, "%s: [input] takes only shape = CxHxW or D, not '%s'", sc->name,
                    show(q, e->key));
    const char *cands[2 * NS_MAX_ATTRS + 1];
    int n = 0;
    cands[n++] = "from";
    for (int i = 0; i < NS_MAX_ATTRS && info->iattr[i]; i++) cands[n++] = info->iattr[i];
    for (int i = 0; i < NS_MAX_ATTRS && info->fattr[i]; i++) cands[n++] = info->fattr[i];
    const char *near = hint_for(key_hints, sizeof key_hints / sizeof *key_hints, e->key);
    int usable = 0;
    for (int i = 0; near && i < n; i++) usable |= strcmp(near, cands[i]) == 0;
    if (!usable) near = NULL;
    if (!near) near = closest(e->key, cands, n);
    char what[256] = "";
    if (near) {
        snprintf(what, sizeof what, " (did you mean '%s'?)", near);
    } else if (span_eq(e->key, "activation")) {
        snprintf(what, sizeof what, " (an activation is a section of its own: [relu] after it)");
    } else if (span_eq(e->key, "batch_normalize")) {
        snprintf(what, sizeof what, " (batch norm is a section of its own: [batchnorm] after it)");
    } else if (span_eq(e->key, "shape")) {
        snprintf(what, sizeof what, " (only [input] has a shape)");
    } else if (span_eq(e->key, "name")) {
        snprintf(what, sizeof what, " (the name goes in the header: [%s NAME])", info->name);
    } else {
        size_t used = (size_t)snprintf(what, sizeof what, " (%s takes %s", info->name, n == 1 ? "only from" : "from");
        for (int i = 1; i < n && used < sizeof what; i++)
            used += (size_t)snprintf(what + used, sizeof what - used, ", %s", cands[i]);
        if (used < sizeof what) snprintf(what + used, sizeof what - used, ")");
    }
    return fail(ps, e->line, "%s: %s has no attribute '%s'%s", sc->name, info->name, show(q, e->key), what);
}

// from = a, -2, ...: node names, or -N for the node N sections back.
static int parse_from(const parser *ps, int index, const entry *e, int *inputs, int *ninputs) {
    char q[QUOTE_BUF];
    const char *name = ps->sec[index].name;
    span rest = e->val;
    *ninputs = 0;
    for (;;) {
        const char *comma = memchr(rest.p, ',', rest.n);
        span item = trim((span){rest.p, comma ? (size_t)(comma - rest.p) : rest.n});
        if (!item.n) return fail(ps, e->line, "%s: an empty entry in from = %s", name, show(q, e->val));
        if (*ninputs == NS_MAX_INPUTS)
            return fail(ps, e->line, "%s: more than %d inputs in from = %s", name, NS_MAX_INPUTS,
                        show(q, e->val));
        int j;
        if (item.p[0] == '-' || item.p[0] == '+' || is_digit(item.p[0])) {
            int64_t k;
            if (item.p[0] != '-' || parse_int(item, &k) < 0)
                return fail(ps, e->line, "%s: '%s' is neither a node name nor -N (N nodes back)", name,
                            show(q, item));
            if (k == 0) return fail(ps, e->line, "%s: -0 is this node itself; -1 is the one before", name);
            if (-k > index)
                return fail(ps, e->line, "%s: %s goes back past the first node (the input is -%d here)",
                            name, show(q, item), index);
            j = index + (int)k;
        } else {
            j = lookup(ps, item);
            if (j < 0) {
                // the closest earlier name, if any is close
                size_t limit = item.n <= 4 ? 1 : item.n <= 8 ? 2 : 3, best = SIZE_MAX;
                const char *near = NULL;
                for (int i = 0; i < index; i++) {
                    size_t d = distance(item, ps->sec[i].name);
                    if (d <= limit && d < best) best = d, near = ps->sec[i].name;
                }
                if (near)
                    return fail(ps, e->line, "%s: no node named '%s' (did you mean '%s'?)", name,
                                show(q, item), near);
                return fail(ps, e->line, "%s: no node named '%s'", name, show(q, item));
            }
            if (j == index) return fail(ps, e->line, "%s: from = %s names this node itself", name, show(q, item));
            if (j > index)
                return fail(ps, e->line, "%s: '%s' comes later (line %d); inputs must come before the node",
                            name, show(q, item), ps->sec[j].line);
        }
        inputs[(*ninputs)++] = j;
        if (!comma) return 0;
        rest = (span){comma + 1, (size_t)(rest.p + rest.n - comma - 1)};
    }
}

// shape = CxHxW or D, positive integers.
static int parse_shape(span s, int64_t *dims, int *ndim) {
    *ndim = 0;
    for (;;) {
        const char *x = memchr(s.p, 'x', s.n);
        span part = trim((span){s.p, x ? (size_t)(x - s.p) : s.n});
        if (*ndim == 3 || parse_int(part, &dims[*ndim]) < 0 || dims[*ndim] < 1) return -1;
        (*ndim)++;
        if (!x) break;
        s = (span){x + 1, (size_t)(s.p + s.n - x - 1)};
    }
    return *ndim == 1 || *ndim == 3 ? 0 : -1;
}

static int build_input(const parser *ps, ns_model *m, const section *sc, const entry *shape) {
    char q[QUOTE_BUF];
    if (!shape) return fail(ps, sc->line, "%s: [input] needs shape = CxHxW (or D for vectors)", sc->name);
    int64_t d[3] = {0, 0, 0};
    int nd;
    if (parse_shape(shape->val, d, &nd) < 0)
        return fail(ps, shape->line, "%s: shape must be CxHxW or D, positive integers, not '%s'", sc->name,
                    show(q, shape->val));
    ns_err sub;
    int id = ns_model_add_input(m, (int)d[0], (int)d[1], (int)d[2], &sub);
    if (id < 0) return fail(ps, sc->line, "%s", sub.msg);
    if (strcmp(sc->name, "input") != 0) snprintf(m->nodes[id].name, sizeof m->nodes[id].name, "%s", sc->name);
    return 0;
}

// Attributes a spec must set: their defaults in ns_ops (1 output channel, a
// vocabulary of 1) are placeholders, and a forgotten "out =" would otherwise
// build a network that runs and is quietly wrong.
static const struct {
    ns_op op;
    const char *key, *what;
} required[] = {
    {NS_OP_LINEAR, "out", "output features"},
    {NS_OP_CONV2D, "out", "output channels"},
    {NS_OP_EMBEDDING, "num", "vocabulary size"},
    {NS_OP_EMBEDDING, "dim", "vector size"},
    {NS_OP_PATCH_EMBED, "out", "token features"},
    {NS_OP_PATCH_EMBED, "patch", "patch size"},
};

static int is_required(ns_op op, const char *key) {
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (required[i].op == op && strcmp(required[i].key, key) == 0) return 1;
    return 0;
}

// Reshape reads dim0.. up to the first 0, so a dim after a 0 would be ignored.
static int reshape_dims_bad(const int64_t *dims) {
    for (int i = 1; i < 4; i++)
        if (dims[i] != 0 && dims[i - 1] == 0) return i;
    return 0;
}

static int build_node(const parser *ps, ns_model *m, int index) {
    char q[QUOTE_BUF];
    const section *sc = &ps->sec[index];
    const ns_op_info *info = &ns_ops[sc->op];
    const entry *from = NULL, *shape = NULL, *iset[NS_MAX_ATTRS] = {0}, *fset[NS_MAX_ATTRS] = {0};
    for (int k = 0; k < sc->count; k++) {
        const entry *e = &ps->ent[sc->first + k];
        const entry **slot = NULL;
        int a;
        if (sc->op == NS_OP_INPUT) {
            if (span_eq(e->key, "shape")) slot = &shape;
        } else if (span_eq(e->key, "from")) {
            slot = &from;
        } else if ((a = attr_find(info->iattr, e->key)) >= 0) {
            slot = &iset[a];
        } else if ((a = attr_find(info->fattr, e->key)) >= 0) {
            slot = &fset[a];
        }
        if (!slot) return unknown_key(ps, sc, e);
        if (*slot)
            return fail(ps, e->line, "%s: %s is set twice (first at line %d)", sc->name, show(q, e->key),
                        (*slot)->line);
        *slot = e;
    }
    if (sc->op == NS_OP_INPUT) return build_input(ps, m, sc, shape);

    int inputs[NS_MAX_INPUTS], nin = 1;
    inputs[0] = index - 1;
    if (from && parse_from(ps, index, from, inputs, &nin) < 0) return -1;
    if (nin < info->min_inputs || nin > info->max_inputs) {
        int line = from ? from->line : sc->line;
        const char *advice = from ? "" : " (list them: from = a, b)";
        if (info->min_inputs == info->max_inputs)
            return fail(ps, line, "%s: %s takes %d input%s, not %d%s", sc->name, info->name, info->min_inputs,
                        info->min_inputs == 1 ? "" : "s", nin, advice);
        return fail(ps, line, "%s: %s takes %d to %d inputs, not %d%s", sc->name, info->name,
                    info->min_inputs, info->max_inputs, nin, advice);
    }

    int64_t ivals[NS_MAX_ATTRS];
    double fvals[NS_MAX_ATTRS];
    for (int a = 0; a < NS_MAX_ATTRS; a++) {
        ivals[a] = info->idefault[a];
        fvals[a] = info->fdefault[a];
        const entry *e = iset[a];
        if (e) {
            double r;
            int rc = parse_int(e->val, &ivals[a]);
            if (rc == -1 && parse_real(e->val, &r) == 0)
                return fail(ps, e->line, "%s: %s must be an integer, not %s", sc->name, info->iattr[a],
                            show(q, e->val));
            if (rc == -1)
                return fail(ps, e->line, "%s: %s: '%s' is not a number", sc->name, info->iattr[a], show(q, e->val));
            if (rc == -2)
                return fail(ps, e->line, "%s: %s: %s is out of range (integers lie in -2^31 .. 2^31-1)",
                            sc->name, info->iattr[a], show(q, e->val));
            if (strcmp(info->iattr[a], "bias") == 0 && ivals[a] != 0 && ivals[a] != 1)
                return fail(ps, e->line, "%s: bias is 0 or 1, not %s", sc->name, show(q, e->val));
        }
        e = fset[a];
        if (e) {
            int rc = parse_real(e->val, &fvals[a]);
            if (rc == -1)
                return fail(ps, e->line, "%s: %s: '%s' is not a number", sc->name, info->fattr[a], show(q, e->val));
            if (rc == -2)
                return fail(ps, e->line, "%s: %s: %s is not a finite number", sc->name, info->fattr[a],
                            show(q, e->val));
        }
    }
    for (size_t r = 0; r < sizeof required / sizeof *required; r++) {
        if (required[r].op != (ns_op)sc->op) continue;
        int a = attr_find(info->iattr, (span){required[r].key, strlen(required[r].key)});
        if (a >= 0 && !iset[a])
            return fail(ps, sc->line, "%s: %s needs %s = N, the %s (it has no default)", sc->name, info->name,
                        required[r].key, required[r].what);
    }
    int bad = sc->op == NS_OP_RESHAPE ? reshape_dims_bad(ivals) : 0;
    if (bad) {
        const entry *e = iset[bad];
        return fail(ps, e ? e->line : sc->line, "%s: dim%d = %lld follows dim%d = 0, but the dims end at "
                    "the first 0", sc->name, bad, (long long)ivals[bad], bad - 1);
    }

    ns_err sub;
    int id = ns_model_add_node(m, sc->name, (ns_op)sc->op, inputs, nin, &sub);
    if (id < 0) return fail(ps, sc->line, "%s", sub.msg);
    ns_node *n = &m->nodes[id];
    for (int a = 0; a < NS_MAX_ATTRS; a++) {
        if (iset[a] && ns_node_set_iattr(n, info->iattr[a], ivals[a], &sub) < 0)
            return fail(ps, iset[a]->line, "%s", sub.msg);
        if (fset[a] && ns_node_set_fattr(n, info->fattr[a], fvals[a], &sub) < 0)
            return fail(ps, fset[a]->line, "%s", sub.msg);
    }
    return 0;
}

// ns_model_resolve stopped at one node. Its messages begin "node NAME" for
// every node but the input; otherwise the input's shape was refused (the
// input has no shape yet) or a parameter tensor of the last node that got a
// shape could not be made.
static int resolve_error(const parser *ps, const ns_model *m, const char *msg) {
    int at = -1;
    if (strncmp(msg, "node ", 5) == 0) {
        const char *name = msg + 5;
        at = lookup(ps, (span){name, strcspn(name, ": ")});
        if (at >= 0) return fail(ps, ps->sec[at].line, "%s", name);
    }
    if (m->nodes[0].ndim == 0) return fail(ps, ps->sec[0].line, "%s", msg);
    at = 0;
    while (at + 1 < m->nnodes && m->nodes[at + 1].ndim) at++;
    return fail(ps, ps->sec[at].line, "%s: %s", ps->sec[at].name, msg);
}

int ns_spec_parse(ns_model *m, const char *text, size_t len, const char *label, ns_err *err) {
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.label = label ? label : "<string>";
    ps.err = err;
    if (m->nnodes || m->ntensors) return ns_errf(err, "%s: the model to parse into is not empty", ps.label);
    if (!text && len) return ns_errf(err, "%s: no text", ps.label);
    ps.table = calloc(TABLE_SIZE, sizeof *ps.table);
    if (!ps.table) return ns_errf(err, "out of memory");

    // Build into a model of our own, so that m keeps its labels and
    // normalisation, and stays untouched on failure.
    ns_model built;
    ns_model_init(&built);
    int rc = lex(&ps, text ? text : "", len);
    for (int i = 0; rc == 0 && i < ps.nsec; i++) rc = build_node(&ps, &built, i);
    if (rc == 0) {
        ns_err sub;
        if (ns_model_resolve(&built, 1, &sub) < 0) rc = resolve_error(&ps, &built, sub.msg);
    }
    free(ps.table);
    free(ps.sec);
    free(ps.ent);
    if (rc < 0) {
        ns_model_free(&built);
        return -1;
    }
    free(m->nodes);
    free(m->tensors);
    m->nodes = built.nodes;
    m->nnodes = built.nnodes;
    m->cap_nodes = built.cap_nodes;
    m->tensors = built.tensors;
    m->ntensors = built.ntensors;
    m->cap_tensors = built.cap_tensors;
    m->output = built.output;
    return 0;
}

int ns_spec_load(ns_model *m, const char *path, ns_err *err) {
    int use_stdin = strcmp(path, "-") == 0;
    const char *label = use_stdin ? "<stdin>" : path;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f) return ns_errf(err, "%s: %s", path, strerror(errno));
    char *buf = malloc((size_t)NS_SPEC_MAX_BYTES + 1);
    if (!buf) {
        if (!use_stdin) fclose(f);
        return ns_errf(err, "out of memory");
    }
    errno = 0;
    size_t n = fread(buf, 1, (size_t)NS_SPEC_MAX_BYTES + 1, f);
    int read_errno = ferror(f) ? errno : 0, bad = ferror(f);
    if (!use_stdin) fclose(f);
    int rc;
    if (bad)
        rc = ns_errf(err, "%s: read error: %s", label, read_errno ? strerror(read_errno) : "unknown");
    else if (n > NS_SPEC_MAX_BYTES)
        rc = ns_errf(err, "%s: larger than %d bytes, the limit for a spec", label, NS_SPEC_MAX_BYTES);
    else
        rc = ns_spec_parse(m, buf, n, label, err);
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------
// writing

// Refuses what the parser would refuse or read differently; writes nothing.
static int check_writable(const ns_model *m, ns_err *err) {
    if (m->nnodes < 1 || m->nodes[0].op != NS_OP_INPUT)
        return ns_errf(err, "spec: the graph does not begin with an input node");
    if (m->nnodes > NS_SPEC_MAX_NODES)
        return ns_errf(err, "spec: %d nodes, more than a spec holds (%d)", m->nnodes, NS_SPEC_MAX_NODES);
    if (m->output >= 0 && m->output != m->nnodes - 1)
        return ns_errf(err, "spec: the output is node %s, but a spec's output is its last section (%s)",
                       m->output < m->nnodes ? m->nodes[m->output].name : "?", m->nodes[m->nnodes - 1].name);
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        if ((int)n->op < 0 || n->op >= NS_OP_COUNT) return ns_errf(err, "spec: node %d has no valid op", i);
        const ns_op_info *info = &ns_ops[n->op];
        if (!name_ok((span){n->name, strnlen(n->name, sizeof n->name)}))
            return ns_errf(err, "spec: node name '%.*s' cannot be written (a letter or '_', then letters, "
                                "digits, '_', '.' or '-')", NS_NODE_NAME_MAX - 1, n->name);
        if (i > 0 && n->op == NS_OP_INPUT) return ns_errf(err, "spec: node %s: a second input", n->name);
        if (n->op == NS_OP_INPUT) {
            int64_t c = n->iattr[0], h = n->iattr[1], w = n->iattr[2];
            if (c < 1 || c > INT_VALUE_MAX || h < 0 || h > INT_VALUE_MAX || w < 0 || w > INT_VALUE_MAX ||
                (h == 0) != (w == 0))
                return ns_errf(err, "spec: node %s: input shape %lldx%lldx%lld is not CxHxW or D", n->name,
                               (long long)c, (long long)h, (long long)w);
            continue;
        }
        if (n->ninputs < info->min_inputs || n->ninputs > info->max_inputs)
            return ns_errf(err, "spec: node %s: %s with %d inputs", n->name, info->name, n->ninputs);
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] < 0 || n->inputs[k] >= i)
                return ns_errf(err, "spec: node %s: input %d is not an earlier node", n->name, k);
        for (int a = 0; a < NS_MAX_ATTRS && info->iattr[a]; a++) {
            int64_t v = n->iattr[a];
            if (v > INT_VALUE_MAX || v < -INT_VALUE_MAX - 1 || (strcmp(info->iattr[a], "bias") == 0 && v != 0 && v != 1))
                return ns_errf(err, "spec: node %s: %s = %lld cannot be written", n->name, info->iattr[a],
                               (long long)v);
        }
        for (int a = 0; a < NS_MAX_ATTRS && info->fattr[a]; a++)
            if (!isfinite(n->fattr[a]))
                return ns_errf(err, "spec: node %s: %s = %g cannot be written", n->name, info->fattr[a], n->fattr[a]);
        if (n->op == NS_OP_RESHAPE && reshape_dims_bad(n->iattr))
            return ns_errf(err, "spec: node %s: reshape dims after a 0 cannot be written", n->name);
    }
    return 0;
}

int ns_spec_write(const ns_model *m, FILE *f, ns_err *err) {
    if (check_writable(m, err) < 0) return -1;
    int printable = 1;
    for (const char *c = m->arch; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) printable = 0;
    fprintf(f, "# netsmith-spec(5)");
    if (m->arch[0] && printable) fprintf(f, ": %s", m->arch);
    fprintf(f, "\n");
    int counts[NS_OP_COUNT] = {0};
    for (int i = 0; i < m->nnodes; i++) {
        const ns_node *n = &m->nodes[i];
        const ns_op_info *info = &ns_ops[n->op];
        // Unnamed sections of an op are named op1, op2, ... in order, so a
        // node is written unnamed when its name is the next of these.
        char dflt[NS_NODE_NAME_MAX + 16];
        if (n->op == NS_OP_INPUT) snprintf(dflt, sizeof dflt, "input");
        else snprintf(dflt, sizeof dflt, "%s%d", info->name, counts[n->op] + 1);
        int unnamed = strcmp(dflt, n->name) == 0;
        counts[n->op] += unnamed;
        fprintf(f, "\n[%s%s%s]\n", info->name, unnamed ? "" : " ", unnamed ? "" : n->name);
        if (n->op == NS_OP_INPUT) {
            if (n->iattr[1])
                fprintf(f, "shape = %" PRId64 "x%" PRId64 "x%" PRId64 "\n", n->iattr[0], n->iattr[1], n->iattr[2]);
            else
                fprintf(f, "shape = %" PRId64 "\n", n->iattr[0]);
            continue;
        }
        if (n->ninputs != 1 || n->inputs[0] != i - 1) {
            fprintf(f, "from =");
            for (int k = 0; k < n->ninputs; k++)
                fprintf(f, "%s %s", k ? "," : "", m->nodes[n->inputs[k]].name);
            fprintf(f, "\n");
        }
        for (int a = 0; a < NS_MAX_ATTRS && info->iattr[a]; a++)
            if (n->iattr[a] != info->idefault[a] || is_required(n->op, info->iattr[a])) fprintf(f, "%s = %" PRId64 "\n", info->iattr[a], n->iattr[a]);
        for (int a = 0; a < NS_MAX_ATTRS && info->fattr[a]; a++) {
            if (n->fattr[a] == info->fdefault[a]) continue;
            char num[40];
            format_real(num, sizeof num, n->fattr[a]);
            fprintf(f, "%s = %s\n", info->fattr[a], num);
        }
    }
    if (fflush(f) != 0 || ferror(f)) return ns_errf(err, "spec: write error: %s", strerror(errno));
    return 0;
}
