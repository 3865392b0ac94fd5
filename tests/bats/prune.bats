#!/usr/bin/env bats
# net-prune: a pruned model is an ordinary, smaller model stream whose MACs
# and parameters are what the report and its meta say; every criterion runs
# from the command line; the dry run writes nothing; refusals of bad options,
# unreachable targets, missing data, unprunable and broken models leave no
# output file.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 128 images 1x12x12 of 4 classes (pixels from make_idx), a resnet20 for them.
toy() {
    make_idx "$T/toy-images-idx3-ubyte" 128 12 12
    make_idx_labels "$T/toy-labels-idx1-ubyte" $(for i in $(seq 0 127); do echo $((i % 4)); done)
    printf 'a\nb\nc\nd\n' > "$T/names"
    img-read -q --classes "$T/names" "$T/toy-images-idx3-ubyte" > "$T/data.tns"
    net-init --arch resnet20 --like "$T/data.tns" --seed 1 -o "$T/r20.tns"
}

field() { awk -v k="$1" '$1==k{print $2; exit}' "$2"; }

@test "net-prune reaches a 2x speed-up with a physically smaller model" {
    toy
    net-prune -q -m "$T/r20.tns" -o "$T/p.tns" --speed-up 2 > "$T/rep"
    [ "$(field criterion "$T/rep")" = l2 ]
    macs=$(awk '$1=="macs"{print $2, $3}' "$T/rep")
    set -- $macs
    [ "$(net-info "$T/r20.tns" | awk '$1=="macs"{print $2}')" -eq "$1" ]
    [ "$(net-info "$T/p.tns" | awk '$1=="macs"{print $2}')" -eq "$2" ]
    awk -v a="$1" -v b="$2" 'BEGIN{exit !(a / b >= 2 && a / b < 2.2)}'
    [ "$(net-info "$T/p.tns" | awk '$1=="params"{print $2}')" -eq "$(awk '$1=="params"{print $3}' "$T/rep")" ]
    [ "$(stat -c %s "$T/p.tns")" -lt "$(stat -c %s "$T/r20.tns")" ]
    # the meta says what was done; the model still runs and keeps its classes
    run tns-info "$T/p.tns"
    [[ "$output" == *"prune.criterion=l2"* && "$output" == *"prune.target=speed-up 2"* ]]
    [[ "$output" == *"prune.macs_after=$2"* ]]
    net-eval -q -m "$T/p.tns" "$T/data.tns" > "$T/ev"
    [ "$(field samples "$T/ev")" -eq 128 ]
    # the same command gives the same bytes
    net-prune -q -m "$T/r20.tns" -o "$T/p2.tns" --speed-up 2 > /dev/null
    cmp "$T/p.tns" "$T/p2.tns"
}

@test "every criterion prunes resnet20 to 2x" {
    toy
    for c in random l1 l2 bn-scale fpgm lamp taylor obd-hessian obd-c hrank thinet cp; do
        net-prune -q -m "$T/r20.tns" -o "$T/$c.tns" -c $c -x 2 -n 32 --json "$T/data.tns" > "$T/$c.json"
        $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["criterion"]==sys.argv[2] and 2 <= r["speed_up"] < 2.3, r' "$T/$c.json" "$c"
    done
    # different criteria choose different channels
    ! cmp -s "$T/l1.tns" "$T/random.tns"
}

@test "ratio, local, protection, round-to and steps" {
    toy
    net-prune -q -m "$T/r20.tns" -o "$T/p.tns" --ratio 0.5 --local --round-to 4 --steps 3 --json > "$T/r.json"
    $PY - "$T/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["mode"] == "local" and r["steps"] == 3
for g in r["groups"]:
    assert g["kept"] % 4 == 0 and abs(g["kept"] / g["channels"] - 0.5) <= 0.13, g
PY
    # strong protection: every group keeps at least half
    net-prune -q -m "$T/r20.tns" -o "$T/q.tns" -x 1.5 --protect 0.5 --json > "$T/q.json"
    $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); assert all(g["kept"] * 2 >= g["channels"] for g in r["groups"]), r' "$T/q.json"
}

@test "net-prune --dry-run reports per group and writes nothing" {
    toy
    net-prune -m "$T/r20.tns" --dry-run -x 3 > "$T/rep"
    [ "$(grep -c '^group' "$T/rep")" -eq 12 ]
    [ "$(ls "$T")" = "$(printf 'data.tns\nnames\nr20.tns\nrep\ntoy-images-idx3-ubyte\ntoy-labels-idx1-ubyte')" ]
    awk '$1=="speed_up"{exit !($2 >= 3)}' "$T/rep"
}

