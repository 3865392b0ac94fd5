#!/usr/bin/env bats
# Labels of batch records (tns(5), "Labelled batches"): one per sample, each
# -1 (unlabelled) or a class. Every reader refuses anything else, naming the
# record, the sample and the value, instead of counting it as unlabelled or
# leaving the batch out: net-eval, net-train, probe-embed, tns-info --summary,
# cav-fit (feature and concept streams), vlm-train (concept banks), and graph
# streams' graph.labels.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

setup_file() {
    export LABELS_PY_OK=1
    ${PY:-python3} -c 'import msgpack' 2> /dev/null || export LABELS_PY_OK=0
}

need_msgpack() {
    [ "$LABELS_PY_OK" = 1 ] || skip "python3-msgpack missing"
}

# A stream from a Python list of records [kind, name, dtype, shape, meta];
# tensors are zeros (dtype None: no data).
stream() { # out records
    $PY - "$@" <<'PY'
import msgpack, sys
out, spec = sys.argv[1], eval(sys.argv[2])
size = {"f32": 4, "u8": 1, "i32": 4, "i64": 8}
with open(out, "wb") as f:
    for kind, name, dtype, shape, meta in spec:
        rec = {"fmt": "tns", "ver": 1, "kind": kind, "name": name}
        if dtype:
            n = 1
            for s in shape:
                n *= s
            rec.update(dtype=dtype, shape=shape, data=bytes(n * size[dtype]))
        rec["meta"] = meta
        f.write(msgpack.packb(rec))
PY
}

# 64 images 1x4x4 of 3 named classes with the labels given (a Python expression).
images() { # out labels
    local ids='list(range(64))'
    stream "$1" "[[\"meta\", \"\", None, None, {\"general.labels\": [\"a\", \"b\", \"c\"]}],
                  [\"tensor\", \"images\", \"f32\", [64, 1, 4, 4], {\"labels\": $2, \"ids\": $ids}]]"
}

# 64 labels 0,1,2,0,... with sample 5 set to the value given
labels_with() { # value
    $PY -c "import sys; l = [i % 3 for i in range(64)]; l[5] = int(sys.argv[1]); print(l)" "$1"
}

bad_values="-2 -9223372036854775808 2147483648 9223372036854775807 3"

@test "net-eval refuses a label that is neither -1 nor a class, naming record, sample and value" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    for v in $bad_values; do
        images "$T/bad.tns" "$(labels_with "$v")"
        run --separate-stderr net-eval -q -m "$T/m.tns" "$T/bad.tns"
        expect_failure 1 net-eval "bad.tns: record 1 (images): sample 5 has label $v (a label is -1 for unlabelled or a class 0..2)"
    done
}

@test "net-eval refuses 63 labels for 64 images instead of leaving the batch out" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    images "$T/short.tns" "$($PY -c 'print([0] * 63)')"
    run --separate-stderr net-eval -q -m "$T/m.tns" "$T/short.tns"
    expect_failure 1 net-eval "short.tns: record 1 (images): 63 labels for 64 samples (one per sample)"
}

@test "net-eval scores the labelled samples and skips only -1" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    images "$T/half.tns" "$($PY -c 'print([-1 if i % 2 else i % 3 for i in range(64)])')"
    run --separate-stderr net-eval -q -m "$T/m.tns" "$T/half.tns"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | awk '$1=="samples"{print $2}')" -eq 32 ]
}

@test "a stream naming no classes: labels up to 2^31-1 read, 2^31 refused; net-eval checks the model's classes" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    stream "$T/big.tns" "[[\"tensor\", \"images\", \"f32\", [2, 1, 4, 4], {\"labels\": [0, 2147483648]}]]"
    run --separate-stderr net-eval -q -m "$T/m.tns" "$T/big.tns"
    expect_failure 1 net-eval "big.tns: record 0 (images): sample 1 has label 2147483648 (a label is -1 for unlabelled or a class index below 2^31)"
    stream "$T/max.tns" "[[\"tensor\", \"images\", \"f32\", [2, 1, 4, 4], {\"labels\": [0, 2147483647]}]]"
    run --separate-stderr net-eval -q -m "$T/m.tns" "$T/max.tns"
    expect_failure 1 net-eval "max.tns: sample 1 (id 1) has label 2147483647, the model has 3 classes"
}

