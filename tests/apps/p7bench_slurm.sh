#!/usr/bin/env bash
# A study as a SLURM job array on a real single-node cluster, started here from nothing:
# munged, slurmctld and slurmd on localhost with their own key, config, ports, state and
# logs in a temporary folder, stopped on exit whatever happens. The study is run locally
# into LOCAL, then emitted (--emit slurm) into ARRAY and submitted with sbatch. Once a
# task's cell has written its first checkpoint, that task is cancelled (scancel: SIGTERM,
# the cell checkpoints mid-epoch and exits) and submitted again with --array=INDEX; it
# must resume from the checkpoint. Then `p7bench merge ARRAY` must give LOCAL's
# results.csv (all columns but seconds, images_per_s and peak_device_bytes).
# Skips (77) without slurm-wlm and munge, or when not root (slurmd runs jobs as root here).
# Usage: p7bench_slurm.sh PATH/TO/p7bench
set -u
p7bench=$(realpath "$1")
csv_split=$(cat "$(dirname "$0")/csv_split.awk") || exit 1 # read before the cd: $0 may be relative
for tool in munged slurmctld slurmd sbatch squeue scancel sinfo scontrol; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (Debian: apt-get install slurm-wlm munge)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: not root: this test runs slurmd and its jobs as root"; exit 77; }

