#!/usr/bin/env bash
# `p7bench plot DIR` on study folders written by hand (an alpha-gamma 3x3 grid in the
# original's own columns, an ensemble-size grid with per-epoch lists and a reliability
# file, an optimizer comparison, a sharing study over two seeds): every plot comes out as
# a non-empty PNG and SVG and summary.md shows each one; without gnuplot on PATH there is
# one notice line, the exit code is 0, and summary.md still holds the table.
# Usage: p7bench_plot.sh PATH/TO/p7bench
set -u
p7bench=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# --- the folders ---
mkdir -p ag es opt sh es/cells/es-m3-lr0.002-00000003
printf 'study=alpha-gamma\nalpha=-0.8,0.2,0.8\nbatch=256\ngamma=-0.8,0.2,0.8\nlr=0.0002\nmembers=4\n' >ag/study.conf
cat >ag/results.csv <<'CSV'
seed,alpha_init,gamma_init,ensemble_size,num_epochs,batch_size,lr,model_type,final_test_accuracy,avg_test_accuracy,final_losses,avg_losses,cell,label,status
42,-0.8,-0.8,4,15,256,0.0002,batchensemble_complex,69.8,65.04,0.122,0.431,ag-a-0.8-g-0.8-00000001,ag-a-0.8-g-0.8,ok
42,-0.8,0.2,4,15,256,0.0002,batchensemble_complex,76.55,70.61,0.131,0.626,ag-a-0.8-g0.2-00000002,ag-a-0.8-g0.2,ok
42,-0.8,0.8,4,15,256,0.0002,batchensemble_complex,77.63,72.03,0.125,0.603,ag-a-0.8-g0.8-00000003,ag-a-0.8-g0.8,ok
42,0.2,-0.8,4,15,256,0.0002,batchensemble_complex,76.26,70.08,0.132,0.675,ag-a0.2-g-0.8-00000004,ag-a0.2-g-0.8,ok
42,0.2,0.2,4,15,256,0.0002,batchensemble_complex,77.14,69.35,0.149,0.689,ag-a0.2-g0.2-00000005,ag-a0.2-g0.2,ok
42,0.2,0.8,4,15,256,0.0002,batchensemble_complex,77.32,70.31,0.152,0.692,ag-a0.2-g0.8-00000006,ag-a0.2-g0.8,ok
42,0.8,-0.8,4,15,256,0.0002,batchensemble_complex,76.34,70.14,0.125,0.663,ag-a0.8-g-0.8-00000007,ag-a0.8-g-0.8,ok
42,0.8,0.2,4,15,256,0.0002,batchensemble_complex,76.25,69.62,0.152,0.698,ag-a0.8-g0.2-00000008,ag-a0.8-g0.2,ok
42,0.8,0.8,4,15,256,0.0002,batchensemble_complex,76.39,69.84,0.15,0.68,ag-a0.8-g0.8-00000009,ag-a0.8-g0.8,ok
CSV

printf 'study=ensemble-size\nalpha=0.5\ngamma=0.5\nlr=0.002,0.0002\nmembers=2,3,4\n' >es/study.conf
{
    echo 'seed,alpha_init,gamma_init,ensemble_size,num_epochs,batch_size,lr,model_type,final_test_accuracy,cell,label,status,train_loss,test_acc'
    n=0
    for m in 2 3 4; do
        for lr in 0.002 0.0002; do
            n=$((n + 1))
            a=$((70 + m + (n % 2) * 3))
            echo "42,0.5,0.5,$m,3,256,$lr,batchensemble_complex,$a.5,es-m$m-lr$lr-0000000$n,es-m$m-lr$lr,ok,\"[1.$m, 0.8, 0.$((5 - m))]\",\"[60.0, 66.0, $a.5]\""
        done
    done
} >es/results.csv
cat >es/cells/es-m3-lr0.002-00000003/reliability.csv <<'CSV'
bin_lower,bin_upper,count,mean_confidence,accuracy
0.0,0.2,40,0.16,0.1
0.2,0.4,300,0.31,0.25
0.4,0.6,900,0.51,0.47
0.6,0.8,2100,0.71,0.66
0.8,1.0,6660,0.93,0.9
CSV

printf 'study=optimizers\nmembers=1,4\noptimizer=sgd,adam\n' >opt/study.conf
cat >opt/results.csv <<'CSV'
ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,train_acc,val_acc,cell,label,optimizer,model,status
1,4,256,0.002,complex,"[1.9, 1.3, 1.0, 0.8]","[1.6, 1.2, 1.05, 1.1]","[30.0, 52.0, 63.0, 71.0]","[41.0, 56.0, 62.0, 63.5]",opt-sgd-m1-0000000a,opt-sgd-m1,sgd,vgg11-bn,ok
4,4,256,0.002,batchensemble_complex,"[2.1, 1.2, 0.9, 0.7]","[1.5, 1.0, 0.8, 0.75]","[28.0, 57.0, 68.0, 76.0]","[45.0, 63.0, 71.0, 74.5]",opt-sgd-m4-0000000b,opt-sgd-m4,sgd,vgg11-bn,ok
1,4,256,0.002,complex,"[1.8, 1.2, 0.9, 0.7]","[1.5, 1.15, 1.0, 1.2]","[33.0, 55.0, 66.0, 74.0]","[44.0, 58.0, 63.5, 62.0]",opt-adam-m1-0000000c,opt-adam-m1,adam,vgg11-bn,ok
4,4,256,0.002,batchensemble_complex,"[2.0, 1.1, 0.8, 0.6]","[1.4, 0.95, 0.78, 0.7]","[31.0, 60.0, 71.0, 79.0]","[47.0, 65.0, 73.0, 77.0]",opt-adam-m4-0000000d,opt-adam-m4,adam,vgg11-bn,ok
CSV

