#!/bin/sh
# bench/merge.sh: model merging with perm-align on Fashion-MNIST, as in the
# ZipIt!/MuDSC class-split setting, and the loss barrier of the same-task
# setting. Writes OUTDIR/merge.md (a markdown report, also on stdout) and keeps
# the models and logs in OUTDIR.
#
#   sh bench/merge.sh OUTDIR
#
# 1. Class split: model A (resnet20, width WIDTH, seed 1) on classes 0-4 and
#    model B (seed 2) on 5-9. Every perm-align method merges them (task heads
#    concatenated, BN reset on data): joint accuracy (argmax over all 10
#    classes, on the 10000 test images), per-task accuracy (argmax within the
#    task's 5 classes, on that task's test images) and their mean, next to
#    each model alone; then an alpha sweep of both MuDSC variants.
# 2. Same task: two seeds (3, 4) on all 10 classes (SAME_PER_CLASS images of
#    each, so one model trains about as long as a task model); test loss along the
#    interpolation path (1-t) S1 + t S2 at 11 points, BN reset at each point,
#    without alignment (--method average) and after it (--method act); the
#    barrier is max_t of loss(t) - ((1-t) loss(0) + t loss(1)).
#
# Environment: EPOCHS (default 1: 15 to 25 min per model at width 4 on 2 busy
# threads), WIDTH (4), SAME_WIDTH (the same-task models' width, default WIDTH),
# PATH_POINTS (k of t = k/10 on the path, default 0..10), SWEEP (the methods of
# the alpha sweep, default mudsc-align mudsc-zip),
# TRAIN_PER_CLASS (0: all 6000), SAME_PER_CLASS (3000),
# TEST_PER_CLASS (0: all 1000), STATS (samples for the activation statistics
# and the BN reset, default 5000), DATA (the img-read streams fm-train.tns and
# fm-test.tns, default /tmp/netsmith-bench), BINDIR (bin), NETSMITH_THREADS (2).
# A tiny check of the script itself:
#   EPOCHS=1 WIDTH=0.25 TRAIN_PER_CLASS=60 SAME_PER_CLASS=30 TEST_PER_CLASS=30 \
#   STATS=300 sh bench/merge.sh /tmp/m
set -eu

OUT=${1:?usage: sh bench/merge.sh OUTDIR}
BIN=${BINDIR:-bin}
EPOCHS=${EPOCHS:-1}
WIDTH=${WIDTH:-4}
SAME_WIDTH=${SAME_WIDTH:-$WIDTH}
PATH_POINTS=${PATH_POINTS:-0 1 2 3 4 5 6 7 8 9 10}
SWEEP=${SWEEP:-mudsc-align mudsc-zip}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-0}
TEST_PER_CLASS=${TEST_PER_CLASS:-0}
SAME_PER_CLASS=${SAME_PER_CLASS:-3000}
STATS=${STATS:-5000}
DATA=${DATA:-/tmp/netsmith-bench}
export OMP_WAIT_POLICY=passive NETSMITH_THREADS=${NETSMITH_THREADS:-2}
mkdir -p "$OUT"
LOG="$OUT/log"
: > "$LOG"
say() { echo "$*" >&2; echo "$*" >> "$LOG"; }

per() { [ "$1" -gt 0 ] && echo "--per-class $1" || true; }

# --- data -----------------------------------------------------------------
sel() { # classes per-class src dst
    "$BIN/img-select" -q -c "$1" $(per "$2") "$3" -o "$4"
}
sel 0-4 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-a.tns"
sel 5-9 "$TRAIN_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-b.tns"
sel 0-9 "$SAME_PER_CLASS" "$DATA/fm-train.tns" "$OUT/train-all.tns"
sel 0-4 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test-a.tns"
sel 5-9 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test-b.tns"
sel 0-9 "$TEST_PER_CLASS" "$DATA/fm-test.tns" "$OUT/test.tns"
# the merge data: training images of all classes (as MuDSC uses)
"$BIN/img-select" -q -c 0-9 -n "$STATS" "$DATA/fm-train.tns" -o "$OUT/stats.tns"

