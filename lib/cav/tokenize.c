// tokenize.c: words, the vocabulary's hash table, token lists (tokenize.h).
#include "cav/tokenize.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

int64_t ns_split_words(const char *text, void (*emit)(const char *word, void *ctx), void *ctx) {
    char word[NS_WORD_MAX + 1];
    int64_t count = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        while (*p && !is_word_byte(*p)) p++;
        if (!*p) break;
        size_t len = 0;
        for (; *p && is_word_byte(*p); p++)
            if (len < NS_WORD_MAX) word[len++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        word[len] = '\0';
        if (emit) emit(word, ctx);
        count++;
    }
    return count;
}

static void vocab_insert_slot(ns_vocab *v, int32_t id) {
    size_t mask = v->nslots - 1, i = (size_t)fnv1a(v->words[id]) & mask;
    while (v->slots[i] >= 0) i = (i + 1) & mask;
    v->slots[i] = id;
}

static int vocab_grow(ns_vocab *v, ns_err *err) {
    if (v->n == v->cap) {
        int32_t cap = v->cap ? v->cap * 2 : 64;
        char **w = realloc(v->words, (size_t)cap * sizeof *w);
        if (!w) return ns_errf(err, "out of memory (vocabulary of %d words)", (int)cap);
        v->words = w;
        v->cap = cap;
    }
    if ((size_t)(v->n + 1) * 2 > v->nslots) {
        size_t nslots = v->nslots ? v->nslots * 2 : 128;
        int32_t *slots = malloc(nslots * sizeof *slots);
        if (!slots) return ns_errf(err, "out of memory (vocabulary of %d words)", (int)v->n);
        free(v->slots);
        v->slots = slots;
        v->nslots = nslots;
        for (size_t i = 0; i < nslots; i++) slots[i] = -1;
        for (int32_t id = 0; id < v->n; id++) vocab_insert_slot(v, id);
    }
    return 0;
}

int ns_vocab_init(ns_vocab *v, ns_err *err) {
    memset(v, 0, sizeof *v);
    if (ns_vocab_add(v, NS_UNK, NULL, err) < 0) {
        ns_vocab_free(v);
        return -1;
    }
    return 0;
}

void ns_vocab_free(ns_vocab *v) {
    for (int32_t i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static int32_t vocab_lookup(const ns_vocab *v, const char *word) {
    if (!v->nslots) return -1;
    size_t mask = v->nslots - 1;
    for (size_t i = (size_t)fnv1a(word) & mask; v->slots[i] >= 0; i = (i + 1) & mask)
        if (strcmp(v->words[v->slots[i]], word) == 0) return v->slots[i];
    return -1;
}

int32_t ns_vocab_find(const ns_vocab *v, const char *word) {
    int32_t id = vocab_lookup(v, word);
    return id < 0 ? 0 : id;
}

int ns_vocab_add(ns_vocab *v, const char *word, int32_t *id, ns_err *err) {
    int32_t found = vocab_lookup(v, word);
    if (found < 0) {
        if (v->n >= NS_VOCAB_MAX) return ns_errf(err, "vocabulary over %d words", NS_VOCAB_MAX);
        if (vocab_grow(v, err) < 0) return -1;
        if (!(v->words[v->n] = strdup(word))) return ns_errf(err, "out of memory");
        found = v->n++;
        vocab_insert_slot(v, found);
    }
    if (id) *id = found;
    return 0;
}

typedef struct add_ctx {
    ns_vocab *v;
    ns_err *err;
    int failed;
} add_ctx;

static void add_word(const char *word, void *ctx) {
    add_ctx *a = ctx;
    if (!a->failed && ns_vocab_add(a->v, word, NULL, a->err) < 0) a->failed = 1;
}

int ns_vocab_add_text(ns_vocab *v, const char *text, ns_err *err) {
    add_ctx a = {v, err, 0};
    ns_split_words(text, add_word, &a);
    return a.failed ? -1 : 0;
}

// A stored word must be what the splitter would produce.
static int is_token(const char *w) {
    size_t len = strlen(w);
    if (len == 0 || len > NS_WORD_MAX) return 0;
    for (const unsigned char *p = (const unsigned char *)w; *p; p++)
        if (!is_word_byte(*p) || (*p >= 'A' && *p <= 'Z')) return 0;
    return 1;
}

int ns_vocab_from_words(ns_vocab *v, char *const *words, size_t n, ns_err *err) {
    if (n == 0 || strcmp(words[0], NS_UNK) != 0)
        return ns_errf(err, "the vocabulary must start with %s", NS_UNK);
    if (n > NS_VOCAB_MAX) return ns_errf(err, "vocabulary of %zu words (at most %d)", n, NS_VOCAB_MAX);
    if (ns_vocab_init(v, err) < 0) return -1;
    for (size_t i = 1; i < n; i++) {
        int32_t id;
        if (!is_token(words[i])) {
            ns_errf(err, "vocabulary word %zu is not a token (%.80s)", i, words[i]);
            goto fail;
        }
        if (ns_vocab_add(v, words[i], &id, err) < 0) goto fail;
        if (id != (int32_t)i) {
            ns_errf(err, "vocabulary word %zu repeats word %d (%s)", i, (int)id, words[i]);
            goto fail;
        }
    }
    return 0;
fail:
    ns_vocab_free(v);
    return -1;
}

typedef struct tok_ctx {
    const ns_vocab *v;
    int32_t *ids;
    int64_t cap, n;
} tok_ctx;

static void emit_id(const char *word, void *ctx) {
    tok_ctx *t = ctx;
    if (t->n < t->cap) t->ids[t->n] = ns_vocab_find(t->v, word);
    t->n++;
}

int64_t ns_tokenize(const ns_vocab *v, const char *text, int32_t *ids, int64_t cap) {
    tok_ctx t = {v, ids, cap, 0};
    ns_split_words(text, emit_id, &t);
    if (t.n == 0) {
        if (cap > 0) ids[0] = 0;
        t.n = 1;
    }
    return t.n;
}

int ns_token_lists_fill(ns_token_lists *t, const ns_vocab *v, const char *const *texts, int64_t n,
                        ns_err *err) {
    if (n + 1 > t->cap_texts) {
        int64_t *o = realloc(t->offsets, (size_t)(n + 1) * sizeof *o);
        if (!o) return ns_errf(err, "out of memory (%lld texts)", (long long)n);
        t->offsets = o;
        t->cap_texts = n + 1;
    }
    t->n = n;
    t->offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = t->offsets[i];
        for (;;) {
            int64_t room = t->cap_ids - pos, got = ns_tokenize(v, texts[i], t->ids ? t->ids + pos : NULL, room);
            if (got <= room) {
                // unknown words are left out, unless there is nothing else
                int64_t kept = 0;
                for (int64_t k = 0; k < got; k++)
                    if (t->ids[pos + k] != 0) t->ids[pos + kept++] = t->ids[pos + k];
                t->offsets[i + 1] = pos + (kept ? kept : 1);
                if (!kept) t->ids[pos] = 0;
                break;
            }
            int64_t cap = (t->cap_ids ? t->cap_ids : 256) * 2;
            while (cap < pos + got) cap *= 2;
            int32_t *ids = realloc(t->ids, (size_t)cap * sizeof *ids);
            if (!ids) return ns_errf(err, "out of memory (%lld tokens)", (long long)cap);
            t->ids = ids;
            t->cap_ids = cap;
        }
    }
    return 0;
}

void ns_token_lists_free(ns_token_lists *t) {
    free(t->ids);
    free(t->offsets);
    memset(t, 0, sizeof *t);
}
