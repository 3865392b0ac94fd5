// tns-from-torch: a PyTorch checkpoint (torch.save zip or safetensors) to a
// model stream, through the restricted reader of lib/interop (nothing in the
// file is ever executed), onto a built-in architecture or a spec graph.
//
//   tns-from-torch --arch NAME [--in CxHxW] [options] CHECKPOINT > model.tns
//   tns-from-torch --spec FILE [options] CHECKPOINT > model.tns
//
// The classes, the widths and depths of a built-in come from the checkpoint's
// own shapes unless given; the input normalisation and class names (which a
// state_dict lacks) from --mean/--std and --classes, with torchvision's
// ImageNet values for torchvision architectures.
#include <stdlib.h>
#include <string.h>

#include "base/lines.h"
#include "cli/cli.h"
#include "interop/statedict.h"
#include "nn/arch.h"
#include "nn/model.h"
#include "nn/spec.h"
#include "stream/tns.h"

struct cmdline {
    const char *arch, *spec, *in, *key, *strip, *mean, *std, *classes, *hidden, *output;
    int num_classes, depth, patch, heads;
    double width;
};

// Names tns-from-torch knows and the built-in behind each (nn/arch.h).
static const struct {
    const char *name, *builtin;
    int torchvision; // torchvision's names, 3x224x224 and ImageNet normalisation by default
} archs[] = {
    {"resnet18", "torchvision-resnet18", 1}, {"resnet18-cifar", "resnet18", 0}, {"resnet20", "resnet20", 0},
    {"resnet32", "resnet32", 0}, {"resnet44", "resnet44", 0}, {"resnet56", "resnet56", 0},
    {"vgg", "vgg", 0}, {"lenet", "lenet", 0}, {"mlp", "mlp", 0}, {"vit", "vit", 0},
};
#define NARCHS ((int)(sizeof archs / sizeof *archs))

