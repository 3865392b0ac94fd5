#!/usr/bin/env bats
# graph-gen (a contextual stochastic block model) and graph-knn (the kNN
# graph of labelled samples): sizes, measured degree and homophily, splits,
# reproducibility, agreement with a numpy brute-force kNN, training on the
# result with gnn-train, and every kind of bad option and broken input.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

need_numpy() {
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or numpy missing"
}

# Sum of a 1-D record (a mask: its size).
total() { # file name
    tns-tsv -n "$2" "$1" | awk '{s += $1} END {print s + 0}'
}

# One key of the graph's meta record, from tns-info's first line.
meta() { # file key
    tns-info "$1" | head -1 | tr ' \t' '\n\n' | sed -n "s/^$2=//p"
}

# Degree and edge homophily of a graph stream, measured with numpy: "D H".
measure() { # file
    $PY - "$ROOT/examples" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
g = {rec["name"]: a for rec, a in records(open(sys.argv[2], "rb"))}
ip, ix, y = g["graph.indptr"], g["graph.indices"], g["graph.labels"]
rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
print("%.3f %.4f" % (len(ix) / (len(ip) - 1), (y[rows] == y[ix]).mean()))
PY
}

# A stream of labelled feature records: N points of D features in records of
# at most B, labels i mod C, from a seeded numpy generator; class names
# c0..c{C-1} in a meta record. Extra arguments: "nan" puts a NaN in point 1,
# "shortlabels" gives the first record one label too few.
make_feats() { # path n d b c seed [nan|shortlabels|badlabel]
    $PY - "$@" <<'PY'
import sys, msgpack, numpy as np
path, n, d, b, c, seed = sys.argv[1], *map(int, sys.argv[2:7])
extra = sys.argv[7] if len(sys.argv) > 7 else ""
x = np.random.default_rng(seed).standard_normal((n, d)).astype("<f4")
if extra == "nan":
    x[1, 0] = np.nan
with open(path, "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "",
                           "meta": {"general.labels": ["c%d" % k for k in range(c)]}}))
    for s in range(0, n, b):
        part = x[s:s + b]
        labels = [i % c for i in range(s, s + len(part))]
        if extra == "shortlabels" and s == 0:
            labels = labels[:-1]
        if extra == "badlabel" and s == 50:
            labels[3] = -2
        f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "tensor", "name": "features",
                               "dtype": "f32", "shape": list(part.shape),
                               "meta": {"labels": labels, "ids": list(range(s, s + len(part)))},
                               "data": part.tobytes()}, use_bin_type=True))
PY
}

# --- graph-gen ---------------------------------------------------------------------
@test "graph-gen --preset cora: Cora's sizes, sparse binary features, 140/500/1000" {
    graph-gen -q --preset cora -o "$T/cora.tns"
    [ "$(meta "$T/cora.tns" graph.nodes) $(meta "$T/cora.tns" graph.classes) $(meta "$T/cora.tns" graph.feature_dim)" = "2708 7 1433" ]
    [ "$(meta "$T/cora.tns" graph.undirected)" = true ]
    edges=$(meta "$T/cora.tns" graph.edges)
    [ "$edges" -gt 10000 ] && [ "$edges" -lt 11200 ] # about 5.4k undirected edges, stored both ways
    [ "$(tns-info "$T/cora.tns" | cut -f3 | tail -n +2 | tr '\n' ' ')" = \
      "graph.indptr graph.indices graph.features.indptr graph.features.indices graph.features.values graph.labels graph.train graph.val graph.test " ]
    [ "$(tns-tsv -n graph.features.values "$T/cora.tns" | sort -u)" = 1 ]
    [ "$(total "$T/cora.tns" graph.train) $(total "$T/cora.tns" graph.val) $(total "$T/cora.tns" graph.test)" = "140 500 1000" ]
    # Cora's ~18 words per node
    words=$(tns-info "$T/cora.tns" | awk -F'\t' '$3 == "graph.features.indices" {print $5}')
    [ "$words" -gt 44000 ] && [ "$words" -lt 54000 ]
}

