#!/bin/sh
# make bench: the foundation's figures, printed as Markdown (copied into
# bench/RESULTS.md by hand, with the date and machine).
#   - sgemm GFLOP/s with and without netsmith's BLIS kernel selection, 1 and 2 threads
#   - img-read images/s from IDX and from a tar of PNGs (Fashion-MNIST train, 60000)
#   - tns-cat pass-through MB/s on a ~1 GB stream, and its peak memory
set -eu
BIN=${BIN:-bin}
B=${BUILD:-build}/bench
W=${BENCH_DIR:-/tmp/netsmith-bench}
F=/usr/share/datasets/fashion-mnist
mkdir -p "$W"

secs() { # command... -> seconds of wall time (best of 3)
    best=""
    for i in 1 2 3; do
        t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
        t=$(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')
        best=$(echo "$t ${best:-$t}" | awk '{print ($1 < $2) ? $1 : $2}')
    done
    echo "$best"
}

echo "## sgemm (n = 2048, best of 5)"
echo
echo "| kernels | threads | GFLOP/s |"
echo "|---|---|---|"
for sel in 0 1; do
    for th in 1 2; do
        line=$(NETSMITH_BLIS_SELECT=$sel NETSMITH_THREADS=$th "$B/sgemm" 2048 5)
        k=$(echo "$line" | sed 's/.*kernels=\([a-z0-9]*\).*/\1/')
        g=$(echo "$line" | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/')
        echo "| $k ($( [ $sel = 1 ] && echo selected by netsmith || echo BLIS default)) | $th | $g |"
    done
done
echo

echo "## img-read (Fashion-MNIST train, 60000 images, 2 threads)"
echo
"$BIN/img-read" -q "$F/train-images-idx3-ubyte.gz" | "$BIN/img-write" -q -o "$W/train.tar"
t_idx=$(secs "$BIN/img-read" -q "$F/train-images-idx3-ubyte.gz")
t_tar=$(secs "$BIN/img-read" -q "$W/train.tar")
t_tar_rs=$(secs "$BIN/img-read" -q --size 32 --rgb --mean 0.5 --std 0.25 "$W/train.tar")
echo "| source | seconds | images/s |"
echo "|---|---|---|"
for row in "IDX (gzip'd)|$t_idx" "tar of PNGs|$t_tar" "tar of PNGs, --size 32 --rgb --mean/--std|$t_tar_rs"; do
    name=${row%|*}; t=${row#*|}
    echo "| $name | $t | $(echo "$t" | awk '{printf "%.0f", 60000 / $1}') |"
done
echo

echo "## tns-cat pass-through (~1.1 GB stream)"
echo
"$BIN/img-read" -q "$F/train-images-idx3-ubyte.gz" > "$W/train.tns"
for i in 1 2 3 4 5 6; do cat "$W/train.tns"; done > "$W/big.tns"
size=$(wc -c < "$W/big.tns")
cat "$W/big.tns" > /dev/null # into the page cache
t=$(secs "$BIN/tns-cat" "$W/big.tns")
mem=$(/usr/bin/time -f %M "$BIN/tns-cat" "$W/big.tns" 2>&1 > /dev/null)
tpipe=$(secs sh -c "cat '$W/big.tns' | '$BIN/tns-cat' --name images")
echo "| what | MB | seconds | MB/s | peak RSS |"
echo "|---|---|---|---|---|"
echo "| tns-cat FILE > /dev/null | $((size / 1000000)) | $t | $(echo "$size $t" | awk '{printf "%.0f", $1 / 1e6 / $2}') | $((mem / 1024)) MB |"
echo "| cat FILE \| tns-cat --name images | $((size / 1000000)) | $tpipe | $(echo "$size $tpipe" | awk '{printf "%.0f", $1 / 1e6 / $2}') | |"
rm -f "$W/big.tns"
