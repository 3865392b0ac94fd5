#!/bin/sh
# Training quality on Fashion-MNIST (issue 3's acceptance): a small CNN and
# ResNet-20 (width 1 = 16 channels), trained from scratch on the 60000 training
# images, tested on the 10000 test images. Prints epochs, wall time, peak memory
# and test accuracy; the per-epoch logs go to $W/*.log.tsv.
#   sh bench/quality.sh [cnn|resnet20|all]
set -eu
BIN=${BIN:-bin}
W=${BENCH_DIR:-/tmp/netsmith-bench}
F=/usr/share/datasets/fashion-mnist
C=examples/fashion-mnist.classes
what=${1:-all}
mkdir -p "$W"
"$BIN/img-read" -q --classes $C "$F/train-images-idx3-ubyte.gz" -o "$W/fm-train.tns"
"$BIN/img-read" -q --classes $C "$F/t10k-images-idx3-ubyte.gz" -o "$W/fm-test.tns"

run() { # name epochs net-init-args -- net-train-args
    name=$1; epochs=$2; shift 2
    init=""; while [ "$1" != "--" ]; do init="$init $1"; shift; done; shift
    "$BIN/net-init" $init --like "$W/fm-train.tns" -o "$W/$name-init.tns"
    rm -f "$W/$name.log.tsv"
    t0=$(date +%s)
    /usr/bin/time -f %M -o "$W/$name.mem" "$BIN/net-train" -q -m "$W/$name-init.tns" --epochs "$epochs" \
        --log "$W/$name.log.tsv" "$@" -o "$W/$name.tns" "$W/fm-train.tns"
    secs=$(( $(date +%s) - t0 ))
    acc=$("$BIN/net-eval" -q -m "$W/$name.tns" "$W/fm-test.tns" | awk '$1=="accuracy"{print $2}')
    echo "| $name | $("$BIN/net-info" -t "$W/$name.tns" | awk '$1=="arch"{$1=""; print}') | $epochs | $secs s | $(( $(cat "$W/$name.mem") / 1024 )) MB | $acc |"
}

echo "| model | architecture | epochs | wall time | peak RSS | test accuracy |"
echo "|---|---|---|---|---|---|"
case $what in cnn|all)
    run cnn 15 --arch vgg --depth 4 --width 2 -- --lr 0.05 --wd 5e-4 --crop-pad 2 --flip --batch 128 ;; esac
case $what in resnet20|all)
    run resnet20 30 --arch resnet20 --width 1 -- --lr 0.1 --wd 5e-4 --nesterov --crop-pad 2 --flip --batch 128 ;; esac
