#!/usr/bin/env bats
# graph-import: Cora (data/cora), hand-made edge lists, side
# files, graph streams as input, and every kind of broken input.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

CORA="$ROOT/data/cora"


# Sum of a 1-D record (a mask: its size).
total() { # file name
    tns-tsv -n "$2" "$1" | awk '{s += $1} END {print s + 0}'
}

# One record as a line of space-separated values.
values() { # file name
    tns-tsv -n "$2" "$1" | tr '\n' ' ' | sed 's/ $//'
}

# A four-node graph in the Cora layout: labels 0 1 -1 1, a path 0-1-2-3.
tiny_dir() {
    mkdir -p "$T/tiny"
    printf '4 2\n0 train\n1 val\n-1 none\n1 test\n' > "$T/tiny/nodes.txt"
    printf '4 3\n0 1\n1 2\n2 3\n' > "$T/tiny/edges.txt"
    printf '4 3 4\n0 0 1\n1 2 0.5\n2 1 2\n3 0 1\n' > "$T/tiny/features.txt"
}

# Planetoid files ind.tiny.* as the GCN code ships them (Python pickles, the
# sparse matrices as scipy's csr_matrix state), made without scipy: 2 classes,
# allx 4 rows (train 0-1 = y, validation 2-3), test.index 6 4 (tx rows in that
# order) leaving node 5 without features or label; graph with a self loop and
# a repeated edge. ARG "evil" adds os.system to the graph pickle.
planetoid_tiny() { # dir [evil]
    $PY - "$@" <<'PY'
import collections, pickle, sys, types
import numpy as np
out, evil = sys.argv[1], len(sys.argv) > 2
for name in ("scipy", "scipy.sparse", "scipy.sparse.csr"):
    sys.modules[name] = types.ModuleType(name)
class csr_matrix: pass
csr_matrix.__module__ = "scipy.sparse.csr"
sys.modules["scipy.sparse.csr"].csr_matrix = csr_matrix
def csr(rows, d):
    m = csr_matrix()
    ind, val, ptr = [], [], [0]
    for r in rows:
        for c, v in r: ind.append(c); val.append(v)
        ptr.append(len(ind))
    m.data, m.indices, m.indptr = np.array(val, np.float32), np.array(ind, np.int32), np.array(ptr, np.int32)
    m._shape, m.format = (len(rows), d), "csr"
    return m
allx = [[(0, 1)], [(2, 1)], [(1, 1), (2, 1)], [(0, 1)]]
ally = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
parts = {"x": csr(allx[:2], 3), "y": ally[:2], "allx": csr(allx, 3), "ally": ally,
         "tx": csr([[(1, 1)], [(0, 1), (1, 1)]], 3), "ty": np.array([[0, 1], [1, 0]])}
graph = collections.defaultdict(list, {0: [1, 1, 0], 1: [0, 2], 2: [3], 3: [4], 4: [6], 6: [4]})
parts["graph"] = graph
class Evil:
    def __reduce__(self): import os; return (os.system, ("true",))
if evil: parts["graph"] = [graph, Evil()]
for k, v in parts.items():
    with open(f"{out}/ind.tiny.{k}", "wb") as f: pickle.dump(v, f, protocol=2)
open(f"{out}/ind.tiny.test.index", "w").write("6\n4\n")
PY
}

@test "examples/planetoid_to_text.py: a Planetoid data set as graph-import's text; disallowed globals refused" {
    $PY -c 'import numpy' 2> /dev/null || skip "numpy missing"
    mkdir -p "$T/p" "$T/t"
    planetoid_tiny "$T/p"
    run --separate-stderr $PY "$ROOT/examples/planetoid_to_text.py" "$T/p/ind.tiny" "$T/t"
    [ "$status" -eq 0 ]
    [ "$stderr" = "7 nodes, 3 features, 2 classes, 5 edges; train 2, val 2, test 2; 1 without features" ]
    [ "$(cat "$T/t/nodes.txt" | tr '\n' '|')" = "7 2|0 train|1 train|0 val|1 val|0 test|0 none|1 test|" ]
    [ "$(cat "$T/t/edges.txt" | tr '\n' '|')" = "7 5|0 1|1 2|2 3|3 4|4 6|" ]
    [ "$(cat "$T/t/features.txt" | tr '\n' '|')" = "7 3 8|0 0 1|1 2 1|2 1 1|2 2 1|3 0 1|4 0 1|4 1 1|6 1 1|" ]
    graph-import -o "$T/tiny.tns" "$T/t"
    [ "$(values "$T/tiny.tns" graph.labels)" = "0 1 0 1 0 0 1" ]
    # a pickle that names os.system is refused, and nothing is written
    mkdir -p "$T/e" "$T/te"
    planetoid_tiny "$T/e" evil
    run --separate-stderr $PY "$ROOT/examples/planetoid_to_text.py" "$T/e/ind.tiny" "$T/te"
    [ "$status" -ne 0 ]
    echo "$stderr" | grep -q 'refusing posix.system'
    [ ! -e "$T/te/nodes.txt" ]
}

