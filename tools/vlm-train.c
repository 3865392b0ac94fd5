// vlm-train: trains a small CLIP-style vision-language model (vlm.h) on an
// image stream and a caption per image, with CLIP's symmetric contrastive
// loss, and writes it; optionally reports zero-shot accuracy and per-concept
// retrieval AUC on held-out images.
//
//   vlm-train (--arch "NAME [opts]" | --image-model MODEL | --init VLM)
//             (--captions FILE | --concepts BANK) [options] TRAIN [> vlm.tns]
//
// Under mpirun, each rank trains on its shard of TRAIN (data-parallel,
// cav/vlm_train.h); rank 0 alone evaluates, logs and writes.
//
// Dimensions: N training images, E joint width, D token width, K concepts.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "base/lines.h"
#include "cli/cli.h"
#include "cav/concepts.h"
#include "nn/dist.h"
#include "nn/ops.h"
#include "base/rng.h"
#include "stream/streaminfo.h"
#include "cav/vlm_train.h"

struct cmdline {
    const char *arch, *image_model, *init, *captions, *concepts, *optim, *schedule, *warmup, *eval,
        *eval_concepts, *tmpl, *report, *log, *output, *text_tower;
    int dim, text_dim, epochs, batch, freeze_image, quiet, context, text_depth, text_heads;
    double lr, wd, dropout;
    int64_t seed;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"arch", 'a', NS_OPT_STR, &cmd->arch, "SPEC", "image tower: a built-in architecture with options, e.g. \"vgg --depth 4 --width 2\"", 0, 0},
        {"image-model", 0, NS_OPT_STR, &cmd->image_model, "MODEL", "image tower: a trained classifier whose output layer is replaced by a fresh E-wide one", 0, 0},
        {"init", 0, NS_OPT_STR, &cmd->init, "VLM", "continue from a vlm-train model (its vocabulary stays)", 0, 0},
        {"dim", 'E', NS_OPT_INT, &cmd->dim, "E", "joint embedding width (default 64)", 2, 65536},
        {"text-dim", 0, NS_OPT_INT, &cmd->text_dim, "D", "token embedding width (default 128 for bow, 64 for transformer)", 1, 65536},
        {"text-tower", 0, NS_OPT_STR, &cmd->text_tower, "KIND", "bow (bag of words, the default) or transformer", 0, 0},
        {"context", 0, NS_OPT_INT, &cmd->context, "L", "transformer: token ids per text, start and end included (default 16)", 3, 4096},
        {"text-depth", 0, NS_OPT_INT, &cmd->text_depth, "N", "transformer: blocks (default 2)", 1, 64},
        {"text-heads", 0, NS_OPT_INT, &cmd->text_heads, "H", "transformer: attention heads (default 4)", 1, 65536},
        {"captions", 'c', NS_OPT_STR, &cmd->captions, "FILE", "an id<TAB>caption line per training image", 0, 0},
        {"concepts", 'k', NS_OPT_STR, &cmd->concepts, "BANK", "captions made from a concept bank of the training images, redrawn every epoch", 0, 0},
        {"dropout", 0, NS_OPT_DOUBLE, &cmd->dropout, "P", "--concepts: drop each caption word with probability P (default 0.3)", 0, 1},
        {"epochs", 'e', NS_OPT_INT, &cmd->epochs, "N", "epochs (default 5; 0 only evaluates an --init model)", 0, 1e6},
        {"batch", 'b', NS_OPT_INT, &cmd->batch, "N", "pairs per batch (default 256)", 2, 1 << 14},
        {"lr", 0, NS_OPT_DOUBLE, &cmd->lr, "LR", "base learning rate (default 0.002)", 1e-12, 10},
        {"optim", 0, NS_OPT_STR, &cmd->optim, "NAME", "adamw (default), adam or sgd", 0, 0},
        {"wd", 0, NS_OPT_DOUBLE, &cmd->wd, "WD", "weight decay on weight matrices (default 0.1 for adamw, else 0)", 0, 10},
        {"schedule", 0, NS_OPT_STR, &cmd->schedule, "SPEC", "constant, step:S[:G], multistep:E1,E2[:G], cosine[:MIN] (default cosine)", 0, 0},
        {"warmup", 0, NS_OPT_STR, &cmd->warmup, "SPEC", "linear warm-up: N epochs, Nst steps, optionally :START factor", 0, 0},
        {"freeze-image", 0, NS_OPT_FLAG, &cmd->freeze_image, NULL, "train only the image tower's output layer (with --image-model)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "seed for initialisation, shuffling and captions (default 0)", 0, 0},
        {"eval", 0, NS_OPT_STR, &cmd->eval, "DATA", "after training: zero-shot accuracy on this labelled image stream", 0, 0},
        {"eval-concepts", 0, NS_OPT_STR, &cmd->eval_concepts, "BANK", "with --eval: retrieval AUC per concept of this concept bank of DATA", 0, 0},
        {"template", 0, NS_OPT_STR, &cmd->tmpl, "TEXT", "evaluation prompt, {} is the class or concept (default \"a photo of a {}.\")", 0, 0},
        {"report", 0, NS_OPT_STR, &cmd->report, "FILE", "write the evaluation report here (default: stdout when -o is a file)", 0, 0},
        {"log", 0, NS_OPT_STR, &cmd->log, "FILE", "append a TSV line per epoch (loss, scale, lr, time)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write the model to FILE (atomically) instead of stdout", 0, 0},
        {"quiet", 'q', NS_OPT_FLAG, &cmd->quiet, NULL, "no progress on stderr", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "(--arch SPEC | --image-model MODEL | --init VLM) (--captions FILE | --concepts BANK) [options] TRAIN",
        "Train a small CLIP-style vision-language model: an image tower and a\n"
        "text tower (a bag of words or a transformer), aligned by CLIP's symmetric\n"
        "contrastive loss.",
        "The tokenizer lowercases and splits on non-alphanumerics (vocabulary from the\n"
        "training captions; unknown words are left out). The bag of words averages\n"
        "word embeddings and projects to E; the transformer (net-init's\n"
        "text-transformer) reads start, words, end and padding through causal blocks\n"
        "and projects the end token's output to E. Logits are exp(t) * cosine with a learnable temperature t\n"
        "(init log(1/0.07), exp(t) at most 100). The evaluation report is\n"
        "tab-separated: zero_shot_accuracy, then 'auc', concept, kind, AUC, positives,\n"
        "negatives per concept, then mean_auc.",
        1, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (!!cmd->arch + !!cmd->image_model + !!cmd->init != 1) ns_die_usage("give one of --arch, --image-model and --init");
    if (!cmd->captions == !cmd->concepts && cmd->epochs > 0) ns_die_usage("give one of --captions and --concepts");
    if (cmd->captions && cmd->concepts) ns_die_usage("give one of --captions and --concepts");
    if (cmd->epochs == 0 && !cmd->init) ns_die_usage("--epochs 0 needs --init (nothing to evaluate otherwise)");
    if (cmd->freeze_image && !cmd->image_model && !cmd->init) ns_die_usage("--freeze-image needs --image-model or --init");
    if (cmd->eval_concepts && !cmd->eval) ns_die_usage("--eval-concepts needs --eval");
    if (cmd->arch && strcmp(argv[*first], "-") == 0)
        ns_die_usage("with --arch, TRAIN must be a file (its image shape is read before the data)");
    if (cmd->init && (cmd->dim || cmd->text_dim || cmd->text_tower || cmd->context || cmd->text_depth || cmd->text_heads))
        ns_die_usage("--dim and the text tower's options come from the --init model");
    if (cmd->text_tower && strcmp(cmd->text_tower, "bow") != 0 && strcmp(cmd->text_tower, "transformer") != 0)
        ns_die_usage("--text-tower is bow or transformer (%s)", cmd->text_tower);
    int transformer = cmd->text_tower && strcmp(cmd->text_tower, "transformer") == 0;
    if (!transformer && (cmd->context || cmd->text_depth || cmd->text_heads))
        ns_die_usage("--context, --text-depth and --text-heads are for --text-tower transformer");
    if (!cmd->report && cmd->eval) cmd->report = strcmp(cmd->output, "-") == 0 ? NULL : "-";
    if (cmd->report && strcmp(cmd->report, "-") == 0 && strcmp(cmd->output, "-") == 0)
        ns_die_usage("--report - needs --output FILE: standard output carries the model");
}

// ----------------------------------------------------------------------------
// the image tower

// "vgg --depth 4 --width 2" into a name and options.
static void parse_arch(const char *spec, char *name, size_t cap, ns_arch_opts *o) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL, *tok = strtok_r(buf, " \t", &save);
    if (!tok) ns_die_usage("--arch is empty");
    snprintf(name, cap, "%s", tok);
    o->width = 1;
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *val = strtok_r(NULL, " \t", &save), *end;
        if (!val) ns_die_usage("--arch: %s needs a value (%s)", tok, spec);
        if (strcmp(tok, "--depth") == 0) o->depth = (int)strtol(val, &end, 10);
        else if (strcmp(tok, "--patch") == 0) o->patch = (int)strtol(val, &end, 10);
        else if (strcmp(tok, "--heads") == 0) o->heads = (int)strtol(val, &end, 10);
        else if (strcmp(tok, "--width") == 0) o->width = strtod(val, &end);
        else if (strcmp(tok, "--hidden") == 0) {
            ns_err err;
            o->nhidden = ns_parse_sizes(val, o->hidden, (int)(sizeof o->hidden / sizeof *o->hidden), 1 << 24, &err);
            if (o->nhidden < 0) ns_die_usage("--arch: --hidden: %s", err.msg);
            continue;
        } else ns_die_usage("--arch: unknown option %s (--depth, --width, --hidden, --patch, --heads)", tok);
        if (*end || end == val) ns_die_usage("--arch: bad value for %s (%s)", tok, val);
    }
}

