#!/usr/bin/env bash
# make image: host packages, release binaries, then image/build.sh (cached by
# input hash). Root's authorized keys: HORCRUX_AUTHORIZED_KEYS, else the
# rig key (scripts/rig-key.sh), so `make image`, `make e2e` and `make demo`
# share one cached image.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "make image: needs root (mmdebstrap, chroot)" >&2; exit 1; }
scripts/host-deps.sh
echo "== cargo build --release -p horcrux-hostd"
cargo build --release -q -p horcrux-hostd
if [[ -z ${HORCRUX_AUTHORIZED_KEYS:-} ]]; then
    HORCRUX_AUTHORIZED_KEYS=$(scripts/rig-key.sh).pub
    export HORCRUX_AUTHORIZED_KEYS
fi
echo "== image/build.sh (root's keys: $HORCRUX_AUTHORIZED_KEYS)"
disk=$(image/build.sh | tail -n 1)
# build/image/ links into the cache: the disk image is sparse, and a copy
# would allocate every block (cp --sparse=always when you need a copy).
out=$(dirname "$disk")
mkdir -p build/image
for f in disk.raw update.bundle manifest.toml pxe; do
    ln -sfn "$out/$f" "build/image/$f"
done
echo "== build/image/ ($out):"
ls -l build/image/ "$out/pxe/"