@test "Cora: 2708 nodes, 5278 edges stored both ways, 1433 features, 7 classes, 140/500/1000" {
    graph-import -o "$T/cora.tns" "$CORA"
    run tns-info "$T/cora.tns"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == *"graph.nodes=2708 graph.edges=10556 graph.undirected=true graph.classes=7 graph.feature_dim=1433"* ]]
    [ "$(tns-info "$T/cora.tns" | cut -f3-5 | tail -n +2 | tr '\t\n' ' |')" = \
      "graph.indptr i64 2709|graph.indices i32 10556|graph.features f32 2708x1433|graph.labels i32 2708|graph.train bool 2708|graph.val bool 2708|graph.test bool 2708|" ]
    [ "$(total "$T/cora.tns" graph.train) $(total "$T/cora.tns" graph.val) $(total "$T/cora.tns" graph.test)" = "140 500 1000" ]
    [ "$(tns-tsv -n graph.features "$T/cora.tns" | awk '{for (i = 1; i <= NF; i++) s += $i} END {print s}')" = 49216 ]
}

@test "Cora: adjacency, features, labels and split equal the text files (numpy)" {
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or numpy missing"
    graph-import -o "$T/cora.tns" "$CORA"
    $PY - "$ROOT/examples" "$CORA" "$T/cora.tns" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
d, path = sys.argv[2], sys.argv[3]
g = {rec["name"]: a for rec, a in records(open(path, "rb"))}
n = 2708
nodes = [l.split() for l in open(d + "/nodes.txt").read().splitlines()[1:]]
assert (g["graph.labels"] == np.array([int(x[0]) for x in nodes])).all()
for s in ("train", "val", "test"):
    assert (g["graph." + s] == np.array([x[1] == s for x in nodes])).all(), s
e = np.loadtxt(d + "/edges.txt", dtype=np.int64, skiprows=1)
a = np.zeros((n, n), np.int8)
a[e[:, 0], e[:, 1]] = 1
a[e[:, 1], e[:, 0]] = 1
ip, ix = g["graph.indptr"], g["graph.indices"]
rows = np.repeat(np.arange(n), np.diff(ip))
b = np.zeros((n, n), np.int8)
b[rows, ix] = 1
assert (a == b).all() and len(ix) == 10556
assert all((np.diff(ix[ip[i]:ip[i + 1]]) > 0).all() for i in range(n))
f = np.loadtxt(d + "/features.txt", skiprows=1)
x = np.zeros((n, 1433), np.float32)
x[f[:, 0].astype(int), f[:, 1].astype(int)] = f[:, 2]
assert (g["graph.features"] == x).all()
PY
}

@test "Cora: reproducible; --sparse and back through a stream gives the same bytes" {
    graph-import -o "$T/a.tns" "$CORA"
    graph-import "$CORA" > "$T/b.tns"
    cmp "$T/a.tns" "$T/b.tns"
    graph-import --sparse "$CORA" > "$T/s.tns"
    [ "$(tns-info "$T/s.tns" | cut -f3,5 | grep features | tr '\t\n' ' ')" = \
      "graph.features.indptr 2709 graph.features.indices 49216 graph.features.values 49216 " ]
    graph-import "$T/s.tns" | cmp - "$T/a.tns"
    graph-import - < "$T/s.tns" | cmp - "$T/a.tns"
}