// The first image batch's shape and the stream's normalisation.
static void read_shape(const char *path, ns_arch_opts *o, ns_model *m) {
    ns_err err;
    ns_reader *r = ns_reader_open(path, &err);
    if (!r) ns_die_err(&err);
    ns_stream_info info = {0};
    ns_record rec;
    int got;
    while ((got = ns_reader_next(r, &rec, &err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(&info, &rec, &err) < 0) ns_die("%s: %s", path, err.msg);
            continue;
        }
        if (!rec.has_data) continue;
        if (rec.ndim != 4) ns_die("%s: record %s is not an image batch (N, C, H, W)", path, rec.name);
        o->in_c = (int)rec.shape[1], o->in_h = (int)rec.shape[2], o->in_w = (int)rec.shape[3];
        break;
    }
    if (got < 0) ns_die_err(&err);
    if (got == 0) ns_die("%s: no image batches", path);
    ns_reader_close(r);
    m->nnorm = info.nnorm;
    memcpy(m->mean, info.mean, sizeof m->mean);
    memcpy(m->std, info.std, sizeof m->std);
    ns_stream_info_free(&info);
}

static void build_arch(ns_model *m, const struct cmdline *cmd, const char *train) {
    char name[64];
    ns_arch_opts o = {0};
    parse_arch(cmd->arch, name, sizeof name, &o);
    ns_model_init(m);
    read_shape(train, &o, m);
    o.classes = cmd->dim;
    ns_err err;
    if (ns_arch_build(m, name, &o, &err) < 0) ns_die_usage("--arch: %s", err.msg);
    ns_model_init_params(m, (uint64_t)cmd->seed);
    snprintf(m->arch, sizeof m->arch, "%s", cmd->arch);
}

