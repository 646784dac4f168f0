#!/usr/bin/env bash
# p7bench --profile: a tiny cell run with and without it gives the same results.csv but
# for the cost columns (seconds, images_per_s, peak_device_bytes); the profiled run
# prints the per-epoch summary and writes cells/<id>/profile.md with the op-kind, layer
# and kernel tables, finite numbers, and the FLOPs per step the layer shapes give
# (counted here by hand); --peak-gflops replaces the estimate and needs --profile.
# Usage: p7bench_profile.sh PATH/TO/p7bench   (P7_DEVICE picks the device)
set -u
p7bench=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
csv_split=$(cat "$(dirname "$0")/csv_split.awk") || exit 1 # read before the cd: $0 may be relative
cd "$work" || exit 1
unset P7_DATA
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# SimpleCNN at width 0.125 (convs 3->4, 4->8), 8 steps of 64: the profile measures steps 4-7.
cell=(run --dataset synthetic --model simple --width 0.125 --limit 512 --batch 64 --epochs 1)

strip_times() {
    awk "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) skip[i] = (h[i] == "seconds" || h[i] == "images_per_s" || h[i] == "peak_device_bytes") }
    { n = split_csv($0, v); s = ""; for (i = 1; i <= n; i++) if (!skip[i]) s = s v[i] ","; print s }' "$1"
}

"$p7bench" "${cell[@]}" --out A >A.log 2>&1 || { fail plain "exit code $?; $(tail -n 5 A.log)"; exit 1; }
"$p7bench" "${cell[@]}" --profile --out B >B.log 2>&1 || { fail profiled "exit code $?; $(tail -n 5 B.log)"; exit 1; }
pass runs

if [ "$(strip_times A/results.csv)" = "$(strip_times B/results.csv)" ] && [ "$(wc -l <B/results.csv)" -eq 2 ]; then
    pass same_results
else
    fail same_results "$(diff <(strip_times A/results.csv) <(strip_times B/results.csv) | head -n 6)"
fi
ls A/cells/*/profile.md >/dev/null 2>&1 && fail no_profile_without_flag "A has a profile.md" || pass no_profile_without_flag

# The console: three lines after the epoch line.
if grep -q '^  profile, epoch 1: 4 training steps measured' B.log && grep -q '^    per step: wall [0-9.]* ms, device [0-9.]* ms' B.log &&
    grep -q '^    conv and linear 0.059 GFLOP per step: [0-9.]* GFLOP/s' B.log; then
    pass console_summary
else
    fail console_summary "$(grep -A3 'profile,' B.log)"
fi

md=$(ls B/cells/*/profile.md 2>/dev/null | head -n 1)
if [ -z "$md" ]; then
    fail profile_md "no B/cells/*/profile.md; $(tail -n 5 B.log)"
else
    pass profile_md
    missing=
    for title in 'Device time per op kind (4 steps' 'Device time per layer' 'Per kernel label' '| gemm_p7 |' \
        '| conv1 |' '| conv2 |' '| bn1 |' '| (outside the model: loss, optimizer) |' '| wall (host clock) |' \
        '| host overhead (wall - device) |' '| over the wall time |'; do
        grep -qF -- "$title" "$md" || missing="$missing [$title]"
    done
    [ -z "$missing" ] && pass profile_tables || fail profile_tables "missing:$missing"
    # 2 x 64 x (32*32*4*3*9 + 16*16*8*4*9 + 8*8*8*10) forward = 24,248,320; training: 3x,
    # less conv1's input gradient (2 x 64 x 32*32*4*3*9 = 14,155,776): 58,589,184.
    grep -qF 'FLOPs: 0.0586 GFLOP per step' "$md" && pass flop_count || fail flop_count "$(grep FLOPs "$md")"
    # every number in the tables finite, and the device time positive
    if grep -Eiq '(^|[^a-z])(nan|inf)([^a-z]|$)' "$md"; then
        fail finite "$(grep -Ei '(^|[^a-z])(nan|inf)([^a-z]|$)' "$md" | head -n 3)"
    else
        pass finite
    fi
    awk -F'|' '/^\| device \(sum of kernel events\)/ { ok = $3 + 0 > 0 } END { exit !ok }' "$md" && pass device_time ||
        fail device_time "$(grep 'device (sum' "$md")"
fi

# --peak-gflops replaces the estimate; alone, or not a positive number, it is refused.
"$p7bench" "${cell[@]}" --profile --peak-gflops 1000 --out C >C.log 2>&1
if [ $? -eq 0 ] && grep -qF '1000 GFLOP/s (given with --peak-gflops)' C/cells/*/profile.md &&
    grep -q 'of the FMA peak (1000 GFLOP/s, given)' C.log; then
    pass peak_given
else
    fail peak_given "$(tail -n 5 C.log)"
fi
"$p7bench" "${cell[@]}" --peak-gflops 1000 --out D >D.log 2>&1
[ $? -eq 2 ] && grep -q 'give it with --profile' D.log && pass peak_needs_profile || fail peak_needs_profile "$(cat D.log)"
"$p7bench" "${cell[@]}" --profile --peak-gflops fast --out D >D.log 2>&1
[ $? -eq 2 ] && grep -q "peak-gflops 'fast'" D.log && pass peak_checked || fail peak_checked "$(cat D.log)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