@test "graph-gen: measured degree and homophily are the ones asked for" {
    need_numpy
    graph-gen -q -n 6000 -c 6 -d 4 --avg-degree 8 --homophily 0.3 --seed 3 -o "$T/g.tns"
    read -r degree h <<< "$(measure "$T/g.tns")"
    awk -v d="$degree" -v h="$h" 'BEGIN {exit !(d > 7.8 && d < 8.2 && h > 0.28 && h < 0.32)}' || { echo "degree $degree homophily $h"; return 1; }
    graph-gen -q -n 6000 -c 6 -d 4 --seed 3 -o "$T/g.tns" # defaults: degree 4, homophily 0.8
    read -r degree h <<< "$(measure "$T/g.tns")"
    awk -v d="$degree" -v h="$h" 'BEGIN {exit !(d > 3.85 && d < 4.15 && h > 0.78 && h < 0.82)}' || { echo "degree $degree homophily $h"; return 1; }
    # p_in 0.01 p_out 0: 4 classes of 250, 249 x 0.01 = 2.49 neighbours, all inside
    graph-gen -q -n 1000 -c 4 -d 0 --p-in 0.01 --p-out 0 --train-per-class 5 --val 10 --test 10 -o "$T/p.tns"
    read -r degree h <<< "$(measure "$T/p.tns")"
    awk -v d="$degree" -v h="$h" 'BEGIN {exit !(d > 2.2 && d < 2.8 && h == 1)}' || { echo "degree $degree homophily $h"; return 1; }
    [ "$(tns-info "$T/p.tns" | grep -c graph.features)" -eq 0 ] # -d 0: no features
}

@test "graph-gen: no self loops, no repeated edges, symmetric (numpy)" {
    need_numpy
    graph-gen -q -n 3000 -c 3 -d 2 --avg-degree 12 -o "$T/g.tns"
    $PY - "$ROOT/examples" "$T/g.tns" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
g = {rec["name"]: a for rec, a in records(open(sys.argv[2], "rb"))}
ip, ix = g["graph.indptr"], g["graph.indices"]
n = len(ip) - 1
rows = np.repeat(np.arange(n), np.diff(ip))
assert (rows != ix).all(), "self loop"
assert all((np.diff(ix[ip[i]:ip[i + 1]]) > 0).all() for i in range(n)), "unsorted or repeated"
a = set(zip(rows.tolist(), ix.tolist()))
assert all((j, i) in a for i, j in a), "not symmetric"
PY
}

@test "graph-gen: the same seed gives the same bytes, another seed another graph" {
    graph-gen -q --preset cora --seed 5 -o "$T/a.tns"
    graph-gen -q --preset cora --seed 5 | cmp - "$T/a.tns"
    NETSMITH_THREADS=1 graph-gen -q --preset cora --seed 5 | cmp - "$T/a.tns"
    graph-gen -q --preset cora --seed 6 > "$T/b.tns"
    ! cmp -s "$T/a.tns" "$T/b.tns"
    [[ "$(meta "$T/a.tns" graph.source)" == csbm* ]]
    NETSMITH_THREADS=1 graph-gen -q -n 5000 -c 5 -d 16 | cmp - <(NETSMITH_THREADS=2 graph-gen -q -n 5000 -c 5 -d 16)
}

@test "graph-gen: feature kinds, split sizes, and a summary on stderr" {
    run --separate-stderr graph-gen -n 500 -c 5 -d 50 -f bernoulli -w 6 -s 0.5 --train-per-class 4 --val 30 --test 40 -o "$T/g.tns"
    [ "$status" -eq 0 ]
    [[ "$stderr" == "graph-gen: 500 nodes, "*"split 20/30/40"* ]]
    [ "$(total "$T/g.tns" graph.train) $(total "$T/g.tns" graph.val) $(total "$T/g.tns" graph.test)" = "20 30 40" ]
    tns-info "$T/g.tns" | grep -q graph.features.indices
    graph-gen -q -n 500 -c 5 -d 50 --train-per-class 4 --val 30 --test 40 -o "$T/d.tns"
    [ "$(tns-info "$T/d.tns" | awk -F'\t' '$3 == "graph.features" {print $4, $5}')" = "f32 500x50" ]
    run --separate-stderr graph-gen -q -n 500 -c 5 -d 50 --train-per-class 4 --val 30 --test 40 -o "$T/q.tns"
    [ "$status" -eq 0 ] && [ -z "$stderr" ]
}

