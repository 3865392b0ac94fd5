#!/usr/bin/env bats
# graph-import of the Open Graph Benchmark's on-disk layout (ogbn-arxiv as the
# OGB loader unpacks it), on a small hand-made directory; gzip'd text files.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# DIR in the OGB layout: 6 nodes, 7 directed edges, 2 features, 3 classes,
# split/time with train 0 1, valid 2, test 3 4 (node 5 in none); the same data
# as plain side files in $T/edges.csv, feat.csv, label.csv, split.txt.
make_ogb() {
    mkdir -p "$1/raw" "$1/split/time"
    printf '0,1\n1,2\n2,3\n3,4\n4,5\n5,0\n0,3\n' > "$T/edges.csv"
    printf '1.0,0.5\n0.25,2\n3,1\n0,0\n1,1\n2,0.5\n' > "$T/feat.csv"
    printf '0\n1\n2\n0\n1\n2\n' > "$T/label.csv"
    printf 'train\ntrain\nval\ntest\ntest\nnone\n' > "$T/split.txt"
    gzip -c "$T/edges.csv" > "$1/raw/edge.csv.gz"
    gzip -c "$T/feat.csv" > "$1/raw/node-feat.csv.gz"
    gzip -c "$T/label.csv" > "$1/raw/node-label.csv.gz"
    echo 6 | gzip > "$1/raw/num-node-list.csv.gz"
    printf '0\n1\n' | gzip > "$1/split/time/train.csv.gz"
    printf '2\n' | gzip > "$1/split/time/valid.csv.gz"
    printf '3\n4\n' > "$1/split/time/test.csv" # plain .csv works too
}

@test "graph-import reads the OGB layout: the graph the same files give as side files" {
    make_ogb "$T/arxiv"
    graph-import -o "$T/ogb.tns" "$T/arxiv"
    graph-import --undirected --features "$T/feat.csv" --labels "$T/label.csv" --split "$T/split.txt" \
        -o "$T/ref.tns" "$T/edges.csv"
    tns-cat --no-meta "$T/ogb.tns" > "$T/a"
    tns-cat --no-meta "$T/ref.tns" > "$T/b"
    cmp "$T/a" "$T/b"
    tns-info "$T/ogb.tns" | head -1 | grep -q 'graph.nodes=6 graph.edges=14 graph.undirected=true graph.classes=3 graph.feature_dim=2'
    # --directed keeps the 7 edges as listed; gnn-train runs on it
    graph-import --directed "$T/arxiv" | tns-info | head -1 | grep -q 'graph.edges=7 '
    gnn-train -q --epochs 5 --seed 1 "$T/ogb.tns"
}

@test "graph-import OGB: bad files name the file and line; nothing is written" {
    make_ogb "$T/arxiv"
    printf '0\n9\n' | gzip > "$T/arxiv/split/time/train.csv.gz"
    run --separate-stderr graph-import -o "$T/out.tns" "$T/arxiv"
    expect_failure 1 graph-import "train.csv.gz:2: not a node id from 0 to 5 (9)"
    [ ! -e "$T/out.tns" ]
    make_ogb "$T/two"
    printf '1,2\n' | gzip > "$T/two/raw/node-feat.csv.gz"
    run --separate-stderr graph-import -o "$T/out.tns" "$T/two"
    expect_failure 1 graph-import "node-feat.csv.gz: 1 feature rows for 6 nodes"
    make_ogb "$T/three"
    mkdir "$T/three/split/other"
    run --separate-stderr graph-import -o "$T/out.tns" "$T/three"
    expect_failure 1 graph-import "more than one split"
    make_ogb "$T/four"
    head -c 20 "$T/four/raw/edge.csv.gz" > "$T/cut.gz"
    mv "$T/cut.gz" "$T/four/raw/edge.csv.gz"
    run --separate-stderr graph-import -o "$T/out.tns" "$T/four"
    [ "$status" -eq 1 ]
    [ ! -e "$T/out.tns" ]
}
