#!/bin/sh
# Data-parallel net-train: images/s with 1 and 2 MPI ranks, one thread each
# (OMP_NUM_THREADS=NETSMITH_THREADS=1), on the first LIMIT Fashion-MNIST
# training images, printed as Markdown (copied into bench/RESULTS.md by hand).
# Each configuration trains EPOCHS epochs from the same initial model; the
# images/s is net-train's own figure for the last epoch (training only).
#   1 process      net-train, no mpirun
#   1 rank         mpirun -np 1 net-train
#   2 ranks        mpirun -np 2 net-train (gradients summed every step)
# Run it alone: `flock /work/.../cpu.lock sh bench/dist.sh` on a shared machine.
#
#   ARCH=lenet LIMIT=20000 BATCH=128 sh bench/dist.sh [OUTDIR]
set -eu
BIN=${BIN:-bin}
W=${1:-/tmp/netsmith-bench/dist}
ARCH=${ARCH:-lenet}
LIMIT=${LIMIT:-20000}
BATCH=${BATCH:-128}
EPOCHS=${EPOCHS:-2}
F=/usr/share/datasets/fashion-mnist
command -v mpirun > /dev/null || { echo "dist.sh: needs Open MPI: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
mkdir -p "$W"
export OMP_NUM_THREADS=1 NETSMITH_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$BIN/img-read" -q --limit "$LIMIT" --classes examples/fashion-mnist.classes "$F/train-images-idx3-ubyte.gz" > "$W/train.tns"
"$BIN/net-init" --arch $ARCH --like "$W/train.tns" > "$W/init.tns"

# run NAME LAUNCHER...: trains, keeps the log, prints "images/s wall-s"
run() {
    name=$1
    shift
    start=$(date +%s.%N)
    "$@" "$BIN/net-train" -q --model "$W/init.tns" --epochs "$EPOCHS" --batch "$BATCH" \
        --log "$W/$name.log" -o "$W/$name.tns" "$W/train.tns"
    end=$(date +%s.%N)
    printf '%s %.1f\n' "$(tail -1 "$W/$name.log" | cut -f7)" "$(echo "$end - $start" | bc)"
}
rm -f "$W"/*.log
set -- $(run one) $(run rank1 mpirun --oversubscribe --allow-run-as-root -np 1 -x OMP_NUM_THREADS -x NETSMITH_THREADS) \
       $(run rank2 mpirun --oversubscribe --allow-run-as-root -np 2 -x OMP_NUM_THREADS -x NETSMITH_THREADS)
echo "| run | images/s (last epoch) | wall s ($EPOCHS epochs, with loading) | speed-up |"
echo "|---|---|---|---|"
echo "| 1 process, no mpirun | $1 | $2 | 1.00 |"
echo "| mpirun -np 1 | $3 | $4 | $(echo "scale=2; $3 / $1" | bc) |"
echo "| mpirun -np 2 | $5 | $6 | $(echo "scale=2; $5 / $1" | bc) |"
cmp -s "$W/one.tns" "$W/rank1.tns" && echo && echo "1 process and mpirun -np 1 give the same model bytes."
