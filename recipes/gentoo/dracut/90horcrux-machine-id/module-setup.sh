#!/bin/bash
# dracut module "horcrux-machine-id" (Horcrux rootfs contract: "the
# initramfs restores the persisted machine-id"). The Gentoo counterpart of
# recipes/debian/initramfs/horcrux-machine-id: a pre-pivot hook, i.e. after
# the root is mounted at $NEWROOT and before systemd of the real root starts.
# Installed into /usr/lib/dracut/modules.d/ by recipes/gentoo/build.sh and
# enabled by dracut.conf.d/horcrux.conf (add_dracutmodules).
# shellcheck disable=SC2154 # moddir is set by dracut

# Only when asked for (dracut.conf.d/horcrux.conf).
check() {
    return 255
}

depends() {
    return 0
}

install() {
    inst_multiple mount umount cat mkdir
    inst_hook pre-pivot 90 "$moddir/horcrux-machine-id.sh"
}
