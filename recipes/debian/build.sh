#!/usr/bin/env bash
# Builds the Horcrux appliance root filesystem from Debian bookworm with
# mmdebstrap and writes it as a tarball:
#
#   recipes/debian/build.sh OUT.tar
#
# The result meets the rootfs contract in recipes/README.md. It holds the
# operating system only: image/build.sh lays the horcrux binaries, units and
# appliance configuration on top, so code changes never rebuild this part.
# Needs root (mmdebstrap's root mode and chroot). Takes 3-5 minutes, most of
# it the DKMS build of ZFS.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: recipes/debian/build.sh OUT.tar}
[[ $out == *.tar ]] || { echo "recipes/debian: the output must end in .tar: $out" >&2; exit 1; }
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm

die() { echo "recipes/debian: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap root mode, chroot)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages" | tr -s ' \n' ',' | sed 's/,$//')
[[ -n $packages ]] || die "no packages in $here/packages"

echo "recipes/debian: mmdebstrap $suite (main, contrib) -> $out"
echo "recipes/debian: packages: $packages"
mmdebstrap \
    --mode=root \
    --format=tar \
    --variant=minbase \
    --components=main,contrib \
    --include="$packages" \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="sh '$here/customize.sh' \"\$1\"" \
    "$suite" "$out" \
    "deb $mirror $suite main contrib" \
    "deb $mirror $suite-updates main contrib" \
    "deb $security $suite-security main contrib"
echo "recipes/debian: wrote $out ($(du -h "$out" | cut -f1))"