@test "Cora: --split-random over the labelled nodes, seeded" {
    graph-import -r 0.5,0.25,0.25 --seed 7 -o "$T/a.tns" "$CORA"
    [ "$(total "$T/a.tns" graph.train) $(total "$T/a.tns" graph.val) $(total "$T/a.tns" graph.test)" = "1354 677 677" ]
    graph-import -r 0.5,0.25,0.25 --seed 7 "$CORA" | cmp - "$T/a.tns"
    graph-import -r 0.5,0.25,0.25 --seed 8 "$CORA" > "$T/b.tns"
    ! cmp -s "$T/a.tns" "$T/b.tns"
    # re-splitting a stream: the same as splitting the directory
    graph-import "$CORA" | graph-import -r 0.5,0.25,0.25 --seed 7 - | cmp - "$T/a.tns"
}

@test "edge list: directed by default, blanks or commas, comments" {
    printf '# a triangle and a tail\n0 1\n1,2\n2 0   # back\n\n3, 2\n' > "$T/e.txt"
    graph-import -o "$T/g.tns" "$T/e.txt"
    [[ "$(tns-info "$T/g.tns" | head -1)" == *"graph.nodes=4 graph.edges=4 graph.undirected=false graph.classes=0" ]]
    [ "$(values "$T/g.tns" graph.indptr)" = "0 1 2 3 4" ]
    [ "$(values "$T/g.tns" graph.indices)" = "1 2 0 2" ]
    [ "$(tns-info "$T/g.tns" | wc -l)" -eq 3 ] # no weights, features, labels or split
}

@test "edge list: --undirected stores both ways, --self-loops adds only missing loops" {
    printf '0 1\n1 2\n2 0\n3 2\n1 0\n3 3\n' > "$T/e.txt"
    graph-import -u -o "$T/u.tns" "$T/e.txt"
    [ "$(values "$T/u.tns" graph.indptr)" = "0 2 4 7 9" ]
    [ "$(values "$T/u.tns" graph.indices)" = "1 2 0 2 0 1 3 2 3" ]
    graph-import -u --self-loops -o "$T/l.tns" "$T/e.txt"
    [ "$(values "$T/l.tns" graph.indptr)" = "0 3 6 10 12" ]
    [ "$(values "$T/l.tns" graph.indices)" = "0 1 2 0 1 2 0 1 2 3 2 3" ]
    # --nodes adds isolated nodes
    [ "$(graph-import -n 6 "$T/e.txt" | values - graph.indptr)" = "0 1 3 4 6 6 6" ]
}

@test "edge list: weights in a third column" {
    printf '0 1 0.5\n1 2 2\n2 2 -1.25\n' > "$T/w.txt"
    graph-import -u -o "$T/w.tns" "$T/w.txt"
    [ "$(values "$T/w.tns" graph.indices)" = "1 0 2 1 2" ]
    [ "$(values "$T/w.tns" graph.weights)" = "0.5 0.5 2 2 -1.25" ]
    # weights agree both ways: accepted
    printf '0 1 3\n1 0 3\n' > "$T/b.txt"
    [ "$(graph-import -u "$T/b.txt" | values - graph.weights)" = "3 3" ]
}

@test "side files: features, labels, class names, split" {
    printf '0 1\n1 2\n2 3\n' > "$T/e.txt"
    printf '1 2 3\n4,5,6\n# comment\n7 8 9\n1e-3 -2 0\n' > "$T/f.txt"
    printf '0\n2\n-1\n1\n' > "$T/l.txt"
    printf 'cat\ndog\nbig bird\n' > "$T/c.txt"
    printf 'train\nval\nnone\ntest\n' > "$T/s.txt"
    graph-import -f "$T/f.txt" -l "$T/l.txt" -c "$T/c.txt" -s "$T/s.txt" -o "$T/g.tns" "$T/e.txt"
    [[ "$(tns-info "$T/g.tns" | head -1)" == *"general.labels=[3]"*"graph.classes=3 graph.feature_dim=3" ]]
    [ "$(tns-tsv -n graph.features "$T/g.tns" | sed -n 4p)" = "$(printf '0.00100000005\t-2\t0')" ]
    [ "$(values "$T/g.tns" graph.labels)" = "0 2 -1 1" ]
    [ "$(values "$T/g.tns" graph.train) $(values "$T/g.tns" graph.val) $(values "$T/g.tns" graph.test)" = "1 0 0 0 0 1 0 0 0 0 0 1" ]
    tns-info -j "$T/g.tns" | head -1 | grep -q '"general.labels":\["cat","dog","big bird"\]'
    # sparse storage holds the same values
    graph-import --sparse -f "$T/f.txt" "$T/e.txt" | graph-import - | tns-tsv -n graph.features > "$T/a"
    graph-import -f "$T/f.txt" "$T/e.txt" | tns-tsv -n graph.features | cmp - "$T/a"
}

