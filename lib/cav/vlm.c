// vlm.c: a clip-small model as a whole (vlm.h, vlm_train.h): creating,
// writing, loading and fingerprinting it, and embedding texts with it.
//
// File layout (one TNS stream, the image tower first so that any model
// reader sees a model):
//   meta    model keys (model.h) + vlm.kind "clip-small", vlm.dim E,
//           vlm.text_dim D, vlm.vocab [V words], vlm.classes [names]
//   graph   the image tower, output (E)
//   tensor  the image tower's parameters and buffers
//   tensor  text.embedding (V, D), text.proj.weight (E, D), text.proj.bias (E),
//           text.logit_scale (1); or, for a transformer text tower
//           (vlm.text_tower "transformer", vlm.text_context, vlm.text_depth,
//           vlm.text_heads), "text." + each text-transformer tensor's name and
//           text.logit_scale
#include "cav/vlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/vecmath.h"
#include "cav/vlm_train.h"
#include "nn/arch.h"
#include "nn/engine.h"

#define VLM_KIND "clip-small"
#define TEXT_TRANSFORMER "transformer"
#define TEXT_PREFIX "text."
#define LOGIT_SCALE 3 // text_tensor index of the logit scale, which both towers have

static const char *const text_tensor_names[4] = {"text.embedding", "text.proj.weight", "text.proj.bias",
                                                 "text.logit_scale"};

static ns_tensor *text_tensor(ns_vlm *v, int i) {
    ns_tensor *t[4] = {&v->embedding, &v->proj_weight, &v->proj_bias, &v->logit_scale};
    return t[i];
}

void ns_vlm_free(ns_vlm *v) {
    if (!v) return;
    ns_model_free(&v->image);
    ns_model_free(&v->text);
    ns_vocab_free(&v->vocab);
    for (int i = 0; i < 4; i++) ns_tensor_free(text_tensor(v, i));
    ns_strings_free(v->classes, v->nclasses);
    free(v);
}

int64_t ns_vlm_dim(const ns_vlm *v) { return v->dim; }

ns_model *ns_vlm_image_model(ns_vlm *v) { return &v->image; }

const char *ns_vlm_fingerprint(const ns_vlm *v) { return v->fingerprint; }

// A model around image and vocab (taken over) with only the logit scale of
// the text side.
static ns_vlm *vlm_new(ns_model *image, ns_vocab *vocab, int64_t text_dim, ns_err *err) {
    if (text_dim < 1 || text_dim > 65536) {
        ns_errf(err, "text width %lld is not in 1..65536", (long long)text_dim);
        return NULL;
    }
    ns_vlm *v = calloc(1, sizeof *v);
    if (!v) {
        ns_errf(err, "out of memory");
        return NULL;
    }
    v->image = *image;
    ns_model_init(image);
    ns_model_init(&v->text);
    v->vocab = *vocab;
    memset(vocab, 0, sizeof *vocab);
    v->dim = v->image.nodes[v->image.output].numel;
    v->text_dim = text_dim;
    int64_t one = 1;
    if (ns_tensor_alloc(&v->logit_scale, NS_F32, 1, &one, err) < 0) {
        ns_vlm_free(v);
        return NULL;
    }
    ((float *)v->logit_scale.data)[0] = (float)NS_VLM_INIT_LOGIT_SCALE;
    return v;
}

