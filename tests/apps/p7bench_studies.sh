#!/usr/bin/env bash
# Every study subcommand end to end on a subset of its cells at a small width, one epoch,
# on the synthetic set: the run succeeds, results.csv has the original's columns first and
# one well-formed row per cell (as many fields as the header) with its peak device memory,
# the cells' folders hold their files (epochs.csv with every metric, finite validation
# metrics where there is a validation split, reliability.csv with the 15 calibration bins
# that add up to every test image), --list and --cell agree, and the plots are drawn (a
# reliability diagram per cell) when gnuplot is there.
# Usage: p7bench_studies.sh PATH/TO/p7bench   (P7_DEVICE picks the device)
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

small=(--dataset synthetic --width 0.125 --epochs 1 --batch 32 --limit 128)
parameter='^seed,alpha_init,gamma_init,ensemble_size,num_epochs,batch_size,lr,model_type,final_test_accuracy,avg_test_accuracy,final_losses,avg_losses,'
optimizer='^ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,train_acc,val_acc,'

# Fields of a CSV line, commas inside quotes not counted.
fields() { awk '{ n = 1; q = 0; for (i = 1; i <= length($0); i++) { c = substr($0, i, 1);
                  if (c == "\"") q = !q; else if (c == "," && !q) n++ } print n }'; }

epochs_header='epoch,step,lr,train_loss,grad_norm,val_acc,val_nll,val_ece,val_brier,val_diversity,val_member_acc,test_acc,test_nll,test_ece,test_brier,test_diversity,test_member_acc,bma_samples,bma_acc,bma_nll,bma_ece,images_per_s,seconds,outcome'

# The values of column NAME of a CSV, fields split outside quotes (results.csv quotes its lists).
column() {
    awk -v name="$1" "$csv_split"'
    NR == 1 { n = split_csv($0, h); for (i = 1; i <= n; i++) if (h[i] == name) c = i; next }
    c { split_csv($0, v); print v[c] }' "$2"
}
# Numbers only, and finite.
all_finite() { awk 'BEGIN { ok = 1; n = 0 } { n++; if ($0 !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) ok = 0 } END { exit !(ok && n) }'; }

# cell_files NAME DIR VAL: every cell's epochs.csv and reliability.csv (VAL 1: validation
# metrics measured every epoch), and results.csv's peak_device_bytes.
cell_files() {
    local name=$1 dir=$2 val=$3 d c
    for d in "$dir"/cells/*/; do
        [ "$(head -n 1 "$d/epochs.csv")" = "$epochs_header" ] || { fail "$name" "$d/epochs.csv header $(head -n 1 "$d/epochs.csv")"; return 1; }
        column train_loss "$d/epochs.csv" | all_finite || { fail "$name" "$d/epochs.csv train_loss"; return 1; }
        column outcome "$d/epochs.csv" | grep -qv '^ok$\|^early_stop$' && { fail "$name" "$d/epochs.csv outcome"; return 1; }
        for c in test_acc test_nll test_ece test_brier; do
            column "$c" "$d/epochs.csv" | tail -n 1 | all_finite || { fail "$name" "$d/epochs.csv last $c"; return 1; }
        done
        if [ "$val" -eq 1 ]; then
            for c in val_acc val_nll val_ece val_brier; do
                column "$c" "$d/epochs.csv" | all_finite || { fail "$name" "$d/epochs.csv $c: $(column "$c" "$d/epochs.csv" | tr '\n' ' ')"; return 1; }
            done
        fi
        [ "$(wc -l <"$d/reliability.csv")" -eq 16 ] || { fail "$name" "$d/reliability.csv: not 15 bins"; return 1; }
        head -n 1 "$d/reliability.csv" | grep -qx 'bin_lower,bin_upper,count,mean_confidence,accuracy' ||
            { fail "$name" "$d/reliability.csv header"; return 1; }
    done
    column peak_device_bytes "$dir/results.csv" | awk 'BEGIN { ok = 1 } !($0 > 0) { ok = 0 } END { exit !(ok && NR) }' ||
        { fail "$name" "peak_device_bytes $(column peak_device_bytes "$dir/results.csv" | tr '\n' ' ')"; return 1; }
    pass "${name}_cell_files"
}

# check NAME HEADER_RE CELLS DIR: exit code, header, rows, fields, cell files, plots.
check() {
    local name=$1 header=$2 cells=$3 dir=$4 rc=$5
    if [ "$rc" -ne 0 ]; then fail "$name" "exit code $rc: $(tail -n 5 "$name.log")"; return; fi
    head -n 1 "$dir/results.csv" | grep -q "$header" || { fail "$name" "header $(head -n 1 "$dir/results.csv")"; return; }
    local rows widths
    rows=$(($(wc -l <"$dir/results.csv") - 1))
    [ "$rows" -eq "$cells" ] || { fail "$name" "$rows rows, expected $cells"; return; }
    widths=$(fields <"$dir/results.csv" | sort -u | wc -l)
    [ "$widths" -eq 1 ] || { fail "$name" "rows of different widths: $(fields <"$dir/results.csv" | tr '\n' ' ')"; return; }
    tail -n +2 "$dir/results.csv" | grep -q ',ok,' || { fail "$name" "no row with status ok"; return; }
    for d in "$dir"/cells/*/; do
        for f in cell.conf epochs.csv console.log reliability.csv; do
            [ -s "$d$f" ] || { fail "$name" "no $d$f"; return; }
        done
        [ -e "$d/checkpoint.p7" ] && { fail "$name" "$d kept its checkpoint"; return; }
    done
    [ -s "$dir/summary.md" ] || { fail "$name" "no summary.md"; return; }
    if command -v gnuplot >/dev/null 2>&1; then
        ls "$dir"/plots/*.svg >/dev/null 2>&1 && ls "$dir"/plots/*.png >/dev/null 2>&1 ||
            { fail "$name" "gnuplot is there, but no plots in $dir/plots"; return; }
        for d in "$dir"/cells/*/; do
            [ -s "$dir/plots/reliability-$(basename "$d").svg" ] ||
                { fail "$name" "no reliability diagram of $(basename "$d") in $dir/plots"; return; }
        done
    fi
    pass "$name"
}

