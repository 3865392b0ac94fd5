// spec.h: a model's layer graph as text, one INI-like section per node, in the
// spirit of darknet's .cfg files but strict: every mistake is an error with
// the file, the line and the offending text, never a default. The format is
// documented in netsmith-spec(5); examples are in examples/specs/.
//
//   # a comment; '#' starts one anywhere on a line
//   [input]
//   shape = 1x28x28          # C x H x W, or D for vectors
//
//   [conv2d conv1]           # the op, then an optional node name
//   out = 32                 # the op's attributes (ns_ops in graph.c)
//   pad = 1
//
//   [relu]                   # unnamed: "relu1", the first relu
//   [add]
//   from = -2, conv1         # inputs: names or -N (N nodes back); default -1
//
// A spec describes the graph only. Parameters are created zeroed (call
// ns_model_init_params), and class names, normalisation and m->arch are left
// to the caller. The last section is the model's output.
#ifndef NS_SPEC_H
#define NS_SPEC_H

#include <stddef.h>
#include <stdio.h>

#include "base/err.h"
#include "nn/model.h"

#define NS_SPEC_MAX_BYTES (1 << 20) // ns_spec_load refuses larger files
#define NS_SPEC_MAX_NODES 8192      // sections in one spec

// Parses len bytes of text (need not be NUL-terminated) into m, which must
// have no nodes and no tensors (its labels, normalisation and arch are kept),
// then resolves it (ns_model_resolve with create=1), so on success every node
// has its shape and zeroed parameters exist, and the last section is
// m->output. label names the text in messages ("net.cfg:12: ..."); NULL means
// "<string>". On failure returns -1, leaves m as it was and puts
// "label:line: what (the bad text)" in err.
int ns_spec_parse(ns_model *m, const char *text, size_t len, const char *label, ns_err *err);

// Reads a spec file ("-" is standard input) of at most NS_SPEC_MAX_BYTES and
// parses it with the path as the label.
int ns_spec_load(ns_model *m, const char *path, ns_err *err);

// Writes m's graph as a spec that ns_spec_parse turns back into the same
// nodes (names, ops, inputs, attribute values, hence shapes and parameter
// shapes). Only attributes that differ from the op's defaults are written,
// names only where they differ from the default name, and from= only where
// the input is not the previous node. Fails, before writing anything, on a
// graph the format cannot express (a name that is not a spec name, the output
// not the last node, an attribute value the parser would refuse), and after
// writing when f reports an error.
int ns_spec_write(const ns_model *m, FILE *f, ns_err *err);

#endif
