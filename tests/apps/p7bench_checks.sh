#!/usr/bin/env bash
# p7bench as a user meets it (`p7bench run`, one configuration): bad arguments fail before
# the device opens and name the option, explicit data requests never fall back to synthetic data, a diverging run
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
run data_missing_folder 1 run --data "$work/nonexistent" --out r &&
    before_device data_missing_folder "--data: no such folder"
mkdir -p empty
run data_empty_folder 1 run --data "$work/empty" --out r &&
    before_device data_empty_folder "cifar10 was asked for"
P7_DATA=$work/empty run cifar20_without_cifar100 1 run --dataset cifar20 --out r &&
    before_device cifar20_without_cifar100 "cifar20 was asked for"
P7_DATA=$work/nonexistent run p7_data_missing_folder 1 run --out r &&
    before_device p7_data_missing_folder "P7_DATA: no such folder"
[ -e r ] && fail no_results_written "a failed start created r/" || pass no_results_written
run default_falls_back_loudly 0 run "${quick[@]}" --out fallback &&
    expect default_falls_back_loudly "USING THE BUILT-IN SYNTHETIC DATASET"
grep -q ',synthetic-shapes10,' fallback/results.csv && pass fallback_row_says_synthetic ||
    fail fallback_row_says_synthetic "$(cat fallback/results.csv)"

# --- arguments are checked before the device, and name the setting ---
run alpha_out_of_range 2 run --members 2 --alpha 2 --out r &&
    before_device alpha_out_of_range "alpha=2: expected a number <= 1"
run gamma_not_finite 2 run --members 2 --gamma inf --out r &&
    before_device gamma_not_finite "gamma=inf: expected a number <= 1"
run alpha_without_members 2 run --alpha 0.5 --out r &&
    before_device alpha_without_members "set BatchEnsemble's fast weights, which a plain network does not have"
run hparams_repeated 2 run --hparams "momentum=0.1,momentum=0.2" --optimizer sgd --out r &&
    before_device hparams_repeated "momentum is given twice"
run hparams_unknown 2 run --optimizer sgd --hparams "lrr=0.1" --out r &&
    before_device hparams_unknown "no hyperparameter 'lrr'"
run hparams_not_boolean 2 run --optimizer sgd --hparams "momentum=0.9,nesterov=maybe" --out r &&
    before_device hparams_not_boolean "expected true/false"
run hparams_lr_twice 2 run --lr 0.1 --hparams "lr=0.2" --out r &&
    before_device hparams_lr_twice "give the learning rate with --lr"
run max_loss_bad 2 run --max-loss -1 --out r && before_device max_loss_bad "max_loss=-1"
run dataset_unknown 2 run --dataset cifar11 --out r && before_device dataset_unknown "dataset=cifar11: expected one of cifar10,cifar20"
run study_unknown 2 alpha-gama && before_device study_unknown "no study 'alpha-gama'"
run option_unknown 2 run --epoch 3 && before_device option_unknown "unknown option '--epoch'"
run cell_unknown 2 run --cell run-00000000 && before_device cell_unknown "is not a cell of the run study with these settings"

# --- the network flags: bad values fail before the device and name the setting ---
run model_unknown 2 run --model resnet --out r && before_device model_unknown "--model 'resnet': expected simple, heads"
run within_unknown 2 run --within sideways --out r && before_device within_unknown "intra=sideways: expected one of none,early,deep,all"
run between_single 2 run --between early --out r && before_device between_single "give --members 2 or more"
run bn_bad 2 run --bn maybe --out r && before_device bn_bad "bn=maybe: expected one of on,off"
run member_kind_bad 2 run --member-kind clone --out r && before_device member_kind_bad "member_kind=clone: expected one of be,independent"
run alpha_independent 2 run --members 4 --member-kind independent --alpha 0.5 --out r &&
    before_device alpha_independent "which independent members"
run width_negative 2 run --width -1 --out r && before_device width_negative "width=-1"

# --- the training flags: bad values fail before the device and name the setting ---
run schedule_unknown 2 run --schedule cosin --out r && before_device schedule_unknown "--schedule: schedule 'cosin': unknown name"
run schedule_bad_key 2 run --schedule cosine:warmup=2 --out r &&
    before_device schedule_bad_key "warmup= belongs to warmup-cosine only"