@test "net-prune refuses targets beyond the protection, missing data, unprunable models" {
    toy
    run -1 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 100
    [[ "$output" == *"cannot be reached"*"at most"* ]]
    [ ! -e "$T/p.tns" ]
    run -1 net-prune -m "$T/r20.tns" -o "$T/p.tns" --ratio 0.95
    [[ "$output" == *"--ratio 0.95 cannot be reached"* ]]
    run -2 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 2 -c taylor
    [[ "$output" == *"taylor needs labelled DATA"* ]]
    [ ! -e "$T/p.tns" ]
    printf '[input]\nshape = 1x12x12\n[flatten]\n[linear fc]\nout = 4\n' > "$T/flat.cfg"
    net-init --spec "$T/flat.cfg" -o "$T/flat.tns"
    run -1 net-prune -m "$T/flat.tns" -o "$T/p.tns" -x 2
    [[ "$output" == *"no channel group can be pruned"* ]]
    [ ! -e "$T/p.tns" ]
    printf '[input]\nshape = 1x12x12\n[flatten]\n[linear h]\nout = 8\n[relu]\n[linear fc]\nout = 4\n' > "$T/mlp.cfg"
    net-init --spec "$T/mlp.cfg" -o "$T/mlp.tns"
    run -1 net-prune -m "$T/mlp.tns" -o "$T/p.tns" -x 1.2 -c bn-scale
    [[ "$output" == *"bn-scale scores no group"* ]]
    [ ! -e "$T/p.tns" ]
    # grouped convs: the two convs' channels each fill half of g's input (a
    # block of its groups), g's output is the model's: nothing can go
    printf '[input]\nshape = 4x8x8\n[conv2d a]\nout = 2\npad = 1\n[conv2d b]\nfrom = input\nout = 2\npad = 1\n' > "$T/g.cfg"
    printf '[concat]\nfrom = a, b\n[conv2d g]\nout = 2\ngroups = 2\npad = 1\n[global_avgpool]\n' >> "$T/g.cfg"
    net-init --spec "$T/g.cfg" -o "$T/g.tns"
    run -1 net-prune -m "$T/g.tns" -o "$T/p.tns" -x 1.2
    [[ "$output" == *"no channel group can be pruned (fixed: model input, model output; part of a grouped conv's input or output)"* ]]
    [ ! -e "$T/p.tns" ]
    # with a classifier after it, g's output is a group of two blocks of one
    # channel, which the protection keeps whole
    printf '[linear fc]\nout = 3\n' >> "$T/g.cfg"
    net-init --spec "$T/g.cfg" -o "$T/g.tns"
    run -1 net-prune -m "$T/g.tns" -o "$T/p.tns" -x 1.2
    [[ "$output" == *"--speed-up 1.2 cannot be reached: at most 1.000x"* ]]
    [ ! -e "$T/p.tns" ]
}

@test "resnet56: 30 groups, pruned to 2x; the pruned model trains and evaluates" {
    toy
    net-init --arch resnet56 --width 0.25 --like "$T/data.tns" --seed 1 -o "$T/r56.tns"
    net-prune -q -m "$T/r56.tns" -o "$T/p.tns" -c taylor -x 2 -n 16 "$T/data.tns" > "$T/rep"
    [ "$(grep -c '^group' "$T/rep")" -eq 30 ]
    awk '$1=="speed_up"{exit !($2 >= 2 && $2 < 2.3)}' "$T/rep"
    [ "$(net-info "$T/p.tns" | awk '$1=="params"{print $2}')" -eq "$(awk '$1=="params"{print $3}' "$T/rep")" ]
    net-train -q -m "$T/p.tns" -e 1 --batch 64 -o "$T/t.tns" "$T/data.tns"
    [ "$(net-eval -q -m "$T/t.tns" "$T/data.tns" | awk '$1=="samples"{print $2}')" -eq 128 ]
}

@test "net-prune refuses bad options and broken models" {
    toy
    run -2 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 2 --ratio 0.3
    [[ "$output" == *"exactly one of --speed-up and --ratio"* ]]
    run -2 net-prune -m "$T/r20.tns" -o "$T/p.tns"
    run -2 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 1
    run -2 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 2 -c magic
    [[ "$output" == *"unknown --criterion (magic)"* ]]
    run -2 net-prune -m "$T/r20.tns" -x 2
    run -2 net-prune -m "$T/r20.tns" -o - -x 2
    head -c 3000 "$T/r20.tns" > "$T/cut.tns"
    run -1 net-prune -m "$T/cut.tns" -o "$T/p.tns" -x 2
    [ ! -e "$T/p.tns" ]
    run -1 net-prune -m "$T/r20.tns" -o "$T/p.tns" -x 2 -c taylor "$T/cut.tns"
    [ ! -e "$T/p.tns" ]
}

