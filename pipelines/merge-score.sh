#!/bin/sh
# merge-score.sh: the scores of ZipIt!'s and MuDSC's merging table, two task
# models (A and B) and whatever is made of them, from logits. Shared by
# pipelines/merge.mk (make demo) and bench/mudsc.sh, so both score alike.
#
#   tns-tsv -l LOGITS | sh pipelines/merge-score.sh [--standardise]
#       LOGITS: a model with 2k outputs (task A's k classes first, then B's)
#       on test images of both tasks, labels 0..2k-1. Prints
#       "joint taskA taskB avg" in percent: joint is the argmax over all 2k
#       classes on every image; task A (B) the argmax within A's (B's)
#       classes on A's (B's) images; avg the mean of the two.
#       --standardise first standardises each model's k logits (mean and
#       std over all the images): two separately trained heads are not
#       calibrated against each other (the ensemble's second row).
#   tns-tsv -l LOGITS | sh pipelines/merge-score.sh --alone a|b N_OTHER
#       LOGITS: one task model on its own task's test images. Prints the same
#       four columns, "-" where the model has no classes: its accuracy as the
#       task's column, and as joint the share of all images it gets right
#       (the other task's N_OTHER images all count as wrong).
#   sh pipelines/merge-score.sh --published ROW
#       ZipIt!'s published figure for a row of the table ("ZipIt: Merging
#       Models from Different Tasks without Training", arXiv 2305.03053,
#       Table 1a: CIFAR-10 5+5, resnet20x4), "joint (avg)", or "-".
set -eu

usage() { echo "usage: merge-score.sh [--standardise | --alone a|b N_OTHER | --published ROW] < LINES" >&2; exit 2; }

score() {
    awk '{
        n = NF - 1; k = n / 2
        b = 2; for (i = 3; i <= NF; i++) if ($i > $b) b = i; c += (b - 2 == $1); rows++
        lo = $1 < k ? 2 : 2 + k; t = lo; for (i = lo + 1; i < lo + k; i++) if ($i > $t) t = i
        if ($1 < k) { na++; ca += (t - 2 == $1) } else { nb++; cb += (t - 2 == $1) } }
        END { if (!na || !nb) { print "merge-score.sh: need images of both tasks" > "/dev/stderr"; exit 1 }
              printf "%.2f %.2f %.2f %.2f\n", 100 * c / rows, 100 * ca / na, 100 * cb / nb, 50 * (ca / na + cb / nb) }'
}

case ${1:-} in
"") score ;;
--standardise)
    awk '{ k = (NF - 1) / 2; y[NR] = $1
           for (i = 2; i <= NF; i++) { m = i < 2 + k ? 0 : 1; x[NR, i] = $i; s[m] += $i; q[m] += $i * $i; c[m]++ } }
        END { for (m = 0; m < 2; m++) { mu[m] = s[m] / c[m]; sd[m] = sqrt(q[m] / c[m] - mu[m] * mu[m]) }
              for (r = 1; r <= NR; r++) { printf "%d", y[r]
                  for (i = 2; i <= 2 * k + 1; i++) { m = i < 2 + k ? 0 : 1; printf " %.6f", (x[r, i] - mu[m]) / sd[m] }
                  print "" } }' | score ;;
--alone)
    [ $# -eq 3 ] || usage
    case $2 in a|b) ;; *) usage ;; esac
    awk -v task="$2" -v others="$3" '{ b = 2; for (i = 3; i <= NF; i++) if ($i > $b) b = i; c += (b - 2 == $1); n++ }
        END { a = 100 * c / n; j = a * n / (n + others)
              if (task == "a") printf "%.2f %.2f - -\n", j, a; else printf "%.2f - %.2f -\n", j, a }' ;;
--published)
    [ $# -eq 2 ] || usage
    case $2 in
    "Model A alone") echo "48.2 (71.0)" ;;
    "Model B alone") echo "48.4 (72.6)" ;;
    "W.avg") echo "43.0 (60.8)" ;;
    "Weight matching") echo "46.2 (79.8)" ;;
    "Permute (act)") echo "58.4 (87.4)" ;;
    "ZipIt! (all layers)") echo "79.1 (92.1)" ;;
    "ZipIt! partial"*) echo "83.8 (94.6), 13/20" ;;
    "Ensemble") echo "87.4" ;;
    *) echo "-" ;;
    esac ;;
*) usage ;;
esac
