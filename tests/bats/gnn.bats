#!/usr/bin/env bats
# gnn-train: GCN, SGC, MLP and GraphSAGE on a two-community graph made here
# (a stochastic block model where the graph carries most of the signal), Cora
# (data/cora), SimGC's train-on-one-graph protocol, the weights
# stream, and every error with its status and message.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

CORA="$ROOT/data/cora"

@test "two communities: GCN beats an MLP clearly; SGC and GraphSAGE use the graph too" {
    make_sbm "$T/s"
    gcn=$(gnn-train -q --epochs 100 "$T/s/g.tns" | key test_acc)
    mlp=$(gnn-train -q -m mlp --epochs 100 "$T/s/g.tns" | key test_acc)
    sgc=$(gnn-train -q -m sgc --epochs 100 "$T/s/g.tns" | key test_acc)
    sage=$(gnn-train -q -m sage --epochs 100 "$T/s/g.tns" | key test_acc)
    echo "gcn $gcn mlp $mlp sgc $sgc sage $sage"
    [ "$(ge "$gcn" 0.85)" = 1 ]
    [ "$(ge "$gcn" "$(awk -v m="$mlp" 'BEGIN {print m + 0.15}')")" = 1 ]
    [ "$(ge "$sgc" 0.8)" = 1 ] && [ "$(ge "$sage" 0.8)" = 1 ]
    # sparse and dense features, and a sparse graph stream, reach the same model
    # (up to rounding: the products sum in other orders)
    a=$(gnn-train -q --epochs 30 --features dense "$T/s/g.tns" | key test_acc)
    b=$(gnn-train -q --epochs 30 --features sparse "$T/s/g.tns" | key test_acc)
    graph-import --sparse -o "$T/sparse.tns" "$T/s/g.tns"
    c=$(gnn-train -q --epochs 30 "$T/sparse.tns" | key test_acc)
    close() { awk -v a="$1" -v b="$2" 'BEGIN {d = a - b; print (d <= 0.02 && d >= -0.02) ? 1 : 0}'; }
    [ "$(close "$a" "$b")" = 1 ] && [ "$(close "$a" "$c")" = 1 ]
}

@test "gcn: the first layer on dense features, (P X) W with P X once, trains the model P (X W) does (relative 1e-5)" {
    $PY -c 'import msgpack, numpy' 2> /dev/null || skip "python3-msgpack or python3-numpy not installed"
    make_sbm "$T/s"
    gnn-train -q --epochs 30 --features dense -o "$T/dense.tns" "$T/s/g.tns" > /dev/null
    gnn-train -q --epochs 30 --features sparse -o "$T/sparse.tns" "$T/s/g.tns" > /dev/null
    ! cmp -s "$T/dense.tns" "$T/sparse.tns" # the other order, not the same path
    d=$(worst_diff "$T/dense.tns" "$T/sparse.tns")
    echo "worst relative difference $d (measured 4e-7)"
    $PY -c "import sys; sys.exit(0 if $d < 1e-5 else 1)"
}

@test "result: TSV keys in order, --json, the same seed gives the same result" {
    make_sbm "$T/s"
    run --separate-stderr gnn-train -q --epochs 20 --seed 3 "$T/s/g.tns"
    [ "$status" -eq 0 ] && [ -z "$stderr" ]
    [ "$(printf '%s\n' "$output" | cut -f1 | tr '\n' ' ')" = \
      "model seed epochs best_epoch train_nodes val_acc test_acc train_seconds " ]
    [ "$(printf '%s\n' "$output" | key model) $(printf '%s\n' "$output" | key seed)" = "gcn 3" ]
    [ "$(printf '%s\n' "$output" | key train_nodes)" = 20 ]
    first=$(printf '%s\n' "$output" | grep -v train_seconds)
    [ "$(gnn-train -q --epochs 20 --seed 3 "$T/s/g.tns" | grep -v train_seconds)" = "$first" ]
    run gnn-train -q -j --epochs 20 --seed 3 -m sage "$T/s/g.tns"
    [ "$status" -eq 0 ]
    [[ "$output" == '{"model":"sage","seed":3,"epochs":20,"best_epoch":'*',"train_nodes":20,"val_acc":'*',"test_acc":'*',"train_seconds":'*'}' ]]
    if $PY -c 'import json' 2> /dev/null; then
        printf '%s\n' "$output" | $PY -c 'import json, sys; d = json.load(sys.stdin); assert 0 <= d["test_acc"] <= 1'
    fi
}

@test "progress: a line every N epochs on stderr, none with -q" {
    make_sbm "$T/s"
    run --separate-stderr gnn-train --epochs 20 --progress 5 "$T/s/g.tns"
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "$stderr" | wc -l)" -eq 4 ]
    [[ "${stderr%%$'\n'*}" == "gnn-train: epoch 5/20  loss "*"  val "*"%  test "*"%  best val "*"% @"*" epochs/s  ETA "*s ]]
    run --separate-stderr gnn-train --epochs 20 --progress 0 "$T/s/g.tns"
    [ -z "$stderr" ]
    # evaluated every 10 epochs: the best epoch is one of them
    best=$(gnn-train -q --epochs 30 --eval-every 10 "$T/s/g.tns" | key best_epoch)
    [ "$best" = 10 ] || [ "$best" = 20 ] || [ "$best" = 30 ]
}