@test "graph-gen: gnn-train learns the classes, GCN better than MLP" {
    graph-gen -q -n 1200 -c 4 -d 16 --avg-degree 6 -s 2 --train-per-class 20 --val 200 --test 400 -o "$T/g.tns"
    gcn=$(gnn-train -q -e 100 --hidden 32 "$T/g.tns" | awk '$1 == "test_acc" {print $2}')
    mlp=$(gnn-train -q -m mlp -e 100 --hidden 32 "$T/g.tns" | awk '$1 == "test_acc" {print $2}')
    echo "gcn $gcn mlp $mlp"
    awk -v g="$gcn" -v m="$mlp" 'BEGIN {exit !(g > 0.6 && g > m + 0.1)}' # chance is 0.25
}

@test "graph-gen: bad options are usage errors (exit 2)" {
    run --separate-stderr graph-gen --preset citeseer
    expect_failure 2 graph-gen "--preset must be cora or arxiv (citeseer)"
    run --separate-stderr graph-gen --feature-kind poisson
    expect_failure 2 graph-gen "--feature-kind must be gaussian or bernoulli (poisson)"
    run --separate-stderr graph-gen --p-in 0.1
    expect_failure 2 graph-gen "--p-in and --p-out go together"
    run --separate-stderr graph-gen --p-in 0.1 --p-out 0.01 --homophily 0.5
    expect_failure 2 graph-gen "cannot be combined"
    run --separate-stderr graph-gen --homophily 1.5
    expect_failure 2 graph-gen "1.5"
    run --separate-stderr graph-gen -n 100 -c 10 --avg-degree 30
    expect_failure 2 graph-gen "but a class has 9 other nodes"
    run --separate-stderr graph-gen -n 1000
    expect_failure 2 graph-gen "the split needs 1640 nodes"
    run --separate-stderr graph-gen -n 10 -c 20
    expect_failure 2 graph-gen "--classes 20 is more than the 10 nodes"
    run --separate-stderr graph-gen -f bernoulli -s 2
    expect_failure 2 graph-gen "0 to 1 (2)"
    run --separate-stderr graph-gen -n 3000 -c 2 -d 1 -f bernoulli
    expect_failure 1 graph-gen "1 words for 2 classes"
    run --separate-stderr graph-gen extra
    expect_failure 2 graph-gen ""
    run --separate-stderr graph-gen --nodes
    expect_failure 2 graph-gen ""
}

@test "graph-gen -o: written whole; a failed run leaves an existing file alone" {
    graph-gen -q -n 2000 -c 4 -d 8 -o "$T/g.tns"
    graph-gen -q -n 2000 -c 4 -d 8 | cmp - "$T/g.tns"
    cp "$T/g.tns" "$T/keep.tns"
    run --separate-stderr graph-gen -n 2000 -c 4 -d 8 --avg-degree 900 -o "$T/g.tns"
    [ "$status" -eq 2 ]
    cmp "$T/g.tns" "$T/keep.tns"
    run --separate-stderr graph-gen -q -n 2000 -c 4 -d 8 -o "$T/no/such/dir/g.tns"
    expect_failure 1 graph-gen "no/such/dir"
    [ "$(ls "$T")" = "$(printf 'g.tns\nkeep.tns')" ] # no temporary files left
}

