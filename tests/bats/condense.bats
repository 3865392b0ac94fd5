#!/usr/bin/env bats
# sgc-condense: SimGC on a two-community graph made here (make_sbm in
# common.bash): the condensed graph's size per class, its symmetry and empty
# diagonal, that a GCN trained on it alone does well on the original graph,
# determinism, the report, and every error with its status and message.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# Small settings: a 64-unit teacher, 150 iterations, validation every 50.
FAST="--teacher-hidden 64 --teacher-epochs 100 --teacher-lr 0.01 --pge-hidden 16 -T 150 --val-every 50 --val-epochs 200 --val-lr 0.01 --lr-feat 0.05 --lr-adj 0.01"

# Prints one line per stored edge "i j w" and the labels, from a graph stream.
dump_graph() { # file
    $PY - "$ROOT/examples" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from tns_read import records
recs = {r["name"]: a for r, a in records(open(sys.argv[2], "rb")) if a is not None}
ip, ix, w = recs["graph.indptr"], recs["graph.indices"], recs["graph.weights"]
for i in range(len(ip) - 1):
    for e in range(ip[i], ip[i + 1]):
        print("edge", i, ix[e], w[e])
print("labels", *recs["graph.labels"])
print("features", *recs["graph.features"].shape)
PY
}
@test "condenses two communities into 5 nodes per class that train a good GCN" {
    make_sbm "$T/s"
    sgc-condense -q $FAST -r 0.5 -o "$T/c.tns" "$T/s/g.tns" > "$T/report"
    cat "$T/report"
    [ "$(key nodes < "$T/report")" = 10 ]
    [ "$(key original_nodes < "$T/report")" = 200 ]
    [ "$(ge "$(key test_acc < "$T/report")" 0.8)" = 1 ]
    dump_graph "$T/c.tns" > "$T/dump"
    [ "$(grep -c '^labels 0 0 0 0 0 1 1 1 1 1$' "$T/dump")" = 1 ]
    [ "$(grep '^features' "$T/dump")" = "features 10 20" ]
    # symmetric, no self loops, weights in [tau, 1)
    awk '$1 == "edge" { if ($2 == $3 || $4 < 0.01 || $4 >= 1) bad++; w[$2 " " $3] = $4 }
         END { for (k in w) { split(k, p, " "); if (w[p[2] " " p[1]] != w[k]) bad++ } exit bad > 0 }' "$T/dump"
    # gnn-train reads it, SimGC's protocol: the GCN trains on the 10 nodes alone
    acc=$(gnn-train -q --eval-graph "$T/s/g.tns" --act none --dropout 0 --wd 0 --lr 0.01 --epochs 200 \
        --hidden 64 "$T/c.tns" | key test_acc)
    echo "gnn-train on the condensed graph: $acc"
    [ "$(ge "$acc" 0.8)" = 1 ]
}

@test "the same seed gives the same bytes; standard output and -o agree; --json" {
    make_sbm "$T/s"
    sgc-condense -q $FAST -T 60 -o "$T/a.tns" "$T/s/g.tns" > /dev/null
    sgc-condense -q $FAST -T 60 "$T/s/g.tns" > "$T/b.tns"
    cmp "$T/a.tns" "$T/b.tns"
    sgc-condense -q $FAST -T 60 --seed 2 -o "$T/c.tns" "$T/s/g.tns" > /dev/null
    ! cmp -s "$T/a.tns" "$T/c.tns"
    run sgc-condense -q $FAST -T 60 --json -o "$T/d.tns" "$T/s/g.tns"
    [ "$status" -eq 0 ]
    echo "$output" | $PY -c 'import json, sys; r = json.load(sys.stdin); assert r["nodes"] == 10 and 0 <= r["test_acc"] <= 1, r'
    tns-info "$T/a.tns" | grep -q 'graph.source=sgc-condense -r 0.5'
}

@test "without validation the last state is kept; progress lines unless -q" {
    make_sbm "$T/s"
    run --separate-stderr sgc-condense $FAST --val-every 0 -T 100 -o "$T/c.tns" "$T/s/g.tns"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | key best_iteration)" = 100 ]
    [ "$(echo "$output" | key val_acc)" = nan ]
    echo "$stderr" | grep -q '^sgc-condense: iteration 100/100  loss'
    run --separate-stderr sgc-condense -q $FAST --val-every 0 -T 10 -o "$T/c.tns" "$T/s/g.tns"
    [ -z "$stderr" ]
}