@test "-o: the selected model's weights as a stream, named as PyG names them" {
    make_sbm "$T/s"
    gnn-train -q --epochs 10 --hidden 16 -o "$T/w.tns" "$T/s/g.tns" > "$T/r.tsv"
    [ "$(tns-info "$T/w.tns" | cut -f2-5 | tail -n +2 | tr '\t\n' ' |')" = \
      "tensor conv1.lin.weight f32 16x20|tensor conv1.bias f32 16|tensor conv2.lin.weight f32 2x16|tensor conv2.bias f32 2|" ]
    tns-info "$T/w.tns" | head -1 | grep -q 'gnn.model=gcn'
    tns-info -j "$T/w.tns" | head -1 | grep -q "\"gnn.test_acc\":$(key test_acc < "$T/r.tsv")"
    gnn-train -q -m sage --epochs 5 --hidden 8 -o "$T/sage.tns" "$T/s/g.tns" > /dev/null
    [ "$(tns-info "$T/sage.tns" | cut -f3 | tail -n +2 | tr '\n' ' ')" = \
      "conv1.lin_l.weight conv1.lin_l.bias conv1.lin_r.weight conv2.lin_l.weight conv2.lin_l.bias conv2.lin_r.weight " ]
    # -o -: the weights on standard output, the result on standard error
    run --separate-stderr gnn-train -q -m sgc --epochs 5 -o - "$T/s/g.tns"
    [ "$status" -eq 0 ] && [[ "$stderr" == "model	sgc"* ]]
}

@test "--eval-graph: train on every node of a small weighted graph, select and test on the big one" {
    make_sbm "$T/s"
    # 20 nodes, 10 per class, heavier edges inside a class; no split at all
    awk 'BEGIN { for (i = 0; i < 20; i++) for (j = i + 1; j < 20; j++)
                   print i, j, (i % 2 == j % 2 ? 1.5 : 0.1) }' > "$T/c.txt"
    awk 'BEGIN { for (i = 0; i < 20; i++) print i % 2 }' > "$T/cl.txt"
    head -20 "$T/s/features.txt" > "$T/cf.txt"
    graph-import -u -f "$T/cf.txt" -l "$T/cl.txt" -o "$T/c.tns" "$T/c.txt"
    run --separate-stderr gnn-train -q --epochs 50 --eval-graph "$T/s/g.tns" "$T/c.tns"
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "$output" | key train_nodes)" = 20 ]
    [ "$(ge "$(printf '%s\n' "$output" | key test_acc)" 0.6)" = 1 ]
    # the condensed graph has no validation nodes of its own: without --eval-graph that is an error
    run --separate-stderr gnn-train -q "$T/c.tns"
    expect_failure 1 gnn-train "c.tns: no training nodes (graph.train is missing)"
}

@test "overlapping splits: a node in val and test counts in both (SGC, MLP, GCN, --eval-graph)" {
    $PY -c 'import msgpack' 2> /dev/null || skip "python3-msgpack missing"
    make_sbm "$T/s"
    # test = val: the two accuracies are the same numbers
    overlap_split "$T/s/g.tns" "$T/same.tns" val
    for m in sgc mlp gcn; do
        run --separate-stderr gnn-train -q -m $m --epochs 20 "$T/same.tns"
        [ "$status" -eq 0 ] || { echo "$m: $stderr"; return 1; }
        [ "$(printf '%s\n' "$output" | key val_acc)" = "$(printf '%s\n' "$output" | key test_acc)" ]
    done
    # val is nodes 20..79, test 60..199: they share 20 nodes
    overlap_split "$T/s/g.tns" "$T/part.tns" 60
    for m in sgc mlp; do
        run --separate-stderr gnn-train -q -m $m --epochs 20 "$T/part.tns"
        [ "$status" -eq 0 ] && [ "$(ge "$(printf '%s\n' "$output" | key test_acc)" 0.5)" = 1 ]
    done
    # an original with overlapping splits under --eval-graph
    run --separate-stderr gnn-train -q -m sgc --epochs 20 --eval-graph "$T/same.tns" "$T/s/g.tns"
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "$output" | key val_acc)" = "$(printf '%s\n' "$output" | key test_acc)" ]
}

@test "Cora: GCN, 200 epochs, seed 1: test accuracy >= 0.78" {
    graph-import -o "$T/cora.tns" "$CORA"
    run --separate-stderr gnn-train -q --epochs 200 --seed 1 "$T/cora.tns"
    [ "$status" -eq 0 ]
    echo "$output"
    [ "$(ge "$(printf '%s\n' "$output" | key test_acc)" 0.78)" = 1 ]
}

# --- errors ---------------------------------------------------------------------------