# --- graph-knn ---------------------------------------------------------------------
@test "graph-knn: points on a line, k = 1: union and mutual graphs by hand" {
    # points (0, 0) (1, 0) (3, 0) (7, 0), unlabelled: nearest 0->1, 1->0, 3->1, 7->3
    printf '0 0\n1 0\n3 0\n7 0\n' | tns-tsv -r -n features > "$T/p.tns"
    graph-knn -q -k 1 -m euclidean --train-per-class 1 --val 0 --test 0 -o "$T/u.tns" "$T/p.tns"
    [ "$(tns-tsv -n graph.indptr "$T/u.tns" | tr '\n' ' ')" = "0 1 3 5 6 " ]
    [ "$(tns-tsv -n graph.indices "$T/u.tns" | tr '\n' ' ')" = "1 0 2 1 3 2 " ]
    [ "$(meta "$T/u.tns" graph.classes)" = 0 ] # no labels: no labels, no split
    graph-knn -q -k 1 -m euclidean --mutual "$T/p.tns" > "$T/m.tns"
    [ "$(tns-tsv -n graph.indices "$T/m.tns" | tr '\n' ' ')" = "1 0 " ]
    # weighted: exp(-d^2 / 5.5), the mean squared distance of the 4 pairs
    graph-knn -q -k 1 -m euclidean -w "$T/p.tns" > "$T/w.tns"
    tns-tsv -n graph.weights "$T/w.tns" | awk '{w[NR] = $1} END {
        e[1] = e[2] = exp(-1 / 5.5); e[3] = e[4] = exp(-4 / 5.5); e[5] = e[6] = exp(-16 / 5.5)
        for (i = 1; i <= 6; i++) if (w[i] - e[i] > 1e-6 || e[i] - w[i] > 1e-6) exit 1 }'
}

@test "graph-knn: the graph of a numpy brute-force search, cosine and euclidean, union and mutual" {
    need_numpy
    make_feats "$T/f.tns" 300 8 64 3 1
    for metric in cosine euclidean; do
        graph-knn -q -k 5 -m "$metric" -w --train-per-class 2 --val 10 --test 10 -o "$T/u.tns" "$T/f.tns"
        graph-knn -q -k 5 -m "$metric" -w --mutual --train-per-class 2 --val 10 --test 10 -o "$T/m.tns" "$T/f.tns"
        $PY - "$ROOT/examples" "$T/f.tns" "$T/u.tns" "$T/m.tns" "$metric" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
import numpy as np
x = np.concatenate([a for r, a in records(open(sys.argv[2], "rb")) if a is not None]).astype(np.float64)
n, k, metric = len(x), 5, sys.argv[5]
if metric == "cosine":
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    score = u @ u.T
else:
    score = -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
np.fill_diagonal(score, -np.inf)
nbr = np.argsort(-score, axis=1, kind="stable")[:, :k]
listed = np.zeros((n, n), bool)
listed[np.repeat(np.arange(n), k), nbr.ravel()] = True
if metric == "cosine":
    weight = np.maximum(score, 0)
else:
    d2 = -score[np.repeat(np.arange(n), k), nbr.ravel()]
    weight = np.exp(score / d2.mean())
for path, want in ((sys.argv[3], listed | listed.T), (sys.argv[4], listed & listed.T)):
    g = {r["name"]: a for r, a in records(open(path, "rb"))}
    ip, ix, w = g["graph.indptr"], g["graph.indices"], g["graph.weights"]
    a = np.zeros((n, n), bool)
    rows = np.repeat(np.arange(n), np.diff(ip))
    a[rows, ix] = True
    assert (a == want).all(), (path, (a != want).sum())
    assert np.abs(w - weight[rows, ix]).max() < 1e-5, np.abs(w - weight[rows, ix]).max()
    assert (g["graph.labels"] == np.arange(n) % 3).all()
    assert np.array_equal(g["graph.features"], x.astype(np.float32))
PY
    done
}

