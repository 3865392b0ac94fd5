#!/bin/sh
# Builds each fuzz/fuzz_*.c with clang's libFuzzer + ASan/UBSan against the
# library sources and runs it for SECONDS (default 30) from a seed corpus made
# by the tools themselves. Not part of `make check`: run `make fuzz`.
#   make fuzz FUZZ_SECONDS=300
set -eu
seconds=${1:-30}
command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
out=build/fuzz
mkdir -p "$out"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -DNS_VERSION=\"fuzz\" -Ilib \
  -isystem /usr/include/x86_64-linux-gnu/blis-openmp $(pkg-config --cflags msgpack libarchive libpng)"
libs="-lblis $(pkg-config --libs msgpack libarchive libpng) -lm -fopenmp"
srcs=$(ls lib/*/*.c)

# Seeds: a few real streams, PNGs and archives.
seeds=$out/seeds
rm -rf "$seeds"; mkdir -p "$seeds/tns" "$seeds/png" "$seeds/archive"
printf '1 2 3\n4 5 6\n' | bin/tns-tsv -r -n x > "$seeds/tns/a.tns"
printf '1\n' | bin/tns-tsv -r -t u8 > "$seeds/tns/b.tns"
fm=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -f "$fm" ]; then
    bin/img-read -q --limit 4 -b 2 "$fm" > "$seeds/tns/c.tns"
    bin/img-read -q --limit 6 "$fm" | bin/img-write -o "$seeds/archive/a.tar"
    bin/img-read -q --limit 6 "$fm" | bin/img-write -o "$seeds/archive/a.zip"
    bin/img-read -q --limit 6 "$fm" | bin/img-write -o "$seeds/archive/a.tar.gz"
    bin/img-read -q --limit 1 "$fm" | bin/img-write -o "$seeds/png/a.png"
    bin/img-read -q --limit 1 --rgb "$fm" | bin/img-write -o "$seeds/png/b.png"
fi

status=0
for target in fuzz/fuzz_*.c; do
    name=$(basename "$target" .c)
    case $name in
        fuzz_tns) corpus=$seeds/tns ;;
        fuzz_png) corpus=$seeds/png ;;
        *) corpus=$seeds/archive ;;
    esac
    echo "fuzz: building $name" >&2
    clang $cflags "$target" $srcs $libs -o "$out/$name"
    echo "fuzz: running $name for ${seconds}s" >&2
    mkdir -p "$out/corpus-$name"
    if ! "$out/$name" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
            "$out/corpus-$name" "$corpus" 2>"$out/$name.log"; then
        status=1
        echo "fuzz: $name FAILED, see $out/$name.log" >&2
    fi
    tail -n 1 "$out/$name.log" >&2
done
exit $status