@test "errors: not a graph, no features, no labels, a split missing (status 1)" {
    make_sbm "$T/s"
    printf '1 2\n' | tns-tsv -r -n x > "$T/x.tns"
    run --separate-stderr gnn-train "$T/x.tns"
    expect_failure 1 gnn-train "x.tns: no graph in the stream (no meta record with graph.nodes)"
    run --separate-stderr gnn-train "$T/nope.tns"
    expect_failure 1 gnn-train "nope.tns: cannot open"
    graph-import -u -n 200 -l "$T/s/labels.txt" -s "$T/s/split.txt" -o "$T/nofeat.tns" "$T/s/edges.txt"
    run --separate-stderr gnn-train "$T/nofeat.tns"
    expect_failure 1 gnn-train "nofeat.tns: the graph has no node features (graph.features)"
    graph-import -u -n 200 -f "$T/s/features.txt" -o "$T/nolab.tns" "$T/s/edges.txt"
    run --separate-stderr gnn-train "$T/nolab.tns"
    expect_failure 1 gnn-train "nolab.tns: the graph has no labels (graph.labels)"
    tns-cat -v -n graph.val "$T/s/g.tns" > "$T/noval.tns"
    run --separate-stderr gnn-train "$T/noval.tns"
    expect_failure 1 gnn-train "noval.tns: no validation nodes (graph.val is missing)"
    sed 's/^test$/none/' "$T/s/split.txt" > "$T/split2.txt"
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/s/labels.txt" -s "$T/split2.txt" \
        -o "$T/notest.tns" "$T/s/edges.txt"
    run --separate-stderr gnn-train "$T/notest.tns"
    expect_failure 1 gnn-train "notest.tns: no test nodes (graph.test is empty)"
    # truncated
    head -c 2000 "$T/s/g.tns" > "$T/cut.tns"
    run --separate-stderr gnn-train "$T/cut.tns"
    expect_failure 1 gnn-train "truncated record at end of stream"
    # --eval-graph with other features or fewer classes
    cut -d' ' -f1-10 "$T/s/features.txt" > "$T/f10.txt"
    graph-import -u -n 200 -f "$T/f10.txt" -l "$T/s/labels.txt" -o "$T/f10.tns" "$T/s/edges.txt"
    run --separate-stderr gnn-train --eval-graph "$T/s/g.tns" "$T/f10.tns"
    expect_failure 1 gnn-train "f10.tns has 10 features per node, $T/s/g.tns 20"
    awk '{print NR % 3}' "$T/s/labels.txt" > "$T/l3.txt"
    graph-import -u -n 200 -f "$T/s/features.txt" -l "$T/l3.txt" -o "$T/l3.tns" "$T/s/edges.txt"
    run --separate-stderr gnn-train --eval-graph "$T/s/g.tns" "$T/l3.tns"
    expect_failure 1 gnn-train "l3.tns has 3 classes, $T/s/g.tns only 2"
}

@test "usage errors: status 2, the bad value named" {
    make_sbm "$T/s"
    usage() { # text args...
        local text=$1
        shift
        run --separate-stderr gnn-train "$@"
        expect_failure 2 gnn-train "$text"
    }
    usage "--model: unknown model (gat): gcn, sgc, mlp or sage" -m gat "$T/s/g.tns"
    usage "--dropout must be between 0 and 0.99 (1)" --dropout 1 "$T/s/g.tns"
    usage "--epochs must be between 1 and" --epochs 0 "$T/s/g.tns"
    usage "--hidden must be between 1 and" --hidden 0 "$T/s/g.tns"
    usage "--lr must be between" --lr 0 "$T/s/g.tns"
    usage "--act must be relu or none (tanh)" --act tanh "$T/s/g.tns"
    usage "--features must be auto, dense or sparse (csr)" --features csr "$T/s/g.tns"
    usage "unknown option (--bogus)" --bogus "$T/s/g.tns"
    usage "missing argument"
    usage "too many arguments" "$T/s/g.tns" "$T/s/g.tns"
    usage "--eval-graph and GRAPH cannot both be standard input" --eval-graph - -
    run gnn-train --help
    [ "$status" -eq 0 ] && [[ "$output" == "Usage: gnn-train [options] GRAPH"* ]]
}

@test "output: -o replaces a file only on success; write errors fail" {
    make_sbm "$T/s"
    echo keep > "$T/w.tns"
    run --separate-stderr gnn-train -q -o "$T/w.tns" "$T/nope.tns"
    [ "$status" -eq 1 ] && [ "$(cat "$T/w.tns")" = keep ]
    run --separate-stderr gnn-train -q -o "$T/nodir/w.tns" "$T/s/g.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == "gnn-train: "*"nodir"* ]]
    if [ -w /dev/full ]; then
        run --separate-stderr gnn-train -q --epochs 2 -o /dev/full "$T/s/g.tns"
        [ "$status" -eq 1 ] && [[ "$stderr" == "gnn-train: "* ]]
        run --separate-stderr sh -c "gnn-train -q --epochs 2 '$T/s/g.tns' > /dev/full"
        [ "$status" -eq 1 ] && [[ "$stderr" == "gnn-train: writing output failed"* ]]
    fi
    [ -z "$(ls -A "$T" | grep -v -e '^s$' -e '^w.tns$')" ] || { ls -A "$T"; return 1; }
}
