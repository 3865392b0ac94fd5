// concepts.c: attribute tables, pixel statistics, quantile thresholds,
// concept-bank streams and captions (concepts.h).
//
// Dimensions: N images, K concepts, A attributes, C classes, S statistics,
// H, W image height and width.
#include "cav/concepts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lines.h"
#include "stream/labels.h"
#include "stream/tns.h"

const char *const ns_stat_names[NS_STAT_COUNT] = {"intensity", "texture", "area"};
const char *const ns_stat_words[NS_STAT_COUNT][2] = {{"bright", "dark"}, {"patterned", "plain"}, {"large", "small"}};

// ----------------------------------------------------------------------------
// the attribute table

void ns_attr_table_free(ns_attr_table *t) {
    ns_strings_free(t->attrs, t->nattrs);
    ns_strings_free(t->classes, t->nclasses);
    free(t->values);
    memset(t, 0, sizeof *t);
}

// Splits line (modified in place) at tabs into fields (capacity cap); returns the count.
static size_t split_tabs(char *line, char **fields, size_t cap) {
    size_t n = 0;
    for (char *p = line;; p++) {
        if (n < cap) fields[n] = p;
        n++;
        p = strchr(p, '\t');
        if (!p) break;
        *p = '\0';
    }
    return n;
}

static int append_str(char ***arr, size_t *n, const char *s, ns_err *err) {
    char **a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a) return ns_errf(err, "out of memory");
    *arr = a;
    if (!(a[*n] = strdup(s))) return ns_errf(err, "out of memory");
    (*n)++;
    return 0;
}

#define ATTR_MAX 256

static int parse_header(ns_attr_table *t, char **f, size_t nf, const char *path, long lineno, ns_err *err) {
    if (strcmp(f[0], "class") != 0)
        return ns_errf(err, "%s line %ld: the header must start with 'class' (%.60s)", path, lineno, f[0]);
    if (nf < 2) return ns_errf(err, "%s line %ld: the header names no attribute", path, lineno);
    if (nf - 1 > ATTR_MAX) return ns_errf(err, "%s line %ld: %zu attributes (at most %d)", path, lineno, nf - 1, ATTR_MAX);
    for (size_t i = 1; i < nf; i++) {
        if (!f[i][0]) return ns_errf(err, "%s line %ld: attribute %zu has no name", path, lineno, i);
        for (size_t j = 1; j < i; j++)
            if (strcmp(f[i], f[j]) == 0) return ns_errf(err, "%s line %ld: attribute '%s' given twice", path, lineno, f[i]);
        if (append_str(&t->attrs, &t->nattrs, f[i], err) < 0) return -1;
    }
    return 0;
}

static int parse_row(ns_attr_table *t, char **f, size_t nf, const char *path, long lineno, ns_err *err) {
    if (nf != t->nattrs + 1)
        return ns_errf(err, "%s line %ld: %zu fields, the header has %zu", path, lineno, nf, t->nattrs + 1);
    if (!f[0][0]) return ns_errf(err, "%s line %ld: empty class name", path, lineno);
    for (size_t c = 0; c < t->nclasses; c++)
        if (strcmp(t->classes[c], f[0]) == 0) return ns_errf(err, "%s line %ld: class '%s' given twice", path, lineno, f[0]);
    uint8_t *v = realloc(t->values, (t->nclasses + 1) * t->nattrs);
    if (!v) return ns_errf(err, "out of memory");
    t->values = v;
    for (size_t a = 0; a < t->nattrs; a++) {
        if (strcmp(f[a + 1], "0") != 0 && strcmp(f[a + 1], "1") != 0)
            return ns_errf(err, "%s line %ld: %s of %s is '%.40s', not 0 or 1", path, lineno, t->attrs[a], f[0], f[a + 1]);
        v[t->nclasses * t->nattrs + a] = (uint8_t)(f[a + 1][0] - '0');
    }
    return append_str(&t->classes, &t->nclasses, f[0], err);
}