@test "a Cora-layout directory: undirected, labels -1 kept out of the split" {
    tiny_dir
    graph-import -o "$T/g.tns" "$T/tiny"
    [[ "$(tns-info "$T/g.tns" | head -1)" == *"graph.nodes=4 graph.edges=6 graph.undirected=true graph.classes=2 graph.feature_dim=3" ]]
    [ "$(values "$T/g.tns" graph.indices)" = "1 0 2 1 3 2" ]
    [ "$(values "$T/g.tns" graph.labels)" = "0 1 -1 1" ]
    [ "$(tns-tsv -n graph.features "$T/g.tns" | sed -n 2p)" = "$(printf '0\t0\t0.5')" ]
    [ "$(graph-import -d "$T/tiny" | values - graph.indices)" = "1 2 3" ]
}

# --- errors: status 1, "graph-import: ...", nothing on stdout, no file -------------
fails() { # expected-text graph-import-args...
    local text=$1
    shift
    run --separate-stderr graph-import -o "$T/out.tns" "$@"
    expect_failure 1 graph-import "$text" || return 1
    [ ! -e "$T/out.tns" ] || { echo "output file left behind"; return 1; }
    # no temporary file beside it either
    [ -z "$(ls -A "$T" | grep -v -e '\.txt$' -e '^tiny$' -e '\.tns$')" ] || { ls -A "$T"; return 1; }
}

@test "errors: bad id, out of range, duplicate, non-number, empty field" {
    printf '0 1\nx 2\n' > "$T/a.txt"
    fails "a.txt:2: not a node id (x)" "$T/a.txt"
    printf '0 1\n1.5 2\n' > "$T/b.txt"
    fails "b.txt:2: not a node id (1.5)" "$T/b.txt"
    printf '0 1\n2 1\n0 1\n' > "$T/c.txt"
    fails "c.txt:3: duplicate edge 0 1 (first on line 1)" "$T/c.txt"
    printf '0 1\n1 -2\n' > "$T/d.txt"
    fails "d.txt:2: node id -2 out of range" "$T/d.txt"
    printf '0 1\n1 3\n' > "$T/e.txt"
    fails "e.txt:2: node 3 out of range (0..2)" -n 3 "$T/e.txt"
    printf '0,,1\n' > "$T/f.txt"
    fails "f.txt:1: empty field" "$T/f.txt"
    printf '0 1\n1 2 3\n' > "$T/g.txt"
    fails "g.txt:2: 3 fields, expected 2" "$T/g.txt"
    printf '0 1 0.5\n1 0 0.25\n' > "$T/h.txt"
    fails "entries (0, 1) = 0.5 and (1, 0) = 0.25 differ" -u "$T/h.txt"
    printf '0 1 nan\n' > "$T/i.txt"
    fails "i.txt:1: a weight is not a finite f32 number (nan)" "$T/i.txt"
    printf '# nothing\n' > "$T/j.txt"
    fails "j.txt: no edges, and no --nodes" "$T/j.txt"
}

