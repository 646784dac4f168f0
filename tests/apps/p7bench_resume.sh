#!/usr/bin/env bash
# Crash safety of a study: a tiny study run uninterrupted into A, and into B killed with
# SIGKILL at several points (after an epoch line, mid-epoch, between cells, during the
# first cell's start) and rerun until it finishes, give the same results.csv except the
# cost columns (seconds, images_per_s, and peak_device_bytes, which measures only the
# session that finished the cell), which no two runs share. Then SIGINT: the run
# stops after a step, says how to resume, and the resumed study matches A too. And a
# checkpoint of another configuration is refused, naming the setting.
# Usage: p7bench_resume.sh PATH/TO/p7bench   (P7_DEVICE picks the device)
set -u
p7bench=$(realpath "$1")
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
csv_split=$(cat "$(dirname "$0")/csv_split.awk") || exit 1 # read before the cd: $0 may be relative
cd "$work" || exit 1
unset P7_DATA
pid=
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# Two cells (IVON and Adam, M=2 BatchEnsemble), three epochs of 16 steps, a validation split
# and early stopping (its best-weights snapshot is in the checkpoint), a per-step schedule
# (the recipes'), augmentation.
study=(optimizers --dataset synthetic --model simple --width 0.25 --members 2 --optimizer ivon,adam
       --epochs 3 --batch 64 --limit 1024 --val-split 5000 --patience 2 --augment on --bma-samples 2)

# The results without the time columns: CSV fields split outside quotes.
strip_times() {
    awk "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) skip[i] = (h[i] == "seconds" || h[i] == "images_per_s" || h[i] == "peak_device_bytes") }
    { n = split_csv($0, v); s = ""; for (i = 1; i <= n; i++) if (!skip[i]) s = s v[i] ","; print s }' "$1"
}

"$p7bench" "${study[@]}" --out A >A.log 2>&1
rc=$?
if [ $rc -ne 0 ] || [ "$(wc -l <A/results.csv)" -ne 3 ]; then
    fail uninterrupted "exit code $rc; $(tail -n 5 A.log)"
    exit 1
fi
pass uninterrupted
ls A/cells/*/checkpoint.p7 >/dev/null 2>&1 && fail checkpoint_removed "a finished cell kept its checkpoint" ||
    pass checkpoint_removed

# start_b: the study into B in the background, its output appended to B.log.
start_b() {
    "$p7bench" "${study[@]}" --out B >>B.log 2>&1 &
    pid=$!
}
# kill_after_lines N: SIGKILL once B.log holds N epoch lines (or the run ends first).
kill_after_lines() {
    local want=$1
    for _ in $(seq 1 1200); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(grep -c ' epoch [0-9]*/3 ' B.log)" -ge "$want" ] && { kill -9 "$pid"; wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    return 1
}
# kill_after_seconds S
kill_after_seconds() {
    sleep "$1"
    kill -0 "$pid" 2>/dev/null || return 1
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    return 0
}

: >B.log
kills=0
start_b; kill_after_lines 1 && kills=$((kills + 1))        # after cell 1's first epoch
start_b; kill_after_seconds 0.2 && kills=$((kills + 1))    # while starting (data, model, checkpoint)
start_b; kill_after_lines 3 && kills=$((kills + 1))        # mid-cell 1, in epoch 2 or 3
start_b; kill_after_lines 5 && kills=$((kills + 1))        # in cell 2
attempts=0
until [ $attempts -ge 5 ]; do
    attempts=$((attempts + 1))
    "$p7bench" "${study[@]}" --out B >>B.log 2>&1 && break
done
[ $kills -ge 3 ] && pass "killed_${kills}_times" || fail killed "only $kills kills landed (the runs ended first)"
grep -q "resumed" B.log && pass resumed_from_checkpoint || fail resumed_from_checkpoint "no resume in B.log"
if [ "$(wc -l <B/results.csv)" -eq 3 ] && diff <(strip_times A/results.csv) <(strip_times B/results.csv) >diff.txt; then
    pass killed_equals_uninterrupted
else
    fail killed_equals_uninterrupted "$(head -c 2000 diff.txt; tail -n 5 B.log)"
fi

# SIGINT mid-epoch: exit 130, a line saying how to resume, a checkpoint; the rerun matches A.
"$p7bench" "${study[@]}" --out C >C.log 2>&1 &
pid=$!
# Right after the first cell's first epoch: on an idle machine a cell's 3 epochs take about
# 3 s, and a signal after its second epoch plus 0.3 s could land between cells, where there
# is no checkpoint to write.
for _ in $(seq 1 1200); do
    [ "$(grep -c ' epoch [0-9]*/3 ' C.log)" -ge 1 ] && break
    sleep 0.05
done
kill -INT "$pid"
wait "$pid"
rc=$?
if [ $rc -eq 130 ] && grep -q "Resume with the same command" C.log && ls C/cells/*/checkpoint.p7 >/dev/null 2>&1; then
    pass sigint_stops_with_checkpoint
else
    fail sigint_stops_with_checkpoint "exit code $rc; $(tail -n 3 C.log)"
fi
"$p7bench" "${study[@]}" --out C >>C.log 2>&1
if diff <(strip_times A/results.csv) <(strip_times C/results.csv) >diff.txt; then
    pass sigint_resume_equals_uninterrupted
else
    fail sigint_resume_equals_uninterrupted "$(head -c 2000 diff.txt)"
fi

# A checkpoint of another configuration is refused, naming the setting: a cell folder's
# checkpoint moved under another cell's id.
"$p7bench" "${study[@]}" --out D >D.log 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
    ls D/cells/*/checkpoint.p7 >/dev/null 2>&1 && break
    sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
ckpt=$(ls D/cells/*/checkpoint.p7 | head -n 1)
other=$("$p7bench" "${study[@]}" --list | awk '!/^#/ {print $1}' | grep -v "$(basename "$(dirname "$ckpt")")" | head -n 1)
mkdir -p "D/cells/$other"
cp "$ckpt" "D/cells/$other/checkpoint.p7"
"$p7bench" "${study[@]}" --out D --cell "$other" >D2.log 2>&1
if grep -q "belongs to another configuration: the checkpoint was written with optimizer=" D2.log; then
    pass foreign_checkpoint_refused
else
    fail foreign_checkpoint_refused "$(grep -m 3 -i checkpoint D2.log)"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