int ns_attr_table_load(ns_attr_table *t, const char *path, ns_err *err) {
    memset(t, 0, sizeof *t);
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    char *line, *fields[ATTR_MAX + 2];
    size_t len;
    int rc, have_header = 0;
    while ((rc = ns_lines_next(&in, &line, &len, err)) == 1) {
        long lineno = (long)in.lineno;
        if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        size_t nf = split_tabs(line, fields, ATTR_MAX + 2);
        if (nf > ATTR_MAX + 1) rc = ns_errf(err, "%s line %ld: more than %d fields", path, lineno, ATTR_MAX + 1);
        else if (!have_header) rc = parse_header(t, fields, nf, path, lineno, err), have_header = 1;
        else rc = parse_row(t, fields, nf, path, lineno, err);
        if (rc < 0) break;
    }
    if (rc == 0 && !have_header) rc = ns_errf(err, "%s: empty attribute table", path);
    if (rc == 0 && t->nclasses == 0) rc = ns_errf(err, "%s: the attribute table has no class rows", path);
    ns_lines_close(&in);
    if (rc < 0) ns_attr_table_free(t);
    return rc;
}

int ns_attr_table_for_labels(const ns_attr_table *t, char *const *labels, size_t n, uint8_t *out, ns_err *err) {
    for (size_t k = 0; k < n; k++) {
        size_t c = 0;
        while (c < t->nclasses && strcmp(t->classes[c], labels[k]) != 0) c++;
        if (c == t->nclasses) return ns_errf(err, "class '%s' of the data is not in the attribute table", labels[k]);
        memcpy(out + k * t->nattrs, t->values + c * t->nattrs, t->nattrs);
    }
    for (size_t c = 0; c < t->nclasses; c++) {
        size_t k = 0;
        while (k < n && strcmp(t->classes[c], labels[k]) != 0) k++;
        if (k == n) return ns_errf(err, "class '%s' of the attribute table is not a class of the data", t->classes[c]);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// pixel statistics

void ns_pixel_stats(double stats[NS_STAT_COUNT], const float *img, int64_t C, int64_t H, int64_t W,
                    double object_level) {
    int64_t S = H * W, area = 0, inner = 0;
    double sum = 0, lap = 0;
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            double g = 0;
            for (int64_t c = 0; c < C; c++) g += img[c * S + y * W + x];
            g /= (double)C;
            if (g <= object_level) continue;
            area++;
            sum += g;
            if (y == 0 || x == 0 || y == H - 1 || x == W - 1) continue;
            // the 4-neighbour Laplacian, only where all neighbours are object too
            double nb[4] = {0, 0, 0, 0};
            int64_t at[4] = {(y - 1) * W + x, (y + 1) * W + x, y * W + x - 1, y * W + x + 1};
            int all = 1;
            for (int i = 0; i < 4; i++) {
                for (int64_t c = 0; c < C; c++) nb[i] += img[c * S + at[i]];
                nb[i] /= (double)C;
                all &= nb[i] > object_level;
            }
            if (!all) continue;
            lap += fabs(nb[0] + nb[1] + nb[2] + nb[3] - 4 * g);
            inner++;
        }
    stats[NS_STAT_INTENSITY] = area ? sum / (double)area : 0;
    stats[NS_STAT_TEXTURE] = inner ? lap / (double)inner : 0;
    stats[NS_STAT_AREA] = S ? (double)area / (double)S : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile_sorted(const double *v, int64_t n, double q) {
    double pos = q * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

int ns_thresholds_fit(ns_thresholds *th, const double *stats, int64_t n, double q, ns_err *err) {
    if (!(q > 0 && q <= 0.5)) return ns_errf(err, "quantile %g is not in (0, 0.5]", q);
    if (n < 1) return ns_errf(err, "no images to fit thresholds on");
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return ns_errf(err, "out of memory (%lld images)", (long long)n);
    th->quantile = q;
    for (int s = 0; s < NS_STAT_COUNT; s++) {
        for (int64_t i = 0; i < n; i++) v[i] = stats[i * NS_STAT_COUNT + s];
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        th->low[s] = quantile_sorted(v, n, q);
        th->high[s] = quantile_sorted(v, n, 1 - q);
    }
    free(v);
    return 0;
}

void ns_pixel_concepts(uint8_t out[NS_PIXEL_CONCEPTS], const double stats[NS_STAT_COUNT], const ns_thresholds *th) {
    for (int s = 0; s < NS_STAT_COUNT; s++) {
        double v = stats[s];
        uint8_t top = v >= th->high[s] && v > th->low[s] ? 1 : v <= th->low[s] ? 0 : NS_CONCEPT_UNKNOWN;
        out[2 * s] = top;
        out[2 * s + 1] = top == NS_CONCEPT_UNKNOWN ? top : (uint8_t)(1 - top);
    }
}

// ----------------------------------------------------------------------------
// concept-bank streams

void ns_concept_bank_free(ns_concept_bank *b) {
    ns_strings_free(b->names, b->k);
    ns_strings_free(b->kinds, b->k);
    ns_strings_free(b->classes, b->nclasses);
    free(b->values);
    free(b->labels);
    free(b->ids);
    memset(b, 0, sizeof *b);
}

static int bank_meta(ns_concept_bank *b, const ns_record *rec, ns_err *err) {
    if (ns_map_get(rec->meta, "general.labels")) {
        ns_strings_free(b->classes, b->nclasses);
        b->classes = NULL;
        if (ns_obj_strs(rec->meta, "general.labels", &b->classes, &b->nclasses, err) < 0) return -1;
    }
    if (!ns_map_get(rec->meta, "concepts.names")) return 0;
    if (b->names) return ns_errf(err, "concepts.names given twice");
    size_t nk = 0;
    if (ns_obj_strs(rec->meta, "concepts.names", &b->names, &b->k, err) < 0 ||
        ns_obj_strs(rec->meta, "concepts.kinds", &b->kinds, &nk, err) < 0)
        return -1;
    if (!b->kinds || nk != b->k) return ns_errf(err, "concepts.kinds does not match concepts.names (%zu names)", b->k);
    for (size_t i = 0; i < nk; i++)
        if (strcmp(b->kinds[i], "class") != 0 && strcmp(b->kinds[i], "pixel") != 0)
            return ns_errf(err, "concept %s has kind '%s', not class or pixel", b->names[i], b->kinds[i]);
    return 0;
}

static int bank_record(ns_concept_bank *b, const ns_record *rec, ns_err *err) {
    if (!b->names) return ns_errf(err, "a concepts record before concepts.names");
    if (rec->dtype != NS_U8 || rec->ndim != 2 || rec->shape[1] != (int64_t)b->k)
        return ns_errf(err, "record %llu is not (N, %zu) u8", (unsigned long long)rec->index, b->k);
    int64_t n = rec->shape[0], total = b->n + n;
    uint8_t *v = realloc(b->values, (size_t)(total ? total : 1) * b->k);
    int32_t *l = realloc(b->labels, (size_t)(total ? total : 1) * sizeof *l);
    int64_t *ids = realloc(b->ids, (size_t)(total ? total : 1) * sizeof *ids);
    if (v) b->values = v;
    if (l) b->labels = l;
    if (ids) b->ids = ids;
    if (!v || !l || !ids) return ns_errf(err, "out of memory (%lld images)", (long long)total);
    const uint8_t *src = rec->data;
    for (int64_t i = 0; i < n * (int64_t)b->k; i++)
        if (src[i] > NS_CONCEPT_UNKNOWN)
            return ns_errf(err, "record %llu: value %d is not 0, 1 or 2", (unsigned long long)rec->index, src[i]);
    memcpy(b->values + b->n * (int64_t)b->k, src, (size_t)(n * (int64_t)b->k));
    size_t got = 0;
    int have = ns_obj_i64s(rec->meta, "ids", b->ids + b->n, (size_t)n, &got, err);
    if (have < 0) return -1;
    if (have == 0 || (int64_t)got != n)
        return ns_errf(err, "record %llu has no ids for its %lld images", (unsigned long long)rec->index, (long long)n);
    int64_t classes = b->classes ? (int64_t)b->nclasses : NS_CLASSES_UNKNOWN;
    if (ns_record_labels(rec, n, classes, b->labels + b->n, err) < 0) return -1;
    b->n = total;
    return 0;
}

int ns_concept_bank_load(ns_concept_bank *b, const char *path, ns_err *err) {
    memset(b, 0, sizeof *b);
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_record rec;
    int got, rc = 0;
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) rc = bank_meta(b, &rec, err);
        else if (strcmp(rec.kind, "tensor") == 0 && strcmp(rec.name, "concepts") == 0) rc = bank_record(b, &rec, err);
    }
    ns_reader_close(r);
    if (rc < 0 && got == 1) ns_err_prefix(err, "%s", path);
    if (rc == 0 && got < 0) rc = -1;
    if (rc == 0 && !b->names) rc = ns_errf(err, "%s: not a concept bank (no concepts.names)", path);
    if (rc < 0) ns_concept_bank_free(b);
    return rc;
}

// ----------------------------------------------------------------------------
// captions

void ns_concept_phrase(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '-' || *p == '_') *p = ' ';
}