@test "errors: missing files, mismatched rows, labels out of range, bad split" {
    printf '0 1\n1 2\n' > "$T/e.txt"
    fails "nope.txt: cannot open (No such file or directory)" "$T/nope.txt"
    fails "nofeat.txt: cannot open" -f "$T/nofeat.txt" "$T/e.txt"
    printf '1 2\n3 4\n' > "$T/f2.txt"
    printf '0\n1\n0\n' > "$T/l3.txt"
    fails "l3.txt: 3 labels, but" -f "$T/f2.txt" -l "$T/l3.txt" "$T/e.txt"
    fails "e.txt:2: node 2 out of range (0..1)" -f "$T/f2.txt" "$T/e.txt"
    printf '1 2\n3\n' > "$T/rag.txt"
    fails "rag.txt:2: 1 values, expected 2 as on line 1" -f "$T/rag.txt" "$T/e.txt"
    printf '1 2\nabc 4\n' > "$T/nan.txt"
    fails "nan.txt:2: not a number (abc)" -f "$T/nan.txt" "$T/e.txt"
    printf 'a\nb\n' > "$T/c.txt"
    printf '0\n2\n1\n' > "$T/l.txt"
    fails "l.txt:2: label 2 out of range (0..1, or -1 for unlabelled)" -l "$T/l.txt" -c "$T/c.txt" "$T/e.txt"
    printf '0\n-2\n1\n' > "$T/lm.txt"
    fails "lm.txt:2: label -2 out of range" -l "$T/lm.txt" "$T/e.txt"
    printf '0\n-1\n1\n' > "$T/lu.txt"
    printf 'train\nval\ntest\n' > "$T/s.txt"
    fails "s.txt:2: node 1 is in the val split but unlabelled" -l "$T/lu.txt" -s "$T/s.txt" "$T/e.txt"
    printf 'train\nvalid\ntest\n' > "$T/sv.txt"
    fails "sv.txt:2: unknown split (valid): train, val, test or none" -l "$T/lu.txt" -s "$T/sv.txt" "$T/e.txt"
    fails "--split-random needs labels" -r 0.5,0.5,0 "$T/e.txt"
}

@test "errors: a Cora-layout directory with wrong counts or ids" {
    tiny_dir
    printf '4 4\n0 1\n1 2\n2 3\n' > "$T/tiny/edges.txt"
    fails "edges.txt: header says 4 edges, found 3" "$T/tiny"
    printf '4 3\n0 1\n1 2\n2 4\n' > "$T/tiny/edges.txt"
    fails "tiny/edges.txt:4: node 4 out of range (0..3)" "$T/tiny"
    printf '5 3\n0 1\n1 2\n2 3\n' > "$T/tiny/edges.txt"
    fails "tiny/edges.txt:1: 5 nodes, but" "$T/tiny"
    tiny_dir
    printf '4 2\n0 train\n2 val\n-1 none\n1 test\n' > "$T/tiny/nodes.txt"
    fails "tiny/nodes.txt:3: label 2 out of range (0..1, or -1 for unlabelled)" "$T/tiny"
    printf '4 2\n0 train\n1 val\n-1 test\n1 test\n' > "$T/tiny/nodes.txt"
    fails "tiny/nodes.txt:4: node 2 is in the test split but unlabelled" "$T/tiny"
    printf '4 2\n0 train\n1 val\n' > "$T/tiny/nodes.txt"
    fails "tiny/nodes.txt: header says 4 nodes, found 2" "$T/tiny"
    tiny_dir
    printf '4 3 2\n0 0 1\n0 0 2\n' > "$T/tiny/features.txt"
    fails "features.txt:3: duplicate entry 0 0 (first on line 2)" "$T/tiny"
    printf '4 3 1\n0 3 1\n' > "$T/tiny/features.txt"
    fails "features.txt:2: column 3 out of range (0..2)" "$T/tiny"
    rm "$T/tiny/nodes.txt"
    fails "tiny/nodes.txt: cannot open (No such file or directory)" "$T/tiny"
}