@test "the class-mean classifier: reported, and a note when it trails the teacher" {
    # two communities: the class means classify well, no note
    make_sbm "$T/s"
    run --separate-stderr sgc-condense $FAST -T 0 --val-every 0 -o "$T/c.tns" "$T/s/g.tns"
    [ "$status" -eq 0 ]
    [ "$(ge "$(echo "$output" | key class_mean_test)" 0.8)" = 1 ]
    echo "$stderr" | grep -q 'class means: val [0-9.]*%'
    ! echo "$stderr" | grep -q 'note:'
    # XOR: class 0 at (1, 1) and (-1, -1), class 1 at (1, -1) and (-1, 1), no
    # edges; both class means are (0, 0), the MLP teacher separates them
    mkdir -p "$T/x"
    awk -v dir="$T/x" 'BEGIN {
        srand(3)
        for (i = 0; i < 80; i++) {
            a = (i % 4 < 2) ? 1 : -1; b = (i % 4 == 0 || i % 4 == 3) ? 1 : -1
            print a + 0.1 * (rand() - 0.5), b + 0.1 * (rand() - 0.5) > (dir "/features.txt")
            print (a == b ? 0 : 1) > (dir "/labels.txt")
            print (i < 40 ? "train" : i < 60 ? "val" : "test") > (dir "/split.txt")
        }
    }'
    : > "$T/x/edges.txt"
    graph-import -n 80 -f "$T/x/features.txt" -l "$T/x/labels.txt" -s "$T/x/split.txt" -o "$T/x/g.tns" "$T/x/edges.txt"
    run --separate-stderr sgc-condense $FAST --teacher-epochs 300 -T 0 --val-every 0 --json -o "$T/c.tns" "$T/x/g.tns"
    [ "$status" -eq 0 ]
    echo "$stderr"
    echo "$output" | $PY -c 'import json, sys; r = json.load(sys.stdin); assert r["class_mean_test"] <= 0.75 and r["teacher_test"] >= 0.9, r'
    echo "$stderr" | grep -q 'note: the class means of the propagated features reach'
    run --separate-stderr sgc-condense -q $FAST --teacher-epochs 300 -T 0 --val-every 0 -o "$T/c.tns" "$T/x/g.tns"
    [ -z "$stderr" ]
}

@test "the ablations: alpha 0 and gamma 0 run and change the result" {
    make_sbm "$T/s"
    sgc-condense -q $FAST -T 60 -o "$T/a.tns" "$T/s/g.tns" > /dev/null
    sgc-condense -q $FAST -T 60 --alpha 0 -o "$T/b.tns" "$T/s/g.tns" > /dev/null
    sgc-condense -q $FAST -T 60 --gamma 0 -o "$T/c.tns" "$T/s/g.tns" > /dev/null
    ! cmp -s "$T/a.tns" "$T/b.tns"
    ! cmp -s "$T/a.tns" "$T/c.tns"
}

@test "overlapping splits in the original: the SGC teacher and validation run (sanitizers)" {
    $PY -c 'import msgpack' 2> /dev/null || skip "python3-msgpack missing"
    make_sbm "$T/s"
    overlap_split "$T/s/g.tns" "$T/ovl.tns" 60
    run --separate-stderr sgc-condense -q $FAST -T 20 --teacher-epochs 10 -o "$T/c.tns" "$T/ovl.tns"
    [ "$status" -eq 0 ] || { echo "$stderr"; return 1; }
    [ "$(printf '%s\n' "$output" | key nodes)" = 10 ]
}

@test "--init real starts X' at training nodes of each class, distinct while the class has enough" {
    make_sbm "$T/s"
    # learning rates so small that X' stays where it started
    sgc-condense -q $FAST -T 2 --val-every 0 --lr-feat 1e-12 --lr-adj 1e-12 --init real -r 0.5 \
        -o "$T/c.tns" "$T/s/g.tns" > /dev/null
    $PY - "$ROOT/examples" "$T/c.tns" "$T/s/g.tns" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tns_read import records
def arrays(path):
    return {r["name"]: a for r, a in records(open(path, "rb")) if a is not None}
c, g = arrays(sys.argv[2]), arrays(sys.argv[3])
x, y = c["graph.features"], c["graph.labels"]
gx, gy, train = g["graph.features"], g["graph.labels"], g["graph.train"].astype(bool)
used = set()
for i in range(len(y)):
    d = np.abs(gx - x[i]).max(axis=1)
    match = [j for j in np.nonzero(d < 1e-5)[0] if train[j] and gy[j] == y[i]]
    assert match, f"condensed node {i} is no training node of class {y[i]}"
    assert match[0] not in used, f"training node {match[0]} used twice"
    used.add(match[0])
print("ok", len(used))
PY
    # the default start is not a real node
    sgc-condense -q $FAST -T 2 --val-every 0 --lr-feat 1e-12 --lr-adj 1e-12 -r 0.5 -o "$T/n.tns" "$T/s/g.tns" > /dev/null
    ! cmp -s "$T/c.tns" "$T/n.tns"
}

@test "usage errors exit 2" {
    make_sbm "$T/s"
    run --separate-stderr sgc-condense --teacher gcn "$T/s/g.tns"
    expect_failure 2 sgc-condense "--teacher must be mlp or sgc (gcn)"
    run --separate-stderr sgc-condense --val-act tanh "$T/s/g.tns"
    expect_failure 2 sgc-condense "--val-act must be relu or none (tanh)"
    run --separate-stderr sgc-condense --preset imagenet "$T/s/g.tns"
    expect_failure 2 sgc-condense "--preset must be"
    run --separate-stderr sgc-condense --adj-steps 60 "$T/s/g.tns"
    expect_failure 2 sgc-condense "--adj-steps (60) is longer than --cycle (50)"
    run --separate-stderr sgc-condense --init zeros "$T/s/g.tns"
    expect_failure 2 sgc-condense "--init must be normal or real (zeros)"
    run --separate-stderr sgc-condense -r 0 "$T/s/g.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr sgc-condense
    [ "$status" -eq 2 ]
}

