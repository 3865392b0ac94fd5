#!/bin/sh
# make demo: runs the Fashion-MNIST pipeline (pipelines/fashion.mk) and shows
# what it made. Later issues add training, concept vectors and merging here.
set -eu
out=${OUT:-demo-out}
start=$(date +%s)
make --no-print-directory -f pipelines/fashion.mk OUT="$out" "$@"
bin/net-info --totals "$out/model.tns" > "$out/model-info.txt"
echo
cat "$out/summary.txt"
echo
echo "# $(grep -m1 arch "$out/model-info.txt" 2>/dev/null || echo model), trained on fashion-train, tested on fashion-test:"
cat "$out/eval.txt"
echo
echo "demo: files in $out/ ($(($(date +%s) - start)) s):"
ls -l "$out" | tail -n +2 | awk '{printf "  %-26s %10d bytes\n", $9, $5}'
echo "demo: contact sheet of 100 test images: $out/contact-sheet.png"
