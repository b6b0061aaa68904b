#!/bin/sh
# mmdebstrap customize hook of the Debian recipe: runs once the packages are
# installed, with the new root as $1. Only Debian-specific work happens here;
# everything distribution-neutral (units, sshd and network config, fstab,
# the horcrux binaries) is laid on by image/build.sh for every recipe.
set -eu
root=$1
here=$(dirname "$0")

echo "recipe: checking the ZFS module was built by DKMS"
# shellcheck disable=SC2012 # kernel version directory names
kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)
if ! find "$root/lib/modules/$kver" -name 'zfs.ko*' | grep -q .; then
    echo "recipe: zfs.ko is missing for kernel $kver (the DKMS build failed?)" >&2
    ls "$root"/var/lib/dkms/zfs/*/build/make.log >&2 2>/dev/null || true
    exit 1
fi

echo "recipe: kernel $kver: /boot/vmlinuz and /boot/initrd.img (the contract's names)"
ln -sfn "vmlinuz-$kver" "$root/boot/vmlinuz"
ln -sfn "initrd.img-$kver" "$root/boot/initrd.img"

echo "recipe: initramfs opens the dm-verity root and restores the persisted machine-id"
install -m 0755 "$here/initramfs/horcrux-verity" \
    "$root/etc/initramfs-tools/scripts/local-top/horcrux-verity"
install -m 0755 "$here/initramfs/horcrux-verity.hook" \
    "$root/etc/initramfs-tools/hooks/horcrux-verity"
install -m 0755 "$here/initramfs/horcrux-machine-id" \
    "$root/etc/initramfs-tools/scripts/init-bottom/horcrux-machine-id"
# The cloud kernel builds virtio and ext4 into the kernel or the initramfs
# already; busybox gives a usable rescue shell in the initramfs.
sed -i 's/^BUSYBOX=.*/BUSYBOX=y/' "$root/etc/initramfs-tools/initramfs.conf"
chroot "$root" update-initramfs -u -k "$kver"

echo "recipe: removing per-machine identity baked in by package scripts"
rm -f "$root"/etc/ssh/ssh_host_*
rm -f "$root/etc/hostid" "$root/var/lib/dbus/machine-id"
: >"$root/etc/machine-id"

echo "recipe: trimming caches, docs and the DKMS build tree"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
rm -rf "$root"/var/lib/dkms/*/*/build "$root"/usr/share/man/* "$root"/usr/share/info/*
# Keep the copyright files: the image is redistributed.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
