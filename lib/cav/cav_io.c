// cav_io.c: feature streams, concept streams and CAV streams into memory,
// and id matching (cav_io.h). Feature rows (N, D) and concept rows (N, K)
// grow by doubling as batches arrive; CAVs are (M, D).
#include "cav/cav_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stream/labels.h"
#include "stream/tns.h"

// Grows *buf (elements of size bytes) to hold at least need; *cap in elements.
static int grow(void **buf, int64_t *cap, int64_t need, size_t size, ns_err *err) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    if ((uint64_t)c > SIZE_MAX / size) return ns_errf(err, "out of memory");
    void *p = realloc(*buf, (size_t)c * size);
    if (!p) return ns_errf(err, "out of memory (%lld rows)", (long long)c);
    *buf = p;
    *cap = c;
    return 0;
}

// labels and ids of a batch record of n rows: labels -1 when absent, else -1
// or a class below `classes` (ns_record_labels); ids are required.
static int batch_labels(const ns_record *rec, int64_t n, int64_t classes, int32_t *y, int64_t *ids,
                        const char *path, ns_err *err) {
    if (ns_record_labels(rec, n, classes, y, err) < 0) return ns_err_prefix(err, "%s", path);
    size_t got = 0;
    int rc = ns_obj_i64s(rec->meta, "ids", ids, (size_t)n, &got, err);
    if (rc < 0) return ns_err_prefix(err, "%s: record %llu", path, (unsigned long long)rec->index);
    if (rc == 0 || (int64_t)got != n)
        return ns_errf(err, "%s: record %llu (%s) needs meta ids, one per row", path,
                       (unsigned long long)rec->index, rec->name);
    return 0;
}

static int check_unique_ids(const int64_t *ids, int64_t n, const char *path, ns_err *err);

static int read_matrix(const ns_record *rec, float **out, int64_t rows, int64_t cols, const char *path,
                       ns_err *err) {
    if (!rec->has_data || rec->ndim != 2 || rec->shape[0] != rows || rec->shape[1] != cols)
        return ns_errf(err, "%s: record %llu (%s) is not %lldx%lld", path,
                       (unsigned long long)rec->index, rec->name, (long long)rows, (long long)cols);
    ns_tensor t;
    if (ns_record_tensor_f32(rec, &t, err) < 0) return -1;
    for (int64_t i = 0; i < t.numel; i++)
        if (!isfinite(((float *)t.data)[i])) {
            ns_tensor_free(&t);
            return ns_errf(err, "%s: %s has a value that is not finite (element %lld)", path,
                           rec->name, (long long)i);
        }
    free(*out);
    *out = t.data; // aligned, freed with free()
    return 0;
}

static int meta_str(const ns_record *rec, const char *key, char *buf, const char *path, ns_err *err) {
    if (ns_obj_str(rec->meta, key, buf, NS_PROBE_STR, err) < 0) return ns_err_prefix(err, "%s", path);
    return 0;
}

