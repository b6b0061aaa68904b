#!/usr/bin/env bash
# make e2e: the appliance end to end. Installs missing host packages, builds
# the release binaries, then runs tests/e2e (which builds or reuses the
# cached image and boots a node under QEMU TCG). Arguments filter cases by
# name: scripts/e2e.sh git rsync
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "make e2e: needs root (mmdebstrap, chroot)" >&2; exit 1; }
started=$SECONDS
scripts/host-deps.sh
echo "== cargo build --release -p horcrux-hostd"
cargo build --release -q -p horcrux-hostd
echo "== e2e suite (image build/reuse, boot under QEMU, cases)"
HORCRUX_E2E=1 cargo test -q -p horcrux-e2e --test appliance -- "$@"
echo "== make e2e took $((SECONDS - started)) s; measurements in target/e2e/metrics.json"
