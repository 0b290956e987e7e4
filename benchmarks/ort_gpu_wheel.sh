#!/usr/bin/env bash
# Carry onnxruntime-gpu to a lent GPU machine (its python has only the CPU build of ONNX Runtime)
# in as few device calls as the run tool's size limit allows, and install it there.
#
# Why not the wheel as it is (../shared/device/ort-gpu-parts.sh): it is 255 MB, and a call
# carries 64 MiB *with the working tree* (about 5.5 MiB here), so its 64,000,000-byte parts are
# refused. Unpacked and packed again as tar.xz the package is about 204 MB: 4 parts of ~51 MB.
#
# Here, in the repository's root (needs the package registry; about 70 s on 2 cores):
#   bash benchmarks/ort_gpu_wheel.sh prepare [VERSION | path/to/onnxruntime_gpu-*.whl]
#     -> .ortgpu/p0 .. .ortgpu/pN-1, one part each plus SHA256SUMS; /.ortgpu/ goes into
#        .git/info/exclude. It prints the calls to make.
# On the device, back to back (the machine is given back ~30 s after a call), each call with
# carry [".ortgpu/pK"]:
#   calls 1..N-1:  mkdir -p /tmp/ortgpu && cp .ortgpu/pK/* /tmp/ortgpu/
#   call N:        mkdir -p /tmp/ortgpu && cp .ortgpu/pN-1/* /tmp/ortgpu/;
#                  bash benchmarks/ort_gpu_wheel.sh install;
#                  PYTHONPATH=. GPU_CHECK_BUDGET_S=... bash benchmarks/gpu_check.sh $OUT
#   (`;`, not `&&`: the check runs without the GPU build if the install fails). If a reply
#   says the machine was not warm, the parts before it are gone: skip to the check.
#   install: every part's sha256 is checked, then the package is unpacked into /tmp/site, which
#   gpu_check.sh puts first on PYTHONPATH; only its own two folders there are replaced (other
#   wheels carried into /tmp/site stay). A missing or damaged part installs nothing (and removes
#   an earlier onnxruntime there), and exits 1 saying which.
#
# Environment (for tests): ORTGPU_DIR (prepare's output, default REPO/.ortgpu), ORTGPU_PARTS
# (number of parts; default: the fewest that fit the limit), ORTGPU_LIMIT (bytes a call carries),
# ORTGPU_INBOX (default /tmp/ortgpu), ORTGPU_SITE (default /tmp/site), PYTHON (default python3).
set -euo pipefail

LIMIT=${ORTGPU_LIMIT:-$((64 * 1024 * 1024))} # what one device call carries, tree included
MARGIN=$((4 * 1024 * 1024)) # room for the tree to grow between prepare and the calls
PY=${PYTHON:-python3}

die() {
    echo "ort_gpu_wheel: $*" >&2
    exit 1
}