@test "graph-knn: images from img-read, class names and labels carried, split drawn" {
    make_idx "$T/img" 60 4 5
    make_idx_labels "$T/lab" $(for i in $(seq 0 59); do echo $((i % 3)); done)
    img-read -q -b 16 -l "$T/lab" "$T/img" > "$T/img.tns"
    graph-knn -q -k 4 --train-per-class 5 --val 10 --test 20 --seed 2 -o "$T/g.tns" "$T/img.tns"
    [ "$(meta "$T/g.tns" graph.nodes) $(meta "$T/g.tns" graph.classes) $(meta "$T/g.tns" graph.feature_dim)" = "60 3 20" ]
    [ "$(meta "$T/g.tns" general.labels)" = "$(meta "$T/img.tns" general.labels)" ]
    [ "$(tns-tsv -n graph.labels "$T/g.tns" | tr '\n' ' ')" = "$(for i in $(seq 0 59); do printf '%d ' $((i % 3)); done)" ]
    [ "$(total "$T/g.tns" graph.train) $(total "$T/g.tns" graph.val) $(total "$T/g.tns" graph.test)" = "15 10 20" ]
    graph-knn -q -k 4 --train-per-class 5 --val 10 --test 20 --seed 3 "$T/img.tns" > "$T/h.tns"
    ! cmp -s "$T/g.tns" "$T/h.tns" # another seed, another split
    cmp <(tns-tsv -n graph.indices "$T/g.tns") <(tns-tsv -n graph.indices "$T/h.tns")
    # u8 images: features as stored (0..255), converted to f32
    img-read -q -t u8 -b 16 -l "$T/lab" "$T/img" > "$T/u8.tns"
    graph-knn -q -k 4 --train-per-class 5 --val 10 --test 20 --seed 2 "$T/u8.tns" > "$T/u.tns"
    [ "$(tns-info "$T/u.tns" | awk -F'\t' '$3 == "graph.features" {print $4, $5}')" = "f32 60x20" ]
    [ "$(tns-tsv -n graph.features "$T/u.tns" | tr '\t' '\n' | sort -n | tail -1)" = 255 ]
}

@test "graph-knn: several files are one sample set; --limit, --name; thread count does not matter" {
    make_feats "$T/a.tns" 700 6 100 4 1
    make_feats "$T/b.tns" 500 6 100 4 2
    split="--train-per-class 5 --val 50 --test 100"
    graph-knn -q -k 6 $split -o "$T/ab.tns" "$T/a.tns" "$T/b.tns"
    [ "$(meta "$T/ab.tns" graph.nodes)" = 1200 ]
    cat "$T/a.tns" "$T/b.tns" | graph-knn -q -k 6 $split - | tns-tsv -n graph.indices | cmp - <(tns-tsv -n graph.indices "$T/ab.tns")
    NETSMITH_THREADS=1 graph-knn -q -k 6 $split "$T/a.tns" "$T/b.tns" | cmp - "$T/ab.tns"
    graph-knn -q -k 6 $split --limit 700 "$T/a.tns" "$T/b.tns" | tns-tsv -n graph.indices | cmp - <(graph-knn -q -k 6 $split "$T/a.tns" | tns-tsv -n graph.indices)
    graph-knn -q -k 6 $split --limit 650 "$T/a.tns" > "$T/l.tns"
    [ "$(meta "$T/l.tns" graph.nodes)" = 650 ]
    # --name picks records; other records are skipped
    cat "$T/a.tns" <(printf '1 2\n3 4\n' | tns-tsv -r -n other) > "$T/mixed.tns"
    graph-knn -q -k 6 $split --name features "$T/mixed.tns" | tns-tsv -n graph.indices | cmp - <(graph-knn -q -k 6 $split "$T/a.tns" | tns-tsv -n graph.indices)
    graph-knn -q --name other -k 1 "$T/mixed.tns" > "$T/o.tns"
    [ "$(meta "$T/o.tns" graph.nodes) $(meta "$T/o.tns" graph.feature_dim)" = "2 2" ]
}

@test "graph-knn: Fashion-MNIST sample: homophilous graph, GCN beats chance" {
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "Fashion-MNIST absent (Debian: dataset-fashion-mnist)"
    img-read -q --limit 1500 "$FASHION/t10k-images-idx3-ubyte.gz" > "$T/fm.tns"
    run --separate-stderr graph-knn -k 10 --val 300 --test 900 -o "$T/g.tns" "$T/fm.tns"
    [ "$status" -eq 0 ]
    h=$(printf '%s\n' "$stderr" | sed -n 's/.*homophily \([0-9.]*\).*/\1/p')
    awk -v h="$h" 'BEGIN {exit !(h > 0.6)}' || { echo "homophily $h"; return 1; }
    acc=$(gnn-train -q -e 60 --hidden 32 "$T/g.tns" | awk '$1 == "test_acc" {print $2}')
    awk -v a="$acc" 'BEGIN {exit !(a > 0.5)}' || { echo "test accuracy $acc"; return 1; } # chance 0.1
}