int ns_vlm_create(ns_vlm **out, ns_model *image, ns_vocab *vocab, int64_t text_dim, uint64_t seed,
                  ns_err *err) {
    ns_vlm *v = *out = vlm_new(image, vocab, text_dim, err);
    if (!v) return -1;
    int64_t shapes[3][2] = {{v->vocab.n, text_dim}, {v->dim, text_dim}, {v->dim, 0}};
    int ndims[3] = {2, 2, 1};
    for (int i = 0; i < 3; i++)
        if (ns_tensor_alloc(text_tensor(v, i), NS_F32, ndims[i], shapes[i], err) < 0) {
            ns_vlm_free(v);
            *out = NULL;
            return -1;
        }
    // PyTorch's nn.Embedding and nn.Linear initialisations.
    ns_rng rng;
    ns_rng_seed(&rng, seed ^ 0x7465787474776572ull);
    float *emb = v->embedding.data, *w = v->proj_weight.data, *b = v->proj_bias.data;
    for (int64_t i = 0; i < v->embedding.numel; i++) emb[i] = (float)ns_rng_normal(&rng);
    double bound = 1.0 / sqrt((double)text_dim);
    for (int64_t i = 0; i < v->proj_weight.numel; i++) w[i] = (float)((2 * ns_rng_uniform(&rng) - 1) * bound);
    for (int64_t i = 0; i < v->dim; i++) b[i] = (float)((2 * ns_rng_uniform(&rng) - 1) * bound);
    return 0;
}

// v->text from the vocabulary, the widths and v->text_shape (zeroed tensors).
static int build_text_model(ns_vlm *v, ns_err *err) {
    const ns_text_shape *sh = &v->text_shape;
    if (sh->context < 3 || sh->context > 4096 || sh->depth < 1 || sh->depth > 64 || sh->heads < 1 ||
        v->text_dim % sh->heads)
        return ns_errf(err, "bad text transformer shape: context %lld (3..4096), depth %d (1..64), heads %d "
                       "(dividing the width %lld)", (long long)sh->context, sh->depth, sh->heads,
                       (long long)v->text_dim);
    ns_arch_opts o = {.in_c = (int)sh->context, .classes = (int)v->dim, .width = (double)v->text_dim / 64.0,
                      .depth = sh->depth, .heads = sh->heads};
    ns_model_free(&v->text);
    if (ns_arch_build_text(&v->text, &o, v->vocab.n + 2, err) < 0) return ns_err_prefix(err, "text tower");
    snprintf(v->text.arch, sizeof v->text.arch, "text-transformer --vocab %d --depth %d --heads %d --width %g",
             (int)v->vocab.n + 2, sh->depth, sh->heads, o.width);
    return 0;
}

int ns_vlm_create_transformer(ns_vlm **out, ns_model *image, ns_vocab *vocab, int64_t text_dim,
                              const ns_text_shape *shape, uint64_t seed, ns_err *err) {
    ns_vlm *v = *out = vlm_new(image, vocab, text_dim, err);
    if (!v) return -1;
    v->text_kind = NS_TEXT_TRANSFORMER;
    v->text_shape = *shape;
    if (build_text_model(v, err) < 0) {
        ns_vlm_free(v);
        *out = NULL;
        return -1;
    }
    ns_model_init_params(&v->text, seed ^ 0x7465787474776572ull);
    return 0;
}

void ns_vlm_text_ids(float *ids, const ns_token_lists *tok, int64_t V, int64_t L) {
    for (int64_t i = 0; i < tok->n; i++) {
        float *row = ids + i * L;
        int64_t a = tok->offsets[i], words = tok->offsets[i + 1] - a;
        if (words > L - 2) words = L - 2;
        row[0] = (float)V; // start
        for (int64_t k = 0; k < words; k++) row[1 + k] = (float)tok->ids[a + k];
        row[1 + words] = (float)(V + 1); // end
        for (int64_t k = 2 + words; k < L; k++) row[k] = 0;
    }
}

