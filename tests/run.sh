#!/bin/sh
# Runs every test: the C unit tests (TAP from tests/unit/check.h) and the Bats
# suites (TAP via --tap). Counts "ok" / "not ok" / "# skip" lines and ends with
# one line "N passed, N failed[, N skipped]"; exits 1 when anything failed or a
# test program died without reporting.
#
#   BINDIR   programs under test (bin, or build/san/bin for the sanitizer run)
#   UNITDIR  compiled unit tests
#   SANITIZE=1  only the suites marked "sanitize: yes" (untrusted input)
#   SAN_BINDIR, SAN_UNITDIR  when set, a second pass runs the marked suites
#            again with these ASan/UBSan builds, in the same count
#   TESTS="tns img"  only the suites whose file names contain these words
#   TEST_JOBS=N  suites run N at a time (default: the number of cores)
set -u
BINDIR=${BINDIR:-bin}
UNITDIR=${UNITDIR:-build/tests}
SANITIZE=${SANITIZE:-0}
export BINDIR SANITIZE
# Under ASan: leak detection on whatever ASAN_OPTIONS says (later options win),
# and a leak exits 23, so one on an error path (exit 1 expected) fails its test.
case ${ASAN_OPTIONS:-} in *exitcode=23) ;; *)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=0:detect_leaks=1:exitcode=23" ;;
esac
export ASAN_OPTIONS
root=$(pwd)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0; failed=0; skipped=0

wanted() { # file name -> 0 if selected by TESTS and SANITIZE
    [ "$SANITIZE" = 1 ] && ! grep -q 'sanitize: yes' "$1" 2>/dev/null && return 1
    [ -z "${TESTS:-}" ] && return 0
    for w in $TESTS; do case "$1" in *"$w"*) return 0;; esac; done
    return 1
}

tally() { # name, tap file, exit status
    name=$1; tap=$2; status=$3
    ok=$(grep -c '^ok ' "$tap" | tr -d ' ')
    skip=$(grep -c '^ok .*# skip' "$tap" | tr -d ' ')
    bad=$(grep -c '^not ok ' "$tap" | tr -d ' ')
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
        echo "not ok - $name exited with status $status without reporting a failure"
        tail -n 20 "$tap" | sed 's/^/# /'
    fi
    grep '^not ok ' "$tap" | sed "s|^|$name: |"
    passed=$((passed + ok - skip)); skipped=$((skipped + skip)); failed=$((failed + bad))
    printf '%-28s %3d passed, %d failed%s\n' "$name" $((ok - skip)) "$bad" \
        "$( [ "$skip" -gt 0 ] && printf ', %d skipped' "$skip")"
}

# Every selected suite becomes a job: a line "N<TAB>name<TAB>command..." in
# $log/jobs. Jobs run TEST_JOBS at a time (default: the number of cores), each
# into its own N.tap and N.status; the tally then reads them in queue order,
# so the report is the same whatever finished first.
njobs=0
queue() { # name, then the command
    njobs=$((njobs + 1))
    name=$1; shift
    printf '%s\t%s\n' "$njobs" "$name" >> "$log/names"
    printf '%s\n' "$njobs $*" >> "$log/jobs"
}

queue_suites() { # label prefix; uses BINDIR, UNITDIR, SANITIZE
    for t in "$UNITDIR"/test_*; do
        [ -x "$t" ] || continue
        src=tests/unit/$(basename "$t").c
        wanted "$src" || continue
        queue "$1$(basename "$t")" "$BINDIR" "$SANITIZE" unit "$t"
    done
    for b in tests/bats/*.bats; do
        [ -f "$b" ] || continue
        wanted "$b" || continue
        queue "$1$(basename "$b" .bats)" "$BINDIR" "$SANITIZE" bats "$b"
    done
}

queue_suites ""
if [ -n "${SAN_BINDIR:-}" ]; then
    BINDIR=$SAN_BINDIR UNITDIR=$SAN_UNITDIR SANITIZE=1 queue_suites "asan+ubsan: "
fi

# One job: N BINDIR SANITIZE KIND PATH. Suites share the cores, so OpenMP
# threads wait passively instead of spinning against each other.
jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -gt 1 ] && export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export NS_TEST_LOG="$log"
[ -s "$log/jobs" ] && xargs -P "$jobs" -L 1 sh -c '
    n=$1 BINDIR=$2 SANITIZE=$3 kind=$4 path=$5 log=$NS_TEST_LOG
    export BINDIR SANITIZE
    if [ "$kind" = unit ]; then
        "$path" > "$log/$n.tap" 2> "$log/$n.err"
        status=$?
        cat "$log/$n.err" >> "$log/$n.tap"
    else
        bats --tap "$path" > "$log/$n.tap" 2>&1
        status=$?
    fi
    echo "$status" > "$log/$n.status"
' job < "$log/jobs"

i=0
while [ "$i" -lt "$njobs" ]; do
    i=$((i + 1))
    name=$(sed -n "${i}p" "$log/names" | cut -f2-)
    [ -f "$log/$i.tap" ] || echo "no output" > "$log/$i.tap"
    tally "$name" "$log/$i.tap" "$(cat "$log/$i.status" 2>/dev/null || echo 127)"
done

if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
