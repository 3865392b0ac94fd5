// probe-embed: runs a model over an image stream and writes, per image, the
// activations of one layer (with labels and ids) as a feature stream; or,
// with a vision-language model, its image embeddings, or the text
// embeddings of concept descriptions. Every output records the model
// (fingerprint, path) and layer that produced it, so cav-fit can refuse to
// pair features from different sources.
//
//   probe-embed --model MODEL [--layer NODE] [--flatten] [DATA]
//   probe-embed --vlm VLM [DATA]
//   probe-embed --vlm VLM --texts FILE [--templates FILE | --no-ensemble]
//
// Shapes: images (N, C, H, W) in; features (N, D) out (the probed node's
// map average-pooled to (C) or flattened to (C*H*W)); head (K, D), (K);
// texts (T, E).
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/lines.h"
#include "nn/batches.h"
#include "cav/cav.h"
#include "cli/cli.h"
#include "nn/engine.h"
#include "nn/probe.h"
#include "stream/streaminfo.h"
#include "cav/vlm.h"

struct cmdline {
    const char *model, *vlm, *layer, *texts, *templates, *output;
    int flatten, no_ensemble, batch, quiet;
    ns_shard shard;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"model", 'm', NS_OPT_STR, &cmd->model, "MODEL", "the target model to read features from", 0, 0},
        {"layer", 'l', NS_OPT_STR, &cmd->layer, "NODE", "the node to read (default: the input of the final linear layer)", 0, 0},
        {"flatten", 'f', NS_OPT_FLAG, &cmd->flatten, NULL, "flatten a conv map (C,H,W) instead of average-pooling it to (C)", 0, 0},
        {"vlm", 0, NS_OPT_STR, &cmd->vlm, "VLM", "a vision-language model (vlm-train): embed images with its image tower", 0, 0},
        {"texts", 't', NS_OPT_STR, &cmd->texts, "FILE", "with --vlm: embed concept descriptions, one per line ('NAME<TAB>DESCRIPTION' or just the description)", 0, 0},
        {"templates", 0, NS_OPT_STR, &cmd->templates, "FILE", "prompt templates, one per line, '{}' marking the concept (default: the paper's 29)", 0, 0},
        {"no-ensemble", 0, NS_OPT_FLAG, &cmd->no_ensemble, NULL, "embed the bare description, without templates", 0, 0},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "images per forward pass (default 256)", 1, 1 << 16},
        {"shard", 0, NS_OPT_SHARD, &cmd->shard, "I/N", "only the images whose id is I modulo N (merge with tns-cat --by-id)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "(--model MODEL | --vlm VLM) [options] [DATA]",
        "Embed images (or concept texts) for concept work: a model's activations\n"
        "at one layer, or a vision-language model's image or text embeddings.",
        "The output is a feature stream: a meta record (probe.source, probe.model,\n"
        "probe.model_path, probe.layer, probe.pool, general.labels), then 'features'\n"
        "(N, D) f32 per batch with meta labels and ids. With --model and the default\n"
        "layer, 'head.weight' (K, D) and 'head.bias' (K) follow the meta record.\n"
        "With --texts, one record 'texts' (T, E): each description's text embedding\n"
        "averaged over the templates (each normalised, the mean renormalised), and\n"
        "'texts.plain' (T, E): the bare descriptions. DATA (no DATA, or '-': standard\n"
        "input) is an image stream as img-read writes it.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!cmd->model == !cmd->vlm) ns_die_usage("give exactly one of --model and --vlm");
    if (cmd->texts && !cmd->vlm) ns_die_usage("--texts needs --vlm");
    if ((cmd->templates || cmd->no_ensemble) && !cmd->texts)
        ns_die_usage("--templates and --no-ensemble need --texts");
    if (cmd->templates && cmd->no_ensemble) ns_die_usage("--templates and --no-ensemble exclude each other");
    if (cmd->vlm && (cmd->layer || cmd->flatten))
        ns_die_usage("--layer and --flatten read a --model; a VLM gives its embedding");
    if (cmd->texts && *first < argc) ns_die_usage("--texts embeds texts: give no image DATA");
    if (cmd->texts && ns_shard_active(&cmd->shard)) ns_die_usage("--shard selects images: --texts embeds texts");
}