// A trained classifier with its output layer replaced by a fresh (E, IN) one.
static void replace_head(ns_model *m, const struct cmdline *cmd) {
    ns_err err;
    if (ns_model_load(m, cmd->image_model, &err) < 0) ns_die_err(&err);
    ns_node *head = &m->nodes[m->output];
    if (head->op != NS_OP_LINEAR) ns_die("%s: the output node %s is not linear", cmd->image_model, head->name);
    int64_t in = m->nodes[head->inputs[0]].numel, E = cmd->dim;
    if (ns_node_set_iattr(head, "out", E, &err) < 0 || ns_node_set_iattr(head, "bias", 1, &err) < 0) ns_die_err(&err);
    ns_rng rng;
    ns_rng_seed(&rng, (uint64_t)cmd->seed ^ 0x68656164ull);
    double bound = 1.0 / sqrt((double)in); // nn.Linear's initialisation
    for (int p = 0; p < 2; p++) {
        int t = head->params[p];
        if (t < 0) { // a head without bias gets one
            char tname[NS_NAME_MAX + 1];
            snprintf(tname, sizeof tname, "%s.bias", head->name);
            int64_t shape = E;
            if ((t = ns_model_add_tensor(m, tname, 1, &shape, 1, &err)) < 0) ns_die_err(&err);
            head = &m->nodes[m->output];
            head->params[p] = t;
        }
        ns_named_tensor *nt = &m->tensors[t];
        int64_t shape[2] = {E, in};
        ns_tensor_free(&nt->t);
        if (ns_tensor_alloc(&nt->t, NS_F32, p == 0 ? 2 : 1, shape, &err) < 0) ns_die_err(&err);
        float *x = nt->t.data;
        for (int64_t i = 0; i < nt->t.numel; i++) x[i] = (float)((2 * ns_rng_uniform(&rng) - 1) * bound);
        nt->used = 1;
    }
    if (ns_model_resolve(m, 0, &err) < 0) ns_die("%s: %s", cmd->image_model, err.msg);
    ns_strings_free(m->labels, m->nlabels);
    m->labels = NULL;
    m->nlabels = 0;
    char arch[sizeof m->arch];
    snprintf(arch, sizeof arch, "%s", m->arch);
    snprintf(m->arch, sizeof m->arch, "%.90s + %d-wide projection", arch[0] ? arch : "model", cmd->dim);
}

