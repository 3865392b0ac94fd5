#!/usr/bin/env bats
# img-read and img-write: datasets in every layout, round trips with checksums,
# and broken inputs (truncated archives, corrupt PNGs, wrong files).
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# Three classes of 2x3 gray images from an IDX pair: labels 2,0,1,2,0.
small_stream() {
    make_idx "$T/i" 5 2 3
    make_idx_labels "$T/l" 2 0 1 2 0
    img-read -q "$T/i" "$T/l"
}

@test "img-read IDX: meta record, then (N,C,H,W) batches with labels and ids" {
    small_stream > "$T/s.tns"
    run tns-info "$T/s.tns"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == *"general.labels=[3]"*"general.count=5"* ]]
    [[ "${lines[1]}" == $'1\ttensor\timages\tf32\t5x1x2x3\t'* ]]
    tns-info --json "$T/s.tns" | $PY -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert rows[0]["meta"]["general.labels"] == ["0", "1", "2"], rows[0]
assert rows[1]["meta"]["labels"] == [2, 0, 1, 2, 0] and rows[1]["meta"]["ids"] == [0, 1, 2, 3, 4]'
    # pixel (n, i) = (n*37 + i*11) % 256, scaled to [0,1]
    [ "$(tns-tsv -f "$T/s.tns" | sed -n 2p | cut -f2 | cut -c1-8)" = "0.188235" ] # 48/255
}

@test "img-read --batch, --limit, --dtype u8" {
    small_stream > /dev/null
    [ "$(img-read -q -b 2 "$T/i" "$T/l" | tns-info | cut -f5 | tail -n +2 | tr '\n' ' ')" = "2x1x2x3 2x1x2x3 1x1x2x3 " ]
    [ "$(img-read -q --limit 3 "$T/i" "$T/l" | tns-info | cut -f5 | tail -1)" = "3x1x2x3" ]
    [ "$(img-read -q -t u8 "$T/i" "$T/l" | tns-tsv -f | head -1 | cut -f1-3)" = "$(printf '0\t11\t22')" ]
}

@test "img-read --shuffle is a seeded permutation" {
    small_stream > /dev/null
    a=$(img-read -q --shuffle --seed 7 "$T/i" "$T/l" | md5sum)
    b=$(img-read -q --shuffle --seed 7 "$T/i" "$T/l" | md5sum)
    c=$(img-read -q --shuffle --seed 8 "$T/i" "$T/l" | md5sum)
    [ "$a" = "$b" ] && [ "$a" != "$c" ]
    ids=$(img-read -q --shuffle --seed 7 "$T/i" "$T/l" | tns-info --json | tail -1 | $PY -c 'import json,sys; print(sorted(json.loads(sys.stdin.read())["meta"]["ids"]))')
    [ "$ids" = "[0, 1, 2, 3, 4]" ]
}

@test "img-read --size, --rgb, --mean/--std" {
    small_stream > /dev/null
    [ "$(img-read -q --size 4x6 --rgb "$T/i" "$T/l" | tns-info | cut -f5 | tail -1)" = "5x3x4x6" ]
    [ "$(img-read -q --size 8 --crop 5x7 "$T/i" "$T/l" | tns-info | cut -f5 | tail -1)" = "5x1x5x7" ]
    run img-read -q --mean 0.5 --std 0.25 "$T/i" "$T/l"
    [ "$status" -eq 0 ]
    # (x - 0.5) / 0.25 for x = 0: -2
    [ "$(img-read -q --mean 0.5 --std 0.25 "$T/i" "$T/l" | tns-tsv -f | head -1 | cut -f1)" = "-2" ]
    run --separate-stderr img-read --mean 0.5,0.5 "$T/i" "$T/l"
    expect_failure 2 img-read "--mean/--std have 2 values for 1 channels"
}

