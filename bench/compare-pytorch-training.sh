#!/usr/bin/env bash
# Side by side with PyTorch (issue 10): trains one configuration with p7bench and then
# with bench/pytorch-train-cifar.py (Debian's torch) on the same CIFAR-10 files, one after
# the other so neither slows the other, and prints a markdown table row:
#   model | config | p7 test acc | PyTorch test acc | difference | p7 wall s | PyTorch wall s
# Wall times are whole processes (data loading, kernel builds and evaluation included).
# The two runs use the same 45k/5k split counts but not the same permutation, so a
# difference of a point or so is noise, not a bug.
#
# usage: bench/compare-pytorch-training.sh BUILD_DIR DATA_DIR [options]
#   --model simple|vgg11-bn   (default simple)
#   --epochs E --lr X         (defaults: simple 15 and 2e-3, vgg11-bn 2 and 2e-4, the issue's)
#   --batch B (256)  --seed S (42)  --threads T (PyTorch threads, 2)
#   --limit N                 train on at most N images (a smoke test)
#   --out DIR                 keep the logs, p7's CSV and PyTorch's JSON here
#                             (default results/compare-pytorch/<model>-<time>)
#   --no-header               print only the row (to append to an earlier table)
set -euo pipefail
LC_NUMERIC=C # $EPOCHREALTIME with a decimal point

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '10,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
build=$1 data=$2
shift 2
model=simple epochs='' lr='' batch=256 seed=42 threads=2 limit=0 out='' header=1
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --lr) lr=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --limit) limit=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-header) header=0; shift ;;
        *) echo "compare-pytorch-training: unknown option '$1'" >&2; usage ;;
    esac
done
case "$model" in
    simple) : "${epochs:=15}" "${lr:=2e-3}" ;;
    vgg11-bn) : "${epochs:=2}" "${lr:=2e-4}" ;;
    *) echo "compare-pytorch-training: --model '$model': expected simple or vgg11-bn" >&2; exit 2 ;;
esac

p7bench=$build/apps/p7bench
python=/usr/bin/python3 # Debian's torch imports only here, not in a pyenv or venv python
[ -x "$p7bench" ] || { echo "compare-pytorch-training: no p7bench at $p7bench; build first" >&2; exit 1; }
"$python" -c 'import torch' 2>/dev/null ||
    { echo "compare-pytorch-training: $python cannot import torch (apt-get install python3-torch)" >&2; exit 1; }
[ -f "$data/cifar10/test_batch.bin" ] ||
    { echo "compare-pytorch-training: no CIFAR-10 binary batches in $data/cifar10" >&2; exit 1; }

out=${out:-results/compare-pytorch/$model-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
p7_csv=$out/p7.csv p7_log=$out/p7.log torch_json=$out/pytorch.json torch_log=$out/pytorch.log
rm -f "$p7_csv" # p7bench appends; this run's rows only
limit_args=()
[ "$limit" -gt 0 ] && limit_args=(--limit "$limit")

echo "compare-pytorch-training: p7bench $model (log $p7_log)" >&2
p7_start=$EPOCHREALTIME
"$p7bench" --device cpu --optimizer adam --hparams "lr=$lr" --batch "$batch" --epochs "$epochs" \
    --model "$model" --seed "$seed" --data "$data" --out "$p7_csv" "${limit_args[@]}" 2>&1 | tee "$p7_log" >&2
p7_end=$EPOCHREALTIME

echo "compare-pytorch-training: PyTorch $model (log $torch_log)" >&2
torch_start=$EPOCHREALTIME
"$python" "$here/pytorch-train-cifar.py" --model "$model" --epochs "$epochs" --lr "$lr" --batch "$batch" \
    --seed "$seed" --threads "$threads" --data "$data" --json "$torch_json" "${limit_args[@]}" 2>&1 |
    tee "$torch_log" >&2
torch_end=$EPOCHREALTIME

# p7's last epoch row (the one with the test numbers) and PyTorch's JSON, read with the csv
# and json modules: the hparams field may be quoted and hold commas.
"$python" - "$p7_csv" "$torch_json" "$model" "$epochs" "$lr" "$batch" "$limit" "$threads" \
    "$p7_start" "$p7_end" "$torch_start" "$torch_end" "$header" <<'EOF'
import csv, json, sys
p7_csv, torch_json, model, epochs, lr, batch, limit, threads, p7_start, p7_end, torch_start, torch_end, header = sys.argv[1:]
p7_wall = float(p7_end) - float(p7_start)
torch_wall = float(torch_end) - float(torch_start)
rows = [r for r in csv.DictReader(open(p7_csv)) if r["status"] == "ok" and r["epoch"] == epochs]
if not rows:
    sys.exit(f"compare-pytorch-training: {p7_csv} has no finished epoch {epochs} (see p7.log)")
p7_acc = float(rows[-1]["test_acc"])
images = rows[-1]["train_images"]
torch_result = json.load(open(torch_json))
torch_acc = torch_result["test_acc"]
if str(torch_result["train_images"]) != images:
    sys.exit(f"compare-pytorch-training: p7 trained on {images} images, PyTorch on {torch_result['train_images']}")
names = {"simple": "SimpleCNN", "vgg11-bn": "VGG11-BN"}
config = f"Adam lr {float(lr):g}, batch {batch}, {epochs} epoch(s), {images} images"
if header == "1":
    print("| model | config | p7 test acc | PyTorch test acc | difference | p7 wall s | PyTorch wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
print(f"| {names[model]} | {config} | {p7_acc:.2f}% | {torch_acc:.2f}% | {p7_acc - torch_acc:+.2f} | "
      f"{p7_wall:.0f} | {torch_wall:.0f} |")
print(f"compare-pytorch-training: PyTorch {torch_result['torch_version']} with {torch_result['threads']} thread(s) "
      f"on {torch_result['cpu_model']}; outputs in {p7_csv.rsplit('/', 1)[0]}", file=sys.stderr)
EOF