@test "errors: broken graph streams, truncated streams" {
    tiny_dir
    graph-import -o "$T/g.tns" "$T/tiny"
    head -c 300 "$T/g.tns" > "$T/cut.tns"
    run --separate-stderr tns-info "$T/cut.tns"
    [ "$status" -eq 1 ]
    [[ "$stderr" == "tns-info: "*"truncated record at end of stream"* ]]
    fails "cut.tns: record 1: truncated record at end of stream" "$T/cut.tns"
    fails "stdin: record 1: truncated record at end of stream" - < "$T/cut.tns"
    # a graph's tensors without its meta record
    tns-cat --no-meta "$T/g.tns" > "$T/nometa.tns"
    fails "nometa.tns: graph.indptr: comes before the graph's meta record (with graph.nodes)" "$T/nometa.tns"
    printf '1 2\n' | tns-tsv -r -n x > "$T/x.tns"
    fails "x.tns: no graph in the stream (no meta record with graph.nodes)" "$T/x.tns"
    # one record dropped: labels gone, so the split has no labels
    tns-cat -v -n graph.labels "$T/g.tns" > "$T/nolabels.tns"
    fails "graph.train: a split without labels (graph.labels)" "$T/nolabels.tns"
    # two graphs in one stream
    cat "$T/g.tns" "$T/g.tns" > "$T/two.tns"
    fails "record 8: a second graph (graph.nodes again)" "$T/two.tns"
    # a tensor of the wrong shape in place of the labels
    printf '0\n1\n' | tns-tsv -r -t i32 -n graph.labels > "$T/lab2.tns"
    { tns-cat -v -n graph.labels "$T/g.tns"; cat "$T/lab2.tns"; } > "$T/badlab.tns"
    fails "graph.labels: shape 2 (expected 4: graph.nodes)" "$T/badlab.tns"
    printf '0\n1\n5\n1\n' | tns-tsv -r -t i32 -n graph.labels > "$T/lab5.tns"
    { tns-cat -v -n graph.labels "$T/g.tns"; cat "$T/lab5.tns"; } > "$T/badlab.tns"
    fails "graph.labels[2]: label 5 out of range (0..1, or -1 for unlabelled)" "$T/badlab.tns"
    # adjacency replaced: tiny is the path 0-1-2-3, indptr 0 1 3 5 6, indices 1 0 2 1 3 2
    adjacency() { # indptr indices -> the stream with them in place of tiny's
        tns-cat -v -n 'graph.ind*' "$T/g.tns"
        printf '%s\n' $1 | tns-tsv -r -t i64 -n graph.indptr
        printf '%s\n' $2 | tns-tsv -r -t i32 -n graph.indices
    }
    adjacency "0 1 3 5 6" "1 0 2 3 1 2" > "$T/bad.tns"
    fails "graph.indices[4]: column 1 after 3 in row 2 (columns must increase" "$T/bad.tns"
    adjacency "0 1 3 5 6" "1 0 2 1 3 4" > "$T/bad.tns"
    fails "graph.indices[5]: node 4 out of range (0..3)" "$T/bad.tns"
    adjacency "0 1 3 2 6" "1 0 2 1 3 2" > "$T/bad.tns"
    fails "graph.indptr[3]: 2 after 3 (must not decrease)" "$T/bad.tns"
    adjacency "0 1 3 5 5" "1 0 2 1 3 2" > "$T/bad.tns"
    fails "graph.indptr[4]: ends at 5 but graph.indices has 6 entries" "$T/bad.tns"
    adjacency "0 1 3 5" "1 0 2 1 3 2" > "$T/bad.tns"
    fails "graph.indptr: shape 4 (expected 5: graph.nodes + 1)" "$T/bad.tns"
    adjacency "0 1 3 5 5" "1 0 2 1 3" > "$T/bad.tns"
    fails "graph.edges is 6 but graph.indices has 5 entries" "$T/bad.tns"
    # marked undirected, but 0 -> 2 has no 2 -> 0
    adjacency "0 2 3 5 6" "1 2 0 1 3 2" > "$T/bad.tns"
    fails "graph.undirected is true but edges 0 -> 2 and 2 -> 0 differ" "$T/bad.tns"
    # a mask that is not 0/1
    { tns-cat -v -n graph.val "$T/g.tns"; printf '0\n1\n0\n2\n' | tns-tsv -r -t u8 -n graph.val; } > "$T/bad.tns"
    fails "graph.val[3]: 2 (a mask holds 0 or 1)" "$T/bad.tns"
    # --undirected makes a directed import symmetric again
    graph-import -d "$T/tiny" | graph-import -u - | cmp - "$T/g.tns"
}

