#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for a
# bounded time; exits non-zero on any crash, leak, sanitizer report or broken
# invariant, and prints executions per target.
#   fuzz/run.sh [seconds-per-target] [target...]   default 600 s (the long run), all targets
#   fuzz/run.sh --seeds                            rewrite the generated seeds in fuzz/corpus/
#                                                  (inputs saved from findings stay)
# Seeds are read from fuzz/corpus/<target>/ (never written); what the fuzzer finds
# goes to build-fuzz/corpus/<target>/, a crashing input to build-fuzz/artifacts/.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${P7_FUZZ_BUILD:-$here/build-fuzz}
cc=${CC:-clang}
all=(cifar png_import model_state optimizer_state hparams device_spec plugin_json)

# Longest input per target: a few records or a small state file, with room to grow.
max_len() {
    case $1 in
    cifar) echo 10000 ;;        # a format byte and up to three 3074-byte records
    png_import) echo 16384 ;;   # label JSON and a PNG of a few 1024-pixel rows
    model_state) echo 4096 ;;   # the fuzz model's state file is about 500 bytes
    optimizer_state) echo 8192 ;; # IVON's file (6 slots) is about 1.6 KB
    hparams) echo 1024 ;;
    device_spec) echo 4096 ;;
    plugin_json) echo 8192 ;;   # a reference file of a few steps of small parameters
    *) echo "fuzz/run.sh: unknown target '$1' (targets: ${all[*]})" >&2; exit 2 ;;
    esac
}

if ! command -v "$cc" >/dev/null; then
    echo "fuzz/run.sh: needs clang with libFuzzer (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi
mkdir -p "$build"
cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release -DP7_WERROR=ON -DP7_FUZZ=ON \
      -DP7_BUILD_TESTS=OFF -DP7_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; exit 1; }
jobs=$(nproc); [ "$jobs" -gt 2 ] && jobs=2
targets=("${all[@]/#/fuzz_}")
cmake --build "$build" -j"$jobs" --target "${targets[@]}" p7_fuzz_make_seeds >&2

export P7_DEVICE=${P7_DEVICE:-pocl}
# PoCL's own allocations live for the process: suppressed for the OpenCL runtime only.
export LSAN_OPTIONS="suppressions=$here/tests/lsan.supp:print_suppressions=0"
# Full unwinding for allocation stacks: PoCL's kernel compiler (LLVM, C++) leaks a few
# bytes at exit on a cold PoCL cache, and with the fast unwinder that stack stops at
# libstdc++'s operator new, where the runtime-only suppressions above cannot see it.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

if [ "${1:-}" = "--seeds" ]; then
    "$build/fuzz/p7_fuzz_make_seeds" "$here/fuzz/corpus"
    exit 0
fi
seconds=${1:-600}
shift || true
[ $# -gt 0 ] && run=("$@") || run=("${all[@]}")
for t in "${run[@]}"; do max_len "$t" >/dev/null; done

mkdir -p "$build/artifacts" "$build/logs"
failed=()
printf '%-16s %12s %8s %10s\n' target executions seconds "execs/s" >"$build/summary.txt"
for t in "${run[@]}"; do
    mkdir -p "$build/corpus/$t"
    rm -f "$build/artifacts/$t-"* # only this run's findings are reported
    log=$build/logs/$t.log
    echo "fuzz: $t for ${seconds}s (log $log)" >&2
    rc=0
    "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
        "$build/corpus/$t" "$here/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    [ -n "$secs" ] || secs=$seconds
    rate=$(( ${runs:-0} / (secs > 0 ? secs : 1) ))
    printf '%-16s %12s %8s %10s\n' "$t" "${runs:-?}" "$secs" "$rate" >>"$build/summary.txt"
    if [ $rc -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken' "$log"; then
        echo "fuzz: $t FAILED (exit $rc); the report:" >&2
        grep -m1 -A30 -E 'ERROR:|runtime error:|invariant broken' "$log" >&2 || tail -40 "$log" >&2
        failed+=("$t")
    fi
done
cat "$build/summary.txt"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in ${failed[*]}; crashing inputs in $build/artifacts/" >&2
    exit 1
fi
echo "fuzz: no crash, leak or sanitizer report"