// ----------------------------------------------------------------------------
// captions

typedef struct id_index {
    int64_t id, index;
} id_index;

static int by_id(const void *a, const void *b) {
    int64_t x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
    return (x > y) - (x < y);
}

// Sorted (id, index) pairs; dies on a repeated id.
static id_index *index_ids(const int64_t *ids, int64_t n, const char *what) {
    id_index *ix = malloc((size_t)(n ? n : 1) * sizeof *ix);
    if (!ix) ns_die("out of memory");
    for (int64_t i = 0; i < n; i++) ix[i] = (id_index){ids[i], i};
    qsort(ix, (size_t)n, sizeof *ix, by_id);
    for (int64_t i = 1; i < n; i++)
        if (ix[i].id == ix[i - 1].id) ns_die("%s: id %lld appears twice", what, (long long)ix[i].id);
    return ix;
}

static int64_t find_id(const id_index *ix, int64_t n, int64_t id) {
    id_index key = {id, 0}, *hit = bsearch(&key, ix, (size_t)n, sizeof *ix, by_id);
    return hit ? hit->index : -1;
}

// Where captions come from: fixed (per sample) or a concept bank.
typedef struct captioner {
    char **fixed;           // (N) per training sample, or NULL
    ns_concept_bank bank;
    int64_t *bank_row;      // (N) the bank row of each training sample
    char *const *classes;   // class names of the training labels
    size_t nclasses;
    const int32_t *labels;  // (N)
    double dropout;
    uint64_t seed;
    int rank, ranks;        // data-parallel: sample i is stream position i ranks + rank
    char *ring;             // generated captions, batch slots of CAPTION_MAX
    int64_t slots, next;
} captioner;

#define CAPTION_MAX 512

static const char *caption_of(void *ctx, int64_t sample, int epoch) {
    captioner *c = ctx;
    if (c->fixed) return c->fixed[sample];
    char *buf = c->ring + (c->next++ % c->slots) * CAPTION_MAX;
    ns_rng rng; // drawn by stream position, so every rank count draws the same captions
    uint64_t position = (uint64_t)sample * (uint64_t)c->ranks + (uint64_t)c->rank;
    ns_rng_seed(&rng, ns_rand_u64(c->seed + (uint64_t)epoch * 0x9e3779b97f4a7c15ull, position));
    int32_t y = c->labels[sample];
    const char *cls = y >= 0 && (size_t)y < c->nclasses ? c->classes[y] : NULL;
    ns_caption_make(buf, CAPTION_MAX, cls, c->bank.values + c->bank_row[sample] * (int64_t)c->bank.k,
                    c->bank.names, c->bank.kinds, c->bank.k, c->dropout, &rng);
    return buf;
}

