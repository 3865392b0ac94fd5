#!/bin/sh
# bench/cct.sh: CCT-Net on Fashion-MNIST split into source and target
# classes (or, DATA=logos, on seen and held-out logo brands), against the
# embedding baselines on the same split and backbone.
# Writes OUTDIR/cct.tsv (one line per seed, method and K) and OUTDIR/cct.md
# (mean +- std over the seeds, also on stdout).
#
#   sh bench/cct.sh OUTDIR
#
# Split (SRC, TGT class lists for img-select; default 0-4 and 5-9; the
# reverse split is SRC=5-9 TGT=0-4): the source classes labelled
# (SRC_PER_CLASS training images each), the target classes unlabelled
# (TGT_PER_CLASS training images each; their labels are never read by
# training), representatives drawn from those same target training images
# (as the official test does), queries = TEST_PER_CLASS test images per
# target class. For each seed:
#   G alone   cct-train --adv-epochs 0: PRE epochs of PAIRS source pairs
#   CCT-Net   cct-train --g-init G: ADV adversarial epochs of PAIRS pairs
#   ncm       nearest class mean of the "embed" features (64) of a classifier
#             with the same backbone trained on the source classes
#             (bench/cct_cnn.cfg, CLS_EPOCHS epochs of Adam)
#   linear    a linear head trained on the K representatives' features
# each classifying the queries with K random representatives per class, K
# in KS (default 1 5 20). The baselines run in bench/cct_baselines.py.
#
# DATA=logos: open-set logo recognition as QMUL-OpenLogo's open split, from
# logo-synth --crops (one logo per 32x32 RGB image) of --shapes BRANDS
# built-in brands: the first SEEN brands of the permutation are the source
# (SRC_PER_CLASS x SEEN labelled crops), the next SEEN brands, never seen in
# training, the target (TGT_PER_CLASS x SEEN crops, unlabelled during
# training; the representatives are drawn from them), queries
# TEST_PER_CLASS x SEEN crops of the held-out brands from other scenes
# (--seed 2). BRANDS (40), SEEN (20).
#
# ARCH_OPTS: the backbone options of G's (and so D's) cct-train, e.g.
# "--arch vit --width 0.5 --depth 2 --cross-heads 1" for the twin
# transformer; BASELINES=0 skips ncm and linear (their classifier is the CNN).
#
# Environment: DATA (fashion), SEEDS (1 2 3), KS, PRE (4), ADV (3), PAIRS (5000),
# CLS_EPOCHS (3), SRC_PER_CLASS (1000), TGT_PER_CLASS (1000),
# TEST_PER_CLASS (400), EXTRA (more cct-train options for the adversarial
# stage), PYTHON (/usr/bin/python3, with numpy), BINDIR (bin). A tiny check of the script:
#   PRE=1 ADV=1 PAIRS=256 SRC_PER_CLASS=50 TGT_PER_CLASS=50 TEST_PER_CLASS=20 \
#   CLS_EPOCHS=1 SEEDS=1 KS="1 5" sh bench/cct.sh /tmp/c
set -eu

OUT=${1:?usage: sh bench/cct.sh OUTDIR}
BIN=${BINDIR:-bin}
HERE=$(dirname "$0")
SRC=${SRC:-0-4}
TGT=${TGT:-5-9}
SEEDS=${SEEDS:-1 2 3}
KS=${KS:-1 5 20}
PRE=${PRE:-4}
ADV=${ADV:-3}
PAIRS=${PAIRS:-5000}
CLS_EPOCHS=${CLS_EPOCHS:-3}
SRC_PER_CLASS=${SRC_PER_CLASS:-1000}
TGT_PER_CLASS=${TGT_PER_CLASS:-1000}
TEST_PER_CLASS=${TEST_PER_CLASS:-400}
EXTRA=${EXTRA:-}
PY=${PYTHON:-/usr/bin/python3} # Debian's, with numpy
F=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"

if [ "${DATA:-fashion}" = logos ]; then
    BRANDS=${BRANDS:-40}
    SEEN=${SEEN:-20}
    L="$BIN/logo-synth -q --shapes $BRANDS -k $SEEN --crops -s 32"
    $L -n $((SRC_PER_CLASS * SEEN)) -o "$OUT/src.tns"
    $L -n $((TGT_PER_CLASS * SEEN)) --split heldout -o "$OUT/tgt.tns"
    $L -n $((TEST_PER_CLASS * SEEN)) --split heldout --seed 2 -o "$OUT/query.tns"
    SHAPE=3x32x32 NSRC=$SEEN
