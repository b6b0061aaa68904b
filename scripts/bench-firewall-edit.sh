#!/usr/bin/env bash
# Firewall edit saved -> rules in the kernel, with the real hostd (release)
# in a network namespace of its own: N VMs with one NIC each (default 1000),
# then EDITS edits of node.toml's [firewall] ssh_from, each timed from the
# file's rename to the new source showing in `nft list chain inet horcrux
# input`. Prints each time and the median. Needs root, nft and ip.
#
# The VMs' NICs carry no security group: this host's kernel may lack
# bridge conntrack (the e2e measures the grouped case on the appliance).
set -euo pipefail
cd "$(dirname "$0")/.."
vms=${1:-1000}
edits=${EDITS:-10}
cargo build --release -q -p horcrux-hostd
work=$(mktemp -d)
ns=hxbench$$
cleanup() {
    if [[ -n ${pid:-} ]]; then kill "$pid" 2>/dev/null || true; fi
    ip netns delete "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
etc=$work/etc
mkdir -p "$etc/cluster/vms" "$etc/cluster/networks"
printf 'name = "bench"\n[qemu]\naccel = "tcg"\n[firewall]\nssh_from = ["10.0.0.0/8"]\n' >"$etc/node.toml"
printf 'kind = "bridge"\n' >"$etc/cluster/networks/lan.toml"
for i in $(seq 1 "$vms"); do
    printf 'state = "stopped"\nmemory = "64MiB"\n[[nic]]\nnetwork = "lan"\n' >"$etc/cluster/vms/vm-$i.toml"
done
ip netns exec "$ns" ./target/release/hostd --config-dir "$etc" --state-dir "$work/state" \
    --run-dir "$work/run" --listen 127.0.0.1:18006 2>"$work/hostd.log" &
pid=$!
until ip netns exec "$ns" nft list chain inet horcrux input 2>/dev/null | grep -q 10.0.0.0/8; do
    sleep 0.2
    kill -0 "$pid" || { cat "$work/hostd.log"; exit 1; }
done
echo "hostd converged $vms VMs' firewall; timing $edits edits"
times=()
for n in $(seq 1 "$edits"); do
    net="10.$n.0.0/16"
    tmp=$etc/.node.toml.new
    printf 'name = "bench"\n[qemu]\naccel = "tcg"\n[firewall]\nssh_from = ["%s"]\n' "$net" >"$tmp"
    start=$(date +%s%N)
    mv "$tmp" "$etc/node.toml"
    until ip netns exec "$ns" nft list chain inet horcrux input | grep -q "$net"; do sleep 0.005; done
    end=$(date +%s%N)
    ms=$(((end - start) / 1000000))
    times+=("$ms")
    echo "edit $n: $ms ms"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "median: $(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms, max: $(echo "$sorted" | tail -1) ms"
