#!/usr/bin/env bash
# The parallel and cluster runs of a study without a cluster: the emitted SLURM script's
# lines (array range, %limit, each option only when given; bash -n), cell ids and array
# indices that do not depend on the flags' order, array tasks and indices of another
# configuration refused, `p7bench merge` (grid order, cells copied in from another folder,
# a retried cell's duplicate rows, the missing cells and their rerun lines, its exit code),
# claims (a cell another process holds is skipped), and --jobs: two workers on PoCL's two
# devices (POCL_DEVICES="pthread pthread") give the one-process run's results.csv, Ctrl-C
# to the parent stops both workers with checkpoints and the rerun finishes the same; one
# CPU device runs the cells one at a time and says so.
# Usage: p7bench_cluster.sh PATH/TO/p7bench
set -u
p7bench=$(realpath "$1")
work=$(mktemp -d)
holder=
pid=
trap 'kill $holder $pid 2>/dev/null; rm -rf "$work"' EXIT
csv_split=$(cat "$(dirname "$0")/csv_split.awk") || exit 1 # read before the cd: $0 may be relative
cd "$work" || exit 1
unset P7_DATA SLURM_ARRAY_TASK_ID CUDA_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES GPU_DEVICE_ORDINAL SLURM_JOB_GPUS SLURM_STEP_GPUS
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
# The results without the cost columns, and without the device (two workers have two).
strip_times() {
    awk "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) skip[i] = (h[i] == "seconds" || h[i] == "images_per_s" || h[i] == "peak_device_bytes" || h[i] == "device") }
    { n = split_csv($0, v); s = ""; for (i = 1; i <= n; i++) if (!skip[i]) s = s v[i] ","; print s }' "$1"
}
column() {
    awk -v name="$1" "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) if (h[i] == name) c = i; next }
    c { split_csv($0, v); print v[c] }' "$2"
}
ids() { grep -v '^#' "$1"; }

# Four cells of a few steps each.
study=(optimizers --dataset synthetic --model simple --width 0.125 --members 1,2 --optimizer adam,sgd --epochs 2
       --batch 32 --limit 256 --device cpu)
reordered=(optimizers --device cpu --limit 256 --optimizer adam,sgd --batch 32 --epochs 2 --members 1,2 --model simple
           --width 0.125 --dataset synthetic)

# --- the emitted script
"$p7bench" "${study[@]}" --out E1 --emit slurm >e1.log 2>&1 || { fail emit "$(cat e1.log)"; exit 1; }
s1=E1/slurm/optimizers.sbatch
if grep -qx '#SBATCH --array=0-3' "$s1" && ! grep -q '^#SBATCH --\(partition\|time\|gpus-per-task\|signal\|account\|mem\|cpus-per-task\)=' "$s1" &&
   bash -n "$s1" && grep -q "^exec $p7bench optimizers .* --out $work/E1 --array-task$" "$s1" &&
   grep -qx "#SBATCH --chdir=$work" "$s1" && [ "$(ids E1/cells.list | wc -l)" -eq 4 ]; then
    pass emitted_script_plain
else
    fail emitted_script_plain "$(cat "$s1")"
fi
"$p7bench" "${reordered[@]}" --out E2 --emit slurm --array-limit 3 --partition gpu --time 1:00:00 --gpus-per-task 1 \
    --account proj7 --cpus-per-task 4 --mem 8G --sbatch --qos=long >e2.log 2>&1 || fail emit_options "$(cat e2.log)"
s2=E2/slurm/optimizers.sbatch
want='#SBATCH --array=0-3%3
#SBATCH --partition=gpu
#SBATCH --account=proj7
#SBATCH --time=1:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --qos=long'
got=$(grep -E '^#SBATCH --(array|partition|account|time|signal|gpus-per-task|cpus-per-task|mem|qos)' "$s2")
[ "$got" = "$want" ] && bash -n "$s2" && pass emitted_script_options || fail emitted_script_options "$got"
diff <(ids E1/cells.list) <(ids E2/cells.list) >/dev/null && pass ids_independent_of_flag_order ||
    fail ids_independent_of_flag_order "$(diff <(ids E1/cells.list) <(ids E2/cells.list))"