static int arch_index(const char *name) {
    for (int i = 0; i < NARCHS; i++)
        if (strcmp(archs[i].name, name) == 0) return i;
    return -1;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, const char **input) {
    const ns_opt opts[] = {
        {"arch", 'a', NS_OPT_STR, &cmd->arch, "NAME", "resnet18 (torchvision), resnet18-cifar, resnet20/32/44/56, vgg, lenet, mlp or vit", 0, 0},
        {"spec", 0, NS_OPT_STR, &cmd->spec, "FILE", "the graph as a netsmith-spec(5) file, instead of --arch", 0, 0},
        {"in", 0, NS_OPT_STR, &cmd->in, "CxHxW", "input shape (or D for vectors); resnet18: default 3x224x224", 0, 0},
        {"key", 'k', NS_OPT_STR, &cmd->key, "PATH", "the dict of tensors inside the checkpoint: state_dict, model/ema, ...", 0, 0},
        {"strip", 0, NS_OPT_STR, &cmd->strip, "PREFIX", "remove PREFIX from tensor names ('module.' of DataParallel goes by itself)", 0, 0},
        {"mean", 0, NS_OPT_STR, &cmd->mean, "M[,M..]", "per-channel mean the inputs are normalised with (torchvision: ImageNet's)", 0, 0},
        {"std", 0, NS_OPT_STR, &cmd->std, "S[,S..]", "per-channel standard deviation, with --mean", 0, 0},
        {"classes", 0, NS_OPT_STR, &cmd->classes, "FILE", "class names, one per line", 0, 0},
        {"num-classes", 0, NS_OPT_INT, &cmd->num_classes, "K", "outputs (default: from the classifier's weight)", 1, 1 << 24},
        {"width", 0, NS_OPT_DOUBLE, &cmd->width, "W", "width multiplier (default: from the first layer's weight)", 0.01, 64},
        {"depth", 'd', NS_OPT_INT, &cmd->depth, "D", "vgg: conv layers; vit: blocks (default: counted in the checkpoint)", 1, 64},
        {"patch", 0, NS_OPT_INT, &cmd->patch, "P", "vit: patch size (default: from patch_embed.weight)", 1, 4096},
        {"heads", 0, NS_OPT_INT, &cmd->heads, "H", "vit: attention heads (default 4; a state_dict does not say)", 1, 4096},
        {"hidden", 0, NS_OPT_STR, &cmd->hidden, "H[,H..]", "mlp: hidden sizes (default: from fc1, fc2, ...)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically) instead of standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "(--arch NAME | --spec FILE) [options] CHECKPOINT",
        "Read a PyTorch checkpoint (torch.save zip or safetensors) into a model stream.",
        "The pickle inside a .pt is read by a restricted machine: only tensors, storages\n"
        "and dicts; any other global (a class, os.system) is refused and named. Tensor\n"
        "names must match the architecture's one to one (resnet18: torchvision's names;\n"
        "the others: netsmith's, as net-info lists them); shapes are checked; f16, bf16\n"
        "and f64 become f32. See tns-from-torch(1).",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    *input = argv[first];
    if (!cmd->arch == !cmd->spec) ns_die_usage("give one of --arch and --spec");
    if (cmd->arch && arch_index(cmd->arch) < 0)
        ns_die_usage("unknown architecture (%s): resnet18, resnet18-cifar, resnet20, resnet32, resnet44, resnet56, vgg, lenet, mlp or vit", cmd->arch);
    if (cmd->spec && (cmd->in || cmd->num_classes || cmd->width || cmd->depth || cmd->patch || cmd->heads || cmd->hidden))
        ns_die_usage("a --spec file sets the input, the layers and the classes itself");
    if (!cmd->mean != !cmd->std) ns_die_usage("give --mean and --std together");
}

static const ns_tensor *sd_get(const ns_state_dict *sd, const char *name) {
    int i = ns_state_dict_find(sd, name);
    return i < 0 ? NULL : &sd->items[i].t;
}

// Fills what a built-in needs and the user left out from the checkpoint's
// shapes: width, depth, patch, mlp hidden sizes.
static void infer_opts(const ns_state_dict *sd, const char *builtin, const struct cmdline *cmd, ns_arch_opts *o) {
    const ns_tensor *t;
    if (!cmd->width) {
        const char *first = !strcmp(builtin, "vgg") ? "features.conv0.weight" : !strcmp(builtin, "vit") ? "patch_embed.weight" : "conv1.weight";
        int base = strstr(builtin, "resnet18") || !strcmp(builtin, "vit") ? 64 : 16;
        if ((t = sd_get(sd, first)) && t->ndim >= 1) o->width = (double)t->shape[0] / base;
    }
    if (!strcmp(builtin, "vgg") && !cmd->depth) {
        char name[64];
        int d = 0;
        for (;; d++) {
            snprintf(name, sizeof name, "features.conv%d.weight", d);
            if (!sd_get(sd, name)) break;
        }
        o->depth = d;
    }
    if (!strcmp(builtin, "vit")) {
        char name[64];
        int d = 0;
        for (; !cmd->depth; d++) {
            snprintf(name, sizeof name, "encoder.layers.%d.norm1.weight", d);
            if (!sd_get(sd, name)) {
                o->depth = d;
                break;
            }
        }
        if (!cmd->patch && (t = sd_get(sd, "patch_embed.weight")) && t->ndim == 4) o->patch = (int)t->shape[2];
    }
    if (!strcmp(builtin, "mlp") && !cmd->hidden) {
        char name[32];
        int n = 0;
        for (; n < 8; n++) {
            snprintf(name, sizeof name, "fc%d.weight", n + 1);
            if (!(t = sd_get(sd, name)) || t->ndim != 2) break;
            o->hidden[n] = (int)t->shape[0];
        }
        o->nhidden = n;
    }
}

// Builds the architecture; when the number of classes is unknown, builds it
// once with one class to learn the output layer's name, then reads K from its
// weight in the checkpoint.
static void build_arch(ns_model *m, const char *builtin, ns_arch_opts *o, const ns_state_dict *sd) {
    ns_err err;
    if (!o->classes) {
        ns_model probe;
        ns_model_init(&probe);
        ns_arch_opts one = *o;
        one.classes = 1;
        if (ns_arch_build(&probe, builtin, &one, &err) < 0) ns_die_err(&err);
        char name[NS_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s.weight", probe.nodes[probe.output].name);
        ns_model_free(&probe);
        const ns_tensor *t = sd_get(sd, name);
        if (!t || t->ndim < 1) ns_die("the checkpoint has no %s to count the classes by: use --num-classes", name);
        o->classes = (int)t->shape[0];
    }
    if (ns_arch_build(m, builtin, o, &err) < 0) ns_die_err(&err);
}

static void read_classes(const char *path, ns_model *m) {
    ns_lines l;
    ns_err err;
    if (ns_lines_open(&l, path, 0, &err) < 0) ns_die_err(&err);
    char *line;
    size_t len;
    int got;
    size_t cap = 0;
    while ((got = ns_lines_next(&l, &line, &len, &err)) == 1) {
        if (!len) ns_die("%s:%lld: an empty class name", path, (long long)l.lineno);
        if (m->nlabels == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(m->labels, cap * sizeof *grown);
            if (!grown) ns_die("out of memory");
            m->labels = grown;
        }
        if (!(m->labels[m->nlabels++] = strdup(line))) ns_die("out of memory");
    }
    if (got < 0) ns_die_err(&err);
    ns_lines_close(&l);
}

static void set_norm(ns_model *m, const char *mean, const char *std, int channels) {
    ns_err err;
    double mv[4], sv[4];
    int nm = ns_parse_doubles(mean, mv, 4, &err), ns = nm < 0 ? -1 : ns_parse_doubles(std, sv, 4, &err);
    if (nm < 0 || ns < 0) ns_die_usage("--mean/--std: %s", err.msg);
    if ((nm != 1 && nm != channels) || (ns != 1 && ns != channels))
        ns_die_usage("--mean and --std need 1 or %d values each (%d and %d given)", channels, nm, ns);
    m->nnorm = channels > 4 ? 1 : channels;
    for (int c = 0; c < m->nnorm; c++) {
        m->mean[c] = mv[nm == 1 ? 0 : c];
        m->std[c] = sv[ns == 1 ? 0 : c];
        if (!(m->std[c] > 0)) ns_die_usage("--std values must be positive (%g)", m->std[c]);
    }
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {.output = "-"};
    const char *input;
    parse_cmdline(argc, argv, &cmd, &input);
    ns_err err;
    uint8_t *buf;
    size_t len;
    if (ns_read_whole(input, (size_t)1 << 40, &buf, &len, &err) < 0) ns_die_err(&err);
    ns_state_dict sd;
    ns_state_dict_init(&sd);
    if (ns_state_dict_read(&sd, buf, len, cmd.key, &err) < 0) ns_die("%s: %s", input, err.msg);
    free(buf);
    if (ns_state_dict_strip(&sd, cmd.strip, &err) < 0) ns_die("%s: %s", input, err.msg);

    ns_model m;
    ns_model_init(&m);
    int tv = 0;
    if (cmd.spec) {
        if (ns_spec_load(&m, cmd.spec, &err) < 0) ns_die_err(&err);
        snprintf(m.arch, sizeof m.arch, "spec %s", cmd.spec);
    } else {
        int a = arch_index(cmd.arch);
        tv = archs[a].torchvision;
        ns_arch_opts o = {.width = cmd.width, .depth = cmd.depth, .classes = cmd.num_classes, .patch = cmd.patch,
                          .heads = cmd.heads};
        if (cmd.in) {
            if (ns_arch_parse_in(cmd.in, 4096, 65536, &o) < 0) ns_die_usage("--in takes CxHxW or D (%s)", cmd.in);
        } else if (tv) o.in_c = 3, o.in_h = o.in_w = 224;
        else ns_die_usage("--arch %s needs --in CxHxW (or D)", cmd.arch);
        if (cmd.hidden) {
            o.nhidden = ns_parse_sizes(cmd.hidden, o.hidden, (int)(sizeof o.hidden / sizeof *o.hidden), 1 << 24, &err);
            if (o.nhidden < 0) ns_die_usage("--hidden: %s", err.msg);
        }
        infer_opts(&sd, archs[a].builtin, &cmd, &o);
        if (!o.width) o.width = 1;
        build_arch(&m, archs[a].builtin, &o, &sd);
        int n = snprintf(m.arch, sizeof m.arch, "%s%s --width %g", archs[a].builtin, "", o.width);
        if (o.depth && n > 0 && n < (int)sizeof m.arch) snprintf(m.arch + n, sizeof m.arch - (size_t)n, " --depth %d", o.depth);
    }
    if (ns_model_load_state_dict(&m, &sd, &err) < 0) ns_die("%s: %s", input, err.msg);
    ns_state_dict_free(&sd);

    int channels = m.nodes[0].ndim == 3 ? (int)m.nodes[0].shape[0] : 1;
    if (cmd.mean) set_norm(&m, cmd.mean, cmd.std, channels);
    else if (tv) set_norm(&m, "0.485,0.456,0.406", "0.229,0.224,0.225", channels);
    int64_t classes = m.nodes[m.output].numel;
    if (cmd.classes) {
        read_classes(cmd.classes, &m);
        if ((int64_t)m.nlabels != classes)
            ns_die("%s: %zu class names for a model of %lld outputs", cmd.classes, m.nlabels, (long long)classes);
    }

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    ns_writer w;
    ns_writer_init(&w, out.f);
    ns_map meta;
    ns_map_init(&meta);
    ns_map_str(&meta, "general.producer", "tns-from-torch " NS_VERSION);
    ns_map_str(&meta, "model.source", input);
    int rc = ns_model_write(&m, &w, &meta, 0, &err);
    ns_map_free(&meta);
    ns_model_free(&m);
    if (ns_output_finish(&out, &w, rc, &err) < 0) ns_die_err(&err);
    return 0;
}
