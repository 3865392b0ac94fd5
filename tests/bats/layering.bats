#!/usr/bin/env bats
# The house rules of lib/ (tests/layering.sh): the layer order base < stream <
# nn < {cav, merge, graph}, cli on base only, and no printing or exiting
# outside lib/cli. The repository's lib/ must pass; small made-up trees show
# that each breach is caught.
bats_require_minimum_version 1.5.0
load common

check() { sh "$ROOT/tests/layering.sh" "$@"; }

# A tree that keeps every rule; each test below breaks one.
good_tree() {
    mkdir -p "$T/lib/base" "$T/lib/stream" "$T/lib/nn" "$T/lib/cav" "$T/lib/merge" "$T/lib/graph" "$T/lib/cli"
    printf '#include "base/err.h"\nint ns_x(void);\n' > "$T/lib/base/err.h"
    printf '#include "base/err.h"\n#include "stream/tns.h"\n' > "$T/lib/stream/tns.c"
    printf '#include "stream/tns.h"\n#include "nn/model.h"\n' > "$T/lib/nn/model.c"
    printf '#include "nn/model.h"\n#include "base/err.h"\n' > "$T/lib/merge/merge.c"
    printf '#include "nn/model.h"\n' > "$T/lib/graph/gnn.c"
    # comments and strings may name anything
    printf '// exit(1), printf("x"), stderr\nconst char *s = "abort() puts(x) stderr";\n' > "$T/lib/cav/cav.c"
    printf '/* a block comment\n   exit(1); printf("x");\n */\nchar c = \x27"\x27;\n' >> "$T/lib/cav/cav.c"
    printf 'int ns_errf(void);\nstatic void f(FILE *f) { fprintf(f, "%%d", 1); snprintf(0, 0, "x"); }\n' >> "$T/lib/cav/cav.c"
    printf '#include "base/err.h"\n#include <stdio.h>\nvoid die(void) { fprintf(stderr, "x"); exit(1); }\n' > "$T/lib/cli/cli.c"
}

expect_breach() { # pattern: the check fails and names it
    run check "$T/lib"
    [ "$status" -eq 1 ] || { echo "status $status, output: $output"; return 1; }
    [[ "$output" == *"$1"* ]] || { echo "expected \"$1\" in: $output"; return 1; }
}

@test "the repository's lib/ keeps the layer order and never prints or exits outside lib/cli" {
    run check "$ROOT/lib"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "a tree that keeps the rules passes" {
    good_tree
    run check "$T/lib"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "a cli/ include outside lib/cli is a breach" {
    good_tree
    printf '#include "cli/cli.h"\n' >> "$T/lib/nn/model.c"
    expect_breach "nn/model.c:3: nn/ includes cli/ (cli/cli.h)"
}

@test "including a folder above (or beside) is a breach" {
    good_tree
    printf '#include "nn/model.h"\n' >> "$T/lib/stream/tns.c"
    expect_breach "stream/tns.c:3: stream/ includes nn/"
    good_tree
    printf '#include "merge/merge.h"\n' > "$T/lib/stream/tns.c"
    printf '#include "cav/cav.h"\n' > "$T/lib/graph/gnn.c"
    expect_breach "graph/gnn.c:1: graph/ includes cav/"
    printf '#include "nn/model.h"\n' > "$T/lib/cli/cli.c"
    expect_breach "cli/cli.c:1: cli/ includes nn/"
}

@test "exit, abort, printf, puts, perror and stderr outside lib/cli are breaches" {
    local call
    for call in 'exit(1);' 'abort ();' 'printf("x");' 'puts("x");' 'perror("x");' \
                'fprintf(stderr, "x");' 'fputs("x", stdout);' 'fprintf(stdout, "x");'; do
        good_tree
        printf 'void f(void) {\n    %s\n}\n' "$call" > "$T/lib/graph/gnn.c"
        expect_breach "graph/gnn.c:2: "
    done
}

@test "a folder outside the layer order is a breach" {
    good_tree
    mkdir "$T/lib/extra"
    printf 'int x;\n' > "$T/lib/extra/x.c"
    expect_breach "folder \"extra\" is not in the layer order"
}

@test "detect/ may use base/, stream/ and nn/ (the detector) but not its siblings" {
    good_tree
    mkdir -p "$T/lib/detect"
    printf '#include "stream/tns.h"\n#include "base/err.h"\n#include "nn/model.h"\n' > "$T/lib/detect/boxes.c"
    run check "$T/lib"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
    printf '#include "stream/tns.h"\n#include "graph/gnn.h"\n' > "$T/lib/detect/boxes.c"
    expect_breach "detect/boxes.c:2: detect/ includes graph/"
    printf '#include "detect/boxes.h"\n' > "$T/lib/graph/gnn.c"
    expect_breach "graph/gnn.c:1: graph/ includes detect/"
}