# alpha-gamma: two values of each axis, BatchEnsemble M=2 of the simple CNN.
"$p7bench" alpha-gamma "${small[@]}" --model simple --members 2 --alpha -1,0.5 --gamma 0.5,1 --out ag >alpha_gamma.log 2>&1
check alpha_gamma "$parameter" 4 ag $?
cell_files alpha_gamma ag 0

# ensemble-size: M 2 and 3 at one lr.
"$p7bench" ensemble-size "${small[@]}" --model simple --members 2,3 --lr 0.002 --out es >ensemble_size.log 2>&1
check ensemble_size "$parameter" 2 es $?

# optimizers: SGD and IVON, single network and M=2; IVON's model average in its row.
"$p7bench" optimizers "${small[@]}" --model simple --optimizer sgd,ivon --members 1,2 --bma-samples 2 --out opt >optimizers.log 2>&1
check optimizers "$optimizer" 4 opt $?
cell_files optimizers opt 0
# the M=2 IVON cell: member accuracies and BMA in its last epoch
d=$(ls -d opt/cells/*ivon*m2* opt/cells/*m2*ivon* 2>/dev/null | head -n 1)
if [ -n "$d" ] && column test_member_acc "$d/epochs.csv" | tail -n 1 | grep -q '^[0-9.]*;[0-9.]*$' &&
    column bma_samples "$d/epochs.csv" | tail -n 1 | grep -qx 2; then pass epoch_members_bma
else fail epoch_members_bma "${d:-no IVON M=2 cell}: $(tail -n 1 "$d/epochs.csv" 2>/dev/null)"; fi
col=$(head -n 1 opt/results.csv | tr ',' '\n' | grep -n '^bma_test_accuracy$' | cut -d: -f1)
grep ',ivon,' opt/results.csv | grep -q '"lr=' && pass ivon_row || fail ivon_row "$(cat opt/results.csv)"
[ -n "$col" ] && pass bma_column || fail bma_column "no bma_test_accuracy column"

# sharing: the between regime's two cells of VGG11 (one member each way), on the validation split.
"$p7bench" sharing --regime between "${small[@]}" --members 2 --between none,all --patience 1 --out sh >sharing_between.log 2>&1
check sharing_between "$optimizer" 2 sh $?
cell_files sharing_between sh 1
"$p7bench" sharing --regime within "${small[@]}" --within none --out shw >sharing_within.log 2>&1
check sharing_within "$optimizer" 1 shw $?

# run: one configuration, the default folder results/run.
"$p7bench" run "${small[@]}" >run.log 2>&1
check run "$optimizer" 1 results/run $?

# no subcommand: the quick study's table.
"$p7bench" "${small[@]}" --model simple --out quick >quick.log 2>&1
check quick "$parameter" 2 quick $?
grep -q "BatchEnsemble M=4" quick.log && grep -q "single" quick.log && pass quick_table || fail quick_table "$(tail -n 5 quick.log)"

# --list names the cells --cell runs; a rerun skips finished cells.
id=$("$p7bench" alpha-gamma "${small[@]}" --model simple --members 2 --alpha -1,0.5 --gamma 0.5,1 --list | awk '!/^#/ {print $1; exit}')
"$p7bench" alpha-gamma "${small[@]}" --model simple --members 2 --alpha -1,0.5 --gamma 0.5,1 --out ag --cell "$id" >again.log 2>&1
grep -q "$id: finished before" again.log && [ "$(wc -l <ag/results.csv)" -eq 5 ] && pass rerun_skips ||
    fail rerun_skips "$(tail -n 3 again.log)"
[ "$(ls ag/cells | wc -l)" -eq 4 ] && pass cell_folders || fail cell_folders "$(ls ag/cells)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
