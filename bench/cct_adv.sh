#!/bin/sh
# bench/cct_adv.sh: a look at CCT-Net's adversarial stage. From one G (the
# G-SEED.tns that bench/cct.sh left in OUTDIR, with its src.tns, tgt.tns and
# query.tns), the adversarial stage is run under several balances of G and D
# (learning rates, steps per iteration, G's supervised source steps), and
# each result is scored as bench/cct.sh scores CCT-Net. Writes
# OUTDIR/cct_adv.tsv and OUTDIR/cct_adv.md (also on stdout): per setting,
# the last epoch's losses, G's accuracy on target pairs (same image or not),
# D's accuracy on source pairs, and the target-class accuracy for each K.
#
#   sh bench/cct_adv.sh OUTDIR
#
# Environment: SEED (1), KS (1 5), ADV (3), PAIRS (5000), BINDIR (bin).
set -eu

OUT=${1:?usage: sh bench/cct_adv.sh OUTDIR}
BIN=${BINDIR:-bin}
SEED=${SEED:-1}
KS=${KS:-1 5}
ADV=${ADV:-3}
PAIRS=${PAIRS:-5000}
G="$OUT/G-$SEED.tns"
[ -s "$G" ] || { echo "cct_adv.sh: $G is missing (run bench/cct.sh $OUT first)" >&2; exit 1; }

# name and cct-train options; the default is bench/cct.sh's CCT-Net
SETTINGS='default|
official-ratio|--lr-g 2e-5 --lr-d 1e-3
equal-rates|--lr-g 1e-4 --lr-d 1e-4
g2-per-d|--g-steps 2 --d-steps 1
d-slow-g2|--lr-d 1e-4 --g-steps 2
g-src|--g-src-steps 2 --g-src-epochs 2
no-g-adv|--no-g-adv'

T="$OUT/cct_adv.tsv"
: > "$T"
echo "$SETTINGS" | while IFS='|' read -r name opts; do
    rm -f "$OUT/adv-$name.log"
    # shellcheck disable=SC2086
    "$BIN/cct-train" -q --seed "$SEED" --g-init "$G" --adv-epochs "$ADV" --pairs "$PAIRS" $opts \
        --log "$OUT/adv-$name.log" -o "$OUT/adv-$name.tns" "$OUT/src.tns" "$OUT/tgt.tns"
    last=$(tail -n 1 "$OUT/adv-$name.log" | awk -F'\t' '{printf "%.3f\t%.3f\t%.3f\t%.3f", $3, $4, $6, $7}')
    for K in $KS; do
        a=$("$BIN/cct-classify" -q --random --seed "$SEED" -K "$K" -m "$OUT/adv-$name.tns" -r "$OUT/tgt.tns" \
            "$OUT/query.tns" | awk '$1 == "accuracy" {print $2}')
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" "${opts:--}" "$last" "$K" "$a" >> "$T"
    done
done

{
    echo "| setting | options | loss G | loss D | G acc. target pairs | D acc. source pairs | K | accuracy (%) |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %.1f |\n", $1, $2, $3, $4, $5, $6, $7, 100 * $8}' "$T"
} | tee "$OUT/cct_adv.md"