@test "round trip IDX -> stream -> tar -> stream -> tar is exact" {
    small_stream > "$T/s.tns"
    img-write -o "$T/a.tar" "$T/s.tns"
    [ "$(tar tf "$T/a.tar" | sort | tr '\n' ' ')" = "0/000001.png 0/000004.png 1/000002.png 2/000000.png 2/000003.png " ]
    img-read -q "$T/a.tar" > "$T/t.tns"
    img-write -o "$T/b.tar" "$T/t.tns"
    img-read -q "$T/b.tar" | img-write -o "$T/c.tar"
    cmp "$T/b.tar" "$T/c.tar"
    # same pixels: per-image sums agree once both are put in class order
    sums() { tns-tsv -f -l "$1" | awk '{s=0; for(i=2;i<=NF;i++) s+=$i; printf "%s %.6f\n", $1, s}' | sort; }
    [ "$(sums "$T/s.tns")" = "$(sums "$T/t.tns")" ]
}

@test "zip and tar.gz archives are reproducible and read back" {
    small_stream > "$T/s.tns"
    img-write -o "$T/a.zip" "$T/s.tns"
    img-write -o "$T/b.zip" "$T/s.tns"
    cmp "$T/a.zip" "$T/b.zip"
    img-write -o "$T/a.tar.gz" "$T/s.tns"
    img-write -o "$T/b.tar.gz" "$T/s.tns"
    cmp "$T/a.tar.gz" "$T/b.tar.gz"
    [ "$(img-read -q "$T/a.zip" | tns-info | tail -1 | cut -f5)" = "5x1x2x3" ]
    [ "$(img-read -q - < "$T/a.tar.gz" | tns-info | tail -1 | cut -f5)" = "5x1x2x3" ]
}

@test "img-write to a directory of PNGs, read back as ImageFolder" {
    small_stream > "$T/s.tns"
    img-write -f dir -o "$T/dir" "$T/s.tns"
    [ "$(find "$T/dir" -name '*.png' | wc -l)" -eq 5 ]
    run img-read -q "$T/dir"
    [ "$status" -eq 0 ]
    [ "$(img-read -q "$T/dir" | tns-info | head -1 | grep -o 'general.labels=\[3\]')" = "general.labels=[3]" ]
}

@test "a contact sheet is one PNG of the grid" {
    small_stream > "$T/s.tns"
    img-write --cols 2 -o "$T/sheet.png" "$T/s.tns"
    [ "$(head -c 8 "$T/sheet.png" | od -An -tx1 | tr -d ' ')" = "89504e470d0a1a0a" ]
}

@test "img-read refuses broken sources with a message and no output" {
    : > "$T/empty"
    head -c 3000 /dev/urandom > "$T/noise"
    run --separate-stderr img-read "$T/empty"
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "*"$T/empty"* ]] && [ -z "$output" ]
    run --separate-stderr img-read "$T/noise"
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "* ]] && [ -z "$output" ]
    run --separate-stderr img-read /nonexistent.tar
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "*"/nonexistent.tar"* ]]
    run --separate-stderr img-read --bogus x
    expect_failure 2 img-read "unknown option (--bogus)"
    run --separate-stderr img-read
    expect_failure 2 img-read "missing argument"
}

@test "img-read --classes: a name given twice, a NUL byte or a directory is refused" {
    small_stream > /dev/null
    printf 'a\nb\nc\n' > "$T/ok"
    img-read -q --classes "$T/ok" "$T/i" "$T/l" | tns-info | head -1 | grep -q 'general.labels=\[3\]'
    printf 'a\nb\n\na\n' > "$T/dup"
    run --separate-stderr img-read -q --classes "$T/dup" "$T/i" "$T/l"
    expect_failure 1 img-read "dup:4: class name 'a' given twice"
    printf 'a\nb\0x\nc\n' > "$T/nul"
    run --separate-stderr img-read -q --classes "$T/nul" "$T/i" "$T/l"
    expect_failure 1 img-read "nul:2: a NUL byte (not a text file?)"
    run --separate-stderr img-read -q --classes "$T" "$T/i" "$T/l"
    expect_failure 1 img-read "is a directory"
}

