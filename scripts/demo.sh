#!/usr/bin/env bash
# Runs hostd on a copy of an example tree and prints its status URL.
# Until the appliance image lands, this is the product's main job on a
# plain machine: watch the tree, validate, keep generations, serve status.
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-single-node}
listen=${HORCRUX_DEMO_LISTEN:-127.0.0.1:8006}
work=${HORCRUX_DEMO_DIR:-.demo}

command -v cargo >/dev/null || { echo "demo: needs a Rust toolchain (cargo)" >&2; exit 1; }
cargo build --release -q -p horcrux-hostd

mkdir -p "$work"
if [ ! -d "$work/etc" ]; then
  cp -r "examples/$example" "$work/etc"
fi
echo "== config tree: $work/etc (edit it; hostd picks changes up)"
./target/release/horcrux check "$work/etc" || true
echo "== status: http://$listen/   (JSON: /status.json, metrics: /metrics)"
echo "== try: \$EDITOR $work/etc/cluster/vms/www.toml; ./target/release/horcrux generations --state-dir $work/state"
echo "== Ctrl-C stops hostd"
exec ./target/release/hostd --config-dir "$work/etc" --state-dir "$work/state" --run-dir "$work/run" --listen "$listen"