// The paper's 29 templates (lgcav.md §1, Table 19), "a close-up photo" twice.
static const char *const default_templates[] = {
    "a photo of the {}.", "a low resolution photo of the {}.", "a rendering of the {}.",
    "graffiti of the {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a bright photo of the {}.", "a drawing of the {}.", "a photo of the cool {}.",
    "a close-up photo of the {}.", "a painting of the {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a plastic {}.", "a photo of the dirty {}.",
    "a jpeg corrupted photo of the {}.", "a blurry photo of the {}.",
    "a photo of the hard to see {}.", "a good photo of the {}.", "a close-up photo of the {}.",
    "the origami {}.", "a sketch of the {}.", "a photo of the clean {}.",
    "a photo of the large {}.", "a photo of the nice {}.", "a photo of the weird {}.",
    "a photo of the small {}.", "a black and white photo of the {}.", "a dark photo of the {}.",
};
#define NDEFAULT_TEMPLATES ((int64_t)(sizeof default_templates / sizeof default_templates[0]))

// ----------------------------------------------------------------------------
// text lines

typedef struct lines {
    char **s;
    int64_t n, cap;
} lines;

static void lines_free(lines *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static int lines_push(lines *l, char *s, ns_err *err) {
    if (!s) return ns_errf(err, "out of memory");
    if (l->n == l->cap) {
        int64_t c = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->s, (size_t)c * sizeof *p);
        if (!p) {
            free(s);
            return ns_errf(err, "out of memory");
        }
        l->s = p;
        l->cap = c;
    }
    l->s[l->n++] = s;
    return 0;
}

// The non-empty lines of path (without their line ends); empty file: an error.
static int read_lines(lines *l, const char *path, const char *what, ns_err *err) {
    memset(l, 0, sizeof *l);
    ns_lines in;
    if (ns_lines_open(&in, path, 0, err) < 0) return -1;
    char *line;
    size_t len;
    int rc = 0, got = 0;
    while (rc == 0 && (got = ns_lines_next(&in, &line, &len, err)) == 1)
        if (len > 0) rc = lines_push(l, strdup(line), err);
    if (got < 0) rc = -1;
    ns_lines_close(&in);
    if (rc == 0 && l->n == 0) rc = ns_errf(err, "%s: no %s in the file", path, what);
    if (rc < 0) lines_free(l);
    return rc;
}

// tpl with every "{}" replaced by text.
static char *fill_template(const char *tpl, const char *text) {
    size_t n = 1, tl = strlen(text);
    for (const char *p = tpl; *p;) {
        if (p[0] == '{' && p[1] == '}') { n += tl; p += 2; }
        else { n++; p++; }
    }
    char *out = malloc(n), *o = out;
    if (!out) return NULL;
    for (const char *p = tpl; *p;) {
        if (p[0] == '{' && p[1] == '}') { memcpy(o, text, tl); o += tl; p += 2; }
        else *o++ = *p++;
    }
    *o = 0;
    return out;
}

static int write_meta(ns_writer *w, const char *source, const char *fingerprint, const char *path,
                      const char *layer, const char *pool, char **labels, size_t nlabels, int64_t dim,
                      const ns_shard *shard, int64_t batch, ns_err *err) {
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "probe-embed " NS_VERSION);
    ns_map_str(&meta, "probe.source", source);
    ns_map_str(&meta, "probe.model", fingerprint);
    ns_map_str(&meta, "probe.model_path", path);
    ns_map_str(&meta, "probe.layer", layer);
    ns_map_str(&meta, "probe.pool", pool);
    ns_map_i64(&meta, "probe.dim", dim);
    if (labels) ns_map_strs(&meta, "general.labels", (const char *const *)labels, nlabels);
    if (shard) ns_map_shard(&meta, shard, batch);
    int rc = ns_write_meta(w, "", &meta, err);
    ns_map_free(&meta);
    return rc;
}

// ----------------------------------------------------------------------------
// texts

