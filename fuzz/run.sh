#!/bin/sh
# Builds each fuzz/fuzz_*.c with clang's libFuzzer + ASan/UBSan against the
# library sources and runs it for SECONDS (default 30) from a seed corpus made
# by the tools themselves. Not part of `make check`: run `make fuzz`.
#   make fuzz FUZZ_SECONDS=300
#   sh fuzz/run.sh 600 fuzz_model fuzz_graph     # only these targets
# FUZZ_RUNS=N stops each target after N executions instead (when sooner).
set -eu
seconds=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-$(ls fuzz/fuzz_*.c | sed 's|fuzz/||; s|\.c$||')}
runs=${FUZZ_RUNS:--1}
command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
out=build/fuzz
mkdir -p "$out"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -DNS_VERSION=\"fuzz\" -Ilib \
  -isystem /usr/include/x86_64-linux-gnu/blis-openmp $(pkg-config --cflags msgpack libarchive libpng)"
libs="-lblis $(pkg-config --libs msgpack libarchive libpng) -lm -fopenmp"

# The library, instrumented, compiled once for every target: an object is
# rebuilt when its source or any header of lib/ is newer. op_winograd.c, whose
# unrolled kernels take clang over 20 minutes to instrument, is built without
# sanitizers or coverage (it reads no input of its own).
objdir=$out/obj
mkdir -p "$objdir"
newest_header=$(ls -t lib/*/*.h | head -n 1)
for src in lib/*/*.c; do
    obj=$objdir/$(echo "$src" | sed 's|^lib/||; s|/|_|; s|\.c$|.o|')
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
        echo "$src $obj"
    fi
done | FUZZ_CFLAGS=$cflags xargs -r -n 2 -P "$(nproc)" sh -c '
    echo "fuzz: compiling $0" >&2
    case $0 in
        */op_winograd.c) clang $(echo "$FUZZ_CFLAGS" | sed "s/-fsanitize=[^ ]*//") -c "$0" -o "$1" ;;
        *) clang $FUZZ_CFLAGS -c "$0" -o "$1" ;;
    esac'
srcs=$(ls "$objdir"/*.o)

# Seeds: a few real streams, PNGs and archives.
seeds=$out/seeds
rm -rf "$seeds"; mkdir -p "$seeds/tns" "$seeds/png" "$seeds/archive" "$seeds/model" "$seeds/graph" "$seeds/torch"
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

# Models: built-ins and specs with every op, small enough for -max_len and
# for fuzz_model to run them (CHEAP there).
bin/net-init --arch mlp --hidden 8 --in 4 --classes 3 > "$seeds/model/mlp.tns"
printf '[input]\nshape = 1x6x6\n[conv2d c]\nout = 2\npad = 1\ngroups = 1\n[batchnorm]\n[leaky_relu]\n[maxpool]\n[conv2d d]\nout = 2\nkernel = 1\nbias = 0\n[add]\nfrom = maxpool1, d\n[avgpool]\nkernel = 1\n[global_avgpool]\n[layernorm]\n[gelu]\n[dropout]\np = 0.1\n[linear]\nout = 3\n' \
    | bin/net-init --spec /dev/stdin > "$seeds/model/cnn.tns"
printf '[input]\nshape = 4\n[embedding e]\nnum = 3\ndim = 2\n[transpose]\n[reshape]\ndim0 = -1\n[sigmoid s]\n[tanh t]\nfrom = reshape1\n[mul]\nfrom = s, t\n[concat]\nfrom = s, mul1\n[linear]\nout = 2\n' \
    | bin/net-init --spec /dev/stdin > "$seeds/model/embed.tns"
# transformer ops: a ViT block (patch_embed, cls_token, pos_embed, attention,
# token_pool 0); a text tower (causal attention without biases, a key padding
# mask, token_pool 2 at the end-of-text id); twin and cross attention after
# groupnorm, upsample and softmax, token_pool 1
printf '[input]\nshape = 1x4x4\n[patch_embed p]\nout = 4\npatch = 2\n[cls_token]\n[pos_embed pos]\n[layernorm ln]\n[attention a]\nheads = 2\n[add]\nfrom = pos, a\n[gelu]\napproximate = 1\n[token_pool]\n[linear]\nout = 3\n' \
    | bin/net-init --spec /dev/stdin > "$seeds/model/vit.tns"
printf '[input]\nshape = 6\n[embedding e]\nnum = 8\ndim = 4\n[pos_embed pos]\n[attention a]\nfrom = pos, input\nheads = 2\ncausal = 1\nbias = 0\n[layernorm ln]\n[token_pool]\nfrom = ln, input\nmode = 2\n[linear]\nout = 3\n' \
    | bin/net-init --spec /dev/stdin > "$seeds/model/text.tns"
printf '[input]\nshape = 2x4x4\n[groupnorm]\ngroups = 2\n[upsample]\n[softmax]\n[patch_embed p]\nout = 4\npatch = 4\nbias = 0\n[attention twin]\nheads = 2\ncross_heads = 1\n[attention x]\nfrom = twin, p\nheads = 2\ncross = 1\n[token_pool]\nmode = 1\n[linear]\nout = 2\n' \
    | bin/net-init --spec /dev/stdin > "$seeds/model/cross.tns"
# Graphs: generated ones, dense and sparse features, and a small edge list.
bin/graph-gen -q -n 40 -c 3 -d 6 --train-per-class 3 --val 10 --test 10 > "$seeds/graph/dense.tns"
bin/graph-gen -q -n 30 -c 2 -d 20 -f bernoulli --train-per-class 3 --val 5 --test 5 > "$seeds/graph/sparse.tns"
printf '0 1\n1 2\n2 0\n3 3\n' > "$seeds/edges.txt"
bin/graph-import "$seeds/edges.txt" > "$seeds/graph/edges.tns"

# PyTorch checkpoints: the committed fixtures and hostile corpus, and a bare
# pickle (the data.pkl of a small state_dict).
cp tests/ref/torch_io/*.pt tests/ref/torch_io/*.safetensors tests/ref/torch_hostile/*.pt \
    tests/ref/torch_hostile/*.safetensors "$seeds/torch/"
python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("mlp/data.pkl"))' \
    tests/ref/torch_io/mlp.pt > "$seeds/torch/mlp.pkl" || rm -f "$seeds/torch/mlp.pkl"

status=0
for name in $targets; do
    target=fuzz/$name.c
    case $name in
        fuzz_tns) corpus=$seeds/tns ;;
        fuzz_png) corpus=$seeds/png ;;
        fuzz_model) corpus=$seeds/model ;;
        fuzz_graph) corpus=$seeds/graph ;;
        fuzz_torch) corpus=$seeds/torch ;;
        *) corpus=$seeds/archive ;;
    esac
    echo "fuzz: building $name" >&2
    clang $cflags "$target" $srcs $libs -o "$out/$name"
    echo "fuzz: running $name for ${seconds}s" >&2
    mkdir -p "$out/corpus-$name"
    if ! "$out/$name" -max_total_time="$seconds" -runs="$runs" -max_len=65536 -rss_limit_mb=4096 \
            "$out/corpus-$name" "$corpus" 2>"$out/$name.log"; then
        status=1
        echo "fuzz: $name FAILED, see $out/$name.log" >&2
    fi
    tail -n 1 "$out/$name.log" >&2
done
exit $status