run clip_negative 2 run --clip -1 --out r && before_device clip_negative "clip=-1: expected a number >= 0"
run clip_not_number 2 run --clip lots --out r && before_device clip_not_number "clip=lots"
run patience_bad 2 run --patience x --out r && before_device patience_bad "patience=x: expected an integer"
run patience_negative 2 run --patience -3 --out r && before_device patience_negative "patience=-3"
run min_delta_negative 2 run --min-delta -0.1 --out r && before_device min_delta_negative "min_delta=-0.1: expected a number >= 0"
run augment_bad 2 run --augment maybe --out r && before_device augment_bad "augment=maybe: expected one of on,off"
run bma_samples_bad 2 run --bma-samples -2 --out r && before_device bma_samples_bad "bma_samples=-2"
run seeds_not_number 2 run --seeds x --out r && before_device seeds_not_number "seeds=x: expected an integer in [1, 1000]"
run seeds_zero 2 run --seeds 0 --out r && before_device seeds_zero "seeds=0"
run faithful_unknown 2 run --faithful=mean-logits,nope --out r &&
    before_device faithful_unknown "--faithful: no switch 'nope'; the switches are: optimizer-is-adam"
run recipe_key_unknown 2 run --optimizer ivon --hparams "hess=1" --out r && before_device recipe_key_unknown "no hyperparameter 'hess'"

# --- recipes, seeds, faithful ---
run recipe_printed 0 run --dataset synthetic "${quick[@]}" --optimizer sgd --hparams lr=0.01 --out recipe &&
    expect recipe_printed "p7bench: recipe for sgd: lr=0.05,momentum=0.9"
grep -q '"lr=0.01,momentum=0.9,weight_decay=5e-4"' recipe/results.csv && pass recipe_user_key_wins ||
    fail recipe_user_key_wins "$(cat recipe/results.csv)"
run seeds_each 0 run --dataset synthetic "${quick[@]}" --seed 7 --seeds 2 --out seeds
if grep -q ',run-s7-' seeds/results.csv && grep -q ',run-s8-' seeds/results.csv && [ "$(wc -l <seeds/results.csv)" -eq 3 ]; then
    pass seeds_each_row
else
    fail seeds_each_row "$(cat seeds/results.csv)"
fi
run faithful_adam 0 run --dataset synthetic "${quick[@]}" --faithful --optimizer sgd --out faithful &&
    expect faithful_adam "'sgd' trains with Adam"
grep -q ',run,run,ok,simple,adam,' faithful/results.csv && pass faithful_row_says_adam ||
    fail faithful_row_says_adam "$(cat faithful/results.csv)"
head -n 1 faithful/results.csv | grep -q '^ensemble_size,num_epochs,batch_size,lr,model_type,train_loss,val_loss,train_acc,val_acc,' &&
    pass original_columns_first || fail original_columns_first "$(head -n 1 faithful/results.csv)"

# --- long arguments keep the reason in the message ---
long=$(head -c 5000 /dev/zero | tr '\0' x)
run long_optimizer_path 2 run --optimizer "/$long.so" --out r &&
    expect long_optimizer_path "optimizer: list too long"
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

# --- divergence stops the cell, says so, and marks the row ---
run diverged_stops 3 run --dataset synthetic --limit 2048 --batch 64 --optimizer sgd --lr 1e30 --out diverged &&
    expect diverged_stops "DIVERGED in epoch 1"
tail -n 1 diverged/results.csv | grep -q ',diverged,' && pass diverged_row || fail diverged_row "$(cat diverged/results.csv)"

# --- results folders: one header under concurrent starts; another table is never appended to ---
"$p7bench" run --dataset synthetic "${quick[@]}" --seed 1 --out together >one.log 2>&1 &
first=$!
"$p7bench" run --dataset synthetic "${quick[@]}" --seed 2 --out together >two.log 2>&1
second_rc=$?
wait "$first"
first_rc=$?
headers=$(grep -c '^ensemble_size,' together/results.csv)
rows=$(grep -c ',synthetic-shapes10,' together/results.csv) # one row per cell
if [ "$first_rc" -eq 0 ] && [ "$second_rc" -eq 0 ] && [ "$headers" -eq 1 ] && [ "$rows" -eq 2 ]; then
    pass concurrent_header_once
else
    out=$(cat together/results.csv one.log two.log)
    fail concurrent_header_once "exit codes $first_rc/$second_rc, $headers header line(s), $rows row(s)"
fi
mkdir -p theirs
printf 'name,accuracy\nmine,93.1\n' >theirs/results.csv
cp theirs/results.csv theirs.before
run other_table_refused 1 run --dataset synthetic --out theirs &&
    before_device other_table_refused "the results file holds another table"
cmp -s theirs/results.csv theirs.before && pass other_table_untouched || fail other_table_untouched "theirs/results.csv changed"
run other_settings_refused 1 run --dataset synthetic "${quick[@]}" --width 0.5 --out together &&
    before_device other_settings_refused "width"

echo "p7bench checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