int ns_features_load(ns_features *f, const char *path, ns_err *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    int64_t cap_x = 0, cap_y = 0, cap_i = 0;
    ns_record rec;
    int got, rc = -1;
    int64_t want_w = -1, bias_k = -1; // rows of head.weight, entries of head.bias
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (meta_str(&rec, "probe.source", f->source, path, err) < 0 ||
                meta_str(&rec, "probe.model", f->model, path, err) < 0 ||
                meta_str(&rec, "probe.model_path", f->model_path, path, err) < 0 ||
                meta_str(&rec, "probe.layer", f->layer, path, err) < 0 ||
                meta_str(&rec, "probe.pool", f->pool, path, err) < 0)
                goto done;
            char **labels;
            size_t nl;
            if (ns_obj_strs(rec.meta, "general.labels", &labels, &nl, err) < 0) {
                ns_err_prefix(err, "%s", path);
                goto done;
            }
            if (labels) {
                ns_strings_free(f->labels, f->nlabels);
                f->labels = labels;
                f->nlabels = nl;
            }
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0 || !rec.has_data) continue;
        if (strcmp(rec.name, "features") == 0) {
            if (rec.ndim != 2 || rec.shape[1] < 1 || (f->n > 0 && rec.shape[1] != f->d)) {
                char s[64];
                ns_shape_format(s, sizeof s, rec.ndim, rec.shape);
                ns_errf(err, "%s: record %llu: features of shape %s (expected N x %lld)", path,
                        (unsigned long long)rec.index, s, (long long)(f->n ? f->d : 0));
                goto done;
            }
            int64_t n = rec.shape[0], d = rec.shape[1];
            f->d = d;
            if (grow((void **)&f->x, &cap_x, (f->n + n) * d, sizeof(float), err) < 0 ||
                grow((void **)&f->y, &cap_y, f->n + n, sizeof(int32_t), err) < 0 ||
                grow((void **)&f->ids, &cap_i, f->n + n, sizeof(int64_t), err) < 0)
                goto done;
            int64_t classes = f->labels ? (int64_t)f->nlabels : NS_CLASSES_UNKNOWN;
            if (batch_labels(&rec, n, classes, f->y + f->n, f->ids + f->n, path, err) < 0) goto done;
            ns_tensor t;
            if (ns_record_tensor_f32(&rec, &t, err) < 0) goto done;
            memcpy(f->x + f->n * d, t.data, (size_t)(n * d) * sizeof(float));
            ns_tensor_free(&t);
            for (int64_t i = 0; i < n * d; i++)
                if (!isfinite(f->x[f->n * d + i])) {
                    ns_errf(err, "%s: feature row %lld is not finite", path, (long long)(f->n + i / d));
                    goto done;
                }
            f->n += n;
        } else if (strcmp(rec.name, "head.weight") == 0) {
            if (rec.ndim != 2) {
                ns_errf(err, "%s: head.weight is not a matrix", path);
                goto done;
            }
            if (read_matrix(&rec, &f->head_w, rec.shape[0], rec.shape[1], path, err) < 0) goto done;
            want_w = rec.shape[0];
            f->k = rec.shape[0];
            f->head_d = rec.shape[1];
        } else if (strcmp(rec.name, "head.bias") == 0) {
            if (rec.ndim != 1) {
                ns_errf(err, "%s: head.bias is not a vector", path);
                goto done;
            }
            ns_record row = rec; // read as a 1 x K matrix
            row.ndim = 2;
            row.shape[0] = 1;
            row.shape[1] = rec.shape[0];
            if (read_matrix(&row, &f->head_b, 1, rec.shape[0], path, err) < 0) goto done;
            bias_k = rec.shape[0];
        } else if (strcmp(rec.name, "texts") == 0 || strcmp(rec.name, "texts.plain") == 0) {
            int plain = rec.name[5] == '.';
            if (rec.ndim != 2 || rec.shape[0] < 1 || rec.shape[1] < 1 ||
                (f->nt && (rec.shape[0] != f->nt || rec.shape[1] != f->e))) {
                ns_errf(err, "%s: record %llu: %s is not a T x E matrix matching the other texts", path,
                        (unsigned long long)rec.index, rec.name);
                goto done;
            }
            f->nt = rec.shape[0];
            f->e = rec.shape[1];
            ns_tensor t;
            if (ns_record_tensor_f32(&rec, &t, err) < 0) goto done;
            for (int64_t i = 0; i < t.numel; i++)
                if (!isfinite(((float *)t.data)[i])) {
                    ns_tensor_free(&t);
                    ns_errf(err, "%s: %s: element %lld is not finite", path, rec.name, (long long)i);
                    goto done;
                }
            float **dst = plain ? &f->texts_plain : &f->texts;
            free(*dst);
            *dst = t.data;
            if (!plain) {
                char **names;
                size_t nn;
                if (ns_obj_strs(rec.meta, "names", &names, &nn, err) < 0) {
                    ns_err_prefix(err, "%s", path);
                    goto done;
                }
                if (!names || (int64_t)nn != f->nt) {
                    ns_strings_free(names, nn);
                    ns_errf(err, "%s: texts needs meta names, one per row (%lld)", path, (long long)f->nt);
                    goto done;
                }
                ns_strings_free(f->names, (size_t)(f->names ? f->nt : 0));
                f->names = names;
                f->templates = 0;
                if (ns_obj_i64(rec.meta, "templates", &f->templates, err) < 0) {
                    ns_err_prefix(err, "%s", path);
                    goto done;
                }
            }
        }
    }
    if (got < 0) goto done;
    if (f->head_w && f->head_d != f->d) {
        ns_errf(err, "%s: head.weight is %lldx%lld for features of %lld", path, (long long)f->k,
                (long long)f->head_d, (long long)f->d);
        goto done;
    }
    if (f->head_w && f->head_b && bias_k != f->k) {
        ns_errf(err, "%s: head.bias has %lld entries for %lld head rows", path, (long long)bias_k,
                (long long)f->k);
        goto done;
    }
    if (f->head_w && !f->head_b) {
        ns_errf(err, "%s: head.weight without head.bias", path);
        goto done;
    }
    if (f->head_b && (!f->head_w || want_w < 0)) {
        ns_errf(err, "%s: head.bias without head.weight", path);
        goto done;
    }
    if (f->texts_plain && !f->texts) {
        ns_errf(err, "%s: texts.plain without texts", path);
        goto done;
    }
    if (check_unique_ids(f->ids, f->n, path, err) < 0) goto done;
    rc = 0;
