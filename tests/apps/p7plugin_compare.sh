#!/usr/bin/env bash
# `p7plugin compare` as a plugin author meets it: the signsgd example against a float64
# reference of its rule (written by python3 in the file format docs/plugins.md gives)
# matches; a perturbed reference is reported with the step, parameter and element; bad
# files are refused with the field (or the line and column) at fault.
# Usage: p7plugin_compare.sh PATH/TO/p7plugin BUILD_DIR   (ctest passes them; P7_DEVICE picks the device)
set -u
p7plugin=$(realpath "$1")
build=$(realpath "$2")
signsgd=$build/tests/plugins/libsignsgd.so
command -v python3 > /dev/null || { echo "python3 not found: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; echo "$out" | tail -n 8; failed=$((failed + 1)); }
# compare NAME WANT_RC NEEDLE [args...]: runs `p7plugin compare`, wants the exit code and NEEDLE.
compare() {
    local name=$1 want=$2 needle=$3
    shift 3
    out=$("$p7plugin" compare "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then fail "$name" "exit code $rc, expected $want"
    elif ! grep -qF -- "$needle" <<<"$out"; then fail "$name" "no '$needle' in the output"
    else pass "$name"; fi
}

# The reference: signsgd's rule in float64, 3 steps over two parameters, with the momentum slot.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
lr, beta, wd = 0.01, 0.9, 0.1
theta = [[0.5, -1.0, 1.5, -0.25, 0.75, 2.0], [0.3, -0.6, 0.9, -1.2, 0.05]]
grads = [[[0.1, -0.2, 0.3, -0.4, 0.5, -0.6], [0.25, -0.15, 0.05, 0.35, -0.45]],
         [[-0.05, 0.15, -0.25, 0.35, -0.4, 0.55], None],
         [[0.2, 0.2, -0.1, -0.1, 0.05, 0.01], [-0.35, 0.3, 0.15, -0.05, 0.1]]]
m = [[0.0] * len(p) for p in theta]
steps = []
for g in grads:
    for i, p in enumerate(theta):
        if g[i] is None:
            continue
        for k in range(len(p)):
            m[i][k] = beta * m[i][k] + (1 - beta) * g[i][k]
            s = (m[i][k] > 0) - (m[i][k] < 0)
            p[k] = p[k] * (1 - lr * wd) - lr * s
    steps.append({"grads": g, "params": [list(p) for p in theta], "state": {"momentum": [list(x) for x in m]}})
doc = {"plugin": "signsgd", "hparams": "lr=0.01, beta=0.9, weight_decay=0.1",
       "params": [[0.5, -1.0, 1.5, -0.25, 0.75, 2.0], [0.3, -0.6, 0.9, -1.2, 0.05]], "steps": steps}
json.dump(doc, open(work + "/good.json", "w"), indent=1)
bad = json.loads(json.dumps(doc)); bad["steps"][1]["params"][0][3] += 1e-3
json.dump(bad, open(work + "/perturbed.json", "w"))
short = json.loads(json.dumps(doc)); short["steps"][0]["grads"][0].pop()
json.dump(short, open(work + "/short.json", "w"))
slot = json.loads(json.dumps(doc)); slot["steps"][0]["state"] = {"velocity": slot["steps"][0]["state"]["momentum"]}
json.dump(slot, open(work + "/slot.json", "w"))
other = dict(doc); other["plugin"] = "adam"
json.dump(other, open(work + "/other.json", "w"))
PY
printf '{"params": [[1, 2]],\n "steps": [\n    {"grads": [[1 2]]}]}\n' > "$work/syntax.json"

compare "signsgd matches its float64 reference" 0 "every value within the tolerance 1e-06" \
    "$signsgd" --reference "$work/good.json"
compare "per-step lines name weights and slots" 0 "step 3: weights max |diff|" "$signsgd" --reference "$work/good.json"
grep -qF "slot 'momentum'" <<<"$out" && pass "the momentum slot is compared" || fail "momentum slot" "not in the output"
compare "a perturbed value is found" 1 "beyond the tolerance 1e-06: largest difference at step 2, parameter 0 [3]" \
    "$signsgd" --reference "$work/perturbed.json"
compare "a looser tolerance accepts it" 0 "every value within the tolerance 0.01" \
    "$signsgd" --reference "$work/perturbed.json" --tolerance 0.01
compare "a short gradient is named" 1 "steps[0].grads[0] has 5 numbers; the parameter has 6" \
    "$signsgd" --reference "$work/short.json"
compare "an unknown slot lists the plugin's" 1 "signsgd has no state slot named 'velocity'; its slots are: momentum" \
    "$signsgd" --reference "$work/slot.json"
compare "another plugin's file is refused" 1 "was written for plugin \"adam\"" "$signsgd" --reference "$work/other.json"
compare "bad JSON: line and column" 1 "not valid JSON: line 3, column 19: expected ',' or ']' in an array" \
    "$signsgd" --reference "$work/syntax.json"
compare "a missing file is named" 1 "cannot open the reference file $work/none.json" "$signsgd" --reference "$work/none.json"
compare "IVON needs noise" 1 "this plugin samples weights, so each step needs the standard normal draws" \
    ivon --reference "$work/good.json"
compare "no --reference" 2 "compare needs --reference FILE.json" "$signsgd"
compare "bad --tolerance" 2 "--tolerance 'abc' is not a number >= 0" "$signsgd" --reference "$work/good.json" --tolerance abc

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
