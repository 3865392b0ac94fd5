#!/bin/sh
# Peak memory (whole process, /usr/bin/time -v) and time of the programs that
# run a model over a data stream, on the 10000 Fashion-MNIST test images with
# a ResNet-20 (fresh weights: memory does not depend on them), printed as
# Markdown (copied into bench/RESULTS.md, "Memory", by hand):
#   net-eval --json --logits       evaluation, batch 256
#   probe-embed                    features at the default layer (avgpool), batch 256
#   probe-embed --flatten --layer layer3.2.relu2
#   net-train --epochs 1           one epoch on the same images, batch 128
# With BASE=dir (the bin/ of another build, e.g. the commit before), each is
# run with both builds and the outputs compared with cmp (they must be the
# same bytes).
#
#   sh bench/memory.sh [OUTDIR]
#   BASE=/tmp/base/bin PARTS="eval probe train" sh bench/memory.sh
set -eu
BIN=${BIN:-bin}
BASE=${BASE:-}
W=${1:-/tmp/netsmith-bench/memory}
PARTS=${PARTS:-eval probe train}
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
F=/usr/share/datasets/fashion-mnist
[ -x /usr/bin/time ] || { echo "memory.sh: needs GNU time: apt-get install time" >&2; exit 1; }
mkdir -p "$W"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

[ -s "$W/test.tns" ] || "$BIN/img-read" -q --classes examples/fashion-mnist.classes "$F/t10k-images-idx3-ubyte.gz" > "$W/test.tns"
[ -s "$W/r20.tns" ] || "$BIN/net-init" --arch resnet20 --like "$W/test.tns" > "$W/r20.tns"

# measure TAG BUILD-DIR OUT-STEM PROGRAM ARGS...: runs the program, keeping
# its stdout in OUT-STEM.stdout, and prints "peak-MB wall-s user-s"
measure() {
    tag=$1 dir=$2 stem=$3
    shift 3
    prog=$1
    shift
    /usr/bin/time -v "$dir/$prog" "$@" > "$stem.stdout" 2> "$W/$tag.time" ||
        { echo "memory.sh: $prog failed:" >&2; cat "$W/$tag.time" >&2; exit 1; }
    awk -F': ' '/Maximum resident/ {rss = $2 / 1024}
                /Elapsed \(wall clock\)/ {n = split($2, t, ":"); wall = n == 3 ? t[1] * 3600 + t[2] * 60 + t[3] : t[1] * 60 + t[2]}
                /User time/ {user = $2}
                END {printf "%.0f %.1f %.1f\n", rss, wall, user}' "$W/$tag.time"
}

# row NAME OUTPUT-FILES... -- PROGRAM ARGS (output paths written as @OUT@)
row() {
    name=$1
    shift
    outs=""
    while [ "$1" != "--" ]; do outs="$outs $1"; shift; done
    shift
    after=$(measure "$name.after" "$BIN" "$W/$name.after" $(echo "$@" | sed "s|@OUT@|$W/$name.after|g"))
    if [ -n "$BASE" ]; then
        before=$(measure "$name.before" "$BASE" "$W/$name.before" $(echo "$@" | sed "s|@OUT@|$W/$name.before|g"))
        same=yes
        for o in stdout $outs; do cmp -s "$W/$name.before.$o" "$W/$name.after.$o" || same=NO; done
        echo "$before $after" | awk -v n="$name" -v s="$same" \
            '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", n, $1, $4, $2, $5, $3, $6, s}'
    else
        echo "$after" | awk -v n="$name" '{printf "| %s | %s | %s | %s |\n", n, $1, $2, $3}'
    fi
}

if [ -n "$BASE" ]; then
    echo "| run | peak RSS MB before | after | wall s before | after | user s before | after | same output bytes |"
    echo "|---|---|---|---|---|---|---|---|"
else
    echo "| run | peak RSS MB | wall s | user s |"
    echo "|---|---|---|---|"
fi
# the feature streams name the model's path, the same in both runs
if want eval; then
    row net-eval logits -- net-eval -q --model "$W/r20.tns" --json --logits @OUT@.logits "$W/test.tns"
fi
if want probe; then
    row probe-embed features -- probe-embed -q --model "$W/r20.tns" -o @OUT@.features "$W/test.tns"
    row probe-embed-flatten features -- probe-embed -q --model "$W/r20.tns" --flatten --layer layer3.2.relu2 \
        -o @OUT@.features "$W/test.tns"
fi
if want train; then
    row net-train model -- net-train -q --model "$W/r20.tns" --epochs 1 -o @OUT@.model "$W/test.tns"
fi