printf 'study=sharing\nintra=none,deep\nregime=within\n' >sh/study.conf
cat >sh/results.csv <<'CSV'
ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,train_acc,val_acc,seed,final_test_accuracy,cell,label,status,params_used
1,3,128,0.0001,complex,"[1.8, 1.2, 0.9]","[1.5, 1.1, 0.95]","[35.0, 57.0, 68.0]","[46.0, 60.0, 66.0]",42,72.5,sh-within-cifar10-none-00000011,sh-within-cifar10-none,ok,9262538
1,3,128,0.0001,complex,"[1.8, 1.25, 0.92]","[1.52, 1.12, 0.97]","[34.0, 56.0, 67.0]","[45.0, 59.0, 65.0]",43,71.7,sh-within-cifar10-none-s43-00000012,sh-within-cifar10-none,ok,9262538
1,3,128,0.0001,complex,"[1.9, 1.3, 1.0]","[1.6, 1.2, 1.0]","[33.0, 54.0, 65.0]","[44.0, 57.0, 63.0]",42,69.9,sh-within-cifar10-deep-00000013,sh-within-cifar10-deep,ok,4542922
1,3,128,0.0001,complex,"[1.9, 1.3, 1.05]","[1.6, 1.25, 1.05]","[33.0, 53.0, 64.0]","[43.0, 56.0, 62.0]",43,70.6,sh-within-cifar10-deep-s43-00000014,sh-within-cifar10-deep,ok,4542922
CSV
# a row cut short by a kill: never a row of the table
printf '1,3,128,0.0001,complex,"[1.9, 1.3' >>sh/results.csv

declare -A expected=(
    [ag]="heat-final_test_accuracy heat-avg_test_accuracy heat-final_losses heat-avg_losses"
    [es]="es-accuracy es-loss reliability-es-m3-lr0.002-00000003"
    [opt]="curve-val-accuracy curve-val-loss curve-train-accuracy curve-train-loss"
    [sh]="params-accuracy curve-val-accuracy curve-val-loss curve-train-accuracy curve-train-loss"
)

# --- without gnuplot: one notice, the summary still written (run first, before any plots exist) ---
mkdir -p nobin
for d in ag es; do
    cp -r "$d" "bare-$d"
    out=$(PATH="$work/nobin" "$p7bench" plot "bare-$d" 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ]; then fail "no_gnuplot_$d" "exit code $rc: $out"
    elif [ "$(wc -l <<<"$out")" -ne 1 ] || ! grep -q "gnuplot is not on PATH" <<<"$out"; then
        fail "no_gnuplot_$d" "expected one notice line: $out"
    elif ! grep -q '^| .*-0000000[0-9] | ok |' "bare-$d/summary.md"; then fail "no_gnuplot_$d" "no table rows in summary.md"
    elif ls "bare-$d"/plots/*.png >/dev/null 2>&1; then fail "no_gnuplot_$d" "PNG files appeared"
    else pass "no_gnuplot_$d"; fi
done

# --- with gnuplot ---
if ! command -v gnuplot >/dev/null; then
    echo "gnuplot is not installed: the drawing checks are skipped (apt-get install gnuplot-nox)"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 77 || exit 1
fi
for d in ag es opt sh; do
    out=$("$p7bench" plot "$d" 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ]; then fail "plot_$d" "exit code $rc: $out"; continue; fi
    if grep -qi "warning" <<<"$out"; then fail "plot_$d" "gnuplot warned: $out"; fi
    for name in ${expected[$d]}; do
        png=$d/plots/$name.png svg=$d/plots/$name.svg
        if [ ! -s "$png" ] || [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' ')" != "89504e470d0a1a0a" ]; then
            fail "plot_${d}_$name" "no PNG $png"
        elif [ ! -s "$svg" ] || ! grep -q "<svg" "$svg"; then fail "plot_${d}_$name" "no SVG $svg"
        elif ! grep -qF "(plots/$name.png)" "$d/summary.md"; then fail "plot_${d}_$name" "summary.md does not show it"
        else pass "plot_${d}_$name"; fi
    done
done
# the 3x3 heatmap is annotated with the values, rows alpha -0.8 .. 0.8
grep -q '"77.63"' ag/plots/heat-final_test_accuracy-labels.dat && pass heatmap_labels ||
    fail heatmap_labels "$(cat ag/plots/heat-final_test_accuracy-labels.dat)"
# seeds of one grid point average into one point with a bar: (72.5 + 71.7) / 2, sd sqrt(0.32)
grep -q '^9262538 72.1 0.5656854249 "sh-within-cifar10-none"$' sh/plots/params-accuracy.dat &&
    pass sharing_mean_over_seeds || fail sharing_mean_over_seeds "$(cat sh/plots/params-accuracy.dat)"
[ "$(grep -c '^| sh-within' sh/summary.md)" -eq 4 ] && pass partial_row_skipped ||
    fail partial_row_skipped "$(grep '^| sh' sh/summary.md)"

# --- arguments ---
"$p7bench" plot >/dev/null 2>&1
[ $? -eq 2 ] && pass no_folder_is_a_usage_error || fail no_folder_is_a_usage_error "exit code not 2"
out=$("$p7bench" plot "$work/nonexistent" 2>&1)
[ $? -eq 1 ] && grep -q "no study.conf" <<<"$out" && pass missing_folder_named || fail missing_folder_named "$out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
