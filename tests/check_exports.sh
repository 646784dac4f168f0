#!/usr/bin/env bash
# libp7.so's dynamic symbol table must be exactly the functions that the public headers
# declare with P7_API, and every function declared in a public header must carry P7_API.
# Usage: check_exports.sh path/to/libp7.so path/to/core/include/p7
set -euo pipefail
lib=$1
headers=$2
declared=$(mktemp) exported=$(mktemp) undecorated=$(mktemp)
trap 'rm -f "$declared" "$exported" "$undecorated"' EXIT

# A declaration starts at column 0 with its return type and names a p7_ function.
decl='^[A-Za-z_][A-Za-z0-9_ ]*[ *]p7_[a-z0-9_]+\('
grep -hE "$decl" "$headers"/*.h | grep -v '^P7_API ' | grep -v '^P7_OPT_EXPORT ' >"$undecorated" || true
grep -ohE "^P7_API ${decl#^}" "$headers"/*.h | grep -oE 'p7_[a-z0-9_]+\($' | tr -d '(' | sort -u >"$declared"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TtWiDdBbRr]$/ {print $3}' | sed 's/@.*//' | sort -u >"$exported"

status=0
if [ -s "$undecorated" ]; then
    echo "public declarations without P7_API (they would not be exported):"
    sed 's/^/  /' "$undecorated"
    status=1
fi
extra=$(comm -23 "$exported" "$declared")
if [ -n "$extra" ]; then
    echo "exported by $(basename "$lib") but not declared P7_API in a public header:"
    echo "$extra" | sed 's/^/  /'
    status=1
fi
missing=$(comm -13 "$exported" "$declared")
if [ -n "$missing" ]; then
    echo "declared P7_API but not exported (declared and never defined?):"
    echo "$missing" | sed 's/^/  /'
    status=1
fi
echo "exports: $(wc -l <"$exported") exported, $(wc -l <"$declared") declared P7_API"
exit $status
