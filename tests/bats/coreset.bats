#!/usr/bin/env bats
# graph-coreset: the coreset baselines on a two-community graph made here
# (make_sbm in common.bash: 10 training nodes per class): the nodes kept per
# class, their rows and labels, all in the training split, determinism, the
# three methods, sparse features, herding and k-center against numpy on
# P^K X, and every error with its status and message, leaving no output
# behind. The edges against the original graph are checked in pipelines.bats
# (numpy), known answers of the selections in test_coreset.c.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# "count label" lines of a graph stream's labels
label_counts() { tns-tsv -n graph.labels "$1" | sort | uniq -c | awk '{print $1, $2}' | tr '\n' ' '; }

@test "random: ceil(r n_c) training nodes per class, all for training, seeded, from a file or stdin" {
    make_sbm "$T/s"
    graph-coreset -r 0.25 -o "$T/a.tns" "$T/s/g.tns" 2> "$T/err"
    grep -q '^graph-coreset: random: 6 of 20 training nodes (per class 3/3), [0-9]* stored edges$' "$T/err"
    # ceil(0.25 x 10) = 3 of each class
    [ "$(label_counts "$T/a.tns")" = "3 0 3 1 " ]
    [ "$(tns-tsv -n graph.train "$T/a.tns" | sort -u)" = 1 ]
    tns-info "$T/a.tns" | head -1 | grep -q 'graph.source=graph-coreset -m random -r 0.25 --seed'
    ! tns-info "$T/a.tns" | grep -q 'graph.val\|graph.test'
    # the same seed, the same coreset; standard input the same as the file
    graph-coreset -q -r 0.25 "$T/s/g.tns" > "$T/b.tns"
    cmp "$T/a.tns" "$T/b.tns"
    graph-coreset -q -r 0.25 - < "$T/s/g.tns" | cmp - "$T/a.tns"
    # other seeds: other nodes (over five seeds, at least one differs)
    for s in 2 3 4 5 6; do graph-coreset -q -r 0.25 --seed $s "$T/s/g.tns" | cmp -s - "$T/a.tns" || return 0; done
    return 1
}

@test "r 1 keeps every training node with its features, in node order; class names kept" {
    make_sbm "$T/s"
    for m in random herding kcenter; do
        graph-coreset -q -m $m -r 1 -o "$T/$m.tns" "$T/s/g.tns"
        # training nodes are 0..19 here: their feature rows, in order
        [ "$(tns-tsv -n graph.features "$T/$m.tns" | tr '\t' ' ')" = "$(head -20 "$T/s/features.txt")" ]
        [ "$(tns-tsv -n graph.labels "$T/$m.tns" | tr '\n' ' ')" = "$(head -20 "$T/s/labels.txt" | tr '\n' ' ')" ]
    done
    # class names travel along
    printf 'even\nodd\n' > "$T/names"
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/s/labels.txt" -c "$T/names" -s "$T/s/split.txt" \
        -o "$T/named.tns" "$T/s/edges.txt"
    graph-coreset -q -r 0.5 "$T/named.tns" | tns-info - | head -1 | grep -q 'general.labels=\[2\]'
    ! tns-info "$T/random.tns" | head -1 | grep -q 'general.labels'
}

@test "herding and k-center: deterministic (the seed does not matter), hops change the measure" {
    make_sbm "$T/s"
    for m in herding kcenter; do
        graph-coreset -m $m -r 0.3 -o "$T/$m.tns" "$T/s/g.tns" 2> "$T/err"
        grep -q "^graph-coreset: $m: 6 of 20 training nodes (per class 3/3)" "$T/err"
        [ "$(label_counts "$T/$m.tns")" = "3 0 3 1 " ]
        graph-coreset -q -m $m -r 0.3 --seed 9 "$T/s/g.tns" | cmp - "$T/$m.tns"
        tns-info "$T/$m.tns" | head -1 | grep -q "graph.source=graph-coreset -m $m -r 0.3 -K 0"
    done
    graph-coreset -q -m k-center -r 0.3 "$T/s/g.tns" | cmp - "$T/kcenter.tns"
    # the kept features differ between the two methods and between hops 0 (the default) and 2
    f() { tns-tsv -n graph.features "$1"; }
    [ "$(f "$T/herding.tns")" != "$(f "$T/kcenter.tns")" ]
    graph-coreset -q -m kcenter -K 0 -r 0.3 "$T/s/g.tns" | cmp - "$T/kcenter.tns"
    graph-coreset -q -m kcenter -K 2 -r 0.3 -o "$T/k2.tns" "$T/s/g.tns"
    [ "$(f "$T/k2.tns")" != "$(f "$T/kcenter.tns")" ]
}

