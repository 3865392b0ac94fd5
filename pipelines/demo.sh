#!/bin/sh
# make demo: the Fashion-MNIST pipeline (pipelines/fashion.mk: streams,
# archives, a trained model), then small versions of the methods on the same
# data: concept vectors and model correction (lgcav.mk: ASR against its
# uniform control), model merging (merge.mk: every method of bench/mudsc.sh's
# table and the ensemble, joint and per task), graph condensation
# (condense.mk: SimGC against a random coreset of the same size, at two
# ratios), structural pruning (prune.mk), comparison knowledge translation
# (cct.mk). Prints what each made: the benches' comparisons in small.
set -eu
out=${OUT:-demo-out}
start=$(date +%s)
# OpenMP threads spinning while they wait slow everything down on a busy machine
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
step() { echo "demo: $1 ($(($(date +%s) - start)) s so far)" >&2; }

step "Fashion-MNIST: streams, archives, a model (pipelines/fashion.mk)"
make --no-print-directory -f pipelines/fashion.mk OUT="$out" "$@"
bin/net-info --totals "$out/model.tns" > "$out/model-info.txt"
step "concept vectors and ASR (pipelines/lgcav.mk)"
make --no-print-directory -f pipelines/lgcav.mk OUT="$out"
step "model merging, every method and the ensemble (pipelines/merge.mk)"
make --no-print-directory -f pipelines/merge.mk OUT="$out"
step "graph condensation: SimGC and a random coreset at two ratios (pipelines/condense.mk)"
make --no-print-directory -f pipelines/condense.mk OUT="$out"
step "logo detection: synthetic scenes, logo-det trained briefly (pipelines/logo.mk demo)"
make --no-print-directory -f pipelines/logo.mk OUT="$out" Q=-q demo > /dev/null
step "structural pruning, every criterion at 2x/4x/8x (pipelines/prune.mk)"
make --no-print-directory -f pipelines/prune.mk OUT="$out" Q=-q > /dev/null
step "CCT-Net: G alone against the adversarial stage on unseen classes (pipelines/cct.mk)"
make --no-print-directory -f pipelines/cct.mk OUT="$out" > /dev/null

echo
cat "$out/summary.txt"
echo
echo "# $(grep -m1 arch "$out/model-info.txt" 2>/dev/null || echo model), trained on fashion-train, tested on fashion-test:"
cat "$out/eval.txt"
for f in lgcav.txt merge.txt condense.txt logo.txt prune.txt cct.txt; do
    echo
    cat "$out/$f"
done
echo
echo "demo: files in $out/ ($(($(date +%s) - start)) s):"
ls -l "$out" | tail -n +2 | grep -v '^d' | awk '{printf "  %-26s %10d bytes\n", $9, $5}'
echo "demo: contact sheet of 100 test images: $out/contact-sheet.png"