int ns_vlm_write(const ns_vlm *v, ns_writer *w, const ns_map *extra_meta, ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "vlm.kind", VLM_KIND);
    ns_map_i64(&meta, "vlm.dim", v->dim);
    ns_map_i64(&meta, "vlm.text_dim", v->text_dim);
    if (v->text_kind == NS_TEXT_TRANSFORMER) {
        ns_map_str(&meta, "vlm.text_tower", TEXT_TRANSFORMER);
        ns_map_i64(&meta, "vlm.text_context", v->text_shape.context);
        ns_map_i64(&meta, "vlm.text_depth", v->text_shape.depth);
        ns_map_i64(&meta, "vlm.text_heads", v->text_shape.heads);
    }
    ns_map_strs(&meta, "vlm.vocab", (const char *const *)v->vocab.words, (size_t)v->vocab.n);
    if (v->classes) ns_map_strs(&meta, "vlm.classes", (const char *const *)v->classes, v->nclasses);
    if (extra_meta) { // an ns_map is its key/value pairs packed one after another
        msgpack_sbuffer_write(&meta.buf, extra_meta->buf.data, extra_meta->buf.size);
        meta.count += extra_meta->count;
    }
    int rc = ns_model_write(&v->image, w, &meta, 0, err);
    ns_map_free(&meta);
    for (int i = 0; rc == 0 && i < 4; i++)
        if (v->text_kind == NS_TEXT_BOW || i == LOGIT_SCALE)
            rc = ns_write_tensor(w, text_tensor_names[i], text_tensor((ns_vlm *)v, i), NULL, err);
    for (int t = 0; rc == 0 && t < v->text.ntensors; t++) {
        const ns_named_tensor *nt = &v->text.tensors[t];
        if (!nt->used) continue;
        char name[NS_NAME_MAX + sizeof TEXT_PREFIX]; // the tower's names are short: no cut
        snprintf(name, sizeof name, TEXT_PREFIX "%s", nt->name);
        rc = ns_write_tensor(w, name, &nt->t, NULL, err);
    }
    return rc;
}

// --- loading -------------------------------------------------------------------

// What the first pass over the file finds: the vlm.* keys, the text tensors
// and the fingerprint of every byte.
typedef struct vlm_scan {
    char kind[32], text_tower[32];
    int64_t dim, text_dim;
    char **vocab;
    size_t nvocab;
    uint64_t hash;
} vlm_scan;

static int scan_meta(ns_vlm *v, vlm_scan *s, const ns_record *rec, ns_err *err) {
    if (ns_obj_str(rec->meta, "vlm.kind", s->kind, sizeof s->kind, err) < 0 ||
        ns_obj_i64(rec->meta, "vlm.dim", &s->dim, err) < 0 ||
        ns_obj_i64(rec->meta, "vlm.text_dim", &s->text_dim, err) < 0)
        return -1;
    if (ns_map_get(rec->meta, "vlm.text_tower")) {
        int64_t context, depth, heads;
        if (ns_obj_str(rec->meta, "vlm.text_tower", s->text_tower, sizeof s->text_tower, err) < 0 ||
            ns_obj_i64(rec->meta, "vlm.text_context", &context, err) < 0 ||
            ns_obj_i64(rec->meta, "vlm.text_depth", &depth, err) < 0 ||
            ns_obj_i64(rec->meta, "vlm.text_heads", &heads, err) < 0)
            return -1;
        if (strcmp(s->text_tower, TEXT_TRANSFORMER) != 0)
            return ns_errf(err, "vlm.text_tower is '%s', not '%s'", s->text_tower, TEXT_TRANSFORMER);
        if (depth < 1 || depth > 64 || heads < 1 || heads > 65536 || context < 3 || context > 4096)
            return ns_errf(err, "bad vlm.text_context, depth or heads (%lld, %lld, %lld)", (long long)context,
                           (long long)depth, (long long)heads);
        v->text_kind = NS_TEXT_TRANSFORMER;
        v->text_shape = (ns_text_shape){context, (int)depth, (int)heads};
    }
    if (ns_map_get(rec->meta, "vlm.vocab")) {
        ns_strings_free(s->vocab, s->nvocab);
        s->vocab = NULL;
        if (ns_obj_strs(rec->meta, "vlm.vocab", &s->vocab, &s->nvocab, err) < 0) return -1;
    }
    if (ns_map_get(rec->meta, "vlm.classes")) {
        ns_strings_free(v->classes, v->nclasses);
        v->classes = NULL;
        if (ns_obj_strs(rec->meta, "vlm.classes", &v->classes, &v->nclasses, err) < 0) return -1;
    }
    return 0;
}