@test "graph-knn: bad options are usage errors (exit 2)" {
    run --separate-stderr graph-knn --metric manhattan
    expect_failure 2 graph-knn "--metric must be cosine or euclidean (manhattan)"
    run --separate-stderr graph-knn -k 0
    expect_failure 2 graph-knn "0"
    run --separate-stderr graph-knn --limit 1
    expect_failure 2 graph-knn "1"
    run --separate-stderr graph-knn - -
    expect_failure 2 graph-knn "standard input (-) given 2 times"
    run --separate-stderr graph-knn --bogus
    expect_failure 2 graph-knn "bogus"
}

@test "graph-knn: bad and truncated input streams (exit 1), nothing written" {
    make_feats "$T/f.tns" 200 5 50 3 1
    head -c 2000 "$T/f.tns" > "$T/trunc.tns"
    run --separate-stderr graph-knn "$T/trunc.tns"
    expect_failure 1 graph-knn "truncated"
    printf 'not a stream\n' > "$T/text"
    run --separate-stderr graph-knn "$T/text"
    expect_failure 1 graph-knn "$T/text"
    run --separate-stderr graph-knn "$T/missing.tns"
    expect_failure 1 graph-knn "missing.tns"
    make_feats "$T/nan.tns" 200 5 50 3 1 nan
    run --separate-stderr graph-knn "$T/nan.tns"
    expect_failure 1 graph-knn "sample 1, feature 0 is not finite"
    make_feats "$T/short.tns" 200 5 50 3 1 shortlabels
    run --separate-stderr graph-knn "$T/short.tns"
    expect_failure 1 graph-knn "49 labels for 50 samples"
    make_feats "$T/badlab.tns" 200 5 50 3 1 badlabel
    run --separate-stderr graph-knn "$T/badlab.tns"
    expect_failure 1 graph-knn "record 2 (features): sample 3 has label -2"
    make_feats "$T/d6.tns" 200 6 50 3 1
    run --separate-stderr graph-knn "$T/f.tns" "$T/d6.tns"
    expect_failure 1 graph-knn "samples of 6 features, but 5 in $T/f.tns record 1"
    make_feats "$T/c4.tns" 200 5 50 4 1
    run --separate-stderr graph-knn "$T/f.tns" "$T/c4.tns"
    expect_failure 1 graph-knn "class names (general.labels) differ"
    run --separate-stderr graph-knn -k 200 "$T/f.tns"
    expect_failure 1 graph-knn "200 samples, too few for 200 neighbours each"
    run --separate-stderr graph-knn --val 300 "$T/f.tns"
    expect_failure 1 graph-knn "do not fit"
    printf '1\n2\n3\n' | tns-tsv -r -n x > "$T/vec.tns"
    run --separate-stderr graph-knn "$T/vec.tns"
    expect_failure 1 graph-knn "expected samples (N, D...)"
    head -c "$(tns-info "$T/f.tns" | head -1 | cut -f6)" "$T/f.tns" > "$T/meta-only.tns"
    run --separate-stderr graph-knn "$T/meta-only.tns"
    expect_failure 1 graph-knn "$T/meta-only.tns: no samples"
    # an existing output survives a failed run
    graph-knn -q -k 3 --val 10 --test 10 -o "$T/out.tns" "$T/f.tns"
    cp "$T/out.tns" "$T/keep.tns"
    run --separate-stderr graph-knn -k 3 -o "$T/out.tns" "$T/trunc.tns"
    [ "$status" -eq 1 ]
    cmp "$T/out.tns" "$T/keep.tns"
    [ -z "$(ls "$T" | grep -v '\.tns$\|^text$')" ] # no temporary files left
}
