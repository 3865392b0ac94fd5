#!/usr/bin/env python3
# graph-coreset.py: the random coreset that SimGC's condensed graphs are
# compared with, shared by bench/simgc.sh and pipelines/condense.mk.
#
#   python3 pipelines/graph-coreset.py GRAPH RATIO SEED OUT
#
# From a graph stream (graph-import, graph-knn; dense or CSR features) it
# keeps ceil(RATIO * n_c) training nodes of each class c (n_c: the class's
# training nodes), drawn at random with SEED (Python's random.Random), and
# the edges among them; writes them to OUT as a graph stream whose every node
# is in the training split (what gnn-train --eval-graph trains on). At the
# same RATIO it has as many nodes per class as sgc-condense -r RATIO makes.
# Needs python3-msgpack and python3-numpy (examples/tns_read.py reads TNS).
import math, os, random, sys
import msgpack, numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from tns_read import records
if len(sys.argv) != 5:
    sys.exit("usage: graph-coreset.py GRAPH RATIO SEED OUT")
src, r, seed, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
meta, t = {}, {}
for rec, a in records(open(src, "rb")):
    if rec["kind"] == "meta": meta.update(rec.get("meta", {}))
    elif a is not None: t[rec["name"]] = a
if "graph.features" not in t:
    n, d = len(t["graph.features.indptr"]) - 1, meta["graph.feature_dim"]
    x = np.zeros((n, d), np.float32)
    ip, ix, v = t["graph.features.indptr"], t["graph.features.indices"], t["graph.features.values"]
    for i in range(n): x[i, ix[ip[i]:ip[i + 1]]] = v[ip[i]:ip[i + 1]]
    t["graph.features"] = x
y, train = t["graph.labels"], t["graph.train"].astype(bool)
rng = random.Random(seed)
keep = []
for c in sorted(set(y[train].tolist())):
    idx = [i for i in np.nonzero(train & (y == c))[0].tolist()]
    keep += sorted(rng.sample(idx, math.ceil(r * len(idx) - 1e-9)))
keep = np.array(sorted(keep))
pos = {int(k): i for i, k in enumerate(keep)}
ip, ix = t["graph.indptr"], t["graph.indices"]
rows, cols = [], []
for i, k in enumerate(keep):
    for j in ix[ip[k]:ip[k + 1]]:
        if int(j) in pos: rows.append(i); cols.append(pos[int(j)])
order = sorted(zip(rows, cols))
indptr = np.zeros(len(keep) + 1, np.int64)
for i, _ in order: indptr[i + 1] += 1
indptr = np.cumsum(indptr)
def tensor(name, a, dt):
    return {"fmt": "tns", "ver": 1, "kind": "tensor", "name": name, "dtype": dt, "shape": list(a.shape),
            "data": np.ascontiguousarray(a).tobytes()}
m = {k: meta[k] for k in ("general.labels",) if k in meta}
m.update({"graph.nodes": len(keep), "graph.edges": len(order), "graph.undirected": True,
          "graph.classes": meta["graph.classes"], "graph.feature_dim": int(t["graph.features"].shape[1]),
          "graph.source": "random coreset"})
with open(out, "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "graph", "meta": m}))
    f.write(msgpack.packb(tensor("graph.indptr", indptr, "i64")))
    f.write(msgpack.packb(tensor("graph.indices", np.array([c for _, c in order], np.int32), "i32")))
    f.write(msgpack.packb(tensor("graph.features", t["graph.features"][keep].astype(np.float32), "f32")))
    f.write(msgpack.packb(tensor("graph.labels", y[keep].astype(np.int32), "i32")))
    f.write(msgpack.packb(tensor("graph.train", np.ones(len(keep), np.uint8), "bool")))
