#!/usr/bin/env bash
# p7data's argument errors: each says what is wrong on the first line of stderr and
# exits 2; a huge --out path gives the reason, not errno's "Success".
#   p7data_args.sh PATH/TO/p7data
set -u
p7data=$1
work=$(mktemp -d /tmp/p7data-args-test-XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT
failures=0

# None of these may reach the network, even if an argument slipped through.
mkdir "$work/bin"
printf '#!/bin/sh\necho "npm must not run in this test" >&2\nexit 99\n' > "$work/bin/npm"
printf '#!/bin/sh\necho "curl must not run in this test" >&2\nexit 99\n' > "$work/bin/curl"
chmod +x "$work/bin/npm" "$work/bin/curl"
export PATH="$work/bin:$PATH"

# expect CODE FIRST-LINE-PATTERN -- ARGS...: the exit code and the first stderr line.
expect() {
    local want_rc=$1 pattern=$2
    shift 3
    "$p7data" "$@" > "$work/out" 2> "$work/err"
    local rc=$? first
    first=$(head -n 1 "$work/err")
    if [ "$rc" -ne "$want_rc" ] || ! grep -q -- "$pattern" <<< "$first"; then
        echo "FAIL: p7data ${*:1:4}...: exit $rc (want $want_rc), first line: $first" >&2
        echo "      wanted a first line matching: $pattern" >&2
        failures=$((failures + 1))
    else
        echo "ok: $first"
    fi
}

expect 2 "^p7data: no command given$" --
expect 2 "^p7data: unknown command 'frobnicate'$" -- frobnicate
expect 2 "^p7data: fetch needs a dataset: cifar10 or cifar100$" -- fetch
expect 2 "^p7data: unknown dataset 'cifar1000' (cifar10, cifar100)$" -- fetch cifar1000
expect 2 "^p7data: unknown dataset 'mnist' (cifar10, cifar100)$" -- fetch mnist --out "$work/x"
expect 2 "^p7data: --out needs a value (a directory)$" -- fetch cifar10 --out
expect 2 "^p7data: --from needs a value (a directory)$" -- fetch cifar100 --out "$work/x" --from
expect 2 "^p7data: --out is empty; give a directory$" -- fetch cifar10 --out ""
expect 2 "^p7data: --out given twice$" -- fetch cifar10 --out "$work/x" --out "$work/y"
expect 2 "^p7data: unknown option '--bogus' for fetch" -- fetch cifar10 --out "$work/x" --bogus
expect 2 "^p7data: unexpected argument 'stray' for fetch" -- fetch cifar10 stray --out "$work/x"
expect 2 "^p7data: fetch needs --out DIR$" -- fetch cifar100
expect 2 "^p7data: --from applies to cifar100 only$" -- fetch cifar10 --out "$work/x" --from "$work/y"
expect 2 "^p7data: verify needs exactly one directory (got 0 arguments)$" -- verify
expect 2 "^p7data: info needs exactly one directory (got 2 arguments)$" -- info "$work/a" "$work/b"

# A 5,000-byte --out: the reason, with the path abbreviated so the line stays short.
long="$work"
while [ ${#long} -lt 5000 ]; do long="$long/abcdefghijklmnopqrstuvwxyz"; done
long=${long:0:5000}
expect 2 "^p7data: --out path too long (5000 bytes, at most 3800): $work/.*\.\.\..* (5000 bytes)$" -- \
    fetch cifar10 --out "$long"
if [ "$(head -n 1 "$work/err" | wc -c)" -gt 300 ]; then
    echo "FAIL: the long-path message is $(head -n 1 "$work/err" | wc -c) bytes" >&2
    failures=$((failures + 1))
fi
[ -e "$work/abcdefghijklmnopqrstuvwxyz" ] && { echo "FAIL: folders were created for the long path" >&2; failures=$((failures + 1)); }
# A folder that cannot be made gives the system's reason for the folder concerned.
: > "$work/plainfile"
expect 1 "^p7data: cannot create $work/plainfile: Not a directory$" -- fetch cifar100 --out "$work/plainfile/c100"
expect 2 "^p7data: --out $work/plainfile exists and is not a directory$" -- fetch cifar100 --out "$work/plainfile"
# A path component longer than the file system allows.
name=$(printf 'n%.0s' $(seq 300))
expect 1 "^p7data: cannot create $work/nnnn.*\.\.\.nnnn.* bytes): File name too long$" -- \
    fetch cifar100 --out "$work/$name/c100"

# --help goes to stdout, exits 0 and names the test/mirror overrides.
"$p7data" --help > "$work/out" 2> "$work/err"
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q P7_CIFAR10_URL "$work/out" || ! grep -q P7_TFJS_TARBALL "$work/out"; then
    echo "FAIL: p7data --help: exit $rc, or the environment overrides are not listed" >&2
    failures=$((failures + 1))
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all p7data argument checks passed"