before=$(cat E1/cells.list)
"$p7bench" "${reordered[@]}" --out E1 --emit slurm >e3.log 2>&1
[ "$before" = "$(cat E1/cells.list)" ] && grep -qx '#SBATCH --array=0-3' "$s1" && pass reemit_keeps_indices ||
    fail reemit_keeps_indices "$(cat E1/cells.list)"
"$p7bench" "${study[@]}" --out E1 --emit slurm --jobs 2 >bad.log 2>&1
[ $? -eq 2 ] && pass emit_with_jobs_refused || fail emit_with_jobs_refused "$(cat bad.log)"
"$p7bench" "${study[@]}" --out E1 --partition x >bad.log 2>&1
[ $? -eq 2 ] && grep -q "give them with --emit slurm" bad.log && pass sbatch_flag_without_emit_refused ||
    fail sbatch_flag_without_emit_refused "$(cat bad.log)"

# --- array tasks
"$p7bench" "${study[@]}" --out E1 --array-task >bad.log 2>&1
[ $? -eq 2 ] && grep -q "SLURM_ARRAY_TASK_ID is not set" bad.log && pass array_task_outside_slurm_refused ||
    fail array_task_outside_slurm_refused "$(cat bad.log)"
SLURM_ARRAY_TASK_ID=4 "$p7bench" "${study[@]}" --out E1 --array-task >bad.log 2>&1
[ $? -eq 2 ] && grep -q "array index 4: .*cells.list lists 4 cell(s)" bad.log && pass index_out_of_range_refused ||
    fail index_out_of_range_refused "$(cat bad.log)"
SLURM_ARRAY_TASK_ID=1 "$p7bench" "${study[@]}" --lr 0.01 --out E1 --array-task >bad.log 2>&1
[ $? -eq 2 ] && grep -q "array index 1 is cell $(ids E1/cells.list | sed -n 2p) .* which the flags of this run do not produce" bad.log &&
    pass index_of_another_configuration_refused || fail index_of_another_configuration_refused "$(cat bad.log)"
SLURM_ARRAY_TASK_ID=0 "$p7bench" "${study[@]}" --out E1 --array-task >task0.log 2>&1
rc=$?
first=$(ids E1/cells.list | sed -n 1p)
[ $rc -eq 0 ] && grep -q "array index 0: cell $first" task0.log && grep -q "array task device: device 0:0 (--device cpu)" task0.log &&
    [ "$(column cell E1/results.csv)" = "$first" ] && [ -f "E1/cells/$first/result.csv" ] && pass array_task_runs_its_cell ||
    fail array_task_runs_its_cell "exit $rc: $(tail -n 5 task0.log)"

# --- merge
"$p7bench" merge E1 >merge.log 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "4 cell(s): 1 ok, 0 diverged, 0 failed, 3 missing" merge.log &&
   grep -q "sbatch --array=1-3 $work/E1/slurm/optimizers.sbatch" merge.log &&
   grep -q -- "--out $work/E1 --cell $(ids E1/cells.list | sed -n 2p) --cell" merge.log; then
    pass merge_lists_missing_with_reruns
else
    fail merge_lists_missing_with_reruns "exit $rc: $(cat merge.log)"
fi
# cell 3 run into another folder, its cell folder copied in: merge takes its row, in grid order
third=$(ids E1/cells.list | sed -n 3p)
"$p7bench" "${study[@]}" --out OTHER --cell "$third" >other.log 2>&1 || fail other_run "$(tail -n 3 other.log)"
cp -r "OTHER/cells/$third" E1/cells/
# a retried cell: a failed row after its ok row in results.csv, and the ok row again
okrow=$(sed -n 2p E1/results.csv)
{ echo "$okrow" | sed 's/,ok,/,failed,/'; echo "$okrow"; echo "$okrow" | sed 's/,ok,/,failed,/'; } >>E1/results.csv
"$p7bench" merge E1 >merge.log 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "4 cell(s): 2 ok, 0 diverged, 0 failed, 2 missing" merge.log &&
   [ "$(column cell E1/results.csv | tr '\n' ' ')" = "$first $third " ] && [ "$(column status E1/results.csv | tr '\n' ' ')" = "ok ok " ]; then
    pass merge_copied_cell_and_duplicates