done:
    ns_reader_close(r);
    if (rc < 0) ns_features_free(f);
    return rc;
}

void ns_features_free(ns_features *f) {
    ns_strings_free(f->labels, f->nlabels);
    ns_strings_free(f->names, (size_t)(f->names ? f->nt : 0));
    free(f->x);
    free(f->y);
    free(f->ids);
    free(f->head_w);
    free(f->head_b);
    free(f->texts);
    free(f->texts_plain);
    memset(f, 0, sizeof *f);
}

int64_t ns_features_text(const ns_features *f, const char *name) {
    for (int64_t i = 0; f->names && i < f->nt; i++)
        if (strcmp(f->names[i], name) == 0) return i;
    return -1;
}

// ----------------------------------------------------------------------------
// concept streams

int ns_concepts_load(ns_concepts *c, const char *path, ns_err *err) {
    memset(c, 0, sizeof *c);
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    int64_t cap_h = 0, cap_y = 0, cap_i = 0;
    ns_record rec;
    int got, rc = -1;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            char **names, **kinds;
            size_t nn, nk;
            if (ns_obj_strs(rec.meta, "concepts.names", &names, &nn, err) < 0) {
                ns_err_prefix(err, "%s", path);
                goto done;
            }
            if (ns_obj_strs(rec.meta, "concepts.kinds", &kinds, &nk, err) < 0) {
                ns_strings_free(names, nn);
                ns_err_prefix(err, "%s", path);
                goto done;
            }
            if (names) {
                if (c->n > 0 && (int64_t)nn != c->k) {
                    ns_strings_free(names, nn);
                    ns_strings_free(kinds, nk);
                    ns_errf(err, "%s: concepts.names changes size mid-stream", path);
                    goto done;
                }
                ns_strings_free(c->names, (size_t)c->k);
                c->names = names;
                c->k = (int64_t)nn;
            }
            if (kinds) {
                ns_strings_free(c->kinds, (size_t)(c->kinds ? c->k : 0));
                if ((int64_t)nk != c->k) {
                    c->kinds = NULL;
                    ns_strings_free(kinds, nk);
                    ns_errf(err, "%s: %zu concepts.kinds for %lld concepts.names", path, nk, (long long)c->k);
                    goto done;
                }
                c->kinds = kinds;
            }
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0 || !rec.has_data || strcmp(rec.name, "concepts") != 0) continue;
        if (!c->names) {
            ns_errf(err, "%s: record %llu: concepts before any concepts.names", path,
                    (unsigned long long)rec.index);
            goto done;
        }
        if (rec.dtype != NS_U8 || rec.ndim != 2 || rec.shape[1] != c->k) {
            char s[64];
            ns_shape_format(s, sizeof s, rec.ndim, rec.shape);
            ns_errf(err, "%s: record %llu: concepts %s %s (expected u8 N x %lld)", path,
                    (unsigned long long)rec.index, ns_dtypes[rec.dtype].name, s, (long long)c->k);
            goto done;
        }
        int64_t n = rec.shape[0];
        if (grow((void **)&c->has, &cap_h, (c->n + n) * c->k, 1, err) < 0 ||
            grow((void **)&c->y, &cap_y, c->n + n, sizeof(int32_t), err) < 0 ||
            grow((void **)&c->ids, &cap_i, c->n + n, sizeof(int64_t), err) < 0)
            goto done;
        if (batch_labels(&rec, n, NS_CLASSES_UNKNOWN, c->y + c->n, c->ids + c->n, path, err) < 0) goto done;
        memcpy(c->has + c->n * c->k, rec.data, (size_t)(n * c->k));
        for (int64_t i = 0; i < n * c->k; i++)
            if (c->has[c->n * c->k + i] > 2) {
                ns_errf(err, "%s: concept value %d (row %lld) is not 0, 1 or 2", path,
                        c->has[c->n * c->k + i], (long long)(c->n + i / c->k));
                goto done;
            }
        c->n += n;
    }
    if (got < 0) goto done;
    if (!c->names) {
        ns_errf(err, "%s: not a concept stream (no concepts.names)", path);
        goto done;
    }
    if (check_unique_ids(c->ids, c->n, path, err) < 0) goto done;
    rc = 0;