@test "sparse features stay sparse, the same nodes as dense" {
    make_sbm "$T/s"
    graph-import -u -n 200 --sparse -f "$T/s/features.txt" -l "$T/s/labels.txt" -s "$T/s/split.txt" \
        -o "$T/sp.tns" "$T/s/edges.txt"
    for m in random herding kcenter; do
        graph-coreset -q -m $m -r 0.5 -o "$T/sp-$m.tns" "$T/sp.tns"
        graph-coreset -q -m $m -r 0.5 -o "$T/d-$m.tns" "$T/s/g.tns"
        tns-info "$T/sp-$m.tns" | grep -q graph.features.indptr
        ! tns-info "$T/sp-$m.tns" | grep -qP '\tgraph.features\t'
        [ "$(tns-tsv -n graph.indices "$T/sp-$m.tns")" = "$(tns-tsv -n graph.indices "$T/d-$m.tns")" ]
        [ "$(tns-tsv -n graph.labels "$T/sp-$m.tns")" = "$(tns-tsv -n graph.labels "$T/d-$m.tns")" ]
    done
}

@test "usage errors exit 2" {
    make_sbm "$T/s"
    run --separate-stderr graph-coreset -r 0 "$T/s/g.tns"
    [ "$status" -eq 2 ] && [ -z "$output" ]
    run --separate-stderr graph-coreset -r 1.5 "$T/s/g.tns"
    [ "$status" -eq 2 ] && [[ "$stderr" == *1.5* ]]
    run --separate-stderr graph-coreset -r abc "$T/s/g.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr graph-coreset -r -0.5 "$T/s/g.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr graph-coreset -m greedy "$T/s/g.tns"
    expect_failure 2 graph-coreset "--method must be random, herding or kcenter (greedy)"
    run --separate-stderr graph-coreset -K 9 -m herding "$T/s/g.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr graph-coreset
    [ "$status" -eq 2 ]
    run --separate-stderr graph-coreset "$T/s/g.tns" "$T/s/g.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr graph-coreset --bogus "$T/s/g.tns"
    [ "$status" -eq 2 ]
    graph-coreset --help | grep -q 'Usage: graph-coreset'
}

