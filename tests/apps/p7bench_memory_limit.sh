#!/bin/bash
# Issue 8's must-show: VGG11-BN at batch 2048 under a 4 GB address-space limit must end
# in a p7 error and exit code 1, never a signal (PoCL used to abort, leaving an empty
# CSV; now a study row that says failed). No real data is needed: in an empty folder p7bench trains on its synthetic set.
# Usage: p7bench_memory_limit.sh <p7bench> <sanitized: ON/OFF>
p7bench=$1
if [ "$2" = "ON" ]; then
    # ASan reserves terabytes of shadow address space: under ulimit -v it cannot start.
    echo "SKIP: sanitizer build; ASan's shadow memory makes an address-space limit (ulimit -v) unusable"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 2
unset P7_DATA
args=(run --model vgg11-bn --batch 2048 --limit 4096 --epochs 1)
# Ask for the synthetic set explicitly where this p7bench offers it as a --dataset.
if "$p7bench" --help 2>&1 | grep -Eq -- '--dataset .*synthetic'; then args+=(--dataset synthetic); fi
( ulimit -v 4000000 && exec "$p7bench" "${args[@]}" ) >out.txt 2>err.txt
rc=$?
cat err.txt
if [ $rc -gt 128 ]; then
    echo "FAIL: p7bench died of signal $((rc - 128))"
    exit 1
fi
if [ $rc -ne 1 ]; then
    echo "FAIL: exit code $rc; expected 1 (a p7 error)"
    exit 1
fi
if ! grep -q "a training step of vgg11-bn at batch 2048 needs" err.txt ||
   ! grep -q "use a batch of [0-9]* or less" err.txt; then
    echo "FAIL: no memory-check message naming the need and the batch that fits"
    exit 1
fi
if [ -s results/run/results.csv ] && tail -n +2 results/run/results.csv | grep -qv ',failed,'; then
    echo "FAIL: a result other than 'failed' was written although training was refused"
    exit 1
fi
echo "PASS: refused with a p7 error, exit code 1"