count() { "$BIN/tns-tsv" -l -f "$1" | wc -l; }
NA=$(count "$OUT/train-a.tns")
NALL=$(count "$OUT/train-all.tns")

# --- training ---------------------------------------------------------------
init() { # classes-data seed out [width]
    "$BIN/net-init" --arch resnet20 --width "${4:-$WIDTH}" --like "$1" --seed "$2" -o "$3"
}
# Time one epoch on 512 images for the estimate.
"$BIN/img-select" -q -c 0-4 -n 512 "$OUT/train-a.tns" -o "$OUT/probe.tns"
init "$OUT/probe.tns" 9 "$OUT/probe-init.tns"
t0=$(date +%s.%N)
"$BIN/net-train" -q -m "$OUT/probe-init.tns" -e 1 -o "$OUT/probe-model.tns" "$OUT/probe.tns"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v n="$NA" -v all="$NALL" -v e="$EPOCHS" 'BEGIN {
    s = (b - a) / 512
    printf "estimate: %.0f s per task model (%d images x %d epochs), %.0f s per same-task model, %.0f min in all for training\n",
        s * n * e, n, e, s * all * e, (2 * s * n * e + 2 * s * all * e) / 60 }' | tee -a "$LOG" >&2

train() { # data seed out [width]
    init "$1" "$2" "$3.init" "${4:-}"
    "$BIN/net-train" -q -m "$3.init" -e "$EPOCHS" --seed "$2" --crop-pad 2 -o "$3" "$1"
}
t0=$(date +%s)
[ -s "$OUT/A.tns" ] || train "$OUT/train-a.tns" 1 "$OUT/A.tns"
t1=$(date +%s)
say "model A trained in $((t1 - t0)) s"
[ -s "$OUT/B.tns" ] || train "$OUT/train-b.tns" 2 "$OUT/B.tns"
[ -s "$OUT/S1.tns" ] || train "$OUT/train-all.tns" 3 "$OUT/S1.tns" "$SAME_WIDTH"
[ -s "$OUT/S2.tns" ] || train "$OUT/train-all.tns" 4 "$OUT/S2.tns" "$SAME_WIDTH"

# --- metrics from logits -------------------------------------------------------
# "accuracy" of a model with K outputs on DATA: argmax over all outputs.
logits() { # model data
    "$BIN/net-eval" -q -m "$1" --logits "$OUT/logits.tns" "$2" > /dev/null
    "$BIN/tns-tsv" -l "$OUT/logits.tns"
}
acc() { logits "$1" "$2" | awk '{b = 2; for (i = 3; i <= NF; i++) if ($i > $b) b = i; c += (b - 2 == $1); n++} END {printf "%.2f", 100 * c / n}'; }
# joint, task A, task B accuracies of a 10-output merged model on the full test set
split_acc() { # model
    logits "$1" "$OUT/test.tns" | awk '{
        b = 2; for (i = 3; i <= 11; i++) if ($i > $b) b = i; c += (b - 2 == $1); n++
        lo = $1 < 5 ? 2 : 7; t = lo; for (i = lo + 1; i < lo + 5; i++) if ($i > $t) t = i
        if ($1 < 5) { na++; ca += (t - 2 == $1) } else { nb++; cb += (t - 2 == $1) } }
        END { printf "%.2f %.2f %.2f %.2f", 100 * c / n, 100 * ca / na, 100 * cb / nb, 50 * (ca / na + cb / nb) }'
}
# mean cross-entropy on the test set
loss() { logits "$1" "$OUT/test.tns" | awk '{
    m = $2; for (i = 3; i <= NF; i++) if ($i > m) m = $i
    s = 0; for (i = 2; i <= NF; i++) s += exp($i - m)
    l += m + log(s) - $($1 + 2); n++ } END {printf "%.4f", l / n}'; }

NTEST=$(count "$OUT/test.tns")
NTA=$(count "$OUT/test-a.tns")
NTB=$(count "$OUT/test-b.tns")

