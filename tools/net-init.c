// net-init: a new model, from a built-in architecture, initialised as PyTorch
// does, seeded.
//
//   net-init --arch NAME [--like DATA.tns | --in CxHxW --classes K] [options]
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"
#include "cli/cli.h"
#include "nn/model.h"
#include "nn/spec.h"
#include "stream/streaminfo.h"
#include "stream/tns.h"

struct cmdline {
    const char *arch, *spec, *like, *in, *hidden, *output;
    int classes, depth, patch, heads, vocab;
    double width;
    int64_t seed;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd) {
    const ns_opt opts[] = {
        {"arch", 'a', NS_OPT_STR, &cmd->arch, "NAME", "mlp, lenet, vgg, resnet20/32/44/56, resnet18, vit or text-transformer", 0, 0},
        {"spec", 0, NS_OPT_STR, &cmd->spec, "FILE", "a custom graph in the netsmith-spec(5) text format, instead of --arch", 0, 0},
        {"like", 'l', NS_OPT_STR, &cmd->like, "DATA", "take input shape, classes and normalisation from an image stream", 0, 0},
        {"in", 0, NS_OPT_STR, &cmd->in, "CxHxW", "input shape (or D for vectors), when not --like", 0, 0},
        {"classes", 'k', NS_OPT_INT, &cmd->classes, "K", "number of classes, when not --like", 1, 1 << 24},
        {"width", 0, NS_OPT_DOUBLE, &cmd->width, "W", "width multiplier (resnet20-56: 1 = 16 channels; vit: 1 = 64 features; default 1)", 0.01, 64},
        {"depth", 'd', NS_OPT_INT, &cmd->depth, "D", "vgg: number of conv layers, even (default 4); vit: blocks (default 4); text-transformer: blocks (default 2)", 1, 64},
        {"patch", 0, NS_OPT_INT, &cmd->patch, "P", "vit: patch size (default 7)", 1, 4096},
        {"heads", 0, NS_OPT_INT, &cmd->heads, "H", "vit, text-transformer: attention heads (default 4)", 1, 4096},
        {"vocab", 0, NS_OPT_INT, &cmd->vocab, "V", "text-transformer: token ids 0..V-1 (the input is --in L ids)", 2, 1 << 24},
        {"hidden", 0, NS_OPT_STR, &cmd->hidden, "H[,H..]", "mlp: hidden layer sizes (default 256)", 0, 0},
        {"seed", 0, NS_OPT_I64, &cmd->seed, "S", "initialisation seed (default 0)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "(--arch NAME (--like DATA | --in CxHxW --classes K) | --spec FILE [--like DATA]) [options]",
        "Create a model from a built-in architecture, initialised as PyTorch does\n"
        "(uniform +-1/sqrt(fan_in) for conv and linear, norms at 1 and 0).",
        "Node and parameter names follow PyTorch's module names (layer1.0.conv1.weight).\n"
        "With --like, the first image batch of DATA fixes the input shape and its meta\n"
        "record the class names and normalisation, which the model then carries.",
        0, 0,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    if (!cmd->arch == !cmd->spec) ns_die_usage("give one of --arch and --spec");
    if (cmd->spec && (cmd->in || cmd->classes || cmd->hidden || cmd->depth || cmd->patch || cmd->heads || cmd->vocab))
        ns_die_usage("a --spec file sets the input, the layers and the classes itself");
    if (cmd->arch) {
        int known = 0;
        for (const char *const *a = ns_arch_names; *a; a++) known |= strcmp(*a, cmd->arch) == 0;
        if (!known) ns_die_usage("unknown architecture (%s): mlp, lenet, vgg, resnet20, resnet32, resnet44, resnet56, resnet18, vit or text-transformer", cmd->arch);
        int vit = strcmp(cmd->arch, "vit") == 0, text = strcmp(cmd->arch, "text-transformer") == 0;
        if (cmd->depth && strcmp(cmd->arch, "vgg") != 0 && !vit && !text) ns_die_usage("--depth is for vgg, vit and text-transformer");
        if ((cmd->patch && !vit) || (cmd->heads && !vit && !text))
            ns_die_usage("--patch and --heads are for vit (--heads also for text-transformer)");
        if (!cmd->vocab != !text) ns_die_usage("--vocab is for text-transformer, which needs it");
        if (text && cmd->like) ns_die_usage("text-transformer takes --in L (token ids) and --classes E, not --like");
        vit |= text; // depth may be odd
        if (cmd->hidden && strcmp(cmd->arch, "mlp") != 0) ns_die_usage("--hidden is for mlp");
        if (cmd->width != 1 && (!strcmp(cmd->arch, "mlp") || !strcmp(cmd->arch, "lenet")))
            ns_die_usage("--width is for vgg and the resnets");
        if (cmd->depth % 2 && !vit) ns_die_usage("--depth must be even (%d)", cmd->depth);
    }
    if (cmd->spec && cmd->width != 1) ns_die_usage("--width does not apply to a --spec graph");
    if (cmd->arch && !cmd->like && (!cmd->in || !cmd->classes))
        ns_die_usage("give --like DATA, or both --in and --classes");
}

// Input shape, classes and normalisation from the first records of a data stream.
static int read_like(const char *path, ns_arch_opts *o, ns_model *m, int need_classes, ns_err *err) {
    ns_reader *r = ns_reader_open(path, err);
    if (!r) return -1;
    ns_stream_info info = {0};
    ns_record rec;
    int got, rc = -1;
    while ((got = ns_reader_next(r, &rec, err)) == 1) {
        if (strcmp(rec.kind, "meta") == 0) {
            if (ns_stream_info_update(&info, &rec, err) < 0) {
                ns_err_prefix(err, "%s", path);
                break;
            }
            continue;
        }
        if (!rec.has_data) continue;
        if (rec.ndim == 4) {
            o->in_c = (int)rec.shape[1], o->in_h = (int)rec.shape[2], o->in_w = (int)rec.shape[3];
        } else if (rec.ndim == 2) {
            o->in_c = (int)rec.shape[1], o->in_h = o->in_w = 0;
        } else {
            ns_errf(err, "%s: record %s is neither (N, C, H, W) nor (N, D)", path, rec.name);
            break;
        }
        rc = 0;
        break;
    }
    if (got == 0) ns_errf(err, "%s: no data records", path);
    // The rest is read too, so that a truncated or corrupt stream is noticed
    // here rather than by the training that follows.
    while (rc == 0 && (got = ns_reader_next(r, &rec, err)) == 1) continue;
    if (got < 0) rc = -1;
    ns_reader_close(r);
    // The model carries the data's class names and normalisation.
    ns_strings_free(m->labels, m->nlabels);
    m->labels = info.labels;
    m->nlabels = info.nlabels;
    m->nnorm = info.nnorm;
    memcpy(m->mean, info.mean, sizeof m->mean);
    memcpy(m->std, info.std, sizeof m->std);
    if (rc == 0 && !o->classes) o->classes = (int)m->nlabels;
    if (rc == 0 && need_classes && o->classes < 1)
        rc = ns_errf(err, "%s: no class names (general.labels): use --classes", path);
    return rc;
}

// The built-in and the options that shaped it, e.g. "vgg --depth 4 --width 2".
static void describe_arch(ns_model *m, const struct cmdline *cmd, const ns_arch_opts *o) {
    int n = snprintf(m->arch, sizeof m->arch, "%s", cmd->arch);
    int uses_width = strcmp(cmd->arch, "mlp") != 0 && strcmp(cmd->arch, "lenet") != 0;
    if (strcmp(cmd->arch, "vgg") == 0 && n < (int)sizeof m->arch)
        n += snprintf(m->arch + n, sizeof m->arch - (size_t)n, " --depth %d", o->depth ? o->depth : 4);
    if (strcmp(cmd->arch, "vit") == 0 && n < (int)sizeof m->arch)
        n += snprintf(m->arch + n, sizeof m->arch - (size_t)n, " --patch %d --depth %d --heads %d",
                      o->patch ? o->patch : 7, o->depth ? o->depth : 4, o->heads ? o->heads : 4);
    if (strcmp(cmd->arch, "text-transformer") == 0 && n < (int)sizeof m->arch)
        n += snprintf(m->arch + n, sizeof m->arch - (size_t)n, " --vocab %d --depth %d --heads %d", cmd->vocab,
                      o->depth ? o->depth : 2, o->heads ? o->heads : 4);
    if (uses_width && n < (int)sizeof m->arch)
        n += snprintf(m->arch + n, sizeof m->arch - (size_t)n, " --width %g", o->width);
    if (cmd->hidden && n < (int)sizeof m->arch)
        snprintf(m->arch + n, sizeof m->arch - (size_t)n, " --hidden %s", cmd->hidden);
}

// With --spec and --like, the data must fit the spec's input and output.
static void check_spec_fits(ns_model *m, const ns_arch_opts *data, const char *like) {
    if (!like) return;
    const ns_node *in = &m->nodes[0];
    int64_t want[3] = {data->in_c, data->in_h, data->in_w};
    int ndim = data->in_h ? 3 : 1;
    if (in->ndim != ndim || memcmp(in->shape, want, (size_t)ndim * sizeof *want) != 0) {
        char a[64], b[64];
        ns_shape_format(a, sizeof a, in->ndim, in->shape);
        ns_shape_format(b, sizeof b, ndim, want);
        ns_die("the spec's input is %s but %s has samples of %s", a, like, b);
    }
    int64_t classes = m->nodes[m->output].numel;
    if (m->labels && (int64_t)m->nlabels != classes) {
        ns_warn("the spec has %lld outputs but %s has %zu classes: class names dropped", (long long)classes,
                like, m->nlabels);
        ns_strings_free(m->labels, m->nlabels);
        m->labels = NULL;
        m->nlabels = 0;
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.width = 1, .output = "-"};
    parse_cmdline(argc, argv, &cmd);
    ns_arch_opts o = {.width = cmd.width, .depth = cmd.depth, .classes = cmd.classes, .patch = cmd.patch,
                      .heads = cmd.heads};
    ns_err err;
    ns_model m;
    ns_model_init(&m);
    if (cmd.in && ns_arch_parse_in(cmd.in, 0, 0, &o) < 0) ns_die_usage("--in takes CxHxW or D (%s)", cmd.in);
    if (cmd.hidden) {
        o.nhidden = ns_parse_sizes(cmd.hidden, o.hidden, (int)(sizeof o.hidden / sizeof *o.hidden), 1 << 24, &err);
        if (o.nhidden < 0) ns_die_usage("--hidden: %s", err.msg);
    }
    if (cmd.like && read_like(cmd.like, &o, &m, !cmd.spec, &err) < 0) ns_die_err(&err);
    if (cmd.spec) {
        if (ns_spec_load(&m, cmd.spec, &err) < 0) ns_die_err(&err);
        check_spec_fits(&m, &o, cmd.like);
        snprintf(m.arch, sizeof m.arch, "spec %s", cmd.spec);
    } else {
        if (m.labels && (int)m.nlabels != o.classes) { // --classes overrides the data's names
            ns_strings_free(m.labels, m.nlabels);
            m.labels = NULL;
            m.nlabels = 0;
        }
        int rc = cmd.vocab ? ns_arch_build_text(&m, &o, cmd.vocab, &err) : ns_arch_build(&m, cmd.arch, &o, &err);
        if (rc < 0) ns_die_err(&err);
        describe_arch(&m, &cmd, &o);
    }
    ns_model_init_params(&m, (uint64_t)cmd.seed);

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "net-init " NS_VERSION);
    ns_map_i64(&meta, "model.seed", cmd.seed);
    int rc = ns_model_write(&m, &w, &meta, 0, &err);
    ns_map_free(&meta);
    ns_model_free(&m);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    return 0;
}