else
    C="$HERE/../examples/fashion-mnist.classes"
    [ -s "$OUT/train.tns" ] || "$BIN/img-read" -q --classes "$C" "$F/train-images-idx3-ubyte.gz" > "$OUT/train.tns"
    [ -s "$OUT/test.tns" ] || "$BIN/img-read" -q --classes "$C" "$F/t10k-images-idx3-ubyte.gz" > "$OUT/test.tns"
    "$BIN/img-select" -c "$SRC" -p "$SRC_PER_CLASS" -o "$OUT/src.tns" "$OUT/train.tns"
    "$BIN/img-select" -c "$TGT" -p "$TGT_PER_CLASS" -o "$OUT/tgt.tns" "$OUT/train.tns"
    "$BIN/img-select" -c "$TGT" -p "$TEST_PER_CLASS" -o "$OUT/query.tns" "$OUT/test.tns"
    SHAPE=1x28x28 NSRC=5
fi
# the baselines' classifier: bench/cct_cnn.cfg for this input and source classes
sed -e "s/^shape = .*/shape = $SHAPE/" -e '/^\[linear fc\]/,$s/^out = .*/out = '"$NSRC/" "$HERE/cct_cnn.cfg" > "$OUT/cls.cfg"

T="$OUT/cct.tsv"
: > "$T"
for s in $SEEDS; do
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$BIN/cct-train" -q --seed "$s" --pre-epochs "$PRE" --adv-epochs 0 --pairs "$PAIRS" ${ARCH_OPTS:-} \
        --log "$OUT/log-G-$s.tsv" -o "$OUT/G-$s.tns" "$OUT/src.tns" "$OUT/tgt.tns"
    t1=$(date +%s)
    # shellcheck disable=SC2086
    "$BIN/cct-train" -q --seed "$s" --g-init "$OUT/G-$s.tns" --adv-epochs "$ADV" --pairs "$PAIRS" $EXTRA \
        --log "$OUT/log-CCT-$s.tsv" -o "$OUT/CCT-$s.tns" --d-output "$OUT/D-$s.tns" "$OUT/src.tns" "$OUT/tgt.tns"
    t2=$(date +%s)
    echo "# seed $s: G pretraining $((t1 - t0)) s, adversarial stage $((t2 - t1)) s" >&2
    for K in $KS; do
        for m in G CCT; do
            r=$("$BIN/cct-classify" -q --random --seed "$s" -K "$K" -m "$OUT/$m-$s.tns" -r "$OUT/tgt.tns" "$OUT/query.tns" |
                awk '$1 == "accuracy" {a = $2} $1 == "macro_f1" {f = $2} END {print a "\t" f}')
            printf '%s\t%s\t%s\t%s\n' "$s" "$m" "$K" "$r" >> "$T"
        done
    done
    # the classifier baselines: same backbone, trained on the source classes
    [ "${BASELINES:-1}" = 1 ] || continue
    "$BIN/net-init" --spec "$OUT/cls.cfg" --seed "$s" > "$OUT/cls-init-$s.tns"
    "$BIN/net-train" -q --model "$OUT/cls-init-$s.tns" --optim adam --epochs "$CLS_EPOCHS" --seed "$s" \
        -o "$OUT/cls-$s.tns" "$OUT/src.tns"
    for d in tgt query; do
        "$BIN/probe-embed" -q -m "$OUT/cls-$s.tns" -l embed "$OUT/$d.tns" |
            "$BIN/tns-tsv" --labels --flatten --name features > "$OUT/feat-$d-$s.tsv"
    done
    for K in $KS; do
        "$PY" "$HERE/cct_baselines.py" "$OUT/feat-tgt-$s.tsv" "$OUT/feat-query-$s.tsv" "$K" "$s" |
            while read -r m a f; do printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$m" "$K" "$a" "$f" >> "$T"; done
    done
done

{
    echo "| method | K | accuracy (%) | macro-F1 (%) |"
    echo "|---|---|---|---|"
    awk -F'\t' '{
        key = $2 "\t" $3; if (!(key in n)) order[++nk] = key
        n[key]++; a[key] += $4; a2[key] += $4 * $4; f[key] += $5; f2[key] += $5 * $5
    }
    function sd(s, s2, k) { v = k > 1 ? (s2 - s * s / k) / (k - 1) : 0; return v > 0 ? sqrt(v) : 0 }
    END {
        for (i = 1; i <= nk; i++) {
            key = order[i]; split(key, p, "\t"); k = n[key]
            printf "| %s | %s | %.1f ± %.1f | %.1f ± %.1f |\n", p[1], p[2], 100 * a[key] / k,
                100 * sd(a[key], a2[key], k), 100 * f[key] / k, 100 * sd(f[key], f2[key], k)
        }
    }' "$T" | sort -t'|' -k2,2 -k3,3n
} | tee "$OUT/cct.md"
