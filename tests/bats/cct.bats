#!/usr/bin/env bats
# cct-train and cct-classify: a tiny CCT-Net on Fashion-MNIST's test images
# (source classes 0-4, target 5-9, 20 images each), its streams, its
# determinism, and every kind of bad input: classes shared by source and
# target, K above what a class has, a D or a plain model where G is wanted,
# a head that does not fit, usage errors. Nothing is written on an error.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

TINY="--width 0.25 --embed 8 --hidden 8 --pairs 64 --batch 16"

data() {
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "Fashion-MNIST absent (Debian: dataset-fashion-mnist)"
    img-read -q --limit 1000 --classes "$ROOT/examples/fashion-mnist.classes" "$FASHION/t10k-images-idx3-ubyte.gz" > "$T/all.tns"
    img-select -q -c 0-4 -p 20 -o "$T/src.tns" "$T/all.tns"
    img-select -q -c 5-9 -p 20 -o "$T/tgt.tns" "$T/all.tns"
}

train() { # extra options...
    # shellcheck disable=SC2086
    cct-train -q $TINY --pre-epochs 1 --adv-epochs 1 "$@" src.tns tgt.tns
}

@test "cct-train writes G and D that net-info reads; cct-classify reports accuracy and macro-F1" {
    data
    cd "$T"
    train -o G.tns --d-output D.tns
    run net-info -t G.tns
    [ "$status" -eq 0 ]
    run net-info -t D.tns
    [ "$status" -eq 0 ]
    run --separate-stderr cct-classify -q -m G.tns -r tgt.tns -K 5 tgt.tns
    [ "$status" -eq 0 ] || { echo "$stderr"; return 1; }
    [ "${lines[0]%%$'\t'*}" = accuracy ] && [ "${lines[1]%%$'\t'*}" = macro_f1 ]
    [ "${lines[2]}" = "samples	100" ]
    awk -F'\t' 'NR <= 2 && !($2 >= 0 && $2 <= 1) {exit 1}' <<< "$output"
}

@test "cct-classify --output: votes (N, k) with the truth and the predictions" {
    data
    cd "$T"
    train -o G.tns
    cct-classify -q -m G.tns -r tgt.tns -K 3 -o s.tns tgt.tns > /dev/null
    run tns-info s.tns
    [[ "$output" == *"scores	f32	100x5"*"predicted=[100]"* ]] || { echo "$output"; return 1; }
    # votes are counts from 0 to K, and the prediction has the most
    tns-tsv s.tns | awk '{for (i = 1; i <= NF; i++) if ($i < 0 || $i > 3 || $i != int($i)) exit 1}'
    cct-classify -q --score mean -m G.tns -r tgt.tns -K 3 -o m.tns tgt.tns > /dev/null
    tns-tsv m.tns | awk '{for (i = 1; i <= NF; i++) if ($i < 0 || $i > 1) exit 1}'
}

@test "cct-train is deterministic for a seed" {
    data
    cd "$T"
    train --seed 3 -o a.tns
    train --seed 3 -o b.tns
    cmp a.tns b.tns
    train --seed 4 -o c.tns
    ! cmp -s a.tns c.tns
}

@test "G alone (--adv-epochs 0), then the adversarial stage from it with ablations" {
    data
    cd "$T"
    train -o G.tns --adv-epochs 0
    # shellcheck disable=SC2086
    cct-train -q --g-init G.tns --adv-epochs 1 --pairs 64 --batch 16 --no-d-src -o C.tns src.tns tgt.tns
    run cct-classify -q -m C.tns -r tgt.tns tgt.tns
    [ "$status" -eq 0 ]
    run --separate-stderr cct-train -q --g-init G.tns --adv-epochs 1 --no-d-src --no-d-tgt -o X.tns src.tns tgt.tns
    expect_failure 2 cct-train "leaves D untrained"
    [ ! -e X.tns ]
}

@test "cct-train refuses target classes that are source classes" {
    data
    cd "$T"
    run --separate-stderr cct-train -q $TINY -o G.tns src.tns src.tns
    expect_failure 1 cct-train "is in both src.tns and src.tns: target classes must be new"
    [ ! -e G.tns ]
}

@test "cct-classify refuses K above a class's images, classes of G's source, mismatched queries" {
    data
    cd "$T"
    train -o G.tns
    img-select -q -c 5-9 -p 3 -o few.tns all.tns
    run --separate-stderr cct-classify -m G.tns -r few.tns -K 4 -o out.tns tgt.tns
    expect_failure 1 cct-classify "K = 4 representatives per class, but class 0 (Sandal) has only 3"
    [ ! -e out.tns ]
    run --separate-stderr cct-classify -m G.tns -r src.tns -o out.tns src.tns
    expect_failure 1 cct-classify "is one of G's source classes"
    img-select -q -c 9,8,7,6,5 -p 5 -o rev.tns all.tns
    run --separate-stderr cct-classify -m G.tns -r tgt.tns -o out.tns rev.tns
    expect_failure 1 cct-classify "class 0 is 'Ankle boot' in rev.tns but 'Sandal' in tgt.tns"
    [ ! -e out.tns ]
}

