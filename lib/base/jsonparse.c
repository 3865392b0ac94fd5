// jsonparse.c: recursive-descent JSON reader (jsonparse.h). Errors give the
// byte offset of the problem.
#include "base/jsonparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *s;
    size_t len, pos;
    ns_err *err;
} parser;

static int fail(parser *p, const char *what) {
    return ns_errf(p->err, "JSON: %s at byte %zu", what, p->pos);
}

static void skip_ws(parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
                               p->s[p->pos] == '\r'))
        p->pos++;
}

static int hex4(parser *p, uint32_t *out) {
    if (p->pos + 4 > p->len) return fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return fail(p, "bad \\u escape");
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
               o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int parse_string(parser *p, char **out) {
    p->pos++; // opening quote
    size_t start = p->pos, n = 0;
    while (p->pos < p->len && p->s[p->pos] != '"') p->pos += p->s[p->pos] == '\\' ? 2 : 1;
    if (p->pos >= p->len) return fail(p, "unterminated string");
    char *o = malloc(p->pos - start + 1);
    if (!o) return ns_errf(p->err, "out of memory");
    for (size_t i = start; i < p->pos;) {
        unsigned char c = (unsigned char)p->s[i];
        if (c < 0x20) {
            free(o);
            p->pos = i;
            return fail(p, "control character in a string");
        }
        if (c != '\\') {
            o[n++] = (char)c;
            i++;
            continue;
        }
        char e = p->s[i + 1];
        i += 2;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *k = e ? strchr(from, e) : NULL;
        if (k) {
            o[n++] = to[k - from];
            continue;
        }
        if (e != 'u') {
            free(o);
            p->pos = i - 1;
            return fail(p, "bad escape");
        }
        size_t save = p->pos;
        p->pos = i;
        uint32_t cp, lo;
        if (hex4(p, &cp) < 0) return free(o), -1;
        if (cp >= 0xd800 && cp < 0xdc00 && p->pos + 6 <= p->len && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
            p->pos += 2;
            if (hex4(p, &lo) < 0) return free(o), -1;
            cp = lo >= 0xdc00 && lo < 0xe000 ? 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00) : 0xfffd;
        } else if (cp >= 0xd800 && cp < 0xe000) {
            cp = 0xfffd;
        }
        n += put_utf8(o + n, cp); // never longer than the escape it replaces
        i = p->pos;
        p->pos = save;
    }
    o[n] = 0;
    p->pos++; // closing quote
    *out = o;
    return 0;
}

static int parse_value(parser *p, ns_jvalue *v, int depth);

static int append(parser *p, ns_jvalue *v, size_t *cap, char *key) {
    if (v->n == *cap) {
        size_t c = *cap ? 2 * *cap : 8;
        ns_jvalue *items = realloc(v->items, c * sizeof *items);
        if (!items) return ns_errf(p->err, "out of memory");
        v->items = items;
        if (v->type == NS_JOBJ) {
            char **keys = realloc(v->keys, c * sizeof *keys);
            if (!keys) return ns_errf(p->err, "out of memory");
            v->keys = keys;
        }
        *cap = c;
    }
    if (v->type == NS_JOBJ) v->keys[v->n] = key;
    memset(&v->items[v->n], 0, sizeof v->items[0]);
    v->n++;
    return 0;
}

static int parse_container(parser *p, ns_jvalue *v, int depth) {
    int obj = p->s[p->pos] == '{';
    char close = obj ? '}' : ']';
    v->type = obj ? NS_JOBJ : NS_JARR;
    size_t cap = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) return p->pos++, 0;
    for (;;) {
        char *key = NULL;
        skip_ws(p);
        if (obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a key");
            if (parse_string(p, &key) < 0) return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') return free(key), fail(p, "expected ':'");
            p->pos++;
        }
        if (append(p, v, &cap, key) < 0) return free(key), -1;
        if (parse_value(p, &v->items[v->n - 1], depth + 1) < 0) return -1;
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, "unterminated array or object");
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] == close) return p->pos++, 0;
        return fail(p, "expected ',' or a closing bracket");
    }
}

static int parse_value(parser *p, ns_jvalue *v, int depth) {
    memset(v, 0, sizeof *v);
    if (depth > MAX_DEPTH) return fail(p, "nested too deeply");
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') return parse_container(p, v, depth);
    if (c == '"') {
        v->type = NS_JSTR;
        return parse_string(p, &v->str);
    }
    static const struct { const char *word; ns_jtype type; double num; } words[] = {
        {"true", NS_JBOOL, 1}, {"false", NS_JBOOL, 0}, {"null", NS_JNULL, 0}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i].word, n) == 0) {
            v->type = words[i].type;
            v->num = words[i].num;
            p->pos += n;
            return 0;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t n = 0;
        while (p->pos + n < p->len && n < sizeof buf - 1 && strchr("+-0123456789.eE", p->s[p->pos + n])) n++;
        memcpy(buf, p->s + p->pos, n);
        buf[n] = 0;
        char *end;
        v->num = strtod(buf, &end);
        if (end != buf + n) return fail(p, "bad number");
        v->type = NS_JNUM;
        p->pos += n;
        return 0;
    }
    return fail(p, "unexpected character");
}

int ns_json_parse(const char *text, size_t len, ns_jvalue *out, ns_err *err) {
    parser p = {text, len, 0, err};
    if (parse_value(&p, out, 0) < 0) {
        ns_json_free(out);
        return -1;
    }
    skip_ws(&p);
    if (p.pos != len) {
        ns_json_free(out);
        return fail(&p, "text after the value");
    }
    return 0;
}

void ns_json_free(ns_jvalue *v) {
    for (size_t i = 0; i < v->n; i++) {
        ns_json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof *v);
}

const ns_jvalue *ns_json_get(const ns_jvalue *obj, const char *key) {
    if (!obj || obj->type != NS_JOBJ) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}
