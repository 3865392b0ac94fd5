#!/usr/bin/env bats
# tns-info, tns-cat, tns-tsv: happy paths, round trips and damaged streams.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

two_by_three() { printf '1 2 3\n4 5 6\n' | tns-tsv -r -n x; }

@test "tns-tsv -r then tns-tsv gives the same table back" {
    two_by_three > "$T/x.tns"
    run --separate-stderr tns-tsv "$T/x.tns"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf '1\t2\t3\n4\t5\t6')" ]
}

@test "tns-tsv keeps every f32 bit: %.9g round trip" {
    printf '0.1\n3.14159274\n-1e-30\n16777217\n' | tns-tsv -r > "$T/a.tns"
    tns-tsv "$T/a.tns" | tns-tsv -r > "$T/b.tns"
    cmp "$T/a.tns" "$T/b.tns"
}

@test "tns-info: one line per record with kind, name, dtype, shape" {
    two_by_three > "$T/x.tns"
    run --separate-stderr tns-info -s "$T/x.tns"
    [ "$status" -eq 0 ]
    [[ "$output" == $'0\ttensor\tx\tf32\t2x3\t'*'min=1 max=6 mean=3.5'* ]]
}

@test "tns-info --json emits valid JSON lines" {
    two_by_three > "$T/x.tns"
    tns-info --json "$T/x.tns" "$T/x.tns" > "$T/out.json"
    $PY -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; assert len(rows)==2 and rows[0]["shape"]==[2,3], rows' "$T/out.json"
}

@test "cat of two streams is a stream; tns-cat copies records byte for byte" {
    two_by_three > "$T/x.tns"
    cat "$T/x.tns" "$T/x.tns" > "$T/xx.tns"
    [ "$(tns-info "$T/xx.tns" | wc -l)" -eq 2 ]
    tns-cat "$T/x.tns" "$T/x.tns" | cmp - "$T/xx.tns"
    tns-cat < "$T/x.tns" | cmp - "$T/x.tns"
}

@test "tns-cat selects by name and kind, head and tail, and keeps meta records" {
    printf '1\n' | tns-tsv -r -n a > "$T/s.tns"
    printf '2\n' | tns-tsv -r -n b >> "$T/s.tns"
    printf '3\n' | tns-tsv -r -n a2 >> "$T/s.tns"
    [ "$(tns-cat --name 'a*' "$T/s.tns" | tns-info | cut -f3 | tr '\n' ' ')" = "a a2 " ]
    [ "$(tns-cat -v --name 'a*' "$T/s.tns" | tns-info | cut -f3)" = "b" ]
    [ "$(tns-cat --head 2 "$T/s.tns" | tns-info | cut -f3 | tr '\n' ' ')" = "a b " ]
    [ "$(tns-cat --tail 1 "$T/s.tns" | tns-info | cut -f3)" = "a2" ]
    [ "$(tns-cat --kind graph "$T/s.tns" | wc -c)" -eq 0 ]
}

@test "meta records pass tns-cat selections" {
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "dataset-fashion-mnist not installed"
    img-read -q --limit 10 "$FASHION/t10k-images-idx3-ubyte.gz" | tns-cat --name images --head 1 > "$T/s.tns"
    [ "$(tns-info "$T/s.tns" | cut -f2 | tr '\n' ' ')" = "meta tensor " ]
}

@test "tns-tsv --flatten, --index and --labels" {
    make_idx "$T/i" 3 2 2
    make_idx_labels "$T/l" 7 8 9
    img-read -q "$T/i" "$T/l" > "$T/s.tns"
    run --separate-stderr tns-tsv "$T/s.tns"
    expect_failure 1 tns-tsv "is 4-D (3x1x2x2): use --flatten"
    run --separate-stderr tns-tsv -f -i -l "$T/s.tns"
    [ "$status" -eq 0 ]
    [ "${lines[2]%%$'\t'0.*}" = $'2\t9' ]
    [ "$(echo "${lines[0]}" | awk '{print NF}')" -eq 6 ]
}

@test "examples/tns_read.py (the reader in tns(5)) reads our streams" {
    $PY -c 'import msgpack, numpy' 2>/dev/null || skip "python3-msgpack or python3-numpy not installed"
    printf '1 2\n3 4\n' | tns-tsv -r -t bf16 -n w > "$T/w.tns"
    run $PY "$ROOT/examples/tns_read.py" "$T/w.tns"
    [ "$status" -eq 0 ]
    [ "$output" = $'tensor\tw\tbf16\t2x2' ]
}

@test "a stream written by Python with keys in another order reads" {
    $PY -c 'import msgpack' 2>/dev/null || skip "python3-msgpack not installed"
    $PY -c '
import msgpack, struct, sys
rec = {"fmt": "tns", "ver": 1, "kind": "tensor", "data": struct.pack("<3d", 1.5, 2.5, -4),
       "shape": [3], "dtype": "f64", "name": "py", "meta": {"x": 1}, "future.key": [1, 2]}
sys.stdout.buffer.write(msgpack.packb(rec))' > "$T/py.tns"
    run --separate-stderr tns-tsv "$T/py.tns"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf '1.5\n2.5\n-4')" ]
}