@test "net-train --reg: each regulariser trains and is recorded; refusals" {
    toy
    for r in bn-scale group-lasso group-norm growing-reg; do
        net-train -q -m "$T/r20.tns" -e 1 -b 64 --reg $r --reg-lambda 1e-3 -o "$T/$r.tns" "$T/data.tns"
        run tns-info "$T/$r.tns"
        [[ "$output" == *"train.reg=$r"* && "$output" == *"train.reg_seconds="* ]]
    done
    # the regulariser changes the result: same seed without it differs
    net-train -q -m "$T/r20.tns" -e 1 -b 64 -o "$T/plain.tns" "$T/data.tns"
    ! cmp -s <(tns-cat --no-meta -n 'layer1.0.conv1.weight' "$T/plain.tns" | tail -c 2000) \
             <(tns-cat --no-meta -n 'layer1.0.conv1.weight' "$T/group-norm.tns" | tail -c 2000)
    run -2 net-train -m "$T/r20.tns" -e 1 --reg magic -o "$T/x.tns" "$T/data.tns"
    [[ "$output" == *"unknown --reg (magic)"* ]]
    run -2 net-train -m "$T/r20.tns" -e 1 --reg-lambda 1 -o "$T/x.tns" "$T/data.tns"
    printf '[input]\nshape = 1x12x12\n[flatten]\n[linear h]\nout = 8\n[relu]\n[linear fc]\nout = 4\n' > "$T/mlp.cfg"
    net-init --spec "$T/mlp.cfg" --like "$T/data.tns" -o "$T/mlp.tns"
    run -1 net-train -m "$T/mlp.tns" -e 1 --reg bn-scale -o "$T/x.tns" "$T/data.tns"
    [[ "$output" == *"no batch norm"* ]]
    [ ! -e "$T/x.tns" ]
}

@test "net-train --reg growing-reg: the strengths are checkpointed; a resumed run equals the uninterrupted one" {
    toy
    # delta 1: the strengths grow a lot at each epoch start, so losing them shows
    set -- -e 3 -b 64 --reg growing-reg --reg-lambda 1e-3 --reg-delta 1
    net-train -q -m "$T/r20.tns" "$@" -o "$T/a.tns" "$T/data.tns"
    net-train -q -m "$T/r20.tns" "$@" --stop-after 2 -c "$T/ck.tns" -o /dev/null "$T/data.tns"
    run tns-info "$T/ck.tns"
    [[ "$output" == *"reg.growing-reg.lambda"* ]]
    net-train -q -m "$T/ck.tns" --resume "$@" -o "$T/b.tns" "$T/data.tns"
    cmp <(tns-cat --no-meta "$T/a.tns") <(tns-cat --no-meta "$T/b.tns")
    # a plain checkpoint has no strengths to resume growing-reg from
    net-train -q -m "$T/r20.tns" -e 3 -b 64 --stop-after 1 -c "$T/plain.tns" -o /dev/null "$T/data.tns"
    run -1 net-train -m "$T/plain.tns" --resume "$@" -o "$T/x.tns" "$T/data.tns"
    [[ "$output" == *"no growing-reg strengths"* ]]
    [ ! -e "$T/x.tns" ]
}

@test "net-prune on a text transformer: only the MLP units go, and the smaller model runs and trains" {
    make_ids "$T/ids.tns" 64 8 20 4
    net-init --arch text-transformer --in 8 --vocab 20 --classes 4 -o "$T/t.tns"
    for c in l2 taylor; do
        net-prune -q -m "$T/t.tns" -o "$T/p.tns" --ratio 0.5 -c $c "$T/ids.tns" > "$T/rep"
        [ "$(awk '$1=="group"{print $3}' "$T/rep" | tr '\n' ' ')" = "encoder.layers.0.linear1 encoder.layers.1.linear1 " ]
        [ "$(awk '$1=="params"{print ($3 < $2)}' "$T/rep")" -eq 1 ]
        [ "$(net-info "$T/p.tns" | awk '$1=="params"{print $2}')" -eq "$(awk '$1=="params"{print $3}' "$T/rep")" ]
        [ "$(net-eval -q -m "$T/p.tns" "$T/ids.tns" | awk '$1=="samples"{print $2}')" -eq 64 ]
        net-train -q -m "$T/p.tns" -e 1 --optim adamw -o "$T/q.tns" "$T/ids.tns"
        [ "$(net-eval -q -m "$T/q.tns" "$T/ids.tns" | awk '$1=="samples"{print $2}')" -eq 64 ]
    done
}

@test "pipelines/prune.mk: a missing evaluation (a new seed, a deleted file) makes the table out of date" {
    p="$T/o/prune"
    mkdir -p "$p"
    # every file of one seed, each newer than what it is made from
    t=1700000000
    for f in train.tns test.tns ft.tns base.tns eval-base.txt sparse-group-norm.tns \
             pruned-l1-2-s1.tns tuned-l1-2-s1.tns eval-l1-2-s1.txt pruned-l2+group-norm-2-s1.tns \
             tuned-l2+group-norm-2-s1.tns eval-l2+group-norm-2-s1.txt runs.tsv ../prune.txt ../prune.svg; do
        touch -d "@$((t += 10))" "$p/$f"
    done
    uptodate() { # make -q: exit 0 when nothing would be made
        (cd "$ROOT" && env -u MAKEFLAGS -u MAKELEVEL make -q -f pipelines/prune.mk OUT="$T/o" SPEEDUPS=2 \
            CRITERIA=l1 PAIRINGS=l2+group-norm "$@")
    }
    run uptodate SEEDS=1
    [ "$status" -eq 0 ]
    run uptodate SEEDS="1 2"
    [ "$status" -eq 1 ]
    rm "$p/eval-l1-2-s1.txt"
    run uptodate SEEDS=1
    [ "$status" -eq 1 ]
}