@test "img-read -: standard input that is no dataset fails after its first MiB, not at the memory limit" {
    run --separate-stderr timeout 20 img-read - < /dev/zero
    expect_failure 1 img-read "standard input (its first 1048576 bytes)"
    run --separate-stderr timeout 20 sh -c 'cat /dev/urandom | img-read -'
    expect_failure 1 img-read "standard input (its first 1048576 bytes)"
    # a dataset larger than the first MiB still reads from standard input
    make_idx "$T/big" 2000 28 28
    [ "$(img-read -q - < "$T/big" | tns-info | head -1 | grep -o 'general.count=[0-9]*')" = general.count=2000 ]
}

@test "truncated tar.gz and IDX files are errors" {
    small_stream > "$T/s.tns"
    img-write -o "$T/a.tar.gz" "$T/s.tns"
    head -c $(( $(wc -c < "$T/a.tar.gz") / 2 )) "$T/a.tar.gz" > "$T/cut.tar.gz"
    run --separate-stderr img-read -o "$T/out.tns" "$T/cut.tar.gz"
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "* ]]
    [ -z "$(ls "$T" | grep out.tns)" ]
    head -c 20 "$T/i" > "$T/i.cut"
    run --separate-stderr img-read "$T/i.cut" "$T/l"
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "* ]] && [ -z "$output" ]
    make_idx_labels "$T/l4" 1 2 3 4
    run --separate-stderr img-read "$T/i" "$T/l4"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"4 labels for 5 images"* ]]
}

@test "a corrupt PNG inside an archive names the entry" {
    small_stream > "$T/s.tns"
    img-write -f dir -o "$T/dir" "$T/s.tns"
    f=$(find "$T/dir" -name '*.png' | sort | head -1)
    head -c 60 "$f" > "$f.cut" && mv "$f.cut" "$f"
    (cd "$T/dir" && tar cf "$T/bad.tar" */)
    run --separate-stderr img-read -o "$T/out.tns" "$T/bad.tar"
    [ "$status" -eq 1 ]
    [[ "$stderr" == "img-read: "*"$(basename "$f")"* ]] || { echo "$stderr"; return 1; }
    [ ! -e "$T/out.tns" ]
}

@test "an archive without CLASS/NAME.png entries is refused" {
    echo hello > "$T/readme.txt"
    (cd "$T" && tar cf "$T/none.tar" readme.txt)
    run --separate-stderr img-read "$T/none.tar"
    [ "$status" -eq 1 ] && [[ "$stderr" == "img-read: "* ]] && [ -z "$output" ]
}

@test "img-write refuses records that are not image batches" {
    printf '1 2\n' | tns-tsv -r -n images > "$T/flat.tns"
    run --separate-stderr img-write -n images -o "$T/x.tar" "$T/flat.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"not images (N, C, H, W)"* ]]
    [ ! -e "$T/x.tar" ]
    run --separate-stderr img-write -o "$T/x.tar" "$T/flat.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"no images in the stream"* ]]
}

@test "Fashion-MNIST IDX reads whole: 10000 test images, 10 classes" {
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "dataset-fashion-mnist not installed"
    run tns-info "$FASHION/t10k-images-idx3-ubyte.gz"
    [ "$status" -eq 1 ] # an IDX file is not a stream
    img-read -q --classes "$ROOT/examples/fashion-mnist.classes" "$FASHION/t10k-images-idx3-ubyte.gz" > "$T/f.tns"
    [ "$(tns-info "$T/f.tns" | tail -n +2 | cut -f5 | cut -dx -f1 | awk '{s+=$1} END{print s}')" -eq 10000 ]
    tns-info --json "$T/f.tns" | head -1 | grep -q '"Ankle boot"'
}

@test "tns-info --summary counts samples per class, with names" {
    small_stream > "$T/s.tns"
    run --separate-stderr tns-info --summary "$T/s.tns" "$T/s.tns"
    [ "$status" -eq 0 ]
    [ "${lines[2]}" = $'samples\t10' ]
    [ "${lines[3]}" = $'class\t0\t0\t4' ]
    [ "${lines[5]}" = $'class\t2\t2\t4' ]
    run --separate-stderr tns-info --summary --json "$T/s.tns"
    expect_failure 2 tns-info "cannot be combined"
}