done:
    ns_reader_close(r);
    if (rc < 0) ns_concepts_free(c);
    return rc;
}

void ns_concepts_free(ns_concepts *c) {
    ns_strings_free(c->names, (size_t)c->k);
    ns_strings_free(c->kinds, (size_t)(c->kinds ? c->k : 0));
    free(c->has);
    free(c->ids);
    free(c->y);
    memset(c, 0, sizeof *c);
}

int64_t ns_concepts_find(const ns_concepts *c, const char *name) {
    for (int64_t i = 0; i < c->k; i++)
        if (strcmp(c->names[i], name) == 0) return i;
    return -1;
}

// ----------------------------------------------------------------------------
// ids

typedef struct id_row {
    int64_t id, row;
} id_row;

static int cmp_id_row(const void *pa, const void *pb) {
    const id_row *a = pa, *b = pb;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static id_row *sorted_ids(const int64_t *ids, int64_t n) {
    id_row *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    if (!s) return NULL;
    for (int64_t i = 0; i < n; i++) s[i] = (id_row){ids[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_id_row);
    return s;
}

static int check_unique_ids(const int64_t *ids, int64_t n, const char *path, ns_err *err) {
    id_row *s = sorted_ids(ids, n);
    if (!s) return ns_errf(err, "out of memory");
    for (int64_t i = 1; i < n; i++)
        if (s[i].id == s[i - 1].id) {
            int64_t id = s[i].id;
            free(s);
            return ns_errf(err, "%s: id %lld appears twice", path, (long long)id);
        }
    free(s);
    return 0;
}

int ns_match_ids(int64_t *rows, const int64_t *want, int64_t nw, const int64_t *have, int64_t nh,
                 const char *what, ns_err *err) {
    id_row *s = sorted_ids(have, nh);
    if (!s) return ns_errf(err, "out of memory");
    for (int64_t i = 0; i < nw; i++) {
        id_row key = {want[i], -1};
        int64_t lo = 0, hi = nh;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (s[mid].id < key.id) lo = mid + 1;
            else hi = mid;
        }
        if (lo >= nh || s[lo].id != key.id) {
            free(s);
            return ns_errf(err, "%s has no image with id %lld", what, (long long)want[i]);
        }
        rows[i] = s[lo].row;
    }
    free(s);
    return 0;
}

// --- CAV streams (cav-fit --output) ---------------------------------------------

#define CAV_STR 256 // longest cav.concept, cav.model, cav.layer

void ns_cavs_free(ns_cavs *c) {
    ns_strings_free(c->concepts, (size_t)c->m);
    free(c->v);
    memset(c, 0, sizeof *c);
}

int64_t ns_cavs_find(const ns_cavs *c, const char *name) {
    for (int64_t i = 0; i < c->m; i++)
        if (strcmp(c->concepts[i], name) == 0) return i;
    return -1;
}

// A required string of a CAV record's meta into buf.
static int cav_meta(const ns_record *rec, const char *key, char *buf, const char *path, ns_err *err) {
    int got = ns_obj_str(rec->meta, key, buf, CAV_STR, err);
    if (got < 0) return ns_err_prefix(err, "%s: record %llu", path, (unsigned long long)rec->index);
    if (got == 0)
        return ns_errf(err, "%s: record %llu: a cav without %s in its meta (not a cav-fit stream?)", path,
                       (unsigned long long)rec->index, key);
    return 0;
}

static int cav_record(ns_cavs *c, const ns_record *rec, const char *path, const char *model, const char *layer,
                      int64_t d, int64_t *cap, ns_err *err) {
    char concept[CAV_STR], m[CAV_STR], l[CAV_STR];
    if (cav_meta(rec, "cav.concept", concept, path, err) < 0 || cav_meta(rec, "cav.model", m, path, err) < 0 ||
        cav_meta(rec, "cav.layer", l, path, err) < 0)
        return -1;
    if (strcmp(m, model) != 0)
        return ns_errf(err, "%s: the cav of '%s' was fitted on model %s, the features come from model %s", path,
                       concept, m, model);
    if (strcmp(l, layer) != 0)
        return ns_errf(err, "%s: the cav of '%s' was fitted at layer %s, the features come from layer %s", path,
                       concept, l, layer);
    if (rec->ndim != 1 || rec->shape[0] != d)
        return ns_errf(err, "%s: the cav of '%s' has %lld values for features of %lld", path, concept,
                       (long long)(rec->ndim == 1 ? rec->shape[0] : rec->numel), (long long)d);
    if (ns_cavs_find(c, concept) >= 0)
        return ns_errf(err, "%s: two cavs for the concept '%s'", path, concept);
    if (c->m == *cap) {
        int64_t nc = *cap ? 2 * *cap : 16;
        float *v = realloc(c->v, (size_t)(nc * d) * sizeof *v);
        if (v) c->v = v;
        char **s = v ? realloc(c->concepts, (size_t)nc * sizeof *s) : NULL;
        if (!s) return ns_errf(err, "out of memory (%lld cavs)", (long long)nc);
        c->concepts = s;
        *cap = nc;
    }
    ns_tensor t;
    if (ns_record_tensor_f32(rec, &t, err) < 0) return ns_err_prefix(err, "%s", path);
    const float *src = t.data;
    for (int64_t j = 0; j < d; j++)
        if (!isfinite(src[j])) {
            ns_tensor_free(&t);
            return ns_errf(err, "%s: the cav of '%s' has a value that is not finite (element %lld)", path, concept,
                           (long long)j);
        }
    memcpy(c->v + c->m * d, src, (size_t)d * sizeof *c->v);
    ns_tensor_free(&t);
    if (!(c->concepts[c->m] = strdup(concept))) return ns_errf(err, "out of memory");
    c->m++;
    return 0;
}

int ns_cavs_load(ns_cavs *c, const char *path, const char *model, const char *layer, int64_t d, ns_err *err) {
    memset(c, 0, sizeof *c);
    c->d = d;
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_record rec;
    int got;
    int64_t cap = 0;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "tensor") != 0 || strcmp(rec.name, "cav") != 0 || !rec.has_data) continue;
        if (cav_record(c, &rec, path, model, layer, d, &cap, err) < 0) {
            got = -1;
            break;
        }
    }
    ns_reader_close(r);
    if (got == 0 && c->m == 0) {
        ns_errf(err, "%s: no cav records (expected cav-fit --output)", path);
        got = -1;
    }
    if (got < 0) {
        ns_cavs_free(c);
        c->d = d;
        return -1;
    }
    return 0;
}
