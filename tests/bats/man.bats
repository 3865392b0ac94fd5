#!/usr/bin/env bats
# Man pages: every program has one, every page formats cleanly, and every
# option a program's --help lists is documented in its page.
bats_require_minimum_version 1.5.0
load common

need_groff() {
    command -v groff > /dev/null || skip "groff not installed (Debian: groff-base)"
}

# A page as plain text: no bold, underline or escape sequences.
render() { groff -man -Tascii -P-cbou "$1"; }

@test "every program in tools/ has a man page in man/man1" {
    local c name missing="" n=0
    for c in "$ROOT"/tools/*.c; do
        name=$(basename "$c" .c)
        n=$((n + 1))
        [ -f "$ROOT/man/man1/$name.1" ] || missing="$missing $name"
    done
    [ "$n" -gt 0 ] || { echo "no tools/*.c found under $ROOT"; return 1; }
    [ -z "$missing" ] || { echo "no man/man1/NAME.1 for:$missing"; return 1; }
}

@test "every man page formats with groff -man -ww without a warning" {
    need_groff
    local page n=0
    for page in "$ROOT"/man/man[1-8]/*.[1-8]; do
        [ -f "$page" ] || continue
        n=$((n + 1))
        # The default device and a terminal one (nroff), where lines are
        # shorter and adjustment warnings show up.
        run --separate-stderr groff -man -ww -z "$page"
        [ "$status" -eq 0 ] && [ -z "$stderr" ] ||
            { echo "${page#"$ROOT"/}: status $status: $stderr"; return 1; }
        run --separate-stderr groff -man -Tascii -ww -z "$page"
        [ "$status" -eq 0 ] && [ -z "$stderr" ] ||
            { echo "${page#"$ROOT"/} (-Tascii): status $status: $stderr"; return 1; }
    done
    [ "$n" -gt 0 ] || { echo "no man pages under $ROOT/man"; return 1; }
}

# An option line of --help is "  -x, --long VALUE   help" or
# "      --long   help": two or more spaces, a dash, then the option up to the
# two spaces before its help. That text must appear in the rendered page (the
# pages write each option's tag exactly so).
@test "every option a program's --help lists appears in its man page" {
    need_groff
    local c name page text line spec n bad=""
    for c in "$ROOT"/tools/*.c; do
        name=$(basename "$c" .c)
        page="$ROOT/man/man1/$name.1"
        [ -f "$page" ] || continue # reported by the first test
        text=$(render "$page")
        run --separate-stderr "$name" --help
        [ "$status" -eq 0 ] || { echo "$name --help: status $status: $stderr"; return 1; }
        n=0
        while IFS= read -r line; do
            spec=$(printf '%s\n' "$line" | sed -E 's/^ +//; s/  .*$//')
            n=$((n + 1))
            grep -qF -e "$spec" <<< "$text" || bad="$bad
  $name: '$spec'"
        done < <(printf '%s\n' "$output" | grep -E '^  +-')
        [ "$n" -gt 0 ] || { echo "$name --help lists no options"; return 1; }
    done
    [ -z "$bad" ] || { echo "options missing from their man pages:$bad"; return 1; }
}