@test "tns-info --summary counts boxes per class in a detection stream, and refuses a bad boxes record" {
    logo-synth -q --shapes 5 -k 3 -n 10 -b 4 -s 64 > "$T/d.tns"
    run --separate-stderr tns-info --summary "$T/d.tns"
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = $'tensors\t3' ]
    total=$(printf '%s\n' "${lines[@]}" | awk -F'\t' '$1 == "boxes" {print $2}')
    per_class=$(printf '%s\n' "${lines[@]}" | awk -F'\t' '$1 == "class-boxes" {s += $4; n++} END {print n, s}')
    [ "$per_class" = "3 $total" ]
    # the same total as the boxes records' shapes
    [ "$total" -eq "$(tns-info "$T/d.tns" | awk -F'\t' '$2 == "boxes" {split($5, s, "x"); t += s[1]} END {print t}')" ]
    # a class beyond the stream's three
    $PY - "$T/d.tns" "$T/bad.tns" <<'PY'
import sys, msgpack
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
recs[1]["meta"]["classes"][0] = 7
with open(sys.argv[2], "wb") as out:
    for r in recs: out.write(msgpack.packb(r, use_bin_type=True))
PY
    run --separate-stderr tns-info --summary "$T/bad.tns"
    [ "$status" -eq 1 ]
    [[ "$stderr" == *"bad.tns: record 1"* ]]
}

@test "img-write refuses to write an entry twice and leaves no archive" {
    small_stream > "$T/s.tns"
    cat "$T/s.tns" "$T/s.tns" > "$T/twice.tns"
    run --separate-stderr img-write -o "$T/x.tar" "$T/twice.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"written twice"* ]]
    [ ! -e "$T/x.tar" ]
}

@test "a stream with image.mean but no image.std is refused" {
    small_stream > "$T/s.tns"
    $PY -c '
import msgpack, sys
sys.stdout.buffer.write(msgpack.packb({"fmt": "tns", "ver": 1, "kind": "meta", "name": "", "meta": {"image.mean": [0.5]}}))' > "$T/m.tns"
    cat "$T/m.tns" "$T/s.tns" > "$T/bad.tns"
    run --separate-stderr img-write -o "$T/x.tar" "$T/bad.tns"
    [ "$status" -eq 1 ] && [[ "$stderr" == *"image.mean and image.std must come together"* ]]
    [ ! -e "$T/x.tar" ]
}

@test "stream meta that would poison pixels or names is refused: Inf/NaN mean or std, a NUL in a class name" {
    small_stream > "$T/s.tns"
    meta() { # python-literal meta map -> a meta record
        $PY -c "
import msgpack, sys
sys.stdout.buffer.write(msgpack.packb({'fmt': 'tns', 'ver': 1, 'kind': 'meta', 'name': '', 'meta': $1}, use_bin_type=True))"
    }
    for bad in "{'image.mean': [float('inf')], 'image.std': [0.5]}|image.mean: inf is not a finite number" \
               "{'image.mean': [float('nan')], 'image.std': [0.5]}|image.mean: nan is not a finite number" \
               "{'image.mean': [0.5], 'image.std': [float('inf')]}|image.std: inf is not a finite number" \
               "{'image.mean': [0.5], 'image.std': [float('nan')]}|image.std: nan is not a finite number"; do
        { meta "${bad%%|*}"; cat "$T/s.tns"; } > "$T/bad.tns"
        run --separate-stderr concept-bank -q "$T/bad.tns"
        expect_failure 1 concept-bank "${bad#*|}"
        run --separate-stderr img-write -o "$T/x.tar" "$T/bad.tns"
        [ "$status" -eq 1 ] && [[ "$stderr" == *"${bad#*|}"* ]] && [ ! -e "$T/x.tar" ]
    done
    { meta "{'general.labels': ['a', 'b\\x00c', 'd']}"; cat "$T/s.tns"; } > "$T/nul.tns"
    run --separate-stderr concept-bank -q "$T/nul.tns"
    expect_failure 1 concept-bank "general.labels: element 1 holds a NUL byte"
}
