#!/usr/bin/env bash
# `p7plugin check` as a plugin author meets it: it passes the bundled plugins (SGD, Adam,
# IVON), the signsgd example and a correct test plugin, and names the fault of each
# deliberately broken one (tests/plugins/faulty.c) with exit code 1; bad arguments exit 2.
# Usage: p7plugin_check.sh PATH/TO/p7plugin BUILD_DIR   (ctest passes them; P7_DEVICE picks the device)
set -u
p7plugin=$(realpath "$1")
build=$(realpath "$2")
faulty=$build/tests/plugins
passed=0
failed=0

pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; echo "$out" | tail -n 12; failed=$((failed + 1)); }

# check NAME WANT_RC PLUGIN: runs `p7plugin check PLUGIN`, keeps its output in $out.
check() {
    out=$("$p7plugin" check "$3" 2>&1)
    rc=$?
    if [ "$rc" -ne "$2" ]; then fail "$1" "exit code $rc, expected $2"; return 1; fi
    return 0
}
# names NAME NEEDLE: the last output has NEEDLE on a FAIL line.
names() {
    if grep -F -- "FAIL" <<<"$out" | grep -qF -- "$2"; then pass "$1"; else fail "$1" "no FAIL line with '$2'"; fi
}
# only_fails NAME COUNT: exactly COUNT items failed (the fault, not a cascade of it).
only_fails() {
    local n
    n=$(grep -c "^  FAIL" <<<"$out")
    if [ "$n" -eq "$2" ]; then pass "$1"; else fail "$1" "$n items failed, expected $2"; fi
}

for p in sgd adam ivon "$faulty/libsignsgd.so" "$faulty/libfaulty_none.so" "$faulty/librmsprop.so" \
    "$faulty/libsignsgd_abi_1_0.so"; do
    name=$(basename "$p")
    if check "passes: $name" 0 "$p"; then
        if grep -q "every check passed" <<<"$out"; then pass "passes: $name"; else fail "passes: $name" "no summary"; fi
    fi
done

check nondeterminism 1 "$faulty/libfaulty_nondeterminism.so" &&
    names "non-deterministic step named" "deterministic            two identical runs differ at step 1" &&
    only_fails "non-deterministic: one item fails" 1
check save_load 1 "$faulty/libfaulty_save_load.so" &&
    names "save/load mismatch named" "save/load                saved after step 1, loaded and stepped on" &&
    only_fails "save/load: one item fails" 1
check nan_swallowed 1 "$faulty/libfaulty_nan_swallowed.so" &&
    names "NaN swallowed named" "NaN gradient             a NaN in gradient [2] of parameter 0 made weight [2] inf" &&
    only_fails "NaN swallowed: one item fails" 1
check default_range 1 "$faulty/libfaulty_default_range.so" &&
    names "default out of range named" "the default of 'beta' (1.5) is outside its own range" &&
    names "default out of range: the range is shown" "allowed [0, 1)"

# A plugin that does not load fails the first item, with the loader's message.
check "NULL step" 1 "$faulty/libfaulty_null_step.so" && names "NULL step named" "the required function step is NULL"
check "small table" 1 "$faulty/libfaulty_small_table.so" &&
    names "small table: says what to do" "its table is 64 bytes, smaller than ABI 1.0's" &&
    names "small table: says what to do" "set struct_size to sizeof(p7_opt_plugin) and rebuild"
check "wrong ABI" 1 "$faulty/libabi_new.so" && names "wrong ABI named" "too new for this p7"
check "missing file" 1 "$build/no/such/libplugin.so" && names "missing file named" "no/such/libplugin.so"

# Arguments.
out=$("$p7plugin" 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q "usage: p7plugin check" <<<"$out"; then pass "no command: usage, exit 2"; else fail "no command" "rc $rc"; fi
out=$("$p7plugin" check 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q "check needs a plugin" <<<"$out"; then pass "check without plugin: exit 2"; else fail "check without plugin" "rc $rc"; fi
out=$("$p7plugin" check sgd --devise pocl 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q "unknown option '--devise'" <<<"$out"; then pass "unknown option: exit 2"; else fail "unknown option" "rc $rc"; fi
out=$("$p7plugin" frobnicate 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q "unknown command 'frobnicate'" <<<"$out"; then pass "unknown command: exit 2"; else fail "unknown command" "rc $rc"; fi
out=$("$p7plugin" --help 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -q "NaN gradient" <<<"$out"; then pass "--help lists the checks"; else fail "--help" "rc $rc"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
