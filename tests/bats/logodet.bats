#!/usr/bin/env bats
# logo-det: train, detect (stream, TSV, JSON, drawn PNGs) and eval on tiny
# built-in-shape scenes; checkpoints resume exactly; bad input (boxes outside
# the image, unknown classes, no images, a truncated stream, images without
# boxes for training) fails clearly and writes nothing.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

# 16 scenes of 32x32 with 2 classes, and a 1-epoch model of width 2 (seconds).
small_model() {
    logo-synth -q --shapes 4 -k 2 -n 16 --size 32 --min-scale 0.3 -o "$T/s.tns"
    logo-det train -q -w 2 -e 1 -b 8 -o "$T/m.tns" "$T/s.tns"
}

# Rewrites record 1 (the first boxes record) of a stream with Python code on r.
edit_boxes() { # in out code
    $PY - "$@" <<'PY'
import msgpack, struct, sys
recs = list(msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False))
r = recs[1]
exec(sys.argv[3])
open(sys.argv[2], "wb").write(b"".join(msgpack.packb(x, use_bin_type=True) for x in recs))
PY
}

@test "logo-det: train, detect as a stream det-eval reads, TSV, JSON and eval" {
    small_model
    [ -s "$T/m.tns" ]
    net-info "$T/m.tns" | grep -q '^macs'
    logo-det detect -q -m "$T/m.tns" -o "$T/d.tns" "$T/s.tns"
    run det-eval "$T/s.tns" "$T/d.tns"
    [ "$status" -eq 0 ]
    [[ "$output" == *"mAP@0.5 (VOC all-point)"* ]]
    logo-det detect -q -m "$T/m.tns" -f tsv -o "$T/d.tsv" "$T/s.tns"
    head -1 "$T/d.tsv" | grep -q $'^id\tclass\tname\tscore\tx0'
    n_tsv=$(($(wc -l < "$T/d.tsv") - 1))
    n_tns=$(det-convert --to coco "$T/d.tns" | $PY -c 'import json, sys; print(len(json.load(sys.stdin)["annotations"]))')
    [ "$n_tsv" -eq "$n_tns" ]
    logo-det detect -q -m "$T/m.tns" -f json -o "$T/d.json" "$T/s.tns"
    $PY -c 'import json, sys; j = json.load(open(sys.argv[1])); assert len(j["images"]) == 16 and len(j["categories"]) == 2' "$T/d.json"
    run logo-det eval -q -m "$T/m.tns" "$T/s.tns"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == $'class\tname\tgt'* ]]
    [[ "$output" == *"# mAP@[.5:.95] (COCO)"* ]]
}

@test "logo-det detect --draw writes PNGs with boxes into a new directory" {
    small_model
    logo-det detect -q -m "$T/m.tns" --draw "$T/drawn" --draw-limit 3 -t 0 -o "$T/d.tns" "$T/s.tns"
    [ "$(ls "$T/drawn" | wc -l)" -eq 3 ]
    [ -s "$T/drawn/000000.png" ]
    run logo-det detect -q -m "$T/m.tns" --draw "$T/drawn" -o "$T/d2.tns" "$T/s.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"exists already"* ]]
}

@test "logo-det detect streams: windows of batches give what det-eval gives on the whole; an id twice fails at the end" {
    # 600 images in batches of 100: detect reads them in windows of 256 or more
    logo-synth -q --shapes 4 -k 2 -n 600 -b 100 --size 32 --min-scale 0.3 -o "$T/big.tns"
    logo-det train -q -w 4 -e 3 -b 16 -o "$T/m.tns" "$T/big.tns"
    logo-det detect -q -m "$T/m.tns" -o "$T/d.tns" "$T/big.tns"
    det-eval "$T/big.tns" "$T/d.tns" > "$T/det-eval.txt"
    logo-det eval -q -m "$T/m.tns" "$T/big.tns" > "$T/logo-eval.txt"
    # the same counts per class (gt, detections, true positives), the same mAP
    cut -f1-5 "$T/det-eval.txt" | grep -v '^#' > "$T/a"
    cut -f1-5 "$T/logo-eval.txt" | grep -v '^#' > "$T/b"
    diff "$T/a" "$T/b"
    [ "$(awk -F'\t' 'NR == 2 { print $4 }' "$T/b")" -gt 0 ]
    diff <(grep 'VOC all-point' "$T/det-eval.txt") <(grep 'VOC all-point' "$T/logo-eval.txt")
    n=$(det-convert --to coco "$T/d.tns" | $PY -c 'import json, sys; print(len(json.load(sys.stdin)["images"]))')
    [ "$n" -eq 600 ]
    # the same images twice: ids repeat in a later window
    cat "$T/big.tns" "$T/big.tns" > "$T/twice.tns"
    run --separate-stderr logo-det detect -q -m "$T/m.tns" --draw "$T/drawn" -o "$T/d2.tns" "$T/twice.tns"
    [ "$status" -eq 1 ]
    [[ "$stderr" == *"image id 0 appears twice"* ]]
    [ ! -e "$T/d2.tns" ] && [ ! -e "$T/drawn" ]
    [ -z "$(ls "$T" | grep tmp)" ]
}

