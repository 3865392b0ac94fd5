// tns-to-torch: a model stream to PyTorch: its parameters and buffers as
// safetensors (or as a torch.save zip that torch.load(weights_only=True)
// reads), named as PyTorch's state_dict names them, BatchNorm's
// num_batches_tracked included; optionally the graph as a netsmith-spec(5)
// file, from which examples/torch_from_spec.py rebuilds the module (for
// models net-prune or perm-align changed, which no torchvision class fits).
//
//   tns-to-torch [--format safetensors|pt] [--spec FILE] -o OUT MODEL
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interop/statedict.h"
#include "nn/model.h"
#include "nn/spec.h"
#include "stream/tns.h"

struct cmdline {
    const char *format, *spec, *output, *name;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, const char **input) {
    const ns_opt opts[] = {
        {"format", 'f', NS_OPT_STR, &cmd->format, "FMT", "safetensors or pt (default: from the output's extension, .pt/.pth: pt)", 0, 0},
        {"spec", 0, NS_OPT_STR, &cmd->spec, "FILE", "also write the graph as a netsmith-spec(5) file", 0, 0},
        {"name", 0, NS_OPT_STR, &cmd->name, "NAME", "pt: the folder inside the zip (default: archive)", 0, 0},
        {"output", 'o', NS_OPT_STR, &cmd->output, "FILE", "write to FILE (atomically); - is standard output", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[--format safetensors|pt] [--spec FILE] -o OUT MODEL",
        "Write a model's parameters for PyTorch: safetensors or a torch.save zip.",
        "Names are the model's tensor names, which are PyTorch's state_dict names for\n"
        "the built-ins (torchvision's for a resnet18 read by tns-from-torch). --spec\n"
        "writes the graph, which examples/torch_from_spec.py turns back into a module\n"
        "(pruned or merged models). See tns-to-torch(1).",
        1, 1,
    };
    int first;
    ns_parse_args(argc, argv, &cli, opts, &first);
    *input = argv[first];
    if (!cmd->output) ns_die_usage("give the output with -o FILE");
    if (!cmd->format) {
        size_t n = strlen(cmd->output);
        int pt = (n >= 3 && !strcmp(cmd->output + n - 3, ".pt")) || (n >= 4 && !strcmp(cmd->output + n - 4, ".pth"));
        cmd->format = pt ? "pt" : "safetensors";
    }
    if (strcmp(cmd->format, "pt") && strcmp(cmd->format, "safetensors"))
        ns_die_usage("--format is safetensors or pt (%s)", cmd->format);
    if (cmd->name && !ns_name_ok(cmd->name, strlen(cmd->name), 64))
        ns_die_usage("--name must be a simple name: letters, digits, '_', '.', '-' (%s)", cmd->name);
}

static void write_spec(const ns_model *m, const char *path) {
    ns_err err;
    ns_output out;
    if (ns_output_open(&out, path, &err) < 0) ns_die_err(&err);
    int rc = ns_spec_write(m, out.f, &err);
    if (ns_output_finish(&out, NULL, rc, &err) < 0) ns_die("%s: %s", path, err.msg);
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    const char *input;
    parse_cmdline(argc, argv, &cmd, &input);
    ns_err err;
    ns_model m;
    ns_model_init(&m);
    if (ns_model_load(&m, input, &err) < 0) ns_die_err(&err);
    ns_state_dict sd;
    ns_state_dict_init(&sd);
    if (ns_state_dict_from_model(&sd, &m, &err) < 0) ns_die("%s: %s", input, err.msg);
    if (cmd.spec) write_spec(&m, cmd.spec);

    // safetensors' __metadata__: where the weights came from and what the
    // inputs must look like.
    char arch[160], norm[160] = "";
    snprintf(arch, sizeof arch, "netsmith.arch=%s", m.arch);
    for (int c = 0, n = 0; c < m.nnorm && n < (int)sizeof norm; c++)
        n += snprintf(norm + n, sizeof norm - (size_t)n, "%s%g/%g", c ? "," : "image.mean/std=", m.mean[c], m.std[c]);
    const char *meta[3] = {"format=pt", arch, norm};

    ns_output out;
    if (ns_output_open(&out, cmd.output, &err) < 0) ns_die_err(&err);
    int rc = strcmp(cmd.format, "pt") == 0 ? ns_state_dict_write_torch(&sd, out.f, cmd.name ? cmd.name : "archive", &err)
                                           : ns_state_dict_write_safetensors(&sd, out.f, meta, m.nnorm ? 3 : 2, &err);
    ns_state_dict_free(&sd);
    ns_model_free(&m);
    if (ns_output_finish(&out, NULL, rc, &err) < 0) ns_die("%s: %s", cmd.output, err.msg);
    return 0;
}
