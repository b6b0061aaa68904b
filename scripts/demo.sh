#!/usr/bin/env bash
# make demo: boots one Horcrux appliance node from the image under QEMU
# with examples/single-node pushed in, prints the status URL and how to
# push with git and rsync, and keeps it running until Ctrl-C.
#
#   scripts/demo.sh [EXAMPLE]     # default: single-node
#   scripts/demo.sh --local       # no image: run hostd on this machine on
#                                 # a copy of the example in .demo/etc
#
# Needs root (mmdebstrap and chroot for the image); installs missing host
# packages with apt-get. The first run builds the image (about 5 minutes);
# later runs reuse it from target/image-cache.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "demo: needs a Rust toolchain (cargo)" >&2; exit 1; }

if [[ ${1:-} == --local ]]; then
    shift
    example=${1:-single-node}
    listen=${HORCRUX_DEMO_LISTEN:-127.0.0.1:8006}
    work=${HORCRUX_DEMO_DIR:-.demo}
    cargo build --release -q -p horcrux-hostd
    mkdir -p "$work"
    [[ -d $work/etc ]] || cp -r "examples/$example" "$work/etc"
    echo "== config tree: $work/etc (edit it; hostd picks changes up)"
    ./target/release/horcrux check "$work/etc" || true
    echo "== status: http://$listen/   (JSON: /status.json, metrics: /metrics)"
    echo "== Ctrl-C stops hostd"
    exec ./target/release/hostd --no-host-network --config-dir "$work/etc" --state-dir "$work/state" --run-dir "$work/run" --listen "$listen"
fi

example=${1:-single-node}
[[ -d examples/$example ]] || { echo "demo: no example tree examples/$example" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root to build the image (or: scripts/demo.sh --local)" >&2; exit 1; }
scripts/host-deps.sh
echo "== building hostd and horcrux (release)"
cargo build --release -q -p horcrux-hostd -p horcrux-e2e --bin hostd --bin horcrux --bin horcrux-demo
key=$(scripts/rig-key.sh)
echo "== appliance image (cached under target/image-cache)"
image=$(HORCRUX_AUTHORIZED_KEYS=$key.pub image/build.sh | tail -n 1)
exec ./target/release/horcrux-demo "$image" "examples/$example"