@test "logo-det detect holds a window, not the stream: 123 MB of images, peak memory under half of it" {
    [ "${SANITIZE:-0}" = 1 ] && skip "peak memory is the sanitizer's under ASan"
    logo-synth -q --shapes 4 -k 2 -n 16 --size 64 -o "$T/s.tns"
    logo-det train -q -w 2 -e 1 -b 8 -o "$T/m.tns" "$T/s.tns"
    logo-synth -q --shapes 4 -k 2 -n 2500 --size 64 -o "$T/many.tns" # 2500 x 3 x 64 x 64 f32
    peak_kb=$($PY - "$(command -v logo-det)" "$T/m.tns" "$T/many.tns" <<'PY'
import resource, subprocess, sys
exe, model, data = sys.argv[1:]
subprocess.run([exe, "detect", "-q", "-m", model, "-o", "/dev/null", data], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
    echo "peak $peak_kb KB" >&3
    [ "$peak_kb" -lt 60000 ]
}

@test "logo-det train: a checkpoint resumed gives the uninterrupted run's model" {
    logo-synth -q --shapes 4 -k 2 -n 16 --size 32 -o "$T/s.tns"
    logo-det train -q -w 2 -e 2 -b 8 -o "$T/full.tns" "$T/s.tns"
    logo-det train -q -w 2 -e 2 -b 8 --stop-after 1 -c "$T/ck.tns" -o "$T/half.tns" "$T/s.tns"
    logo-det train -q -e 2 -b 8 -m "$T/ck.tns" --resume -o "$T/resumed.tns" "$T/s.tns"
    cmp "$T/full.tns" "$T/resumed.tns"
    run logo-det train -q -e 2 -b 8 -m "$T/resumed.tns" --resume -o "$T/x.tns" "$T/s.tns"
    [ "$status" -eq 1 ]
    [ ! -e "$T/x.tns" ]
}

@test "logo-det: bad input fails with a clear message and writes nothing" {
    logo-synth -q --shapes 4 -k 2 -n 4 --size 32 -o "$T/s.tns"
    edit_boxes "$T/s.tns" "$T/out.tns" 'r["data"] = struct.pack("<4f", 2, 2, 40, 20) + r["data"][16:]'
    run logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/out.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"outside the 32x32 image"* ]]
    edit_boxes "$T/s.tns" "$T/cls.tns" 'r["meta"]["classes"][0] = 7'
    run logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/cls.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown class 7"* ]]
    tns-cat --kind meta "$T/s.tns" > "$T/empty.tns"
    run logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/empty.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no images"* ]]
    head -c 3000 "$T/s.tns" > "$T/cut.tns"
    run logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/cut.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == "logo-det: $T/cut.tns: "*truncated* ]]
    [[ "$output" != *"cut.tns: $T/cut.tns"* ]]
    tns-cat -v --kind boxes "$T/s.tns" > "$T/noboxes.tns"
    run logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/noboxes.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"without a boxes record"* ]]
    [ ! -e "$T/m.tns" ]
    # a model that is not a detector, and detection on images of another size
    net-init --arch mlp --like "$T/noboxes.tns" > "$T/mlp.tns" 2> /dev/null || true
    if [ -s "$T/mlp.tns" ]; then
        run logo-det detect -q -m "$T/mlp.tns" -o "$T/d.tns" "$T/noboxes.tns"
        [ "$status" -eq 1 ]
        [[ "$output" == *"not a logo-det detector"* ]]
    fi
    logo-det train -q -w 2 -e 1 -o "$T/m.tns" "$T/s.tns"
    logo-synth -q --shapes 4 -k 2 -n 2 --size 48 -o "$T/big.tns"
    run logo-det detect -q -m "$T/m.tns" -o "$T/d.tns" "$T/big.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the model takes 32x32 images"* ]]
    [ ! -e "$T/d.tns" ]
    # images without boxes are fine for detection
    logo-det detect -q -m "$T/m.tns" -o "$T/d.tns" "$T/noboxes.tns"
    [ -s "$T/d.tns" ]
}

@test "logo-det --mode region: a head on the one-stage model, in the same file" {
    small_model
    logo-det train -q --mode region -e 2 -m "$T/m.tns" -o "$T/r.tns" "$T/s.tns"
    tns-info "$T/r.tns" | grep -q 'roi.fc1.weight'
    run logo-det eval -q --mode region -m "$T/r.tns" "$T/s.tns"
    [ "$status" -eq 0 ]
    [[ "$output" == *"mAP@0.5 (VOC all-point)"* ]]
    # the one-stage mode still reads the file, and gives what the plain model gives
    logo-det detect -q -m "$T/r.tns" -o "$T/d1.tns" "$T/s.tns"
    logo-det detect -q -m "$T/m.tns" -o "$T/d2.tns" "$T/s.tns"
    cmp <(det-convert --to coco "$T/d1.tns") <(det-convert --to coco "$T/d2.tns")
    run logo-det detect -q --mode region -m "$T/m.tns" -o "$T/d3.tns" "$T/s.tns"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no region head"* ]]
    [ ! -e "$T/d3.tns" ]
    run logo-det train -q --mode region -o "$T/x.tns" "$T/s.tns"
    [ "$status" -eq 2 ]
    run logo-det detect -q --mode twostage -m "$T/r.tns" "$T/s.tns"
    [ "$status" -eq 2 ]
}

@test "logo-det: usage errors exit 2" {
    run logo-det
    [ "$status" -eq 2 ]
    run logo-det frobnicate x
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown subcommand 'frobnicate'"* ]]
    run logo-det train x.tns
    [ "$status" -eq 2 ]
    [[ "$output" == *"needs -o MODEL"* ]]
    run logo-det detect x.tns
    [ "$status" -eq 2 ]
    run logo-det detect -m m -f xml x.tns
    [ "$status" -eq 2 ]
}