work=$(mktemp -d /tmp/p7-slurm.XXXXXX)
chmod 755 "$work"
started=$(date +%s)
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# Stops what this script started, by the pids in its own pid files: jobs first (their
# slurmstepd outlives slurmd), then the daemons, SIGKILL for any that lingers.
stop_all() {
    if [ -f "$work/slurmctld.pid" ]; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 1 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    local f pid
    for f in slurmd.pid slurmctld.pid munged.pid; do
        [ -f "$work/$f" ] || continue
        pid=$(cat "$work/$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
}
on_exit() {
    local rc=$?
    stop_all
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "--- slurmctld.log (tail)"; tail -n 20 "$work/log/slurmctld.log" 2>/dev/null
        echo "--- slurmd.log (tail)"; tail -n 20 "$work/log/slurmd.log" 2>/dev/null
    fi
    rm -rf "$work"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 1' INT TERM

cd "$work" || exit 1
mkdir -p state spool log
unset P7_DATA SLURM_JOB_ID SLURM_ARRAY_TASK_ID CUDA_VISIBLE_DEVICES

# munge with a key and socket of its own (the machine's munged, if any, is left alone)
dd if=/dev/urandom of=munge.key bs=1024 count=1 2>/dev/null
chmod 400 munge.key
munged --force --key-file="$work/munge.key" --socket="$work/munge.sock" --pid-file="$work/munged.pid" \
    --log-file="$work/log/munged.log" --seed-file="$work/munge.seed" ||
    { echo "FAIL munged did not start: $(tail -n 3 log/munged.log 2>/dev/null)"; exit 1; }

# Two free ports: a connection that succeeds means taken.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=$((20000 + RANDOM % 20000))
while ! port_free "$base" || ! port_free $((base + 1)); do base=$((base + 2)); done

host=$(hostname -s)
node=$(slurmd -C | head -n 1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
cat >slurm.conf <<EOF
ClusterName=p7test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -f "$SLURM_CONF" || { echo "FAIL slurmctld did not start"; exit 1; }
slurmd -f "$SLURM_CONF" -N "$host" || { echo "FAIL slurmd did not start"; exit 1; }
for _ in $(seq 1 150); do
    [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
    sleep 0.2
done
[ "$(sinfo -h -o %t 2>/dev/null)" = idle ] || { echo "FAIL the node never became idle: $(sinfo 2>&1)"; exit 1; }
pass "cluster_up_in_$(($(date +%s) - started))s"

strip_times() {
    awk "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) skip[i] = (h[i] == "seconds" || h[i] == "images_per_s" || h[i] == "peak_device_bytes") }
    { n = split_csv($0, v); s = ""; for (i = 1; i <= n; i++) if (!skip[i]) s = s v[i] ","; print s }' "$1"
}
# wait_job JOB: until squeue no longer shows it (at most 240 s).
wait_job() {
    for _ in $(seq 1 1200); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    return 1
}

# Two cells: a single network (fast) and a BatchEnsemble of 2 (about 2 s an epoch here), 4 epochs.
study=(optimizers --dataset synthetic --model simple --width 0.125 --members 1,2 --optimizer adam --epochs 4
       --batch 32 --limit 2048 --device cpu)
"$p7bench" "${study[@]}" --out LOCAL >local.log 2>&1 || { fail local_run "$(tail -n 5 local.log)"; exit 1; }

"$p7bench" "${study[@]}" --out ARRAY --emit slurm --array-limit 2 >emit.log 2>&1 || { fail emit "$(cat emit.log)"; exit 1; }
script=$work/ARRAY/slurm/optimizers.sbatch
grep -q '^#SBATCH --array=0-1%2$' "$script" && pass emitted_array_line || fail emitted_array_line "$(grep array "$script")"
job=$(sbatch --parsable "$script") || { fail sbatch "$job"; exit 1; }
pass "submitted_job_$job"

# The BatchEnsemble's cell (array index 1): once its first epoch's checkpoint exists,
# cancel that task.
slow=$(grep -v '^#' ARRAY/cells.list | sed -n 2p)
for _ in $(seq 1 600); do
    [ -f "ARRAY/cells/$slow/checkpoint.p7" ] && break
    sleep 0.1
done
if [ -f "ARRAY/cells/$slow/checkpoint.p7" ]; then
    scancel "${job}_1"
    pass cancelled_after_a_checkpoint
else
    fail cancelled_after_a_checkpoint "no checkpoint of $slow within 60 s: $(squeue 2>&1; tail -n 3 ARRAY/slurm/logs/*)"
fi
wait_job "$job" || fail array_finished "job $job still queued after 240 s"
state=$(scontrol show job "${job}_1" 2>/dev/null | grep -o 'JobState=[A-Z]*')
[ "$state" = JobState=CANCELLED ] && pass task_1_cancelled || fail task_1_cancelled "$state"
if grep -q "interrupted in cell $slow" "ARRAY/cells/$slow/console.log" && [ -f "ARRAY/cells/$slow/checkpoint.p7" ]; then
    pass sigterm_checkpointed
else
    fail sigterm_checkpointed "$(tail -n 3 "ARRAY/cells/$slow/console.log")"
fi
"$p7bench" merge ARRAY >merge1.log 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "1 missing" merge1.log && grep -q "sbatch --array=1 $script" merge1.log; then
    pass merge_names_the_cancelled_cell
else
    fail merge_names_the_cancelled_cell "exit $rc: $(cat merge1.log)"
fi

# Again: the task resumes from its checkpoint.
job2=$(sbatch --parsable --array=1 "$script") || { fail resubmit "$job2"; exit 1; }
wait_job "$job2" || fail resubmitted_finished "job $job2 still queued after 240 s"
grep -q "resumed" "ARRAY/cells/$slow/console.log" && pass resumed_from_checkpoint ||
    fail resumed_from_checkpoint "$(tail -n 5 "ARRAY/cells/$slow/console.log")"

# Submitting the whole array once more: both cells are finished, each task exits 0 at once.
job3=$(sbatch --parsable "$script") || { fail resubmit_all "$job3"; exit 1; }
wait_job "$job3" || fail resubmit_all "job $job3 still queued after 240 s"
codes=$(for t in 0 1; do scontrol show job "${job3}_$t" | grep -o ' ExitCode=[0-9:]*'; done | tr -d ' ' | tr '\n' ' ')
if [ "$codes" = "ExitCode=0:0 ExitCode=0:0 " ] && grep -q "finished before" ARRAY/slurm/logs/"${job3}"_0.out; then
    pass finished_cells_exit_at_once
else
    fail finished_cells_exit_at_once "$codes $(tail -n 2 ARRAY/slurm/logs/"${job3}"_0.out)"
fi

"$p7bench" merge ARRAY >merge2.log 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q "2 cell(s): 2 ok" merge2.log && pass merge_complete || fail merge_complete "exit $rc: $(cat merge2.log)"
if diff <(strip_times LOCAL/results.csv) <(strip_times ARRAY/results.csv) >diff.txt; then
    pass array_equals_local_run
else
    fail array_equals_local_run "$(head -c 3000 diff.txt)"
fi
echo "$passed passed, $failed failed, $(($(date +%s) - started)) s"
[ $failed -eq 0 ]
