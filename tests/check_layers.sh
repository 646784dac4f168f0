#!/usr/bin/env bash
# libp7's layers, bottom up, and the rule that holds them apart: a file may include
# headers of its own layer and of layers below it, never above, never beside. The
# folders of core/src are the layers; each public header belongs to the layer that
# implements it. docs/architecture.md draws the same table.
# Usage: check_layers.sh path/to/core    (exit 1 and one line per upward include)
set -euo pipefail
core=${1:?usage: check_layers.sh path/to/core}

# layer rank: a layer may use only layers of lower rank. nn and data share a rank,
# so neither may include the other.
declare -A rank=([runtime]=0 [gemm]=1 [tensor]=2 [ops]=3 [nn]=4 [data]=4 [optimizer]=5 [train]=6)
# the public headers, by the layer that implements them (p7.h, the umbrella, is for users)
declare -A public=([export.h]=runtime [status.h]=runtime [device.h]=runtime [memory.h]=runtime
                   [rng.h]=runtime [faithful.h]=runtime [gemm.h]=gemm [tensor.h]=tensor [autograd.h]=ops [ops.h]=ops
                   [nn.h]=nn [data.h]=data [optimizer.h]=optimizer [optimizer_plugin.h]=optimizer [metrics.h]=train [train.h]=train
                   [p7.h]=apps)

violations=0
report() { echo "$1"; violations=$((violations + 1)); }

# layer_of_include SOURCE_LAYER INCLUDED: the layer an #include "..." names, or "" when
# it is no header of libp7's (system and third-party headers).
layer_of_include() {
    local from=$1 inc=$2
    case "$inc" in
    p7/*) echo "${public[${inc#p7/}]:-unknown}" ;;
    */*) echo "${inc%%/*}" ;;
    *) if [ -e "$core/src/$from/$inc" ]; then echo "$from"; else echo "unknown"; fi ;;
    esac
}

check_file() { # check_file FILE LAYER
    local file=$1 layer=$2 inc target
    while IFS= read -r inc; do
        target=$(layer_of_include "$layer" "$inc")
        if [ "$target" = unknown ]; then
            report "$file: #include \"$inc\": not a header of any layer (name it as layer/file.h)"
        elif [ "$target" = apps ]; then
            report "$file: #include \"$inc\": the umbrella header is for users of libp7, not its layers"
        elif [ "$target" != "$layer" ] && [ "${rank[$target]}" -ge "${rank[$layer]}" ]; then
            report "$file: #include \"$inc\": $layer (rank ${rank[$layer]}) must not use $target (rank ${rank[$target]})"
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
}

for dir in "$core"/src/*/; do
    layer=$(basename "$dir")
    if [ -z "${rank[$layer]+set}" ]; then
        report "$dir: a folder that is no layer; add it to the table in $(basename "$0") and docs/architecture.md"
        continue
    fi
    for file in "$dir"*.c "$dir"*.h; do
        [ -e "$file" ] && check_file "$file" "$layer"
    done
done
for file in "$core"/src/*.c "$core"/src/*.h; do
    [ -e "$file" ] && report "$file: outside every layer folder"
done
for file in "$core"/include/p7/*.h; do
    layer=${public[$(basename "$file")]:-}
    if [ -z "$layer" ]; then report "$file: a public header of no layer; add it to the table"; continue; fi
    [ "$layer" = apps ] && continue
    check_file "$file" "$layer"
done

if [ "$violations" -gt 0 ]; then
    echo "layers: $violations include(s) break the layering"
    exit 1
fi
echo "layers: every include points down"