static int scan_file(ns_vlm *v, vlm_scan *s, const char *path, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    s->hash = 1469598103934665603ull;
    ns_record rec;
    int got, rc = 0;
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) {
        const unsigned char *p = rec.raw;
        for (size_t i = 0; i < rec.raw_len; i++) s->hash = (s->hash ^ p[i]) * 1099511628211ull;
        if (strcmp(rec.kind, "meta") == 0) {
            rc = scan_meta(v, s, &rec, err);
            continue;
        }
        if (strcmp(rec.kind, "tensor") != 0) continue;
        for (int i = 0; i < 4; i++) {
            if (strcmp(rec.name, text_tensor_names[i]) != 0) continue;
            if (text_tensor(v, i)->data) rc = ns_errf(err, "%s: tensor %s given twice", path, rec.name);
            else rc = ns_record_tensor_f32(&rec, text_tensor(v, i), err);
        }
    }
    ns_reader_close(r);
    return rc < 0 || got < 0 ? -1 : 0;
}

static int check_shape(const ns_tensor *t, const char *name, int ndim, int64_t d0, int64_t d1, ns_err *err) {
    if (!t->data) return ns_errf(err, "no %s tensor", name);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[64], want[64];
        int64_t w[2] = {d0, d1};
        ns_shape_format(got, sizeof got, t->ndim, t->shape);
        ns_shape_format(want, sizeof want, ndim, w);
        return ns_errf(err, "%s is %s, expected %s", name, got, want);
    }
    const float *x = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(x[i])) return ns_errf(err, "%s has a non-finite value at %lld", name, (long long)i);
    return 0;
}

// The transformer text tower: its graph from the vlm.text_* keys, its
// tensors taken from the ones the image tower's reader kept unused.
static int load_text_model(ns_vlm *v, ns_err *err) {
    if (build_text_model(v, err) < 0) return -1;
    for (int t = 0; t < v->text.ntensors; t++) {
        ns_named_tensor *nt = &v->text.tensors[t];
        char name[NS_NAME_MAX + sizeof TEXT_PREFIX]; // the tower's names are short: no cut
        snprintf(name, sizeof name, TEXT_PREFIX "%s", nt->name);
        int k = ns_model_find_tensor(&v->image, name);
        if (k < 0) return ns_errf(err, "no %s tensor", name);
        ns_tensor *got = &v->image.tensors[k].t;
        if (check_shape(got, name, nt->t.ndim, nt->t.shape[0], nt->t.ndim > 1 ? nt->t.shape[1] : 0, err) < 0)
            return -1;
        ns_tensor keep = nt->t;
        nt->t = *got;
        *got = keep;
    }
    return 0;
}

static int check_loaded(ns_vlm *v, const vlm_scan *s, ns_err *err) {
    if (!s->kind[0]) return ns_errf(err, "not a VLM model (no vlm.kind in its meta)");
    if (strcmp(s->kind, VLM_KIND) != 0) return ns_errf(err, "vlm.kind is '%s', not '%s'", s->kind, VLM_KIND);
    if (s->dim < 1 || s->text_dim < 1 || s->text_dim > 65536)
        return ns_errf(err, "bad vlm.dim or vlm.text_dim (%lld, %lld)", (long long)s->dim, (long long)s->text_dim);
    if (!s->vocab) return ns_errf(err, "no vlm.vocab");
    if (ns_vocab_from_words(&v->vocab, s->vocab, s->nvocab, err) < 0) return -1;
    v->dim = s->dim;
    v->text_dim = s->text_dim;
    int64_t out = v->image.nodes[v->image.output].numel;
    if (out != v->dim)
        return ns_errf(err, "the image tower has %lld outputs but vlm.dim is %lld", (long long)out, (long long)v->dim);
    if (check_shape(&v->logit_scale, "text.logit_scale", 1, 1, 0, err) < 0) return -1;
    if (v->text_kind == NS_TEXT_TRANSFORMER) return load_text_model(v, err);
    if (check_shape(&v->embedding, "text.embedding", 2, v->vocab.n, v->text_dim, err) < 0 ||
        check_shape(&v->proj_weight, "text.proj.weight", 2, v->dim, v->text_dim, err) < 0 ||
        check_shape(&v->proj_bias, "text.proj.bias", 1, v->dim, 0, err) < 0)
        return -1;
    return 0;
}

