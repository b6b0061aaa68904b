#!/bin/bash
# dracut module "horcrux-pxe-root" (issue 9): the root of a PXE boot.
#
# iPXE places the root image inside the initramfs as a file:
# the erofs filesystem followed by its dm-verity hash tree (at byte
# hash-offset, the same layout as a disk slot), and boots with
#
#   root=/dev/mapper/root rootfstype=erofs ro roothash=<hex>
#   systemd.verity_root_options=hash-offset=<bytes> systemd.verity=0
#   horcrux.root_image=/horcrux-root.img horcrux.slot=pxe horcrux.data=tmpfs
#
# (the path is whatever horcrux.root_image= names; image/build.sh's iPXE
# script uses /horcrux-root.img.)
#
# From the initqueue, this module attaches that file read-only to a loop
# device and opens it as /dev/mapper/root with
#   veritysetup open <loop> root <loop> <roothash> --hash-offset=<bytes>
# so that the root mount (sysroot.mount, root=/dev/mapper/root) finds its
# device. A failure stops the boot (see horcrux-pxe-root.sh).
# Without horcrux.root_image= it does nothing: disk boots are set up
# by systemd-veritysetup-generator (dracut module systemd-veritysetup) from
# systemd.verity_root_data= / systemd.verity_root_hash=.
#
# systemd.verity=0 matters on the PXE command line: with roothash= and no
# systemd.verity_root_data=, systemd-veritysetup-generator (initramfs and
# booted system) derives partition UUIDs from the root hash and waits for
# partitions that do not exist (see parse-horcrux-pxe-root.sh).
#
# Installed into /usr/lib/dracut/modules.d/ by recipes/gentoo/build.sh and
# enabled by dracut.conf.d/horcrux.conf (add_dracutmodules).
# shellcheck disable=SC2154 # moddir and dracutbasedir are set by dracut

# Only when asked for (dracut.conf.d/horcrux.conf); then losetup
# (util-linux) and veritysetup (cryptsetup) must exist in the root.
check() {
    require_binaries losetup veritysetup || return 1
    return 255
}

# dm: dmsetup and the device-mapper udev rules (/dev/mapper/root and its
# systemd device unit). dracut-ng >= 108 ships the initqueue
# (/sbin/initqueue, dracut-initqueue.service) as a module of its own; older
# dracut has it in base and dracut-systemd and no module of that name.
depends() {
    local deps="dm rootfs-block" d
    for d in "${dracutbasedir:-/usr/lib/dracut}"/modules.d/[0-9][0-9]initqueue; do
        [[ -d $d ]] && deps+=" initqueue"
    done
    echo "$deps"
    return 0
}

# In every initramfs (not host-only): the PXE boot happens on machines the
# image was not built on. Built-in ones (CONFIG_...=y) are skipped by dracut.
installkernel() {
    hostonly='' instmods loop dm-verity erofs
}

install() {
    inst_multiple losetup veritysetup modprobe
    inst_hook cmdline 91 "$moddir/parse-horcrux-pxe-root.sh"
    inst_script "$moddir/horcrux-pxe-root.sh" /sbin/horcrux-pxe-root
    dracut_need_initqueue
}