static int embed_texts(ns_writer *w, const struct cmdline *cmd, const ns_vlm *v, ns_err *err) {
    lines desc = {0}, tpl = {0}, names = {0};
    const char *const *templates = default_templates;
    int64_t nt = NDEFAULT_TEMPLATES;
    if (cmd->no_ensemble) nt = 0;
    int rc = -1;
    float *plain = NULL, *one = NULL, *ens = NULL;
    if (read_lines(&desc, cmd->texts, "concept descriptions", err) < 0) return -1;
    // "NAME<TAB>DESCRIPTION" or a description that is its own name
    for (int64_t i = 0; i < desc.n; i++) {
        char *tab = strchr(desc.s[i], '\t');
        if (lines_push(&names, strndup(desc.s[i], tab ? (size_t)(tab - desc.s[i]) : strlen(desc.s[i])), err) < 0)
            goto done;
        if (tab) memmove(desc.s[i], tab + 1, strlen(tab + 1) + 1);
        if (!names.s[i][0] || !desc.s[i][0]) {
            ns_errf(err, "%s: line %lld has an empty name or description", cmd->texts, (long long)i + 1);
            goto done;
        }
        for (int64_t j = 0; j < i; j++)
            if (strcmp(names.s[j], names.s[i]) == 0) {
                ns_errf(err, "%s: the concept name '%s' appears twice", cmd->texts, names.s[i]);
                goto done;
            }
    }
    if (cmd->templates) {
        if (read_lines(&tpl, cmd->templates, "templates", err) < 0) goto done;
        for (int64_t i = 0; i < tpl.n; i++)
            if (!strstr(tpl.s[i], "{}")) {
                ns_errf(err, "%s: template %lld has no '{}' (%s)", cmd->templates, (long long)i + 1, tpl.s[i]);
                goto done;
            }
        templates = (const char *const *)tpl.s;
        nt = tpl.n;
    }
    const int64_t k = desc.n, e = ns_vlm_dim(v);
    plain = malloc((size_t)(k * e) * sizeof *plain);
    ens = malloc((size_t)(k * e) * sizeof *ens);
    one = malloc((size_t)((nt > 0 ? nt : 1) * e) * sizeof *one);
    if (!plain || !ens || !one) {
        ns_errf(err, "out of memory (%lld texts)", (long long)k);
        goto done;
    }
    if (ns_vlm_embed_texts(v, (const char *const *)desc.s, k, plain, err) < 0) goto done;
    for (int64_t c = 0; c < k && nt > 0; c++) {
        lines filled = {0};
        for (int64_t t = 0; t < nt; t++)
            if (lines_push(&filled, fill_template(templates[t], desc.s[c]), err) < 0) {
                lines_free(&filled);
                goto done;
            }
        int e_rc = ns_vlm_embed_texts(v, (const char *const *)filled.s, nt, one, err);
        lines_free(&filled);
        if (e_rc < 0) goto done;
        // the ensemble: each template's embedding normalised, averaged, renormalised
        if (ns_cav_text_embedding(ens + c * e, one, nt, e, 1, 0, err) < 0) {
            ns_err_prefix(err, "concept '%s'", names.s[c]);
            goto done;
        }
    }
    if (nt == 0) memcpy(ens, plain, (size_t)(k * e) * sizeof *ens);
    if (write_meta(w, "vlm-text", ns_vlm_fingerprint(v), cmd->vlm, "text", "none", NULL, 0, e, NULL, 0, err) < 0)
        goto done;
    ns_map meta;
    ns_map_init(&meta);
    ns_map_strs(&meta, "names", (const char *const *)names.s, (size_t)k);
    ns_map_strs(&meta, "descriptions", (const char *const *)desc.s, (size_t)k);
    ns_map_i64(&meta, "templates", nt);
    ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {k, e}, .numel = k * e, .data = ens};
    int wrc = ns_write_tensor(w, "texts", &t, &meta, err);
    ns_map_free(&meta);
    if (wrc < 0) goto done;
    t.data = plain;
    ns_map_init(&meta);
    ns_map_strs(&meta, "names", (const char *const *)names.s, (size_t)k);
    wrc = ns_write_tensor(w, "texts.plain", &t, &meta, err);
    ns_map_free(&meta);
    if (wrc < 0) goto done;
    rc = 0;
done:
    free(plain);
    free(one);
    free(ens);
    lines_free(&desc);
    lines_free(&tpl);
    lines_free(&names);
    return rc;
}

// ----------------------------------------------------------------------------
// images

