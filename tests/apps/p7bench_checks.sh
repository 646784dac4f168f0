#!/usr/bin/env bash
# p7bench as a user meets it: bad arguments fail before the device opens and name the
# option, explicit data requests never fall back to synthetic data, a diverging run
# stops with exit code 3, and results files are never corrupted or mixed.
# Usage: p7bench_checks.sh PATH/TO/p7bench   (ctest passes it; P7_DEVICE picks the device)
set -u
p7bench=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
unset P7_DATA
passed=0
failed=0

# run NAME WANT_RC [args...]: runs p7bench, keeps its output in $out.
run() {
    local name=$1 want=$2
    shift 2
    out=$("$p7bench" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit code $rc, expected $want; output:"
        echo "$out" | tail -n 5
        failed=$((failed + 1))
        return 1
    fi
    return 0
}
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; echo "$out" | tail -n 5; failed=$((failed + 1)); }
# expect NAME NEEDLE: the last output contains NEEDLE.
expect() { if grep -qF -- "$2" <<<"$out"; then pass "$1"; else fail "$1" "no '$2' in the output"; fi; }
# before_device NAME NEEDLE: contains NEEDLE, and the device was never opened.
before_device() {
    if ! grep -qF -- "$2" <<<"$out"; then fail "$1" "no '$2' in the output"
    elif grep -q "^p7bench: device" <<<"$out"; then fail "$1" "the device was opened before the error"
    else pass "$1"; fi
}

quick=(--limit 256 --batch 64 --epochs 1)

# --- data: explicit requests must resolve; only the defaults fall back ---
run data_missing_folder 1 --data "$work/nonexistent" --out r.csv &&
    before_device data_missing_folder "--data: no such folder"
mkdir -p empty
run data_empty_folder 1 --data "$work/empty" --out r.csv &&
    before_device data_empty_folder "cifar10 was asked for"
P7_DATA=$work/empty run cifar20_without_cifar100 1 --dataset cifar20 --out r.csv &&
    before_device cifar20_without_cifar100 "cifar20 was asked for"
P7_DATA=$work/nonexistent run p7_data_missing_folder 1 --out r.csv &&
    before_device p7_data_missing_folder "P7_DATA: no such folder"
[ -e r.csv ] && fail no_results_written "a failed start created r.csv" || pass no_results_written
run default_falls_back_loudly 0 "${quick[@]}" --out fallback.csv &&
    expect default_falls_back_loudly "USING THE BUILT-IN SYNTHETIC DATASET"
grep -q '^synthetic-shapes10,' fallback.csv && pass fallback_row_says_synthetic ||
    fail fallback_row_says_synthetic "$(cat fallback.csv)"

# --- arguments are checked before the device, and name the option ---
run alpha_out_of_range 2 --members 2 --alpha 2 --out r.csv &&
    before_device alpha_out_of_range "--alpha 2: expected a value <= 1"
run gamma_not_finite 2 --members 2 --gamma inf --out r.csv &&
    before_device gamma_not_finite "--gamma 'inf': expected a finite number"
run alpha_without_members 2 --alpha 0.5 --out r.csv &&
    before_device alpha_without_members "--alpha sets BatchEnsemble's fast weights"
run hparams_repeated 2 --hparams "lr=0.1,lr=0.01" --out r.csv &&
    before_device hparams_repeated "lr is given twice"
run hparams_unknown 2 --optimizer sgd --hparams "lrr=0.1" --out r.csv &&
    before_device hparams_unknown "no hyperparameter 'lrr'"
run hparams_not_boolean 2 --optimizer sgd --hparams "momentum=0.9,nesterov=maybe" --out r.csv &&
    before_device hparams_not_boolean "expected true/false"
run max_loss_bad 2 --max-loss -1 --out r.csv && before_device max_loss_bad "--max-loss '-1'"
run dataset_unknown 2 --dataset cifar11 --out r.csv && before_device dataset_unknown "expected cifar10, cifar20"

# --- the training flags: bad values fail before the device and name the option ---
run schedule_unknown 2 --schedule cosin --out r.csv && before_device schedule_unknown "--schedule: schedule 'cosin': unknown name"
run schedule_bad_key 2 --schedule cosine:warmup=2 --out r.csv &&
    before_device schedule_bad_key "warmup= belongs to warmup-cosine only"
run clip_negative 2 --clip -1 --out r.csv && before_device clip_negative "--clip '-1': expected a number >= 0"
run clip_not_number 2 --clip lots --out r.csv && before_device clip_not_number "--clip 'lots': expected a finite number"
run patience_bad 2 --patience x --out r.csv && before_device patience_bad "--patience 'x': expected an integer >= 0"
run patience_negative 2 --patience -3 --out r.csv && before_device patience_negative "--patience '-3'"
run min_delta_negative 2 --min-delta -0.1 --out r.csv && before_device min_delta_negative "--min-delta '-0.1': expected a number >= 0"
run augment_bad 2 --augment maybe --out r.csv && before_device augment_bad "--augment 'maybe': expected on or off"
run bma_samples_bad 2 --bma-samples -2 --out r.csv && before_device bma_samples_bad "--bma-samples '-2': expected an integer >= 0"
run seeds_empty_item 2 --seeds 1,,2 --out r.csv && before_device seeds_empty_item "--seeds '1,,2': expected comma-separated integers"
run seeds_not_number 2 --seeds 42,x --out r.csv && before_device seeds_not_number "--seeds '42,x'"
run seeds_negative 2 --seeds -1 --out r.csv && before_device seeds_negative "--seeds '-1'"
run faithful_unknown 2 --faithful=mean-logits,nope --out r.csv &&
    before_device faithful_unknown "--faithful: no switch 'nope'; the switches are: optimizer-is-adam"