@test "net-train names the real value of a bad label" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    images "$T/bad.tns" "$(labels_with -2)"
    run --separate-stderr net-train -q -m "$T/m.tns" --epochs 1 -o "$T/out.tns" "$T/bad.tns"
    expect_failure 1 net-train "bad.tns: record 1 (images): sample 5 has label -2"
    [ ! -e "$T/out.tns" ]
}

@test "probe-embed refuses bad labels" {
    need_msgpack
    net-init --arch mlp --hidden 4 --in 1x4x4 --classes 3 -o "$T/m.tns"
    images "$T/bad.tns" "$(labels_with 2147483648)"
    run --separate-stderr probe-embed -q -m "$T/m.tns" -o "$T/f.tns" "$T/bad.tns"
    expect_failure 1 probe-embed "bad.tns: record 1 (images): sample 5 has label 2147483648"
}

@test "tns-info --summary counts one sample per image and refuses bad labels" {
    need_msgpack
    images "$T/good.tns" "$($PY -c 'print([-1 if i < 4 else i % 3 for i in range(64)])')"
    run --separate-stderr tns-info --summary "$T/good.tns"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | awk '$1=="samples"{print $2}')" -eq 64 ]
    [ "$(echo "$output" | awk '$1=="unlabelled"{print $2}')" -eq 4 ]
    images "$T/many.tns" '[0] * 10**6'
    run --separate-stderr tns-info --summary "$T/many.tns"
    expect_failure 1 tns-info "many.tns: record 1 (images): 1000000 labels for 64 samples (one per sample)"
    for v in $bad_values; do
        images "$T/bad.tns" "$(labels_with "$v")"
        run --separate-stderr tns-info --summary "$T/bad.tns"
        expect_failure 1 tns-info "bad.tns: record 1 (images): sample 5 has label $v"
    done
    stream "$T/float.tns" "[[\"tensor\", \"images\", \"f32\", [2, 1, 4, 4], {\"labels\": [0, 1.5]}]]"
    run --separate-stderr tns-info --summary "$T/float.tns"
    expect_failure 1 tns-info "record 0 (images): sample 1 has label 1.5 (not an integer)"
}

