#!/usr/bin/env bats
# img-select and perm-align: class selection and relabelling with known
# answers; merges that must keep a function (a model with itself, the end
# points of an interpolation), concatenated heads, the report, and refusals of
# bad options, incompatible models and broken inputs.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 300 images of 4 classes, 8x8 gray (class k bright in row band k), names a..d.
toy_data() {
    $PY - "$T" <<'PY'
import struct, sys, random
out = sys.argv[1]
rnd = random.Random(3)
n = 300
labels = [i % 4 for i in range(n)]
pix = bytearray()
for k in labels:
    for y in range(8):
        for x in range(8):
            v = 200 if y // 2 == k else 30
            pix.append(max(0, min(255, v + rnd.randrange(-40, 41))))
with open(f"{out}/toy-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 8, 8) + bytes(pix))
with open(f"{out}/toy-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(labels))
open(f"{out}/names", "w").write("a\nb\nc\nd\n")
PY
    img-read -q -b 64 --classes "$T/names" "$T/toy-images-idx3-ubyte" > "$T/all.tns"
}

# labels of a stream, one per line
labels_of() { tns-tsv -l -f "$1" | cut -f1; }

# largest |a - b| between the logits two models give on a stream
logit_diff() { # model model data
    net-eval -q -m "$1" --logits "$T/la.tns" "$3" > /dev/null
    net-eval -q -m "$2" --logits "$T/lb.tns" "$3" > /dev/null
    paste <(tns-tsv "$T/la.tns") <(tns-tsv "$T/lb.tns") |
        awk '{n = NF / 2; for (i = 1; i <= n; i++) { d = $i - $(i + n); if (d < 0) d = -d; if (d > m) m = d } } END {printf "%g\n", m + 0}'
}

# MODEL merged with itself by every method gives back its logits on DATA: the
# largest difference stays under 1e-4, or under ZIP_TOL for the two zips
# (default 1e-4); the last method's report is left in $T/rep
self_merge_keeps_logits() { # model data [zip_tol]
    for method in weight act zip mudsc-align mudsc-zip; do
        perm-align -q --no-reset --method $method --data "$2" -o "$T/s.tns" "$1" "$1" > "$T/rep"
        d=$(logit_diff "$1" "$T/s.tns" "$2")
        tol=1e-4
        case $method in *zip) tol=${3:-1e-4} ;; esac
        awk -v d="$d" -v t=$tol 'BEGIN {exit !(d < t)}' || { echo "$method: $d"; return 1; }
    done
}

@test "img-select keeps the listed classes, relabelled in the order given" {
    toy_data
    img-select -q -c 2,0 "$T/all.tns" > "$T/s.tns"
    # the images of class 2 become 0 and those of class 0 become 1, in stream order
    [ "$(labels_of "$T/s.tns" | head -4 | tr '\n' ' ')" = "1 0 1 0 " ]
    [ "$(labels_of "$T/s.tns" | wc -l)" -eq 150 ]
    run tns-info "$T/s.tns"
    [[ "$output" == *"general.labels=[2]"* ]]
    # names, ranges and the stream's class names
    img-select -q -c c,a "$T/all.tns" > "$T/n.tns"
    cmp <(labels_of "$T/s.tns") <(labels_of "$T/n.tns")
    img-select -q -c 1-3 "$T/all.tns" > "$T/r.tns"
    [ "$(labels_of "$T/r.tns" | sort -u | tr '\n' ' ')" = "0 1 2 " ]
    net-init --arch mlp --like "$T/r.tns" -o "$T/m.tns"
    [ "$(net-info "$T/m.tns" | awk '$1=="classes"{print $2}')" -eq 3 ]
    # images are copied unchanged: class 1's first image is the stream's second
    [ "$(tns-tsv -f "$T/r.tns" | head -1)" = "$(tns-tsv -f "$T/all.tns" | sed -n 2p)" ]
}

@test "img-select --per-class and --limit" {
    toy_data
    img-select -q -c 0-3 -p 5 "$T/all.tns" > "$T/p.tns"
    [ "$(labels_of "$T/p.tns" | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')" = "5 5 5 5 " ]
    img-select -q -c 0,1 -n 7 "$T/all.tns" > "$T/l.tns"
    [ "$(labels_of "$T/l.tns" | wc -l)" -eq 7 ]
    [ "$(tns-tsv -i -f "$T/l.tns" | wc -l)" -eq 7 ]
}

@test "img-select refuses bad lists and streams" {
    toy_data
    run --separate-stderr img-select -c 0,x "$T/all.tns"
    expect_failure 2 img-select "unknown class (x)"
    run --separate-stderr img-select -c 1,1 "$T/all.tns"
    expect_failure 2 img-select "listed twice"
    run --separate-stderr img-select -c 3-1 "$T/all.tns"
    expect_failure 2 img-select "bad class range"
    run --separate-stderr img-select "$T/all.tns"
    expect_failure 2 img-select "--classes is required"
    run --separate-stderr img-select -c 7 "$T/all.tns"
    expect_failure 1 img-select "beyond the stream's 4 classes"
    head -c 1000 "$T/all.tns" > "$T/cut.tns"
    run --separate-stderr img-select -c 0 -o "$T/out.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    [ ! -e "$T/out.tns" ]
}

@test "img-select checks the class list before it creates its output" {
    toy_data
    mkdir "$T/d"
    for bad in "0,x|2|unknown class (x)" "1,1|2|listed twice" "7|1|beyond the stream's 4 classes"; do
        IFS='|' read -r list code text <<< "$bad"
        run --separate-stderr img-select -c "$list" -o "$T/d/out.tns" "$T/all.tns"
        expect_failure "$code" img-select "$text"
        [ -z "$(ls -A "$T/d")" ] # neither the output nor a temporary file
        # the output is not even opened: a directory that does not exist is not reported
        run --separate-stderr img-select -c "$list" -o "$T/none/out.tns" "$T/all.tns"
        expect_failure "$code" img-select "$text"
    done
    # a good list still writes there, and a bad output path is still reported
    img-select -q -c 0,1 -o "$T/d/out.tns" "$T/all.tns"
    [ "$(ls -A "$T/d")" = out.tns ]
    run --separate-stderr img-select -q -c 0,1 -o "$T/none/out.tns" "$T/all.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"$T/none/out.tns"* ]]
}

# Two trained toy models: A on classes a,b and B on c,d (different seeds).
two_tasks() {
    toy_data
    img-select -q -c a,b "$T/all.tns" > "$T/ab.tns"
    img-select -q -c c,d "$T/all.tns" > "$T/cd.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/ab.tns" --seed 1 -o "$T/A0.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/cd.tns" --seed 2 -o "$T/B0.tns"
    net-train -q -m "$T/A0.tns" -e 2 --seed 1 -o "$T/A.tns" "$T/ab.tns"
    net-train -q -m "$T/B0.tns" -e 2 --seed 2 -o "$T/B.tns" "$T/cd.tns"
}

@test "perm-align: a model merged with itself computes the same logits" {
    toy_data
    net-init --arch resnet20 --width 0.5 --like "$T/all.tns" -o "$T/m.tns"
    # alignment is exact (dead units are matched by their weights); a zip
    # may merge two nearly dead units of one model (firing on a few pixels
    # of this toy data: their correlations are noise), which shifts a little
    self_merge_keeps_logits "$T/m.tns" "$T/all.tns" 1e-2
    # the report: a line per free group (resnet20: 12); weight matching of
    # identical copies scores 1 everywhere (activations may not: a unit of tiny
    # variance is damped by the 1e-7 clamp of MuDSC's correlation)
    grep -q "^method	mudsc-zip$" "$T/rep"
    perm-align -q --no-reset --method weight -o "$T/s.tns" "$T/m.tns" "$T/m.tns" > "$T/rep"
    [ "$(grep -c '^group' "$T/rep")" -eq 12 ]
    awk -F'\t' '$1=="group" && ($5 < 0.999 || $5 > 1.001) {exit 1}' "$T/rep"
}

@test "perm-align merges ViTs: with itself the same logits, heads matched as blocks" {
    toy_data
    net-init --arch vit --width 0.5 --depth 2 --patch 4 --heads 4 --like "$T/all.tns" -o "$T/v.tns"
    net-init --arch vit --width 0.5 --depth 2 --patch 4 --heads 4 --seed 1 --like "$T/all.tns" -o "$T/w.tns"
    self_merge_keeps_logits "$T/v.tns" "$T/all.tns"
    # the report: residual stream, per block qk, v and MLP (7 free groups);
    # the qk/v features are read at the block's norm1
    [ "$(grep -c '^group' "$T/rep")" -eq 7 ]
    grep -q "^group	2	32	.*encoder.layers.0.self_attn	encoder.layers.0.norm1$" "$T/rep"
    # two different ViTs merge into a model that runs
    perm-align -q --method mudsc-zip --data "$T/all.tns" -o "$T/vw.tns" "$T/v.tns" "$T/w.tns" > /dev/null
    net-eval -q -m "$T/vw.tns" "$T/all.tns" > /dev/null
}

@test "perm-align merges text transformers (end-of-text pooling): with itself the same logits" {
    make_ids "$T/ids.tns" 96 8 20 4
    net-init --arch text-transformer --in 8 --vocab 20 --classes 4 --width 0.5 -o "$T/t.tns"
    net-init --arch text-transformer --in 8 --vocab 20 --classes 4 --width 0.5 --seed 1 -o "$T/u.tns"
    self_merge_keeps_logits "$T/t.tns" "$T/ids.tns"
    # residual stream, per block qk, v and MLP (7 free groups); the stream's
    # features are read at the pooled end-of-text token
    [ "$(grep -c '^group' "$T/rep")" -eq 7 ]
    net-info --groups "$T/t.tns" | grep -q "^group 1: 32 channels.*features at pool$"
    perm-align -q --method mudsc-zip --data "$T/ids.tns" -o "$T/tu.tns" "$T/t.tns" "$T/u.tns" > /dev/null
    [ "$(net-eval -q -m "$T/tu.tns" "$T/ids.tns" | awk '$1=="samples"{print $2}')" -eq 96 ]
}

@test "perm-align merges GroupNorm nets: groups matched as blocks, with itself the same logits" {
    toy_data
    cat > "$T/gn.cfg" <<'CFG'
[input]
shape = 1x8x8
[conv2d c1]
out = 12
pad = 1
[groupnorm g1]
groups = 3
[relu]
[conv2d c2]
out = 8
pad = 1
[groupnorm g2]
groups = 4
[relu]
[global_avgpool]
[linear fc]
out = 4
CFG
    net-init --spec "$T/gn.cfg" --like "$T/all.tns" -o "$T/g.tns"
    net-info --groups "$T/g.tns" | grep -q "12 channels in blocks of 4 (blocks move whole)"
    self_merge_keeps_logits "$T/g.tns" "$T/all.tns"
}

@test "perm-align --partial: merged up to a node, each model's layers after it" {
    toy_data
    img-select -c 0,1 "$T/all.tns" -o "$T/ab.tns"
    img-select -c 2,3 "$T/all.tns" -o "$T/cd.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/ab.tns" --seed 1 -o "$T/A.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/cd.tns" --seed 2 -o "$T/B.tns"
    perm-align -q --method zip --partial layer3.0.relu2 --data "$T/all.tns" -o "$T/P.tns" "$T/A.tns" "$T/B.tns" > /dev/null
    net-info "$T/P.tns" > "$T/info"
    grep -q "^output	4 (heads)" "$T/info"
    grep -q "^m1.unmerge.layer3.0.relu2	conv2d" "$T/info"
    grep -q "^m0.layer3.1.conv1	" "$T/info"
    net-eval -q -m "$T/P.tns" "$T/all.tns" > /dev/null
    run -2 perm-align --partial layer3.0.relu2 --heads mean --data "$T/all.tns" -o "$T/Q.tns" "$T/A.tns" "$T/A.tns"
    [[ "$output" == *"--heads mean"* ]]
    run -1 perm-align -q --partial nosuch --data "$T/all.tns" -o "$T/Q.tns" "$T/A.tns" "$T/B.tns"
    [[ "$output" == *"no node nosuch"* ]]
    [ ! -e "$T/Q.tns" ]
}

@test "perm-align --lambda: the end points of the interpolation are the models" {
    toy_data
    net-init --arch resnet20 --width 0.5 --like "$T/all.tns" --seed 1 -o "$T/a.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/all.tns" --seed 2 -o "$T/b.tns"
    perm-align -q --no-reset --method average --lambda 0 -o "$T/l0.tns" "$T/a.tns" "$T/b.tns" > /dev/null
    perm-align -q --no-reset --method weight --lambda 1 -o "$T/l1.tns" "$T/a.tns" "$T/b.tns" > /dev/null
    perm-align -q --no-reset --method average -o "$T/mid.tns" "$T/a.tns" "$T/b.tns" > /dev/null
    d0=$(logit_diff "$T/a.tns" "$T/l0.tns" "$T/all.tns")
    d1=$(logit_diff "$T/b.tns" "$T/l1.tns" "$T/all.tns")
    dm=$(logit_diff "$T/a.tns" "$T/mid.tns" "$T/all.tns")
    awk -v a="$d0" -v b="$d1" -v m="$dm" 'BEGIN {exit !(a < 1e-5 && b < 1e-4 && m > 1e-3)}'
}

@test "perm-align concatenates task heads: the merged model predicts the union of classes" {
    two_tasks
    run perm-align -q --json --data "$T/all.tns" -o "$T/m.tns" "$T/A.tns" "$T/B.tns"
    [ "$status" -eq 0 ]
    echo "$output" | $PY -c 'import json,sys; r=json.load(sys.stdin); assert r["method"]=="mudsc-zip" and len(r["groups"])==12 and r["sweeps"]>=1, r'
    [ "$(net-info "$T/m.tns" | awk '$1=="classes"{print $2}')" -eq 4 ]
    run tns-info "$T/m.tns"
    [[ "$output" == *"merge.method=mudsc-zip"* ]]
    # class names a,b then c,d: net-eval accepts the full stream
    net-eval -q -m "$T/m.tns" "$T/all.tns" > "$T/eval"
    acc=$(awk '$1=="accuracy"{print $2}' "$T/eval")
    awk -v a="$acc" 'BEGIN {exit !(a > 0.25)}'
    # every variant runs and writes a model
    for method in average weight act zip mudsc-align; do
        perm-align -q --method $method --data "$T/all.tns" -o "$T/$method.tns" "$T/A.tns" "$T/B.tns" > /dev/null
        net-eval -q -m "$T/$method.tns" "$T/all.tns" > /dev/null
    done
}

@test "perm-align refuses bad options" {
    toy_data
    net-init --arch resnet20 --width 0.5 --like "$T/all.tns" -o "$T/m.tns"
    run --separate-stderr perm-align -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "--data is required"
    run --separate-stderr perm-align --data - -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "--data needs a file"
    run --separate-stderr perm-align --method foo --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "unknown --method (foo)"
    run --separate-stderr perm-align --method act --alpha 0.3 --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "--alpha is for the mudsc methods"
    run --separate-stderr perm-align --lambda 0.5 --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "--lambda needs exactly two models (3)"
    run --separate-stderr perm-align --alpha 2 --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr perm-align --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns"
    [ "$status" -eq 2 ]
    run --separate-stderr perm-align --heads sideways --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 2 perm-align "--heads must be"
    [ ! -e "$T/o.tns" ]
}

@test "perm-align refuses incompatible models and broken inputs" {
    toy_data
    net-init --arch resnet20 --width 0.5 --like "$T/all.tns" -o "$T/m.tns"
    net-init --arch resnet20 --width 1 --like "$T/all.tns" -o "$T/wide.tns"
    net-init --arch vgg --like "$T/all.tns" -o "$T/vgg.tns"
    net-init --arch resnet20 --width 0.5 --in 1x12x12 --classes 4 -o "$T/big.tns"
    run --separate-stderr perm-align --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/wide.tns"
    expect_failure 1 perm-align "is not the architecture of"
    [[ "$stderr" == *"conv1 out: 16 against 8"* ]]
    run --separate-stderr perm-align --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/vgg.tns"
    expect_failure 1 perm-align "is not the architecture of"
    run --separate-stderr perm-align --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/big.tns"
    expect_failure 1 perm-align "takes inputs of 1x12x12"
    # --heads mean needs the same classes
    img-select -q -c a,b "$T/all.tns" > "$T/ab.tns"
    net-init --arch resnet20 --width 0.5 --like "$T/ab.tns" -o "$T/two.tns"
    run --separate-stderr perm-align --heads mean --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/two.tns"
    expect_failure 1 perm-align "--heads mean needs models with the same classes"
    # a truncated model, data of another shape, a truncated data stream
    head -c 3000 "$T/m.tns" > "$T/cut.tns"
    run --separate-stderr perm-align --data "$T/all.tns" -o "$T/o.tns" "$T/m.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    [[ "$stderr" == "perm-align: "* ]]
    make_idx "$T/sq-images" 10 6 6
    img-read -q --no-labels "$T/sq-images" > "$T/six.tns"
    run --separate-stderr perm-align --data "$T/six.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    expect_failure 1 perm-align "samples of 1x6x6, the model takes 1x8x8"
    head -c 5000 "$T/all.tns" > "$T/cutdata.tns"
    run --separate-stderr perm-align --data "$T/cutdata.tns" -o "$T/o.tns" "$T/m.tns" "$T/m.tns"
    [ "$status" -eq 1 ]
    [ ! -e "$T/o.tns" ]
}