run recipe_key_unknown 2 --optimizer ivon --hparams "hess=1" --out r.csv && before_device recipe_key_unknown "no hyperparameter 'hess'"

# --- recipes, seeds, faithful ---
run recipe_printed 0 --dataset synthetic "${quick[@]}" --optimizer sgd --hparams lr=0.01 --out recipe.csv &&
    expect recipe_printed "p7bench: recipe for sgd: lr=0.05,momentum=0.9"
grep -q '"lr=0.01,momentum=0.9,weight_decay=5e-4"' recipe.csv && pass recipe_user_key_wins ||
    fail recipe_user_key_wins "$(cat recipe.csv)"
run seeds_each 0 --dataset synthetic "${quick[@]}" --seeds 7,8 --out seeds.csv
# quoted fields hold commas: the seed and epoch follow the quoted schedule field
if grep -q '",7,1,256,' seeds.csv && grep -q '",8,1,256,' seeds.csv && [ "$(grep -c '^synthetic' seeds.csv)" -eq 2 ]; then
    pass seeds_each_row
else
    fail seeds_each_row "$(cat seeds.csv)"
fi
run faithful_adam 0 --dataset synthetic "${quick[@]}" --faithful --optimizer sgd --out faithful.csv &&
    expect faithful_adam "'sgd' trains with Adam"
grep -q '^synthetic-shapes10,simple,1,adam,' faithful.csv && pass faithful_row_says_adam ||
    fail faithful_row_says_adam "$(cat faithful.csv)"
[ "$(head -n 1 faithful.csv | tr ',' '\n' | tail -n 1)" = status ] && pass status_column_last ||
    fail status_column_last "$(head -n 1 faithful.csv)"

# --- long arguments keep the reason in the message ---
long=$(head -c 5000 /dev/zero | tr '\0' x)
run long_optimizer_path 1 --optimizer "/$long.so" --out r.csv &&
    expect long_optimizer_path "no such file (File name too long)"
run long_device_spec 1 --device "$long" --self-check &&
    expect long_device_spec "matches no OpenCL device"

# --- a vendor word that falls back to a CPU says so ---
devices=$("$p7bench" --list-devices 2>&1)
if grep -q "AuthenticAMD" <<<"$devices" && ! grep -E " GPU .*(AMD|Advanced Micro)" <<<"$devices" >/dev/null; then
    run amd_falls_back_to_cpu 0 --device amd --self-check &&
        expect amd_falls_back_to_cpu "note: device spec 'amd' found no AMD GPU; using the AMD CPU device"
else
    echo "skip amd_falls_back_to_cpu: this machine has an AMD GPU or no AMD CPU device"
fi

# --- divergence stops the run, says so, and marks the row ---
run diverged_stops 3 --dataset synthetic --limit 2048 --batch 64 --hparams lr=1e30 --out diverged.csv &&
    expect diverged_stops "training DIVERGED in epoch 1"
tail -n 1 diverged.csv | grep -q ',diverged$' && pass diverged_row || fail diverged_row "$(cat diverged.csv)"

# --- results files: one header under concurrent starts; another table is never appended to ---
"$p7bench" --dataset synthetic "${quick[@]}" --seed 1 --out together.csv >one.log 2>&1 &
first=$!
"$p7bench" --dataset synthetic "${quick[@]}" --seed 2 --out together.csv >two.log 2>&1
second_rc=$?
wait "$first"
first_rc=$?
headers=$(grep -c '^dataset,' together.csv)
rows=$(grep -c '^synthetic-shapes10,' together.csv) # one epoch each
if [ "$first_rc" -eq 0 ] && [ "$second_rc" -eq 0 ] && [ "$headers" -eq 1 ] && [ "$rows" -eq 2 ]; then
    pass concurrent_header_once
else
    out=$(cat together.csv one.log two.log)
    fail concurrent_header_once "exit codes $first_rc/$second_rc, $headers header line(s), $rows row(s)"
fi
printf 'name,accuracy\nmine,93.1\n' >theirs.csv
cp theirs.csv theirs.before
run other_table_refused 1 --dataset synthetic --out theirs.csv &&
    before_device other_table_refused "the results file holds another table"
cmp -s theirs.csv theirs.before && pass other_table_untouched || fail other_table_untouched "theirs.csv changed"

echo "p7bench checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