// Caption templates: {a} the kept pixel words, {t} the kept class-concept
// phrases, {c} the class name.
static const char *const templates[] = {
    "a photo of a {a} {c}, {t}.",
    "a {a} {c} with a {t} look.",
    "{t}: a {c} that looks {a}.",
    "a close-up photo of the {a} {c} ({t}).",
    "an image of {t} clothing, {a}, {c}.",
    "a {c}. {a}. {t}.",
};
#define NTEMPLATES (sizeof templates / sizeof templates[0])

// Appends s to buf (length *len, capacity cap), truncating.
static void append(char *buf, size_t cap, size_t *len, const char *s) {
    int n = snprintf(buf + *len, cap - *len, "%s", s);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

// Removes what empty slots leave behind: doubled spaces, a space before
// punctuation, punctuation with nothing before it, "()".
static void tidy(char *buf) {
    size_t w = 0;
    for (size_t r = 0; buf[r]; r++) {
        char c = buf[r];
        char last = w ? buf[w - 1] : '\0';
        if (c == ' ' && (w == 0 || last == ' ' || last == '(')) continue;
        if (strchr(",.:)", c) && w && last == ' ') w--, last = w ? buf[w - 1] : '\0';
        if (strchr(",.:", c) && (w == 0 || strchr(",.:(", last))) {
            if (c == '.' && w && strchr(",:", last)) buf[w - 1] = '.';
            continue;
        }
        if (c == ')' && last == '(') {
            w--;
            continue;
        }
        buf[w++] = c;
    }
    while (w > 0 && buf[w - 1] == ' ') w--;
    buf[w] = '\0';
}

void ns_caption_make(char *buf, size_t cap, const char *class_name, const uint8_t *values, char *const *names,
                     char *const *kinds, size_t k, double dropout, ns_rng *rng) {
    char adj[512] = "", attrs[512] = "", phrase[128];
    size_t la = 0, lt = 0;
    for (size_t i = 0; i < k; i++) {
        if (values[i] != 1 || ns_rng_uniform(rng) < dropout) continue;
        ns_concept_phrase(phrase, sizeof phrase, names[i]);
        int pixel = strcmp(kinds[i], "pixel") == 0;
        char *dst = pixel ? adj : attrs;
        size_t *len = pixel ? &la : &lt;
        if (*len) append(dst, 512, len, " ");
        append(dst, 512, len, phrase);
    }
    const char *cls = class_name && ns_rng_uniform(rng) >= dropout ? class_name : "";
    const char *tmpl = templates[ns_rng_below(rng, NTEMPLATES)];
    size_t len = 0;
    buf[0] = '\0';
    for (const char *p = tmpl; *p && len + 1 < cap; p++) {
        if (p[0] == '{' && p[1] && p[2] == '}') {
            append(buf, cap, &len, p[1] == 'a' ? adj : p[1] == 't' ? attrs : cls);
            p += 2;
            continue;
        }
        buf[len++] = *p;
        buf[len] = '\0';
    }
    tidy(buf);
}
