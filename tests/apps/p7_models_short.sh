#!/usr/bin/env bash
# bench/p7-models --short (issue 12): the p7-against-PyTorch benchmark runs end to end
# on tiny batches and prints every row. Nothing about speed is checked. Twice: with the
# PyTorch peer as found (Debian's /usr/bin/python3 with torch, or none), and with a
# peer that cannot start, where every PyTorch cell must say it is unavailable.
#   p7_models_short.sh PATH/TO/p7-models
set -u
bench=$1
work=$(mktemp -d /tmp/p7-models-test-XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# every_row FILE: the six model x mode rows, the two BatchEnsemble cost rows, the three
# memory rows.
every_row() {
    local out=$1 model mode
    for model in 'SimpleCNN' 'VGG11-BN' 'BatchEnsemble VGG11-BN M=4'; do
        for mode in train infer; do
            grep -q "^| $model | $mode | " "$out" || fail "$out: no row for $model $mode"
        done
    done
    for mode in train infer; do
        grep -q "^| $mode | " "$out" || fail "$out: no BatchEnsemble cost row for $mode"
    done
    for system in 'p7' 'torch NCHW' 'torch channels_last'; do
        grep -q "^| $system | " "$out" || fail "$out: no memory row for $system"
    done
    grep -q '^| p7 | [0-9.]* MiB' "$out" || fail "$out: p7's memory row has no peak"
}

# 0. The FMA peak estimate from cpuinfo copies (no device): cores x 2 pipes x lanes x 2 x
# GHz, worked out by hand. Zen 4 (AMD family 25) runs AVX-512 on 256-bit pipes; a flag
# that merely contains "avx512f" as a prefix is not AVX-512.
cpuinfo() { # cpuinfo FILE VENDOR FAMILY MHZ PROCESSORS FLAGS
    local f=$1 i
    : > "$f"
    for ((i = 0; i < $5; i++)); do
        printf 'processor\t: %d\nvendor_id\t: %s\ncpu family\t: %d\nmodel name\t: test cpu\ncpu MHz\t\t: %s\nflags\t\t: %s\n\n' \
            "$i" "$2" "$3" "$4" "$6" >> "$f"
    done
}
peak() { # peak FILE WANT: the line must start with WANT
    local line
    line=$("$bench" --cpuinfo "$1")
    case "$line" in "CPU FMA peak: $2"*) echo "ok: $line" ;; *) fail "--cpuinfo $1: '$line', want 'CPU FMA peak: $2...'" ;; esac
}
cpuinfo "$work/zen4" AuthenticAMD 25 2596.000 2 "fpu sse2 avx fma avx2 avx512f avx512bw"
peak "$work/zen4" "~166 GFLOP/s = 2 cores x 2 FMA pipes x 8 lanes x 2 x 2.60 GHz (AVX-512 (256-bit datapath)"
cpuinfo "$work/intel" GenuineIntel 6 3000.000 4 "fpu avx2 fma avx512f"
peak "$work/intel" "~768 GFLOP/s = 4 cores x 2 FMA pipes x 16 lanes x 2 x 3.00 GHz (AVX-512,"
cpuinfo "$work/avx2" AuthenticAMD 23 3500.000 1 "fpu fma avx2 avx512fake"
peak "$work/avx2" "~112 GFLOP/s = 1 cores x 2 FMA pipes x 8 lanes x 2 x 3.50 GHz (AVX2+FMA,"
"$bench" --cpuinfo "$work/missing" > "$work/missing.out" && fail "--cpuinfo of a missing file exited 0"
grep -q '^CPU FMA peak: unknown' "$work/missing.out" || fail "--cpuinfo of a missing file: $(cat "$work/missing.out")"

# 1. As found, with --profile.
if ! "$bench" --short --profile > "$work/found" 2> "$work/found.err"; then
    fail "p7-models --short --profile exited non-zero"; cat "$work/found.err" >&2
fi
every_row "$work/found"
grep -q '^| host overhead (wall - device) | ' "$work/found" || fail "--profile printed no host overhead"
grep -q '^| gemm_p7 | ' "$work/found" || fail "--profile printed no per-op-kind row for the GEMM"
grep -q '^CPU FMA peak: ' "$work/found" || fail "no CPU peak line"
if grep -q '^PyTorch peer: torch ' "$work/found"; then
    # with torch, every model row has a ratio
    n=$(grep -cE '^\| (SimpleCNN|VGG11-BN|BatchEnsemble VGG11-BN M=4) \| (train|infer) \| .* [0-9.]+x \|$' "$work/found")
    [ "$n" -eq 6 ] || fail "with torch, $n of 6 rows have a ratio"
else
    grep -q '^PyTorch peer unavailable: ' "$work/found" || fail "neither a peer line nor 'unavailable'"
fi

# 2. A peer that cannot start: the same rows, every PyTorch cell n/a, exit 0.
if ! "$bench" --short --python "$work/no-such-python3" > "$work/none" 2> "$work/none.err"; then
    fail "p7-models --short without a peer exited non-zero"; cat "$work/none.err" >&2
fi
every_row "$work/none"
grep -q '^PyTorch peer unavailable: ' "$work/none" || fail "no 'PyTorch peer unavailable' line"
n=$(grep -c 'n/a (PyTorch peer unavailable) |$' "$work/none")
[ "$n" -ge 10 ] || fail "without a peer, $n cells say the peer is unavailable (want 6 rows + 2 cost + 2 memory)"

# 3. A bad --gap-ms is refused by name, before any device work.
"$bench" --gap-ms -5 > "$work/gap.out" 2> "$work/gap.err" && fail "--gap-ms -5 exited 0"
grep -q -- '--gap-ms must be 0-10000 (got -5)' "$work/gap.err" || fail "--gap-ms -5: $(cat "$work/gap.err")"

# 4. So is a bad --warm-steps.
"$bench" --warm-steps -1 > "$work/warm.out" 2> "$work/warm.err" && fail "--warm-steps -1 exited 0"
grep -q -- '--warm-steps must be 0-100 (got -1)' "$work/warm.err" || fail "--warm-steps -1: $(cat "$work/warm.err")"

[ "$failures" -eq 0 ] && echo "p7-models --short: every row printed, with and without the peer"
exit $((failures > 0))