@test "hostile input: non-decimal numbers, NUL bytes, endless lines, /dev/zero, noise on stdin" {
    printf '0 1 0x10\n' > "$T/hex.txt"
    fails "hex.txt:1: a weight is not a decimal number (0x10)" "$T/hex.txt"
    printf '0 1 1.5\n1 0 2e-1\n' > "$T/dec.txt"
    graph-import -o "$T/dec.tns" "$T/dec.txt"
    printf '1 2\n0x1p3 4\n' > "$T/f.txt"
    printf '0 1\n' > "$T/e.txt"
    fails "f.txt:2: a number is not a decimal number (0x1p3)" -f "$T/f.txt" "$T/e.txt"
    printf 'a\nb\0c\n' > "$T/names.txt"
    printf '0\n1\n' > "$T/l.txt"
    fails "names.txt:2: a NUL byte (not a text file?)" -l "$T/l.txt" -c "$T/names.txt" "$T/e.txt"
    printf 'train\nval\0x\n' > "$T/s.txt"
    fails "s.txt:2: a NUL byte" -l "$T/l.txt" -s "$T/s.txt" "$T/e.txt"
    # a line of 17 MiB: refused at the 16 MiB limit, not read into memory whole
    { printf '0 1\n'; head -c $((17 << 20)) /dev/zero | tr '\0' ' '; printf '\n'; } > "$T/long.txt"
    fails "long.txt:2: a line longer than 16777216 bytes" "$T/long.txt"
    fails "/dev/zero:1: a NUL byte (not a text file?)" /dev/zero
    run --separate-stderr timeout 20 graph-import - < /dev/zero
    expect_failure 1 graph-import "stdin:1: a NUL byte"
    # noise that starts like a stream, or like text, fails at once, not at the end of memory
    run --separate-stderr timeout 20 sh -c "{ printf '\337'; cat /dev/urandom; } | graph-import -"
    expect_failure 1 graph-import 'stdin: record 0: '   # not a TNS record, or corrupt: either at once
    run --separate-stderr timeout 20 sh -c "{ printf '0 1\n'; cat /dev/urandom; } | graph-import -"
    [ "$status" -eq 1 ] && [[ "$stderr" == "graph-import: stdin:"* ]]
    run --separate-stderr graph-import -f "$T" "$T/e.txt"
    expect_failure 1 graph-import "is a directory"
    # streams and edge lists still read from standard input
    graph-import - < "$T/e.txt" > "$T/a.tns"
    graph-import - < "$T/a.tns" | cmp - "$T/a.tns"
}

@test "usage errors: status 2" {
    printf '0 1\n' > "$T/e.txt"
    run --separate-stderr graph-import --bogus "$T/e.txt"
    [ "$status" -eq 2 ] && [ -z "$output" ] && [[ "$stderr" == "graph-import: unknown option (--bogus)"* ]]
    run --separate-stderr graph-import
    [ "$status" -eq 2 ] && [[ "$stderr" == "graph-import: missing argument"* ]]
    run --separate-stderr graph-import -u -d "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"--undirected and --directed cannot be combined"* ]]
    run --separate-stderr graph-import -r 0.5,0.6,0 "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"add up to more than 1 (0.5,0.6,0)"* ]]
    run --separate-stderr graph-import -r 0.5,0.5 "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"three fractions TRAIN,VAL,TEST (0.5,0.5)"* ]]
    run --separate-stderr graph-import --seed 3 "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"--seed applies only to --split-random (3)"* ]]
    run --separate-stderr graph-import -n 0 "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"--nodes must be between 1 and"* ]]
    run --separate-stderr graph-import -s "$T/e.txt" -r 1,0,0 "$T/e.txt"
    [ "$status" -eq 2 ] && [[ "$stderr" == *"--split and --split-random cannot be combined"* ]]
    run graph-import --help
    [ "$status" -eq 0 ] && [[ "$output" == "Usage: graph-import [options] SOURCE"* ]]
}

@test "output: -o replaces a file only on success; a write error fails" {
    printf '0 1\n' > "$T/e.txt"
    printf 'x y\n' > "$T/bad.txt"
    echo keep > "$T/out.tns"
    run --separate-stderr graph-import -o "$T/out.tns" "$T/bad.txt"
    [ "$status" -eq 1 ] && [ "$(cat "$T/out.tns")" = keep ]
    graph-import -o "$T/out.tns" "$T/e.txt"
    [ "$(tns-info "$T/out.tns" | wc -l)" -eq 3 ]
    if [ -w /dev/full ]; then
        run --separate-stderr graph-import -o /dev/full "$T/e.txt"
        [ "$status" -eq 1 ] && [[ "$stderr" == "graph-import: "* ]]
    fi
}
