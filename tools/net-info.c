// net-info: a model's layers: output shape, parameters and multiply-adds per
// layer and in total, plus the input it expects and the BLIS kernels in use.
//
//   net-info [options] [MODEL]      (no MODEL, or "-": standard input)
#include <stdio.h>
#include <string.h>

#include "base/blas.h"
#include "nn/chgroups.h"
#include "cli/cli.h"
#include "nn/model.h"
#include "nn/spec.h"

struct cmdline {
    int totals, spec, groups, verbose;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cmd, int *first) {
    const ns_opt opts[] = {
        {"totals", 't', NS_OPT_FLAG, &cmd->totals, NULL, "print only the totals", 0, 0},
        {"spec", 0, NS_OPT_FLAG, &cmd->spec, NULL, "print the graph as a netsmith-spec(5) text that net-init --spec reads", 0, 0},
        {"groups", 'g', NS_OPT_FLAG, &cmd->groups, NULL, "print the coupled channel groups (what pruning and merging move together)", 0, 0},
        {"verbose", 'v', NS_OPT_FLAG, &cmd->verbose, NULL, "with --groups: every parameter slice of every group", 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0},
    };
    const ns_cli cli = {
        "[options] [MODEL]",
        "Describe a model: each layer's op, output shape, parameters and multiply-adds\n"
        "per sample, then totals.",
        "Columns (tab-separated): node, op, inputs, output shape, parameters, MACs.",
        0, 1,
    };
    ns_parse_args(argc, argv, &cli, opts, first);
    if (cmd->spec + cmd->groups + cmd->totals > 1) ns_die_usage("--spec, --groups and --totals are alternatives");
    if (cmd->verbose && !cmd->groups) ns_die_usage("--verbose goes with --groups");
}

int main(int argc, char **argv) {
    ns_proginit(argc, argv);
    struct cmdline cmd = {0};
    int first;
    parse_cmdline(argc, argv, &cmd, &first);
    const char *path = first < argc ? argv[first] : "-";
    ns_err err;
    ns_model m;
    if (ns_model_load(&m, path, &err) < 0) ns_die_err(&err);
    if (cmd.groups) {
        ns_chgroups g;
        if (ns_chgroups_build(&g, &m, &err) < 0) ns_die_err(&err);
        ns_chgroups_print(&g, &m, stdout, cmd.verbose);
        ns_chgroups_free(&g);
        ns_model_free(&m);
        ns_close_stdout();
        return 0;
    }
    if (cmd.spec) {
        if (ns_spec_write(&m, stdout, &err) < 0) ns_die_err(&err);
        ns_model_free(&m);
        ns_close_stdout();
        return 0;
    }

    if (!cmd.totals) {
        printf("node\top\tinputs\toutput\tparams\tmacs\n");
        for (int i = 0; i < m.nnodes; i++) {
            const ns_node *n = &m.nodes[i];
            int64_t params = 0;
            for (int p = 0; p < NS_MAX_PARAMS; p++)
                if (n->params[p] >= 0 && m.tensors[n->params[p]].trainable) params += m.tensors[n->params[p]].t.numel;
            char shape[64], inputs[256] = "-";
            ns_shape_format(shape, sizeof shape, n->ndim, n->shape);
            size_t used = 0;
            for (int k = 0; k < n->ninputs && used < sizeof inputs; k++)
                used += (size_t)snprintf(inputs + used, sizeof inputs - used, k ? ",%s" : "%s",
                                         m.nodes[n->inputs[k]].name);
            printf("%s\t%s\t%s\t%s\t%lld\t%lld\n", n->name, ns_ops[n->op].name, inputs, shape,
                   (long long)params, (long long)n->macs);
        }
        printf("\n");
    }
    char in_shape[64], out_shape[64];
    ns_shape_format(in_shape, sizeof in_shape, m.nodes[0].ndim, m.nodes[0].shape);
    ns_shape_format(out_shape, sizeof out_shape, m.nodes[m.output].ndim, m.nodes[m.output].shape);
    printf("arch\t%s\ninput\t%s\noutput\t%s (%s)\nclasses\t%zu\nlayers\t%d\n", m.arch[0] ? m.arch : "-",
           in_shape, out_shape, m.nodes[m.output].name, m.nlabels, m.nnodes - 1);
    printf("params\t%lld\nbuffers\t%lld\nmacs\t%lld\n", (long long)ns_model_param_count(&m, 1),
           (long long)(ns_model_param_count(&m, 0) - ns_model_param_count(&m, 1)),
           (long long)ns_model_macs(&m));
    printf("blis\t%s\n", ns_blas_kernels());
    ns_model_free(&m);
    ns_close_stdout();
    return 0;
}
