#!/usr/bin/env bash
# The layering check must catch what it is for: it passes on the tree as it is, and
# fails, naming the file and the edge, once an upward or sideways include is added.
# Usage: check_layers_test.sh path/to/check_layers.sh path/to/core
set -uo pipefail
check=$1
core=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

fresh() { rm -rf "$work/core"; mkdir -p "$work/core"; cp -r "$core/src" "$core/include" "$work/core/"; }

# expect_violation NAME FILE LINE NEEDLE: adding LINE at the top of FILE must fail the check with NEEDLE.
expect_violation() {
    local name=$1 file=$2 line=$3 needle=$4 out
    fresh
    sed -i "1i $line" "$work/core/$file"
    if out=$(bash "$check" "$work/core" 2>&1); then bad "$name" "the check passed"
    elif ! grep -qF -- "$needle" <<<"$out"; then bad "$name" "no '$needle' in: $out"
    else ok "$name"; fi
}

fresh
if out=$(bash "$check" "$work/core" 2>&1); then ok tree_as_it_is; else bad tree_as_it_is "$out"; fi
expect_violation runtime_includes_public_nn src/runtime/memory.c '#include "p7/nn.h"' \
    'src/runtime/memory.c: #include "p7/nn.h": runtime (rank 0) must not use nn'
expect_violation gemm_includes_ops src/gemm/gemm.c '#include "ops/op_kernels.h"' \
    'src/gemm/gemm.c: #include "ops/op_kernels.h": gemm (rank 1) must not use ops'
expect_violation data_includes_nn_beside src/data/data_split.c '#include "p7/nn.h"' 'data (rank 4) must not use nn'
expect_violation public_header_upward include/p7/tensor.h '#include "p7/ops.h"' \
    'tensor.h: #include "p7/ops.h": tensor (rank 2) must not use ops'
expect_violation umbrella_inside src/ops/ops.c '#include "p7/p7.h"' 'the umbrella header is for users'
expect_violation unqualified_header src/nn/nn_model.c '#include "op_kernels.h"' 'not a header of any layer'
fresh
mkdir -p "$work/core/src/misc" && echo 'int x;' >"$work/core/src/misc/x.c"
if out=$(bash "$check" "$work/core" 2>&1); then bad unknown_folder "the check passed"
elif grep -qF "a folder that is no layer" <<<"$out"; then ok unknown_folder; else bad unknown_folder "$out"; fi

echo "layer check tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