static void load_caption_file(captioner *c, const char *path, const ns_samples *train) {
    ns_err err;
    ns_lines in;
    if (ns_lines_open(&in, path, 0, &err) < 0) ns_die_err(&err);
    id_index *ix = index_ids(train->ids, train->n, "training data");
    if (!(c->fixed = calloc((size_t)train->n, sizeof *c->fixed))) ns_die("out of memory");
    char *line;
    size_t len;
    int got;
    while ((got = ns_lines_next(&in, &line, &len, &err)) == 1) {
        long long lineno = (long long)in.lineno;
        if (len == 0) continue;
        char *tab = strchr(line, '\t'), *end;
        if (!tab) ns_die("%s line %lld: no tab between id and caption", path, lineno);
        *tab = '\0';
        errno = 0;
        long long id = strtoll(line, &end, 10);
        if (end == line || *end || errno || id < 0) ns_die("%s line %lld: bad id (%.40s)", path, lineno, line);
        int64_t i = find_id(ix, train->n, id);
        if (i < 0) continue; // a caption of an image not in TRAIN
        if (c->fixed[i]) ns_die("%s line %lld: a second caption for id %lld", path, lineno, id);
        if (!(c->fixed[i] = strdup(tab + 1))) ns_die("out of memory");
    }
    if (got < 0) ns_die_err(&err);
    ns_lines_close(&in);
    free(ix);
    for (int64_t i = 0; i < train->n; i++)
        if (!c->fixed[i]) ns_die("%s: no caption for training image id %lld", path, (long long)train->ids[i]);
}

// Rows of a concept bank for samples, by id.
static int64_t *bank_rows(const ns_concept_bank *b, const ns_samples *s, const char *path) {
    id_index *ix = index_ids(b->ids, b->n, path);
    int64_t *rows = malloc((size_t)(s->n ? s->n : 1) * sizeof *rows);
    if (!rows) ns_die("out of memory");
    for (int64_t i = 0; i < s->n; i++)
        if ((rows[i] = find_id(ix, b->n, s->ids[i])) < 0)
            ns_die("%s: no concepts for image id %lld", path, (long long)s->ids[i]);
    free(ix);
    return rows;
}

static void setup_captions(captioner *c, const struct cmdline *cmd, const ns_samples *train, const ns_dist *dist) {
    memset(c, 0, sizeof *c);
    c->rank = dist->rank;
    c->ranks = dist->size;
    if (cmd->captions) {
        load_caption_file(c, cmd->captions, train);
        return;
    }
    ns_err err;
    if (ns_concept_bank_load(&c->bank, cmd->concepts, &err) < 0) ns_die_err(&err);
    c->bank_row = bank_rows(&c->bank, train, cmd->concepts);
    c->classes = train->labels;
    c->nclasses = train->nlabels;
    c->labels = train->y;
    c->dropout = cmd->dropout;
    c->seed = (uint64_t)cmd->seed;
    c->slots = cmd->batch;
    if (!(c->ring = malloc((size_t)c->slots * CAPTION_MAX))) ns_die("out of memory");
}

static void free_captions(captioner *c, int64_t n) {
    if (c->fixed)
        for (int64_t i = 0; i < n; i++) free(c->fixed[i]);
    free(c->fixed);
    ns_concept_bank_free(&c->bank);
    free(c->bank_row);
    free(c->ring);
}

// Data-parallel: every rank's first-epoch captions, each NUL-terminated, in
// stream order (position p is caption p / W of rank p mod W), to every rank;
// *count of them.
static char *all_captions(captioner *c, const ns_samples *train, const ns_dist *dist, int64_t *count) {
    ns_err err;
    char *mine = NULL, *all;
    size_t len = 0;
    FILE *f = open_memstream(&mine, &len);
    if (!f) ns_die("out of memory");
    for (int64_t i = 0; i < train->n; i++) {
        const char *text = caption_of(c, i, 0);
        fwrite(text, 1, strlen(text) + 1, f);
    }
    if (fclose(f) != 0) ns_die("out of memory");
    int W = dist->size;
    int64_t *sizes = malloc((size_t)W * sizeof *sizes), total = 0;
    char **at = malloc((size_t)W * sizeof *at), **end = malloc((size_t)W * sizeof *end);
    if (!sizes || !at || !end) ns_die("out of memory");
    if (dist->gather_bytes(mine, (int64_t)len, &all, sizes, &err) < 0) ns_die_err(&err);
    free(mine);
    for (int r = 0; r < W; total += sizes[r], r++) {
        at[r] = all + total;
        end[r] = at[r] + sizes[r];
    }
    char *ordered = malloc((size_t)(total ? total : 1)), *out = ordered;
    if (!ordered) ns_die("out of memory");
    // the positions end where rank p mod W has no caption left
    for (*count = 0; at[*count % W] < end[*count % W]; (*count)++) {
        int r = (int)(*count % W);
        size_t n = strlen(at[r]) + 1;
        memcpy(out, at[r], n);
        out += n;
        at[r] += n;
    }
    free(all);
    free(sizes);
    free(at);
    free(end);
    return ordered;
}

