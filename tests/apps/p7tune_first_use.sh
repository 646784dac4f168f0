#!/bin/bash
# The GEMM tuning as programs meet it, in a clean cache folder: the first process measures
# (P7_GEMM_TUNING=quick: two tiles on small shapes) and stores its choice; a second
# process applies the stored file without measuring; a hand-edited file is applied, a
# truncated one is refused with a note and replaced; P7_GEMM_TILE overrides; p7tune
# measures on request and keeps a stored choice unless --force.
# Usage: p7tune_first_use.sh <p7tune>
p7tune=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export P7_CACHE_DIR=$work/cache
export P7_DEVICE=${P7_DEVICE:-pocl}
unset P7_GEMM_TILE P7_GEMM_KC P7_VERBOSE
fail() { echo "FAIL: $*"; exit 1; }
show() { "$p7tune" --show > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; fail "p7tune --show exited $?"; }; cat "$work/out.txt"; }

echo "== first process: nothing stored, measures"
P7_GEMM_TUNING=quick show
grep -q "origin measured" "$work/out.txt" || fail "the first process did not measure"
files=("$P7_CACHE_DIR"/tuning/gemm-*.txt)
[ ${#files[@]} -eq 1 ] && [ -f "${files[0]}" ] || fail "no single tuning file in $P7_CACHE_DIR/tuning"
file=${files[0]}
grep -q "stored in: $file" "$work/out.txt" || fail "p7tune does not say where the choice is stored"
first=$(grep -o "tile [0-9]*x[0-9]* vector [0-9]* kc [0-9]*" "$work/out.txt")

echo "== second process: applies the stored choice"
P7_GEMM_TUNING=quick show
grep -q "$first origin stored" "$work/out.txt" || fail "the second process did not apply the stored '$first'"
ls "$P7_CACHE_DIR"/tuning | grep -q '\.tmp$' && fail "a temporary file was left behind"

echo "== an edited file is applied"
sed -i 's#^tile .*#tile 6x16/8#; s#^kc .*#kc 384#' "$file"
P7_GEMM_TUNING=off show
grep -q "tile 6x16 vector 8 kc 384 origin stored" "$work/out.txt" || fail "the edited file was not applied"

echo "== a truncated file is refused with a note, and replaced by the next measurement"
head -c 40 "$file" > "$work/cut" && cp "$work/cut" "$file"
P7_GEMM_TUNING=off show
grep -q "origin default" "$work/out.txt" || fail "a truncated file did not fall back to the default"
grep -q "note: GEMM tuning store $file" "$work/out.txt" || fail "no note naming the refused file"
P7_GEMM_TUNING=quick show
grep -q "origin measured" "$work/out.txt" || fail "the refused file was not retuned"
P7_GEMM_TUNING=off show
grep -q "origin stored" "$work/out.txt" || fail "the retuned choice was not stored"

echo "== P7_GEMM_TILE overrides"
P7_GEMM_TILE=6x16 P7_GEMM_KC=512 show
grep -Eq "tile 6x16 vector (8|16) kc 512 origin override" "$work/out.txt" || fail "P7_GEMM_TILE=6x16 was not applied"

echo "== p7tune measures on request"
"$p7tune" --quick > "$work/out.txt" 2>&1 || fail "p7tune --quick exited $?"
cat "$work/out.txt"
grep -q "a choice is stored for this device" "$work/out.txt" || fail "p7tune without --force remeasured"
"$p7tune" --quick --force > "$work/out.txt" 2>&1 || fail "p7tune --quick --force exited $?"
cat "$work/out.txt"
[ "$(grep -Ec '^ +[0-9]+x[0-9]+/[0-9]+ kc [0-9]+ .*\| +[0-9.]+$' "$work/out.txt")" -ge 2 ] ||
    fail "p7tune --force did not print each candidate's GFLOP/s"
grep -q "origin measured" "$work/out.txt" && grep -q "stored in: $file" "$work/out.txt" ||
    fail "p7tune --force did not store its choice"

"$p7tune" --bogus > /dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown argument did not exit 2"
echo "PASS"