@test "a truncated stream is an error, never a shorter stream" {
    two_by_three > "$T/x.tns"
    head -c 40 "$T/x.tns" > "$T/cut.tns"
    run --separate-stderr tns-info "$T/cut.tns"
    expect_failure 1 tns-info "record 0: truncated record at end of stream"
    run --separate-stderr tns-cat -o "$T/out.tns" "$T/cut.tns"
    expect_failure 1 tns-cat "truncated"
    [ -z "$(ls "$T" | grep out.tns)" ] # neither the file nor its temporary
}

@test "every prefix of a stream either reads whole records or fails cleanly" {
    two_by_three > "$T/x.tns"
    size=$(wc -c < "$T/x.tns")
    for n in $(seq 1 $((size - 1))); do
        head -c "$n" "$T/x.tns" > "$T/cut.tns"
        run --separate-stderr tns-cat "$T/cut.tns"
        [ "$status" -eq 1 ] || { echo "prefix $n: status $status"; return 1; }
        [[ "$stderr" == "tns-cat: "*"truncated"* ]] || { echo "prefix $n: $stderr"; return 1; }
    done
}

@test "random bytes and bad magic are refused with a message" {
    head -c 1000 /dev/urandom > "$T/noise"
    printf '\x81\xa3fmt\xa3tsr' > "$T/magic"
    run --separate-stderr tns-info "$T/magic"
    expect_failure 1 tns-info "bad magic"
    run --separate-stderr tns-info "$T/noise"
    [ "$status" -eq 1 ]
    [[ "$stderr" == "tns-info: $T/noise: record 0: "* ]]
}

@test "usage errors exit 2 with the bad value; --help and --version exit 0" {
    run --separate-stderr tns-cat --frobnicate
    expect_failure 2 tns-cat "unknown option (--frobnicate)"
    run --separate-stderr tns-cat --head=-3
    expect_failure 2 tns-cat "(-3)"
    run --separate-stderr tns-cat --head x
    expect_failure 2 tns-cat "--head takes an integer (x)"
    run --separate-stderr tns-info /nonexistent.tns
    expect_failure 1 tns-info "/nonexistent.tns: cannot open (No such file or directory)"
    run tns-info --help
    [ "$status" -eq 0 ]
    [[ "$output" == Usage:* ]]
    run tns-tsv --version
    [ "$status" -eq 0 ]
    [[ "$output" == *"BLIS kernels: "* ]]
}

@test "a full disk is an error, not a silent loss" {
    [ -w /dev/full ] || skip "no /dev/full"
    two_by_three > "$T/x.tns"
    run --separate-stderr bash -c "tns-cat '$T/x.tns' > /dev/full"
    [ "$status" -eq 1 ]
    [[ "$stderr" == "tns-cat: stdout: write failed"* ]]
    run --separate-stderr bash -c "tns-info '$T/x.tns' > /dev/full"
    [ "$status" -eq 1 ]
}

@test "meta records pass --kind, -v and --head; --kind meta selects them; --no-meta drops them" {
    [ -f "$FASHION/t10k-images-idx3-ubyte.gz" ] || skip "dataset-fashion-mnist not installed"
    img-read -q --limit 600 "$FASHION/t10k-images-idx3-ubyte.gz" > "$T/s.tns"
    [ "$(tns-cat --kind tensor --head 1 "$T/s.tns" | tns-info | cut -f2 | tr '\n' ' ')" = "meta tensor " ]
    [ "$(tns-cat -v --name images "$T/s.tns" | tns-info | cut -f2 | tr '\n' ' ')" = "meta " ]
    [ "$(tns-cat --kind meta "$T/s.tns" | tns-info | wc -l)" -eq 1 ]
    [ "$(tns-cat --no-meta --head 1 "$T/s.tns" | tns-info | cut -f2)" = "tensor" ]
    run --separate-stderr tns-cat --no-meta --kind meta "$T/s.tns"
    expect_failure 2 tns-cat "--kind meta selects what --no-meta drops"
}

@test "tns-tsv -r keeps f64 and i64 precision; a bad dtype is a usage error" {
    [ "$(printf '0.1\n' | tns-tsv -r -t f64 | tns-tsv)" = "0.10000000000000001" ]
    [ "$(printf '123456789\n' | tns-tsv -r -t i64 | tns-tsv)" = "123456789" ]
    run --separate-stderr tns-tsv -r -t f31
    expect_failure 2 tns-tsv "--dtype must be one of"
}