# A probe-embed-like feature stream of 4 rows with the given labels.
features() { # out labels
    stream "$1" "[[\"meta\", \"\", None, None, {\"probe.source\": \"model\", \"probe.model\": \"m\",
                   \"probe.model_path\": \"m.tns\", \"probe.layer\": \"fc\", \"probe.pool\": \"none\",
                   \"general.labels\": [\"a\", \"b\", \"c\"]}],
                  [\"tensor\", \"features\", \"f32\", [4, 2], {\"labels\": $2, \"ids\": [0, 1, 2, 3]}]]"
}

@test "cav-fit refuses bad labels in feature and concept streams" {
    need_msgpack
    concepts() { # out labels
        stream "$1" "[[\"meta\", \"\", None, None, {\"concepts.names\": [\"x\"], \"concepts.kinds\": [\"pixel\"]}],
                      [\"tensor\", \"concepts\", \"u8\", [4, 1], {\"labels\": $2, \"ids\": [0, 1, 2, 3]}]]"
    }
    concepts "$T/good.tns" "[0, 1, 2, -1]"
    for v in -2 3 9223372036854775807; do
        features "$T/f.tns" "[0, 1, $v, 2]"
        run --separate-stderr cav-fit --method cav --concepts "$T/good.tns" "$T/f.tns"
        expect_failure 1 cav-fit "f.tns: record 1 (features): sample 2 has label $v"
    done
    features "$T/f.tns" "[0, 1, 2]"
    run --separate-stderr cav-fit --method cav --concepts "$T/good.tns" "$T/f.tns"
    expect_failure 1 cav-fit "f.tns: record 1 (features): 3 labels for 4 samples"
    features "$T/f.tns" "[0, 1, 2, -1]"
    concepts "$T/c.tns" "[0, -3, 1, 2]"
    run --separate-stderr cav-fit --method cav --concepts "$T/c.tns" "$T/f.tns"
    expect_failure 1 cav-fit "c.tns: record 1 (concepts): sample 1 has label -3"
}

@test "vlm-train refuses bad labels in a concept bank" {
    need_msgpack
    images "$T/train.tns" "$($PY -c 'print([i % 3 for i in range(64)])')"
    stream "$T/bank.tns" "[[\"meta\", \"\", None, None, {\"general.labels\": [\"a\", \"b\", \"c\"],
                           \"concepts.names\": [\"x\"], \"concepts.kinds\": [\"pixel\"]}],
                          [\"tensor\", \"concepts\", \"u8\", [2, 1], {\"labels\": [0, 3], \"ids\": [0, 1]}]]"
    run --separate-stderr vlm-train -q --arch mlp --concepts "$T/bank.tns" -o "$T/v.tns" "$T/train.tns"
    expect_failure 1 vlm-train "bank.tns: record 1 (concepts): sample 1 has label 3 (a label is -1 for unlabelled or a class 0..2)"
}

@test "graph streams refuse graph.labels that are neither -1 nor a class" {
    need_msgpack
    for v in -2 -9223372036854775808 2147483648 9223372036854775807 2; do
        $PY - "$T/g.tns" "$v" <<'PY'
import msgpack, struct, sys
out, v = sys.argv[1], int(sys.argv[2])
def rec(name, dtype, fmt, values, meta=None):
    r = {"fmt": "tns", "ver": 1, "kind": "tensor", "name": name, "dtype": dtype, "shape": [len(values)],
         "data": struct.pack("<%d%s" % (len(values), fmt), *values)}
    if meta is not None:
        r["meta"] = meta
    return msgpack.packb(r)
with open(out, "wb") as f:
    f.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "",
                           "meta": {"graph.nodes": 3, "graph.classes": 2}}))
    f.write(rec("graph.indptr", "i64", "q", [0, 1, 2, 2]))
    f.write(rec("graph.indices", "i64", "q", [1, 0]))
    f.write(rec("graph.labels", "i64", "q", [0, v, -1]))
PY
        run --separate-stderr gnn-train -q "$T/g.tns"
        [ "$status" -eq 1 ] || { echo "label $v: status $status, $stderr"; return 1; }
        case "$stderr" in *"graph.labels[1]: label $v out of range (0..1, or -1 for unlabelled)"*) ;;
                          *) echo "label $v: $stderr"; return 1 ;; esac
    done
}

@test "img-write, img-select and concept-bank refuse bad labels" {
    need_msgpack
    for v in -2 3 2147483648; do
        images "$T/bad.tns" "$(labels_with "$v")"
        run --separate-stderr img-write -q -o "$T/out.tar" "$T/bad.tns"
        expect_failure 1 img-write "bad.tns: record 1 (images): sample 5 has label $v"
        [ ! -e "$T/out.tar" ]
        run --separate-stderr img-select -q --classes 0,1 -o "$T/sel.tns" "$T/bad.tns"
        expect_failure 1 img-select "bad.tns: record 1 (images): sample 5 has label $v"
        [ ! -e "$T/sel.tns" ]
        run --separate-stderr concept-bank -q -o "$T/bank.tns" "$T/bad.tns"
        expect_failure 1 concept-bank "bad.tns: record 1 (images): sample 5 has label $v"
    done
    images "$T/short.tns" '[0] * 63'
    run --separate-stderr img-write -q -o "$T/out.tar" "$T/short.tns"
    expect_failure 1 img-write "short.tns: record 1 (images): 63 labels for 64 samples"
}
