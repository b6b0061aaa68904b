#!/usr/bin/env bash
# Installs the host packages that the image build, the QEMU rig and the
# shell linter need, when missing (apt-get; run as root). Used by `make image`,
# `make e2e`, `make demo` and `make lint-shell`; .ci/run installs the same list.
set -euo pipefail
packages=(mmdebstrap fdisk e2fsprogs dosfstools mtools erofs-utils cryptsetup-bin minisign qemu-system-x86 qemu-utils ovmf
    openssh-client rsync git tar iproute2 nftables qemu-guest-agent shellcheck)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "host-deps: missing packages: ${missing[*]}; run as root (apt-get install)" >&2
    exit 1
fi
echo "host-deps: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