prepare() {
    local what=${1:-1.31.1} root out exclude whl name tree size max parts per i
    root=$(git rev-parse --show-toplevel 2>/dev/null) || die "run prepare in the repository"
    out=${ORTGPU_DIR:-$root/.ortgpu}
    # What travels with every call: tracked and untracked-not-ignored files (a deleted tracked
    # file is listed but gone, hence the -f test).
    tree=$(cd "$root" && git ls-files -co --exclude-standard -z |
        "$PY" -c 'import os, sys
print(sum(os.path.getsize(p) for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))')
    max=$((LIMIT - tree - MARGIN))
    [ "$max" -gt 0 ] || die "the working tree ($tree bytes) leaves no room in a $LIMIT-byte call"
    if [ -z "${ORTGPU_DIR:-}" ]; then
        exclude=$(cd "$root" && git rev-parse --path-format=absolute --git-path info/exclude)
        mkdir -p "$(dirname "$exclude")"
        grep -qx '/.ortgpu/' "$exclude" 2>/dev/null || echo '/.ortgpu/' >>"$exclude"
    fi
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/ortgpu.XXXXXX") # global: the EXIT trap removes it
    trap 'rm -rf "$tmp"' EXIT
    if [ -f "$what" ]; then
        whl=$what
    else
        mkdir -p "$tmp/dl"
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_17_x86_64 -d "$tmp/dl" "onnxruntime-gpu==$what" ||
            die "pip could not download onnxruntime-gpu==$what"
        whl=$(ls "$tmp"/dl/*.whl)
    fi
    name=$(basename "$whl")
    case "$name" in onnxruntime_gpu-*.whl) ;; *) die "$name is not an onnxruntime-gpu wheel" ;; esac
    mkdir -p "$tmp/pkg"
    "$PY" -m zipfile -e "$whl" "$tmp/pkg" || die "$name is not a readable wheel"
    # A wheel's .data folder needs pip's install scheme; unpacking is enough only without one.
    ! compgen -G "$tmp/pkg/*.data" >/dev/null || die "$name has a .data folder: install it with pip"
    # xz -6 over all cores; the device unpacks with Python's lzma (no xz binary needed there).
    tar -C "$tmp/pkg" -cf - . | xz -T0 -6 >"$tmp/pkg.tar.xz"
    size=$(stat -c %s "$tmp/pkg.tar.xz")
    parts=${ORTGPU_PARTS:-$(((size + max - 1) / max))}
    per=$(((size + parts - 1) / parts))
    [ "$per" -le "$max" ] || die "$parts parts of $per bytes exceed $max bytes a call"
    rm -rf "$out"
    mkdir -p "$out"
    split -b "$per" -d -a 2 "$tmp/pkg.tar.xz" "$tmp/part-"
    (cd "$tmp" && sha256sum part-* >SHA256SUMS)
    echo "$name" >"$tmp/WHEEL"
    i=0
    for p in "$tmp"/part-*; do
        mkdir -p "$out/p$i"
        mv "$p" "$out/p$i/"
        cp "$tmp/SHA256SUMS" "$tmp/WHEEL" "$out/p$i/"
        i=$((i + 1))
    done
    echo "$name: $size bytes as tar.xz in $i parts of <= $per bytes (+ $tree bytes of tree a call)"
    echo "device calls, each with carry [\".ortgpu/pK\"], K = 0..$((i - 1)):"
    echo "  mkdir -p /tmp/ortgpu && cp .ortgpu/pK/* /tmp/ortgpu/"
    echo "and in the last one, after that: bash benchmarks/ort_gpu_wheel.sh install; <the check>"
}

install() {
    local inbox=${ORTGPU_INBOX:-/tmp/ortgpu} site=${ORTGPU_SITE:-/tmp/site} name new
    local -a listed
    [ -f "$inbox/SHA256SUMS" ] || die "no $inbox/SHA256SUMS: no part arrived"
    name=$(cat "$inbox/WHEEL")
    # Only onnxruntime's own folders: /tmp/site may hold other carried wheels.
    rm -rf "$site/onnxruntime" "$site"/onnxruntime_gpu-*.dist-info
    if ! (cd "$inbox" && sha256sum --quiet -c SHA256SUMS) >&2; then
        die "a part of $name is missing or damaged (the machine was replaced between calls?):" \
            "no GPU build installed"
    fi
    mkdir -p "$site"
    new=$(mktemp -d "$site/.ortgpu.XXXXXX")
    # The parts SHA256SUMS lists, in its order, are the archive (a stray file is not read);
    # Python unpacks the stream (tarfile + lzma: no xz binary needed).
    mapfile -t listed < <(awk '{ print $2 }' "$inbox/SHA256SUMS")
    if ! (cd "$inbox" && cat "${listed[@]}") | "$PY" -c '
import sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz") as t:
    t.extractall(sys.argv[1], filter="data")
' "$new"; then
        rm -rf "$new"
        die "unpacking $name failed: no GPU build installed"
    fi
    mv "$new"/* "$site"/
    rm -rf "$new"
    echo "installed $name into $site ($(du -sh "$site/onnxruntime" | cut -f1))"
}

case "${1:-}" in
prepare) prepare "${2:-}" ;;
install) install ;;
*)
    awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0" >&2
    exit 2
    ;;
esac