@test "tns-tsv -r: integer dtypes saturate at their limits and round halves to even" {
    edges='2147483647 2147483648 -2147483648 -2147483649 0.5 1.5 2.5 -2.5 -0.5 1e30 -inf nan'
    [ "$(printf '%s\n' $edges | tns-tsv -r -t i32 | tns-tsv | tr '\n' ' ')" = \
      "2147483647 2147483647 -2147483648 -2147483648 0 2 2 -2 0 2147483647 -2147483648 0 " ]
    big='9223372036854775807 9223372036854775808 -9223372036854775808 -9223372036854775809 9007199254740993 9.3e18 -1e300 0.5 1.5 2.5 -2.5'
    [ "$(printf '%s\n' $big | tns-tsv -r -t i64 | tns-tsv | tr '\n' ' ')" = \
      "9223372036854775807 9223372036854775807 -9223372036854775808 -9223372036854775808 9007199254740993 9223372036854775807 -9223372036854775808 0 2 2 -2 " ]
    [ "$(printf '%s\n' 0.5 1.5 2.5 -2.5 300 -300 | tns-tsv -r -t i8 | tns-tsv | tr '\n' ' ')" = "0 2 2 -2 127 -128 " ]
}

@test "tns-info --json --stats stays valid JSON for non-finite values" {
    printf 'nan\ninf\n' | tns-tsv -r > "$T/nan.tns"
    tns-info --json --stats "$T/nan.tns" | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); assert r["stats"]["min"] is None and r["stats"]["nonfinite"] == 2, r'
}

@test "-o onto a device writes through it instead of replacing it" {
    printf '1\n' | tns-tsv -r -o /dev/null
    [ -c /dev/null ]
}

@test "--version names the BLIS kernels; BLIS_ARCH_TYPE takes names and bad values are ignored, not fatal" {
    run tns-info --version
    [ "$status" -eq 0 ] && [[ "$output" == *"BLIS kernels: "* ]]
    BLIS_ARCH_TYPE=haswell run tns-info --version
    [ "$status" -eq 0 ] && [[ "$output" == *"BLIS kernels: haswell (BLIS_ARCH_TYPE=haswell set by the user)"* ]]
    BLIS_ARCH_TYPE=bogus run tns-info --version
    [ "$status" -eq 0 ] && [[ "$output" == *"BLIS_ARCH_TYPE=bogus names no architecture: ignored"* ]]
    BLIS_ARCH_TYPE=2 run --separate-stderr tns-info --version
    [ "$status" -eq 0 ] && [[ "$output" == *"BLIS_ARCH_TYPE=2 is not usable with this BLIS: ignored"* ]]
    [ -z "$stderr" ]
}

@test "tns-tsv -r: binary input fails at once (NUL byte), a directory is refused" {
    run --separate-stderr timeout 10 tns-tsv -r < /dev/zero
    expect_failure 1 tns-tsv "stdin:1: a NUL byte (not a text file?)"
    run --separate-stderr tns-tsv -r "$T"
    expect_failure 1 tns-tsv "is a directory"
}

@test "the reader refuses bool bytes other than 0 and 1, a part past the count, a NUL in a name" {
    rec() { # python: dtype, data, shape, meta, name
        $PY -c "
import msgpack, sys
sys.stdout.buffer.write(msgpack.packb({'fmt': 'tns', 'ver': 1, 'kind': 'tensor', 'name': $5, 'dtype': '$1',
    'shape': $3, 'data': $2, 'meta': $4}, use_bin_type=True))"
    }
    rec bool "bytes([0, 1, 1])" "[3]" "{}" "'ok'" > "$T/ok.tns"
    [ "$(tns-tsv "$T/ok.tns" | tr '\n' ' ')" = "0 1 1 " ]
    rec bool "bytes([0, 2, 1])" "[3]" "{}" "'b'" > "$T/b.tns"
    run --separate-stderr tns-info "$T/b.tns"
    expect_failure 1 tns-info "record 0: bool element 1 is 2 (a bool is 0 or 1)"
    rec f32 "bytes(8)" "[2]" "{'part': [1, 2]}" "'p'" > "$T/p1.tns"
    tns-info "$T/p1.tns" > /dev/null
    rec f32 "bytes(8)" "[2]" "{'part': [5, 2]}" "'p'" > "$T/p.tns"
    run --separate-stderr tns-info "$T/p.tns"
    expect_failure 1 tns-info "record 0: meta part [5, 2]: part 5 of 2 does not exist (0 <= i < n)"
    rec f32 "bytes(8)" "[2]" "{'part': [2, 2]}" "'p'" > "$T/p2.tns"
    run --separate-stderr tns-info "$T/p2.tns"
    expect_failure 1 tns-info "part 2 of 2 does not exist"
    rec f32 "bytes(8)" "[2]" "{'part': 'x'}" "'p'" > "$T/p3.tns"
    run --separate-stderr tns-info "$T/p3.tns"
    expect_failure 1 tns-info "meta part is not [i, n]"
    rec f32 "bytes(8)" "[2]" "{}" "'na\\x00me'" > "$T/n.tns"
    run --separate-stderr tns-info "$T/n.tns"
    expect_failure 1 tns-info "invalid name"
}