// The vocabulary: every word of the first epoch's captions (of every rank,
// in stream order), and for generated captions every class name and concept
// phrase too.
static void build_vocab(ns_vocab *v, captioner *c, const ns_samples *train, const ns_dist *dist) {
    ns_err err;
    if (ns_vocab_init(v, &err) < 0) ns_die_err(&err);
    if (dist->size > 1) {
        int64_t n;
        char *all = all_captions(c, train, dist, &n), *text = all;
        for (int64_t i = 0; i < n; i++, text += strlen(text) + 1)
            if (ns_vocab_add_text(v, text, &err) < 0) ns_die_err(&err);
        free(all);
    } else {
        for (int64_t i = 0; i < train->n; i++)
            if (ns_vocab_add_text(v, caption_of(c, i, 0), &err) < 0) ns_die_err(&err);
    }
    if (c->fixed) return;
    char phrase[128];
    for (size_t k = 0; k < c->nclasses; k++)
        if (ns_vocab_add_text(v, c->classes[k], &err) < 0) ns_die_err(&err);
    for (size_t k = 0; k < c->bank.k; k++) {
        ns_concept_phrase(phrase, sizeof phrase, c->bank.names[k]);
        if (ns_vocab_add_text(v, phrase, &err) < 0) ns_die_err(&err);
    }
}

// ----------------------------------------------------------------------------
// evaluation

typedef struct eval_result {
    double zero_shot, mean_auc;
    int have_auc;
} eval_result;

static void evaluate(ns_vlm *v, const struct cmdline *cmd, FILE *report, eval_result *res) {
    ns_err err;
    ns_samples test;
    if (ns_samples_load(&test, cmd->eval, &v->image, &err) < 0) ns_die_err(&err);
    char *const *classes = test.labels ? test.labels : v->classes;
    size_t nclasses = test.labels ? test.nlabels : v->nclasses;
    if (!classes) ns_die("%s: no class names (general.labels) for zero-shot classification", cmd->eval);
    float *img = malloc((size_t)(test.n * v->dim) * sizeof *img);
    if (!img) ns_die("out of memory");
    if (ns_vlm_embed_images(v, &test, 256, img, &err) < 0) ns_die_err(&err);
    const char *tmpl = cmd->tmpl ? cmd->tmpl : "a photo of a {}.";
    if (ns_vlm_zero_shot(v, img, test.y, test.n, classes, nclasses, tmpl, &res->zero_shot, &err) < 0) ns_die_err(&err);
    if (report) fprintf(report, "zero_shot_accuracy\t%.4f\n", res->zero_shot);
    if (!cmd->quiet) ns_warn("zero-shot accuracy %.2f%% on %lld images", 100 * res->zero_shot, (long long)test.n);
    if (cmd->eval_concepts) {
        ns_concept_bank bank;
        if (ns_concept_bank_load(&bank, cmd->eval_concepts, &err) < 0) ns_die_err(&err);
        int64_t *rows = bank_rows(&bank, &test, cmd->eval_concepts);
        float *t = malloc((size_t)v->dim * sizeof *t), *score = malloc((size_t)test.n * sizeof *score);
        uint8_t *label = malloc((size_t)test.n);
        if (!t || !score || !label) ns_die("out of memory");
        double sum = 0;
        int counted = 0;
        for (size_t k = 0; k < bank.k; k++) {
            char phrase[128], text[512];
            ns_concept_phrase(phrase, sizeof phrase, bank.names[k]);
            ns_fill_template(text, sizeof text, tmpl, phrase);
            const char *texts[1] = {text};
            if (ns_vlm_embed_texts(v, texts, 1, t, &err) < 0) ns_die_err(&err);
            int64_t pos = 0, neg = 0;
            for (int64_t i = 0; i < test.n; i++) {
                double d = 0;
                for (int64_t j = 0; j < v->dim; j++) d += (double)img[i * v->dim + j] * t[j];
                score[i] = (float)d;
                label[i] = bank.values[rows[i] * (int64_t)bank.k + (int64_t)k];
                pos += label[i] == 1;
                neg += label[i] == 0;
            }
            double auc = ns_roc_auc(score, label, test.n);
            if (isfinite(auc)) sum += auc, counted++;
            if (report)
                fprintf(report, "auc\t%s\t%s\t%.4f\t%lld\t%lld\n", bank.names[k], bank.kinds[k], auc, (long long)pos,
                        (long long)neg);
            if (!cmd->quiet) ns_warn("concept %-12s AUC %.3f (%lld+, %lld-)", bank.names[k], auc, (long long)pos, (long long)neg);
        }
        res->have_auc = counted > 0;
        res->mean_auc = counted ? sum / counted : NAN;
        if (report) fprintf(report, "mean_auc\t%.4f\n", res->mean_auc);
        free(t);
        free(score);
        free(label);
        free(rows);
        ns_concept_bank_free(&bank);
    }
    free(img);
    ns_samples_free(&test);
}

