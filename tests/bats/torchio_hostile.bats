#!/usr/bin/env bats
# tns-from-torch on hostile checkpoints (tests/ref/torch_hostile/, made by
# gen_torch_hostile.py; expected.tsv lists each file and the words its error
# must contain): every one is refused with exit 1 and that message, writes
# no output, and runs no code (the os.system/eval/exec payloads would create
# PWNED). Then the happy path under the same sanitizers: every committed
# fixture imported, exported both ways, imported again to the same model.
# sanitize: yes
bats_require_minimum_version 1.5.0
load common

H="$ROOT/tests/ref/torch_hostile"
F="$ROOT/tests/ref/torch_io"

@test "every hostile checkpoint is refused with its message, no output and no code run" {
    cd "$T"
    bad=""
    n=0
    while IFS="$(printf '\t')" read -r file words; do
        n=$((n + 1))
        run -1 tns-from-torch --arch mlp --in 4 --num-classes 3 -o "$T/out.tns" "$H/$file"
        case "$output" in
            "tns-from-torch: "*"$words"*) ;;
            *) bad="$bad
$file: status $status, '$output' lacks '$words'" ;;
        esac
        [ ! -e "$T/out.tns" ] || bad="$bad
$file: left an output"
    done < "$H/expected.tsv"
    [ "$n" -ge 30 ]
    [ ! -e "$T/PWNED" ] && [ ! -e PWNED ]
    [ -z "$bad" ] || { echo "$bad"; false; }
}

@test "hostile files on standard input are refused the same way" {
    run -1 tns-from-torch --arch mlp --in 4 --num-classes 3 - < "$H/os_system.pt"
    [[ "$output" == *"forbidden global posix.system"* ]]
    run -1 tns-from-torch --arch mlp --in 4 --num-classes 3 - < "$H/overlap.safetensors"
    [[ "$output" == *"share bytes"* ]]
}

# in: the --in of each fixture
fixture_in() { case $1 in mlp) echo 20 ;; lenet) echo 1x16x16 ;; *) echo 3x16x16 ;; esac; }

@test "fixtures import, export as safetensors and .pt, and import again to the same tensors" {
    for c in resnet20 vgg lenet mlp vit; do
        key=""
        [ "$c" = lenet ] && key="--key state_dict"
        [ "$c" = vit ] && key="--heads 2"
        # shellcheck disable=SC2086
        tns-from-torch --arch $c --in "$(fixture_in $c)" $key -o "$T/$c.tns" "$F/$c.pt"
        # shellcheck disable=SC2086
        tns-from-torch --arch $c --in "$(fixture_in $c)" ${key#--key state_dict} -o "$T/$c-st.tns" "$F/$c.safetensors"
        tns-to-torch -o "$T/$c.safetensors" "$T/$c.tns"
        tns-to-torch -o "$T/$c.pt" "$T/$c.tns"
        # shellcheck disable=SC2086
        tns-from-torch --arch $c --in "$(fixture_in $c)" ${key#--key state_dict} -o "$T/$c-a.tns" "$T/$c.safetensors"
        # shellcheck disable=SC2086
        tns-from-torch --arch $c --in "$(fixture_in $c)" ${key#--key state_dict} -o "$T/$c-b.tns" "$T/$c.pt"
        for m in "$c-st" "$c-a" "$c-b"; do
            tns-cat --no-meta --kind tensor "$T/$c.tns" > "$T/x1"
            tns-cat --no-meta --kind tensor "$T/$m.tns" > "$T/x2"
            cmp "$T/x1" "$T/x2"
        done
    done
}
