#!/bin/sh
# Data-parallel training: images/s with 1 and 2 MPI ranks, one thread each
# (OMP_NUM_THREADS=NETSMITH_THREADS=1), on the first LIMIT Fashion-MNIST
# training images, printed as Markdown (copied into bench/RESULTS.md by hand).
# Each configuration trains EPOCHS epochs from the same initial model; the
# images/s is the program's own figure for the last epoch (its --log).
#   1 process      no mpirun
#   1 rank         mpirun -np 1
#   2 ranks        mpirun -np 2 (gradients summed every step)
#   2 apart        two independent processes at once, each the 1-process run:
#                  their images/s added, the most two ranks could reach on
#                  this machine (shared caches, memory bandwidth, the cores'
#                  clocks; no communication)
# PROG=net-train trains ARCH (net-init --arch) with SGD; PROG=vlm-train trains
# a CLIP-style model (image tower VLM_ARCH, bag-of-words text tower) on
# captions drawn from the Fashion-MNIST attribute table (concept-bank), with
# the global batch's embeddings gathered every step for the loss.
# Run it alone: `flock LOCKFILE sh bench/dist.sh` on a shared machine.
#
#   PROG=net-train ARCH=lenet LIMIT=20000 BATCH=128 EPOCHS=2 sh bench/dist.sh [OUTDIR]
#   PROG=vlm-train VLM_ARCH="vgg --depth 2 --width 0.5" BATCH=256 sh bench/dist.sh
set -eu
BIN=${BIN:-bin}
W=${1:-/tmp/netsmith-bench/dist}
PROG=${PROG:-net-train}
ARCH=${ARCH:-lenet}
VLM_ARCH=${VLM_ARCH:-vgg --depth 2 --width 0.5}
LIMIT=${LIMIT:-20000}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-2}
F=/usr/share/datasets/fashion-mnist
command -v mpirun > /dev/null || { echo "dist.sh: needs Open MPI: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
mkdir -p "$W"
export OMP_NUM_THREADS=1 NETSMITH_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$BIN/img-read" -q --limit "$LIMIT" --classes examples/fashion-mnist.classes \
    "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" > "$W/train.tns"
if [ "$PROG" = vlm-train ]; then
    "$BIN/concept-bank" -q -a examples/fashion-mnist.attributes.tsv -o "$W/concepts.tns" "$W/train.tns"
    speed_column=6
else
    "$BIN/net-init" --arch "$ARCH" --like "$W/train.tns" > "$W/init.tns"
    speed_column=7
fi

# train NAME LAUNCHER...: trains, keeps the log
train() {
    name=$1
    shift
    if [ "$PROG" = vlm-train ]; then
        "$@" "$BIN/vlm-train" -q --arch "$VLM_ARCH" --concepts "$W/concepts.tns" --seed 1 --epochs "$EPOCHS" \
            --batch "$BATCH" --log "$W/$name.log" -o "$W/$name.tns" "$W/train.tns"
    else
        "$@" "$BIN/net-train" -q --model "$W/init.tns" --epochs "$EPOCHS" --batch "$BATCH" \
            --log "$W/$name.log" -o "$W/$name.tns" "$W/train.tns"
    fi
}
speed() { tail -1 "$W/$1.log" | cut -f$speed_column; }

# run NAME LAUNCHER...: trains, prints "images/s wall-s"
run() {
    start=$(date +%s.%N)
    train "$@"
    end=$(date +%s.%N)
    printf '%s %.1f\n' "$(speed "$1")" "$(echo "$end - $start" | bc)"
}

# apart: two 1-process runs at once, prints "summed-images/s wall-s"
apart() {
    start=$(date +%s.%N)
    train apart0 &
    train apart1
    wait
    end=$(date +%s.%N)
    printf '%s %.1f\n' "$(echo "$(speed apart0) + $(speed apart1)" | bc)" "$(echo "$end - $start" | bc)"
}
rm -f "$W"/*.log
mpi="mpirun --oversubscribe --allow-run-as-root -x OMP_NUM_THREADS -x NETSMITH_THREADS -x OMP_WAIT_POLICY -np"
set -- $(run one) $(run rank1 $mpi 1) $(run rank2 $mpi 2) $(apart)
what=$ARCH
[ "$PROG" = vlm-train ] && what="vlm ($VLM_ARCH)"
echo "| $PROG $what, batch $BATCH | images/s (epoch $EPOCHS) | wall s ($EPOCHS epochs, with loading) | speed-up |"
echo "|---|---|---|---|"
echo "| 1 process, no mpirun | $1 | $2 | 1.00 |"
echo "| mpirun -np 1 | $3 | $4 | $(echo "scale=2; $3 / $1" | bc) |"
echo "| mpirun -np 2 | $5 | $6 | $(echo "scale=2; $5 / $1" | bc) |"
echo "| 2 independent processes at once (the ceiling) | $7 (sum) | $8 | $(echo "scale=2; $7 / $1" | bc) |"
cmp -s "$W/one.tns" "$W/rank1.tns" && echo && echo "1 process and mpirun -np 1 give the same model bytes."
exit 0
