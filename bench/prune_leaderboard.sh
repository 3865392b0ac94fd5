#!/bin/sh
# prune_leaderboard.sh: the PruningBench leaderboard of bench/RESULTS.md, on
# Fashion-MNIST with a properly trained base: resnet20 (full width, 0.27M
# parameters) trained on all 60,000 training images (6 epochs, lr 0.1, batch
# 128, cosine), every criterion and regulariser pairing of pipelines/prune.mk
# at 2x/4x/8x; each regulariser trains the base sparse for 2 epochs on the
# first 10,000 training images, each pruned model is fine-tuned 2 epochs on
# those 10,000 (lr 0.01, batch 128, cosine) and tested on the full 10,000-image
# test set; 3 seeds. On this machine (2 threads, about 1000 training images/s)
# the base takes 6 minutes and each seed about 12.
#
# A stage runs make for at most MAX_MINUTES (default 14) so that it fits one
# turn of the CPU lock; make's intermediate files let the next call of the
# same stage continue where the last one stopped (the step that was cut off is
# redone), and the later stages reuse the base and the sparse models:
#
#   sh bench/prune_leaderboard.sh 1    # base, sparse models, seed 1
#   sh bench/prune_leaderboard.sh 2    # seed 2: table over seeds 1 2
#   sh bench/prune_leaderboard.sh 3    # seed 3: table over seeds 1 2 3
#   sh bench/prune_leaderboard.sh r56  # resnet56, one seed, fewer methods
#
# each repeated until it prints its table. Results: $OUT/prune.txt and
# $OUT/prune.svg (OUT defaults to prune-r20-full, and to prune-r56 for the r56
# stage). Make variables (BIN=..., Q=) can follow the stage. Exit status 124:
# time was up, run the stage again.
set -eu
stage=${1:?usage: prune_leaderboard.sh 1|2|3|r56 [VAR=value ...]}
shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
o=${OUT:-prune-r20-full}
R20="OUT=$o ARCH=resnet20 LIMIT=60000 EPOCHS=6 TEST_LIMIT=10000 FT_LIMIT=10000 FT_EPOCHS=2
     SPARSE_EPOCHS=2 SAMPLES=128 STEPS=1"
FLAGS="TRAIN_FLAGS=--lr 0.1 --batch 128"
SPARSE="SPARSE_FLAGS=--lr 0.01 --batch 128"
FT="FT_FLAGS=--lr 0.01 --batch 128"
# A stage with more seeds than the last finds their evaluations missing, so
# prune.mk makes the table again.
run() { # make's arguments
    echo "+ $(date -u +%H:%M:%S) make -f pipelines/prune.mk $*" >&2
    rc=0
    timeout "${MAX_MINUTES:-14}m" make --no-print-directory -f pipelines/prune.mk "$@" || rc=$?
    echo "+ $(date -u +%H:%M:%S) exit status $rc" >&2
    exit $rc
}
# shellcheck disable=SC2086
case $stage in
1) run $R20 "$FLAGS" "$SPARSE" "$FT" SEEDS=1 "$@" ;;
2) run $R20 "$FLAGS" "$SPARSE" "$FT" SEEDS="1 2" "$@" ;;
3) run $R20 "$FLAGS" "$SPARSE" "$FT" SEEDS="1 2 3" "$@" ;;
r56)
    o=${OUT:-prune-r56}
    run OUT="$o" ARCH=resnet56 LIMIT=20000 EPOCHS=4 TEST_LIMIT=10000 FT_LIMIT=10000 FT_EPOCHS=1 \
        SPARSE_EPOCHS=1 SAMPLES=64 STEPS=1 SEEDS=1 SPEEDUPS="2 4" "CRITERIA=random l1 l2 bn-scale taylor" \
        PAIRINGS=l2+group-norm "$FLAGS" "$SPARSE" "$FT" "$@" ;;
*) echo "prune_leaderboard.sh: unknown stage ($stage): 1, 2, 3 or r56" >&2; exit 2 ;;
esac