@test "data errors exit 1 with the file named, and leave no output" {
    make_sbm "$T/s"
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/missing.tns"
    expect_failure 1 graph-coreset "missing.tns"
    [ ! -e "$T/out.tns" ]
    # truncated, and corrupt in the first record's keys and in graph.indptr
    head -c 3000 "$T/s/g.tns" > "$T/cut.tns"
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/cut.tns"
    expect_failure 1 graph-coreset "cut.tns: record 2: truncated"
    [ ! -e "$T/out.tns" ]
    run --separate-stderr graph-coreset -o "$T/out.tns" - < "$T/cut.tns"
    expect_failure 1 graph-coreset "truncated"
    [ ! -e "$T/out.tns" ]
    cp "$T/s/g.tns" "$T/bad.tns"
    printf '\377\377\377\377\377\377\377\377' | dd of="$T/bad.tns" bs=1 seek=5 conv=notrunc 2> /dev/null
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/bad.tns"
    expect_failure 1 graph-coreset "bad.tns: record 0"
    [ ! -e "$T/out.tns" ]
    cp "$T/s/g.tns" "$T/bad2.tns"
    printf '\301\301\301\301' | dd of="$T/bad2.tns" bs=1 seek=700 conv=notrunc 2> /dev/null
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/bad2.tns"
    expect_failure 1 graph-coreset "bad2.tns: graph.indptr"
    [ ! -e "$T/out.tns" ]
    # no labels (and so no split), no split, no features for herding
    graph-import -u -n 200 -f "$T/s/features.txt" -o "$T/nolabels.tns" "$T/s/edges.txt"
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/nolabels.tns"
    expect_failure 1 graph-coreset "nolabels.tns: no labels (graph.labels)"
    [ ! -e "$T/out.tns" ]
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/s/labels.txt" -o "$T/nosplit.tns" "$T/s/edges.txt"
    run --separate-stderr graph-coreset -o "$T/out.tns" "$T/nosplit.tns"
    expect_failure 1 graph-coreset "nosplit.tns: no training split (graph.train)"
    [ ! -e "$T/out.tns" ]
    graph-import -u -n 200 -l "$T/s/labels.txt" -s "$T/s/split.txt" -o "$T/nofeat.tns" "$T/s/edges.txt"
    run --separate-stderr graph-coreset -m herding -o "$T/out.tns" "$T/nofeat.tns"
    expect_failure 1 graph-coreset "nofeat.tns: herding needs node features"
    [ ! -e "$T/out.tns" ]
    # random needs none: the coreset has none either
    graph-coreset -q -o "$T/out.tns" "$T/nofeat.tns"
    ! tns-info "$T/out.tns" | grep -q graph.features
    # an existing output is left as it was on failure
    echo keep > "$T/old.tns"
    run --separate-stderr graph-coreset -o "$T/old.tns" "$T/cut.tns"
    [ "$status" -eq 1 ] && [ "$(cat "$T/old.tns")" = keep ]
    ! ls "$T" | grep -q "\.tmp\."
}

@test "herding and k-center choose as numpy does on P^K X (K 2 and 0)" {
    make_sbm "$T/s"
    for k in 2 0; do
        for m in herding kcenter; do graph-coreset -q -m $m -K $k -r 0.5 -o "$T/$m-$k.tns" "$T/s/g.tns"; done
    done
    $PY - "$ROOT/examples" "$T" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tns_read import records
d = sys.argv[2]
def load(p): return {r["name"]: a for r, a in records(open(p, "rb")) if a is not None}
g = load(d + "/s/g.tns")
n = len(g["graph.indptr"]) - 1
X = g["graph.features"].astype(np.float64)
A = np.eye(n)
for i in range(n): A[i, g["graph.indices"][g["graph.indptr"][i]:g["graph.indptr"][i + 1]]] += 1
s = 1 / np.sqrt(A.sum(1)); P = A * s[:, None] * s[None, :]
y, train = g["graph.labels"], g["graph.train"].astype(bool)
def herding(F, b):
    mu, S, chosen = F.mean(0), np.zeros(F.shape[1]), []
    for k in range(b):
        dist = ((mu - (S + F) / (k + 1)) ** 2).sum(1); dist[chosen] = np.inf
        chosen.append(int(dist.argmin())); S += F[chosen[-1]]
    return chosen
def kcenter(F, b):
    chosen = [int(((F - F.mean(0)) ** 2).sum(1).argmin())]
    while len(chosen) < b:
        near = ((F[:, None, :] - F[chosen][None, :, :]) ** 2).sum(2).min(1); near[chosen] = -1
        chosen.append(int(near.argmax()))
    return chosen
rows = {X[i].astype(np.float32).tobytes(): i for i in np.nonzero(train)[0]}
assert len(rows) == train.sum(), "training features not unique"
for k in (2, 0):
    E = np.linalg.matrix_power(P, k) @ X
    for name, pick in (("herding", herding), ("kcenter", kcenter)):
        want = []
        for c in (0, 1):
            idx = np.nonzero(train & (y == c))[0]
            want += [int(idx[j]) for j in pick(E[idx], int(np.ceil(0.5 * len(idx))))]
        c = load(f"{d}/{name}-{k}.tns")
        got = [rows[r.tobytes()] for r in c["graph.features"]]
        assert got == sorted(want), (name, k, got, sorted(want))
PY
}
