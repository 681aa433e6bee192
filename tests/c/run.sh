#!/bin/bash
# Runs weft's C test programs and adds up their results.
# usage: run.sh "<runner prefix, e.g. valgrind ...>" program...
# Each program ends with "== name: P passed, F failed". A program that exits non-zero
# (a crash, a timeout, a valgrind error) without reporting a failure counts as one
# failed case. Cases skipped as known weft bugs (KNOWN_BUG in harness.h) are counted
# apart. Prints "N passed, M failed" last; exits 1 when M > 0.
runner=$1
shift
total_passed=0
total_failed=0
total_skipped=0
log=$(mktemp)
recap=$(mktemp)
trap 'rm -f "$log" "$recap"' EXIT
# why PROG REASON: keeps, for the recap printed last, the lines of this program's log
# that say what went wrong (failed checks, valgrind's errors and leak summary), so a
# log that shows only its tail (CI's) still names the cause.
why() {
    {
        echo "== $(basename "$1"): $2"
        # a failed check's line; each valgrind error or definite leak with its stack
        # (up to the blank line that ends it); valgrind's totals
        awk '/^ +FAIL/ { print; next }
             /^==[0-9]+== +(Invalid|Conditional|Syscall|Mismatched|Source and|Process terminating|Use of uninit|Possible data race|Lock order|Conflicting)/ ||
             /^==[0-9]+== [0-9,]+ (\([0-9,]+ direct, [0-9,]+ indirect\) )?bytes in [0-9,]+ blocks are definitely/ { on = 1 }
             on && /^==[0-9]+== *$/ { on = 0 }
             on { print; next }
             /definitely lost:|ERROR SUMMARY: [1-9]/ { print }' "$log" | head -n 60
    } >>"$recap"
}
for prog in "$@"; do
    echo "-- $(basename "$prog")"
    set -o pipefail
    # shellcheck disable=SC2086
    $runner "$prog" 2>&1 | tee "$log"
    rc=$?
    set +o pipefail
    summary=$(grep -E '^== [^ ]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "   $(basename "$prog") exited with status $rc before reporting its results"
        why "$prog" "exited with status $rc before reporting its results"
        total_failed=$((total_failed + 1))
        continue
    fi
    p=$(echo "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1/')
    f=$(echo "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\2/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "   $(basename "$prog") exited with status $rc (valgrind error, leak, or crash)"
        why "$prog" "exited with status $rc after reporting no failed case"
        f=1
    elif [ "$f" -gt 0 ]; then
        why "$prog" "$f failed case(s)"
    fi
    s=$(grep -cE '^  skip ' "$log")
    total_skipped=$((total_skipped + s))
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
done
if [ -s "$recap" ]; then
    echo "---- what failed"
    cat "$recap"
fi
if [ "$total_skipped" -gt 0 ]; then
    echo "($total_skipped known weft bug(s) skipped: run with WEFT_TEST_KNOWN_BUGS=1 to see them fail)"
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