int ns_vlm_load(const char *path, ns_vlm **out, ns_err *err) {
    *out = NULL;
    if (strcmp(path, "-") == 0) return ns_errf(err, "a VLM model must be a file, not standard input");
    ns_vlm *v = calloc(1, sizeof *v);
    if (!v) return ns_errf(err, "out of memory");
    ns_model_init(&v->image);
    vlm_scan s = {0};
    int rc = scan_file(v, &s, path, err);
    if (rc == 0 && !s.kind[0]) rc = ns_errf(err, "%s: not a VLM model (no vlm.kind in its meta)", path);
    if (rc == 0 && ns_model_load(&v->image, path, err) < 0) rc = -1;
    if (rc == 0 && check_loaded(v, &s, err) < 0) rc = ns_err_prefix(err, "%s", path);
    ns_strings_free(s.vocab, s.nvocab);
    if (rc < 0) {
        ns_vlm_free(v);
        return -1;
    }
    snprintf(v->fingerprint, sizeof v->fingerprint, "%016llx", (unsigned long long)s.hash);
    *out = v;
    return 0;
}

// --- text embeddings -----------------------------------------------------------

#define TEXT_BATCH 256

// The transformer tower on n texts, TEXT_BATCH at a time.
static int embed_texts_transformer(const ns_vlm *v, const ns_token_lists *tok, float *out, ns_err *err) {
    int64_t n = tok->n, L = v->text_shape.context, B = n < TEXT_BATCH ? n : TEXT_BATCH;
    float *ids = malloc((size_t)(n * L) * sizeof *ids);
    if (!ids) return ns_errf(err, "out of memory (%lld texts)", (long long)n);
    ns_vlm_text_ids(ids, tok, v->vocab.n, L);
    ns_engine e;
    int rc = ns_engine_init(&e, (ns_model *)&v->text, B, 0, err), inited = rc == 0;
    if (inited) ns_engine_set_fused(&e, 1);
    for (int64_t start = 0; rc == 0 && start < n; start += B) {
        int64_t m = n - start < B ? n - start : B;
        const float *y = ns_engine_forward(&e, ids + start * L, m, 0, err);
        if (!y) rc = -1;
        else memcpy(out + start * v->dim, y, (size_t)(m * v->dim) * sizeof *out);
    }
    if (inited) ns_engine_free(&e);
    free(ids);
    return rc;
}

int ns_vlm_embed_texts(const ns_vlm *v, const char *const *texts, int64_t n, float *out, ns_err *err) {
    if (n < 0) return ns_errf(err, "negative text count (%lld)", (long long)n);
    if (n == 0) return 0;
    if (v->text_kind == NS_TEXT_TRANSFORMER) {
        ns_token_lists tok = {0};
        int rc = ns_token_lists_fill(&tok, &v->vocab, texts, n, err);
        if (rc == 0) rc = embed_texts_transformer(v, &tok, out, err);
        if (rc == 0) ns_normalize_rows(out, n, v->dim);
        ns_token_lists_free(&tok);
        return rc;
    }
    ns_token_lists tok = {0};
    float *pooled = malloc((size_t)(n * v->text_dim) * sizeof *pooled);
    if (!pooled) return ns_errf(err, "out of memory (%lld texts)", (long long)n);
    if (ns_token_lists_fill(&tok, &v->vocab, texts, n, err) < 0) {
        free(pooled);
        return -1;
    }
    ns_text_tower_forward(out, pooled, &tok, v->embedding.data, v->proj_weight.data, v->proj_bias.data,
                          v->text_dim, v->dim);
    ns_normalize_rows(out, n, v->dim);
    ns_token_lists_free(&tok);
    free(pooled);
    return 0;
}