@test "models that are not a G, or whose head does not fit, are refused" {
    data
    cd "$T"
    train -o G.tns --d-output D.tns
    run --separate-stderr cct-classify -m D.tns -r tgt.tns tgt.tns
    expect_failure 1 cct-classify "a D model where G was expected"
    net-init --arch mlp --in 1x28x28 --classes 4 > plain.tns
    run --separate-stderr cct-classify -m plain.tns -r tgt.tns tgt.tns
    expect_failure 1 cct-classify "not a CCT-Net model"
    tns-cat -v -n head.out.weight G.tns > nohead.tns
    run --separate-stderr cct-classify -m nohead.tns -r tgt.tns tgt.tns
    expect_failure 1 cct-classify "no head tensor head.out.weight"
    # D's head (2E inputs) under G's role: the head does not fit
    tns-cat -v -n 'head.*' G.tns > g-body.tns
    tns-cat --no-meta -n 'head.*' D.tns > d-head.tns
    cat g-body.tns d-head.tns > mixed.tns
    run --separate-stderr cct-classify -m mixed.tns -r tgt.tns tgt.tns
    expect_failure 1 cct-classify "head tensor head.fc1.weight is 8x16, but the head needs 8x8"
    run --separate-stderr cct-train -q --g-init D.tns -o X.tns src.tns tgt.tns
    expect_failure 1 cct-train "a D model where G was expected"
    [ ! -e X.tns ]
}

@test "a backbone whose output is not a vector is refused" {
    data
    cd "$T"
    printf '[input]\nshape = 1x28x28\n[conv2d c]\nout = 2\n' > conv.cfg
    net-init --spec conv.cfg > conv.tns
    run --separate-stderr cct-train -q --backbone conv.tns -o X.tns src.tns tgt.tns
    expect_failure 1 cct-train "must be a vector of features"
    [ ! -e X.tns ]
    run --separate-stderr cct-train -q --hidden 8,1e2 -o X.tns src.tns tgt.tns
    expect_failure 1 cct-train "--hidden: not a positive integer (1e2)"
    run --separate-stderr cct-train -q --hidden 1,2,3,4,5,6,7,8,9 -o X.tns src.tns tgt.tns
    expect_failure 1 cct-train "--hidden: more than"
    [ ! -e X.tns ]
}

@test "usage errors exit 2" {
    run --separate-stderr cct-classify -r a.tns q.tns
    expect_failure 2 cct-classify "--model and --reps are required"
    run --separate-stderr cct-classify -m a -r b --score best q.tns
    expect_failure 2 cct-classify "--score is vote or mean (best)"
    run --separate-stderr cct-train --g-init G.tns --embed 8 a.tns b.tns
    expect_failure 2 cct-train "--g-init brings its own backbone and head"
    run --separate-stderr cct-train --fs-steps 2 a.tns b.tns
    expect_failure 2 cct-train "--fs-steps needs --fewshot"
    run --separate-stderr cct-train a.tns
    [ "$status" -eq 2 ]
    run --separate-stderr cct-train --cross-heads 1 a.tns b.tns
    expect_failure 2 cct-train "--patch, --depth, --heads and --cross-heads shape --arch vit"
    run --separate-stderr cct-train --arch resnet a.tns b.tns
    expect_failure 2 cct-train "--arch must be cnn or vit, not 'resnet'"
    run --separate-stderr cct-train --arch vit --backbone m.tns a.tns b.tns
    expect_failure 2 cct-train "--arch, --embed and --width build a new backbone, not --backbone"
}

@test "the twin transformer: cross-attention heads, trained and classified by pairs" {
    data
    cd "$T"
    cct-train -q --arch vit --width 0.25 --depth 1 --heads 4 --cross-heads 1 --embed 8 --hidden 8 \
        --pre-epochs 1 --adv-epochs 1 --pairs 32 --batch 16 -o G.tns --d-output D.tns src.tns tgt.tns
    run net-info -t G.tns
    [[ "$output" == *"arch	cct-vit"*"--cross-heads 1"*"output	8"* ]] || { echo "$output"; return 1; }
    run cct-classify -q -m G.tns -r tgt.tns -K 2 tgt.tns
    [ "$status" -eq 0 ] && [ "${lines[2]}" = "samples	100" ]
    # more cross heads than heads: refused, nothing written
    run --separate-stderr cct-train -q --arch vit --width 0.25 --heads 2 --cross-heads 3 -o bad.tns src.tns tgt.tns
    expect_failure 1 cct-train "cross_heads must be in 0..2 (the heads), not 3"
    [ ! -e bad.tns ]
    # its features need a partner: a lone image through a plain tool is refused
    run --separate-stderr probe-embed -q -m G.tns -l head --batch 3 tgt.tns
    [ "$status" -eq 1 ] && [[ "$stderr" == *"even batch"* ]] || { echo "$stderr"; return 1; }
}

@test "any engine backbone: a ViT from net-init, its output the embedding" {
    data
    cd "$T"
    net-init --arch vit --in 1x28x28 --classes 16 --depth 1 > vit.tns
    cct-train -q --backbone vit.tns --hidden 8 --pre-epochs 1 --adv-epochs 1 --pairs 32 --batch 16 \
        -o G.tns src.tns tgt.tns
    run net-info -t G.tns
    [[ "$output" == *"arch	vit"*"output	16"* ]] || { echo "$output"; return 1; }
    run cct-classify -q -m G.tns -r tgt.tns -K 2 tgt.tns
    [ "$status" -eq 0 ] && [ "${lines[2]}" = "samples	100" ]
}