static int embed_images(ns_writer *w, const struct cmdline *cmd, ns_model *m, const char *fingerprint,
                        const char *source, const char *path, const char *data, ns_err *err) {
    ns_probe p;
    if (strcmp(source, "model") == 0) {
        if (ns_probe_init(&p, m, cmd->layer, cmd->flatten, err) < 0) return ns_err_prefix(err, "%s", path);
    } else { // a VLM's image tower: its output, the joint embedding
        if (ns_probe_init(&p, m, m->nodes[m->output].name, 0, err) < 0) return -1;
        p.head = -1;
    }
    ns_engine e;
    if (ns_engine_init(&e, m, cmd->batch, 0, err) < 0) return -1;
    ns_engine_set_fused(&e, 1);
    ns_engine_keep(&e, p.node);
    ns_batches b;
    if (ns_batches_open(&b, data, m, cmd->batch, err) < 0) {
        ns_engine_free(&e);
        return -1;
    }
    b.shard = cmd->shard;
    float *feat = ns_aligned_alloc((size_t)(cmd->batch * p.dim) * sizeof *feat);
    int64_t *labels = malloc((size_t)cmd->batch * sizeof *labels);
    int rc = -1, got, wrote_meta = 0;
    ns_progress progress;
    ns_progress_start(&progress, "images", 0, cmd->quiet);
    if (!feat || !labels) {
        ns_errf(err, "out of memory (a batch of %d x %lld)", cmd->batch, (long long)p.dim);
        goto done;
    }
    while ((got = ns_batches_next(&b, err)) == 1) {
        if (!wrote_meta) { // after the first batch: the stream's class names are known
            char **names = m->labels ? m->labels : b.info.labels;
            size_t nn = m->labels ? m->nlabels : b.info.nlabels;
            if (write_meta(w, source, fingerprint, path, m->nodes[p.node].name, ns_probe_pool_name(p.pool),
                           names, nn, p.dim, &cmd->shard, cmd->batch, err) < 0)
                goto done;
            int64_t k;
            const float *hw = ns_probe_head_weight(&p, m, &k), *hb = ns_probe_head_bias(&p, m);
            if (hw && hb) {
                ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {k, p.dim}, .numel = k * p.dim, .data = (void *)hw};
                ns_tensor tb = {.dtype = NS_F32, .ndim = 1, .shape = {k}, .numel = k, .data = (void *)hb};
                if (ns_write_tensor(w, "head.weight", &t, NULL, err) < 0 ||
                    ns_write_tensor(w, "head.bias", &tb, NULL, err) < 0)
                    goto done;
            }
            wrote_meta = 1;
        }
        if (!ns_engine_forward(&e, b.x, b.n, 0, err)) goto done;
        ns_probe_features(&p, &e, b.n, feat);
        for (int64_t i = 0; i < b.n; i++) labels[i] = b.y[i];
        ns_map meta;
        ns_map_init(&meta);
        ns_map_i64s(&meta, "labels", labels, (size_t)b.n);
        ns_map_i64s(&meta, "ids", b.ids, (size_t)b.n);
        ns_tensor t = {.dtype = NS_F32, .ndim = 2, .shape = {b.n, p.dim}, .numel = b.n * p.dim, .data = feat};
        int wrc = ns_write_tensor(w, "features", &t, &meta, err);
        ns_map_free(&meta);
        if (wrc < 0) goto done;
        ns_progress_update(&progress, b.seen);
    }
    if (got < 0) goto done;
    if (!wrote_meta) {
        ns_errf(err, "%s: no images in the stream", strcmp(data, "-") == 0 ? "standard input" : data);
        goto done;
    }
    rc = 0;
done:
    ns_progress_end(&progress);
    free(feat);
    free(labels);
    ns_batches_close(&b);
    ns_engine_free(&e);
    return rc;
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.batch = 256};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *data = first < argc ? argv[first] : "-";
    ns_err err;
    ns_model model;
    ns_vlm *vlm = NULL;
    char fingerprint[NS_FINGERPRINT_LEN + 1];
    if (cmd.model) {
        if (ns_model_load(&model, cmd.model, &err) < 0) ns_die_err(&err);
        ns_model_fingerprint(&model, fingerprint);
    } else if (ns_vlm_load(cmd.vlm, &vlm, &err) < 0) {
        ns_die_err(&err);
    }
    ns_output out;
    if (ns_output_open(&out, cmd.output ? cmd.output : "-", &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    int rc;
    if (cmd.texts) rc = embed_texts(&w, &cmd, vlm, &err);
    else if (vlm) rc = embed_images(&w, &cmd, ns_vlm_image_model(vlm), ns_vlm_fingerprint(vlm), "vlm-image",
                                    cmd.vlm, data, &err);
    else rc = embed_images(&w, &cmd, &model, fingerprint, "model", cmd.model, data, &err);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    if (vlm) ns_vlm_free(vlm);
    else ns_model_free(&model);
    return 0;
}