else
    fail merge_copied_cell_and_duplicates "exit $rc: $(cat merge.log; column cell E1/results.csv)"
fi

# --- claims: a cell another process holds is skipped, then run once it lets go
second=$(ids E1/cells.list | sed -n 2p)
mkdir -p "E1/cells/$second"
flock -o -x "E1/cells/$second/claim.lock" sleep 60 & # -o: flock holds the lock, not its sleep
holder=$!
sleep 0.3
"$p7bench" "${study[@]}" --out E1 --cell "$second" >claim.log 2>&1
grep -q "$second: being run by" claim.log && ! grep -q "$second,ok" E1/cells/"$second"/result.csv 2>/dev/null &&
    pass held_cell_skipped || fail held_cell_skipped "$(tail -n 3 claim.log)"
kill $(pgrep -P $holder) # the sleep; flock then exits and lets go
wait $holder 2>/dev/null
holder=
"$p7bench" "${study[@]}" --out E1 >rest.log 2>&1 || fail rest_run "$(tail -n 3 rest.log)"
"$p7bench" merge E1 >merge.log 2>&1 && grep -q "4 cell(s): 4 ok" merge.log && pass merge_complete ||
    fail merge_complete "$(cat merge.log)"

# --- --jobs
"$p7bench" "${study[@]}" --out SEQ >seq.log 2>&1 || fail sequential "$(tail -n 3 seq.log)"
diff <(strip_times SEQ/results.csv) <(strip_times E1/results.csv) >diff.txt && pass merged_equals_one_process ||
    fail merged_equals_one_process "$(head -c 2000 diff.txt)"
"$p7bench" "${study[@]}" --out ONE --jobs 2 >one.log 2>&1
grep -q -- "--jobs 2 on one CPU device: the cells run one at a time" one.log && ! grep -q "workers" one.log &&
    pass one_cpu_device_runs_one_at_a_time || fail one_cpu_device_runs_one_at_a_time "$(head -n 3 one.log)"
POCL_DEVICES="pthread pthread" "$p7bench" "${study[@]}" --out JOBS --jobs 2 >jobs.log 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "2 workers, one device each" jobs.log && grep -q "worker 2/2: device 0:1" jobs.log &&
   diff <(strip_times SEQ/results.csv) <(strip_times JOBS/results.csv) >diff.txt; then
    pass two_workers_equal_one_process
else
    fail two_workers_equal_one_process "exit $rc: $(head -c 2000 diff.txt; tail -n 5 jobs.log)"
fi
# Ctrl-C (SIGINT to the parent, as a terminal's would be passed on) after the first epoch line
longer=(optimizers --dataset synthetic --model simple --width 0.125 --members 1,2 --optimizer adam,sgd --epochs 4
        --batch 32 --limit 1024 --device cpu)
"$p7bench" "${longer[@]}" --out REF >ref.log 2>&1 || fail reference "$(tail -n 3 ref.log)"
POCL_DEVICES="pthread pthread" "$p7bench" "${longer[@]}" --out INT --jobs 2 >int.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    grep -q ' epoch 1/4 ' int.log && break
    sleep 0.05
done
kill -INT $pid
wait $pid
rc=$?
pid=
if [ $rc -eq 130 ] && [ "$(grep -c 'stopped by a signal' int.log)" -eq 2 ] && ls INT/cells/*/checkpoint.p7 >/dev/null 2>&1 &&
   grep -q "Resume with the same command" int.log; then
    pass ctrl_c_reaches_the_workers
else
    fail ctrl_c_reaches_the_workers "exit $rc: $(grep -i 'stopped\|interrupted\|worker' int.log)"
fi
POCL_DEVICES="pthread pthread" "$p7bench" "${longer[@]}" --out INT --jobs 2 >>int.log 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q resumed int.log && diff <(strip_times REF/results.csv) <(strip_times INT/results.csv) >diff.txt &&
    pass jobs_resume_equals_one_process || fail jobs_resume_equals_one_process "exit $rc: $(head -c 2000 diff.txt)"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