// ----------------------------------------------------------------------------

static void configure(const struct cmdline *cmd, ns_vlm_train_config *c) {
    ns_err err;
    ns_optim_kind kind = NS_OPTIM_ADAMW;
    if (cmd->optim && ns_optim_kind_parse(cmd->optim, &kind, &err) < 0) ns_die_usage("--optim: %s", err.msg);
    ns_optim_config_default(&c->optim, kind);
    if (kind == NS_OPTIM_ADAMW) c->optim.weight_decay = 0.1;
    if (kind == NS_OPTIM_SGD) c->optim.momentum = 0.9;
    if (cmd->wd >= 0) c->optim.weight_decay = cmd->wd;
    if (ns_lr_parse(&c->schedule, cmd->schedule ? cmd->schedule : "cosine", cmd->lr > 0 ? cmd->lr : 2e-3, &err) < 0)
        ns_die_usage("--schedule: %s", err.msg);
    if (cmd->warmup && ns_lr_parse_warmup(&c->schedule, cmd->warmup, &err) < 0) ns_die_usage("--warmup: %s", err.msg);
    c->epochs = cmd->epochs;
    c->batch = cmd->batch;
    c->seed = (uint64_t)cmd->seed;
    c->freeze_image = cmd->freeze_image;
    c->report = ns_stderr_reporter(cmd->quiet);
}

// The model, and this rank's shard of the training data (all of it with one rank).
static ns_vlm *make_model(const struct cmdline *cmd, const char *train_path, ns_samples *train, captioner *cap,
                          const ns_dist *dist) {
    ns_err err;
    ns_vlm *v;
    const ns_shard shard = {dist->rank, dist->size};
    if (cmd->init) {
        if (ns_vlm_load(cmd->init, &v, &err) < 0) ns_die_err(&err);
        if (ns_samples_load_shard(train, train_path, &v->image, &shard, 1, &err) < 0) ns_die_err(&err);
        if (cmd->epochs > 0) setup_captions(cap, cmd, train, dist);
        return v;
    }
    ns_model image;
    if (cmd->arch) build_arch(&image, cmd, train_path);
    else replace_head(&image, cmd);
    if (ns_samples_load_shard(train, train_path, &image, &shard, 1, &err) < 0) ns_die_err(&err);
    setup_captions(cap, cmd, train, dist);
    ns_vocab vocab;
    build_vocab(&vocab, cap, train, dist);
    int rc;
    if (cmd->text_tower && strcmp(cmd->text_tower, "transformer") == 0) {
        ns_text_shape shape = {cmd->context, cmd->text_depth, cmd->text_heads};
        rc = ns_vlm_create_transformer(&v, &image, &vocab, cmd->text_dim, &shape, (uint64_t)cmd->seed, &err);
    } else {
        rc = ns_vlm_create(&v, &image, &vocab, cmd->text_dim, (uint64_t)cmd->seed, &err);
    }
    if (rc < 0) ns_die_usage("%s", err.msg);
    if (train->labels) {
        if (!(v->classes = calloc(train->nlabels, sizeof *v->classes))) ns_die("out of memory");
        v->nclasses = train->nlabels;
        for (size_t k = 0; k < train->nlabels; k++)
            if (!(v->classes[k] = strdup(train->labels[k]))) ns_die("out of memory");
    }
    return v;
}

