#!/usr/bin/env python3
"""A Planetoid data set (the files ind.NAME.{x,y,tx,ty,allx,ally,graph,test.index}
that the GCN code and PyTorch Geometric distribute for Cora, Citeseer and
Pubmed) as graph-import's text directory: nodes.txt, edges.txt, features.txt.

    python3 examples/planetoid_to_text.py DIR/ind.citeseer OUT   # then:
    graph-import -o citeseer.tns OUT

Needs numpy only: the scipy sparse matrices in the pickles are read from their
pickled state (data, indices, indptr, shape), never constructed. The pickles
are Python 2 protocol-2 files and, being pickles, can run code: convert only
files you trust (this reader resolves numpy's and scipy's names alone).

The layout is GCN's load_data: the training nodes are the rows of y, the
validation nodes the 500 after them (rows of allx), the test nodes those of test.index; the
k-th row of tx/ty is node test.index[k]. Where test.index leaves gaps
(Citeseer: 15 papers cited but absent from the collection), the nodes have no
features and no label: label 0, split none. Self loops and repeated edges of
graph are dropped. Run on ind.cora.* it gives data/cora byte for byte; data/
citeseer was made with it.
"""
import pickle
import sys

import numpy as np


class SparseState:
    """A scipy csr_matrix's pickled state, without scipy."""

    def rows(self):
        if getattr(self, "format", "csr") != "csr":
            raise ValueError("expected a CSR matrix, found %r" % self.format)
        ip, ix, val = self.indptr, self.indices, self.data
        return [(ix[ip[i]:ip[i + 1]], val[ip[i]:ip[i + 1]]) for i in range(self._shape[0])]


class PlanetoidUnpickler(pickle.Unpickler):
    ALLOWED = {("collections", "defaultdict"), ("builtins", "list"), ("__builtin__", "list"),
               ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
               ("builtins", "object"), ("__builtin__", "object"),
               ("_codecs", "encode")}  # how Python 3 writes bytes at protocol 2

    def find_class(self, module, name):
        if module.startswith("scipy.sparse"):
            return SparseState
        if module.startswith("numpy") or (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("refusing %s.%s" % (module, name))


def load(prefix, part):
    with open("%s.%s" % (prefix, part), "rb") as f:
        return PlanetoidUnpickler(f, encoding="latin1").load()


def label_of(onehot_row):
    return int(np.argmax(onehot_row)) if np.asarray(onehot_row).sum() > 0 else -1


def convert(prefix, out):
    y, ty, ally, tx, allx, graph = (load(prefix, p) for p in ("y", "ty", "ally", "tx", "allx", "graph"))
    test_index = [int(line) for line in open(prefix + ".test.index")]
    test_sorted = sorted(test_index)
    n = allx._shape[0] + (test_sorted[-1] - test_sorted[0] + 1)
    classes = ally.shape[1]
    features = [None] * n
    labels = np.full(n, -1)
    for i, row in enumerate(allx.rows()):
        features[i], labels[i] = row, label_of(ally[i])
    for k, row in enumerate(tx.rows()):
        node = test_index[k]
        features[node], labels[node] = row, label_of(ty[k])
    split = ["none"] * n
    n_train = y.shape[0]
    for i in range(n_train):
        split[i] = "train"
    for i in range(n_train, min(n_train + 500, allx._shape[0])):
        split[i] = "val"
    for i in test_sorted:
        split[i] = "test"
    for i in range(n):
        if split[i] != "none" and labels[i] < 0:
            raise ValueError("node %d is in %s but has no label" % (i, split[i]))
    edges = sorted({(min(u, v), max(u, v)) for u, nb in graph.items() for v in nb
                    if u != v and u < n and v < n})
    with open(out + "/nodes.txt", "w") as f:
        f.write("%d %d\n" % (n, classes))
        f.writelines("%d %s\n" % (max(labels[i], 0), split[i]) for i in range(n))
    with open(out + "/edges.txt", "w") as f:
        f.write("%d %d\n" % (n, len(edges)))
        f.writelines("%d %d\n" % e for e in edges)
    nnz = sum(len(fe[0]) for fe in features if fe is not None)
    with open(out + "/features.txt", "w") as f:
        f.write("%d %d %d\n" % (n, allx._shape[1], nnz))
        for i, fe in enumerate(features):
            if fe is not None:
                f.writelines("%d %d %g\n" % (i, c, v) for c, v in sorted(zip(fe[0].tolist(), fe[1].tolist())))
    print("%d nodes, %d features, %d classes, %d edges; train %d, val %d, test %d; %d without features"
          % (n, allx._shape[1], classes, len(edges), split.count("train"), split.count("val"),
             split.count("test"), features.count(None)), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: planetoid_to_text.py DIR/ind.NAME OUTDIR")
    try:
        convert(sys.argv[1], sys.argv[2])
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
        sys.exit("planetoid_to_text.py: %s" % e)