# --- 1. class split ---------------------------------------------------------------
merge() { # name args...
    name=$1
    shift
    "$BIN/perm-align" -q --data "$OUT/stats.tns" -o "$OUT/$name.tns" "$@" "$OUT/A.tns" "$OUT/B.tns" > "$OUT/$name.report"
}
REPORT="$OUT/merge.md"
{
    echo "# Merging resnet20 x$WIDTH on Fashion-MNIST ($EPOCHS epochs, $NA images per task)"
    echo
    echo "Class split: A on classes 0-4 (seed 1), B on 5-9 (seed 2). Joint: argmax over the"
    echo "10 classes on $NTEST test images; task A/B: argmax within the task's classes on its"
    echo "own test images. Merge data: $STATS training images of all classes (statistics and"
    echo "BN reset). Seconds: perm-align's total time."
    echo
    echo "| Method | Joint | Task A | Task B | Avg | perm-align s |"
    echo "|---|---|---|---|---|---|"
    a=$(acc "$OUT/A.tns" "$OUT/test-a.tns")
    b=$(acc "$OUT/B.tns" "$OUT/test-b.tns")
    awk -v a="$a" -v na="$NTA" -v n="$NTEST" 'BEGIN {printf "| Model A alone | %.2f | %s | - | - | - |\n", a * na / n, a}'
    awk -v b="$b" -v nb="$NTB" -v n="$NTEST" 'BEGIN {printf "| Model B alone | %.2f | - | %s | - | - |\n", b * nb / n, b}'
    for method in average weight act zip mudsc-align mudsc-zip; do
        merge "$method" --method "$method"
        set -- $(split_acc "$OUT/$method.tns")
        secs=$(awk '$1=="seconds"{print $2}' "$OUT/$method.report")
        echo "| $method | $1 | $2 | $3 | $4 | $secs |"
    done
    echo
    echo "Alpha sweep (C = alpha C_w + (1 - alpha) C_act); joint accuracy / per-task mean:"
    echo
    echo "| alpha |$(for m in $SWEEP; do printf ' %s |' "$m"; done)"
    echo "|---|$(for m in $SWEEP; do printf -- '---|'; done)"
    for alpha in 0 0.3 0.5 0.7 1; do
        row="| $alpha"
        for method in $SWEEP; do
            merge "$method-a$alpha" --method "$method" --alpha "$alpha"
            set -- $(split_acc "$OUT/$method-a$alpha.tns")
            row="$row | $1 / $4"
        done
        echo "$row |"
    done
    echo
    # --- 2. same task: loss barrier ---------------------------------------------------
    echo "Same task: S1 (seed 3) and S2 (seed 4), resnet20 x$SAME_WIDTH, on all classes; test loss of (1-t) S1 + t S2"
    echo "(BN reset at every point), without alignment and after activation matching."
    echo
    echo "| t | loss, plain | loss, aligned |"
    echo "|---|---|---|"
    for k in $PATH_POINTS; do
        t=$(awk -v k=$k 'BEGIN {printf "%g", k / 10}')
        "$BIN/perm-align" -q --data "$OUT/stats.tns" --method average --lambda "$t" -o "$OUT/plain-$k.tns" \
            "$OUT/S1.tns" "$OUT/S2.tns" > /dev/null
        "$BIN/perm-align" -q --data "$OUT/stats.tns" --method act --lambda "$t" -o "$OUT/aligned-$k.tns" \
            "$OUT/S1.tns" "$OUT/S2.tns" > /dev/null
        lp=$(loss "$OUT/plain-$k.tns")
        la=$(loss "$OUT/aligned-$k.tns")
        echo "$t $lp $la" >> "$OUT/path.tsv.tmp"
        echo "| $t | $lp | $la |"
    done
    mv "$OUT/path.tsv.tmp" "$OUT/path.tsv"
    echo
    awk 'NR == 1 {p0 = $2; a0 = $3} {t[NR] = $1; p[NR] = $2; a[NR] = $3} END {
        for (i = 1; i <= NR; i++) {
            bp = p[i] - ((1 - t[i]) * p0 + t[i] * p[NR]); if (bp > mp) mp = bp
            ba = a[i] - ((1 - t[i]) * a0 + t[i] * a[NR]); if (ba > ma) ma = ba }
        printf "Loss barrier: %.4f plain, %.4f after alignment.\n", mp, ma }' "$OUT/path.tsv"
} > "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