@test "data errors exit 1 with the file named, and leave no output" {
    make_sbm "$T/s"
    run --separate-stderr sgc-condense -o "$T/out.tns" "$T/missing.tns"
    expect_failure 1 sgc-condense "missing.tns"
    [ ! -e "$T/out.tns" ]
    head -c 3000 "$T/s/g.tns" > "$T/cut.tns"
    run --separate-stderr sgc-condense -o "$T/out.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    [ ! -e "$T/out.tns" ]
    # a graph without a split
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/s/labels.txt" -o "$T/nosplit.tns" "$T/s/edges.txt"
    run --separate-stderr sgc-condense $FAST -o "$T/out.tns" "$T/nosplit.tns"
    expect_failure 1 sgc-condense "no training split"
    [ ! -e "$T/out.tns" ]
    # without validation nodes nothing can be selected
    awk '{print ($0 == "val" ? "test" : $0)}' "$T/s/split.txt" > "$T/split2.txt"
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/s/labels.txt" -s "$T/split2.txt" -o "$T/noval.tns" \
        "$T/s/edges.txt"
    run --separate-stderr sgc-condense $FAST --val-every 0 -o "$T/out.tns" "$T/noval.tns"
    expect_failure 1 sgc-condense "no validation nodes (graph.val)"
    [ ! -e "$T/out.tns" ]
    # no features
    graph-import -u -n 200 -l "$T/s/labels.txt" -s "$T/s/split.txt" -o "$T/nofeat.tns" "$T/s/edges.txt"
    run --separate-stderr sgc-condense $FAST -o "$T/out2.tns" "$T/nofeat.tns"
    expect_failure 1 sgc-condense "no node features"
    [ ! -e "$T/out2.tns" ]
    # a million classes on 200 nodes: refused before the teacher, not after minutes
    if $PY -c 'import msgpack' 2> /dev/null; then
        $PY - "$T/s/g.tns" "$T/many.tns" <<'PY'
import sys, msgpack
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[0]["meta"]["graph.classes"] = 1000000
with open(sys.argv[2], "wb") as out:
    for r in recs: out.write(msgpack.packb(r, use_bin_type=True))
PY
        run --separate-stderr timeout 20 sgc-condense $FAST -o "$T/out3.tns" "$T/many.tns"
        expect_failure 1 sgc-condense "many.tns: 1000000 classes for 200 nodes"
        [ ! -e "$T/out3.tns" ]
    fi
}

@test "presets: cora's SGC_Multi teacher; arxiv's linear teacher; options override" {
    make_sbm "$T/s"
    small="--teacher-hidden 16 --teacher-epochs 2 --pge-hidden 8 -T 2 --val-every 0"
    sgc-condense -q $small -o "$T/a.tns" "$T/s/g.tns" > "$T/cora"
    [ "$(key teacher < "$T/cora")" = mlp ]
    [ "$(key teacher_lr < "$T/cora")" = 0.001 ]
    # the preset's teacher kind is not overridden by the option's default
    sgc-condense -q --preset arxiv -r 0.5 $small -o "$T/b.tns" "$T/s/g.tns" > "$T/arxiv"
    [ "$(key teacher < "$T/arxiv")" = sgc ]
    [ "$(key teacher_lr < "$T/arxiv")" = 0.001 ]
    sgc-condense -q --preset arxiv -r 0.5 --teacher mlp --teacher-lr 0.02 $small -o "$T/c.tns" "$T/s/g.tns" > "$T/both"
    [ "$(key teacher < "$T/both")" = mlp ]
    [ "$(key teacher_lr < "$T/both")" = 0.02 ]
}

@test "--teacher-patience stops the teacher, --val-patience the validation GCNs" {
    make_sbm "$T/s"
    sgc-condense -q --teacher-hidden 16 --teacher-epochs 400 --teacher-eval-every 1 --teacher-patience 3 \
        --pge-hidden 8 -T 2 --val-every 0 -o "$T/t.tns" "$T/s/g.tns" > "$T/teacher"
    [ "$(key teacher_epochs < "$T/teacher")" -lt 400 ]
    sgc-condense -q --teacher-hidden 16 --teacher-epochs 40 --teacher-patience 0 \
        --pge-hidden 8 -T 2 --val-every 0 -o "$T/t.tns" "$T/s/g.tns" > "$T/teacher"
    [ "$(key teacher_epochs < "$T/teacher")" = 40 ]
    make_sbm "$T/s"
    sgc-condense -q $FAST --val-epochs 2000 --val-patience 2 -o "$T/a.tns" "$T/s/g.tns" > "$T/report"
    [ "$(ge "$(key test_acc < "$T/report")" 0.8)" = 1 ]
    run sgc-condense -q $FAST --val-patience -1 "$T/s/g.tns"
    [ "$status" -eq 2 ]
}
