#!/usr/bin/env bash
# Load+validate benchmark of `horcrux check` on a generated tree.
#
#   scripts/bench.sh                 # 10,000 VMs, 100 networks, 100 groups
#   VMS=20000 RUNS=10 scripts/bench.sh
#   SKIP_CRITERION=1 scripts/bench.sh
#   CLUSTER_NODES=3,10 scripts/bench.sh   # sizes of the cluster bench
#   SKIP_CLUSTER=1 scripts/bench.sh
#
# Builds release, generates the tree into a temporary directory, runs
# `horcrux check DIR` RUNS times under /usr/bin/time and prints wall time
# and peak RSS, then runs the criterion bench (config-schema/benches/load.rs)
# briefly, then the cluster propagation bench (hostd/benches/cluster.rs:
# 3, 10 and 50 hostd processes on 127.0.0.101 and up; a few minutes).
# Numbers are printed, not asserted; the targets for 10k VMs are
# <= 500 ms and <= 200 MB peak RSS. Needs /usr/bin/time (Debian: `time`);
# falls back to python3's getrusage for the peak RSS if it is missing.
set -euo pipefail

cd "$(dirname "$0")/.."

VMS=${VMS:-10000}
NETWORKS=${NETWORKS:-100}
FW_GROUPS=${FW_GROUPS:-100}
RUNS=${RUNS:-5}
TARGET_MS=500
TARGET_MB=200

echo "== build (release)"
cargo build --release --quiet -p horcrux-hostd --bin horcrux
cargo build --release --quiet -p horcrux-config --example gen_tree
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
horcrux="$target_dir/release/horcrux"
gen_tree="$target_dir/release/examples/gen_tree"

tree=$(mktemp -d "${TMPDIR:-/tmp}/horcrux-bench.XXXXXX")
trap 'rm -rf "$tree" "$tree.time"' EXIT

echo "== generate"
"$gen_tree" "$tree" --vms "$VMS" --networks "$NETWORKS" --groups "$FW_GROUPS"
echo "$(find "$tree" -type f | wc -l) files, $(du -sh "$tree" | cut -f1) on disk"

# One run: prints "<wall seconds> <peak RSS KiB>" and fails if the tree is
# not valid (exit code of horcrux check).
measure() {
    if [ -x /usr/bin/time ]; then
        local stats="$tree.time"
        if ! /usr/bin/time -f '%e %M' -o "$stats" "$horcrux" check "$tree" >/dev/null; then
            echo "horcrux check failed" >&2
            return 1
        fi
        tail -n 1 "$stats"
        rm -f "$stats"
    elif command -v python3 >/dev/null; then
        python3 - "$horcrux" "$tree" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
rc = subprocess.run([sys.argv[1], "check", sys.argv[2]], stdout=subprocess.DEVNULL).returncode
wall = time.monotonic() - start
if rc != 0:
    sys.exit(f"horcrux check failed with exit code {rc}")
print(f"{wall:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
    else
        echo "neither /usr/bin/time nor python3 is available (apt-get install time)" >&2
        return 1
    fi
}

echo "== horcrux check $tree ($RUNS runs)"
if [ ! -x /usr/bin/time ]; then
    echo "note: /usr/bin/time is missing; using python3 getrusage" >&2
fi
"$horcrux" check "$tree"
best_ms=""
max_kb=0
for i in $(seq "$RUNS"); do
    result=$(measure)
    read -r secs kb <<<"$result"
    ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
    printf 'run %d: %4d ms wall, %6.1f MB peak RSS\n' "$i" "$ms" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
    if [ -z "$best_ms" ] || [ "$ms" -lt "$best_ms" ]; then best_ms=$ms; fi
    if [ "$kb" -gt "$max_kb" ]; then max_kb=$kb; fi
done
max_mb=$(awk -v k="$max_kb" 'BEGIN { printf "%.1f", k / 1024 }')
verdict() { if [ "$1" -le "$2" ]; then echo "within"; else echo "ABOVE"; fi; }
echo "best wall time: ${best_ms} ms ($(verdict "$best_ms" "$TARGET_MS") the ${TARGET_MS} ms target)"
echo "peak RSS:       ${max_mb} MB ($(verdict "$((max_kb / 1024))" "$TARGET_MB") the ${TARGET_MB} MB target)"

if [ -z "${SKIP_CRITERION:-}" ]; then
    echo "== criterion (config-schema/benches/load.rs)"
    cargo bench -p horcrux-config --bench load -- --warm-up-time 1 --measurement-time 5
fi

if [ -z "${SKIP_CRITERION:-}" ]; then
    echo "== criterion (hostd/benches/firewall.rs: ruleset for 1,000 VMs x 5 rules)"
    cargo bench -p horcrux-hostd --bench firewall -- --warm-up-time 1 --measurement-time 5
fi

if [ "$(id -u)" -eq 0 ] && command -v nft >/dev/null; then
    echo "== criterion (hostd/benches/storage.rs: zfs list parsing and desired volumes, 1,000 VMs)"
    cargo bench -p horcrux-hostd --bench storage -- --warm-up-time 1 --measurement-time 5
    echo "== firewall edit saved -> rules in the kernel (hostd in a netns)"
    EDITS=10 scripts/bench-firewall-edit.sh 100
    EDITS=5 scripts/bench-firewall-edit.sh 1000
fi

if [ -z "${SKIP_CLUSTER:-}" ]; then
    echo "== cluster propagation (hostd/benches/cluster.rs: ${CLUSTER_NODES:-3,10,50} hostd on loopback)"
    HORCRUX_BENCH_NODES=${CLUSTER_NODES:-3,10,50} cargo bench -p horcrux-hostd --bench cluster
fi