// Writes text (the report) to path atomically; "-" is standard output.
static int write_report(const char *path, const char *text, size_t len, ns_err *err) {
    ns_output out;
    if (ns_output_open(&out, path, err) < 0) return -1;
    int failed = fwrite(text, 1, len, out.f) != len && ns_errf(err, "%s: write failed (%s)", path, strerror(errno));
    return ns_output_finish(&out, NULL, failed, err);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.epochs = 5, .batch = 256, .lr = -1, .wd = -1, .dropout = 0.3, .output = "-"};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    if (!cmd.init) {
        int transformer = cmd.text_tower && strcmp(cmd.text_tower, "transformer") == 0;
        if (!cmd.dim) cmd.dim = 64;
        if (!cmd.text_dim) cmd.text_dim = transformer ? 64 : 128;
        if (!cmd.context) cmd.context = 16;
        if (!cmd.text_depth) cmd.text_depth = 2;
        if (!cmd.text_heads) cmd.text_heads = 4;
    }
    ns_vlm_train_config cfg = {0};
    configure(&cmd, &cfg);
    ns_err err;
    // Under mpirun: rank r of W trains on its shard of TRAIN; rank 0 alone
    // evaluates, reports, logs and writes the model (as net-train).
    ns_dist dist;
    if (ns_dist_init(&dist, &argc, &argv, &err) < 0) ns_die_err(&err);
    if (dist.size > 1) {
        ns_progname_rank(dist.rank, dist.size);
        cfg.dist = &dist;
        if (dist.rank > 0) {
            cmd.eval = cmd.eval_concepts = cmd.report = cmd.log = NULL;
            cmd.output = "/dev/null";
            cfg.report = NULL;
        }
    }
    ns_output out;
    // Bad output paths fail now, not after the training.
    const char *paths[2] = {cmd.output, cmd.report};
    for (int i = 0; i < 2; i++) {
        if (!paths[i] || strcmp(paths[i], "-") == 0) continue;
        if (ns_output_open(&out, paths[i], &err) < 0) ns_die_err(&err);
        ns_output_abort(&out);
    }
    if (cmd.log && !(cfg.log = fopen(cmd.log, "a"))) ns_die("%s: cannot open (%s)", cmd.log, strerror(errno));
    char *report_text = NULL;
    size_t report_len = 0;
    FILE *report = cmd.report ? open_memstream(&report_text, &report_len) : NULL;
    if (cmd.report && !report) ns_die("out of memory");

    ns_samples train;
    captioner cap = {0};
    ns_vlm *v = make_model(&cmd, argv[first], &train, &cap, &dist);
    ns_vlm_epoch_stats last = {0};
    if (cmd.epochs > 0 && ns_vlm_train(v, &train, caption_of, &cap, &cfg, &last, &err) < 0) ns_die_err(&err);
    eval_result res = {NAN, NAN, 0};
    if (cmd.eval) evaluate(v, &cmd, report, &res);
    int log_errno = cfg.log ? ns_file_close(cfg.log) : 0;
    if (log_errno) ns_die("%s: write failed (%s)", cmd.log, strerror(log_errno));
    if (report && fclose(report) != 0) ns_die("out of memory");

    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "vlm-train " NS_VERSION);
    ns_map_i64(&meta, "train.epochs", last.epoch);
    if (cmd.epochs > 0) ns_map_f64(&meta, "train.loss", last.loss);
    if (cmd.eval) ns_map_f64(&meta, "vlm.eval.zero_shot_accuracy", res.zero_shot);
    if (res.have_auc) ns_map_f64(&meta, "vlm.eval.mean_auc", res.mean_auc);
    int rc = ns_vlm_write(v, &w, &meta, &err);
    ns_map_free(&meta);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    if (cmd.report && write_report(cmd.report, report_text, report_len, &err) < 0) ns_die_err(&err);
    free(report_text);
    free_captions(&cap, train.n);
    ns_samples_free(&train);
    ns_vlm_free(v);
    ns_dist_finalize(&dist);
    return 0;
}
