#!/bin/sh
# dracut pre-pivot hook (module horcrux-machine-id; see module-setup.sh).
#
# The root filesystem is read-only, so /etc/machine-id cannot be written.
# On first boot systemd runs with a transient id and horcrux-firstboot
# saves it to the data partition; on every later boot this hook reads it
# back (mounting the data partition read-only, without journal replay) and
# bind-mounts it over $NEWROOT/etc/machine-id before the real root's
# systemd starts, so the journal, D-Bus and DHCP keep one identity across
# reboots. Any failure leaves things as they are: systemd then uses a
# transient id.
#
# dracut sources hooks (no `exit`: it would end the hook runner): all work
# happens in a function that returns.
# shellcheck disable=SC2154 # NEWROOT is set by dracut

horcrux_machine_id() {
    dev=/dev/disk/by-partlabel/horcrux-data
    [ -b "$dev" ] || return 0
    mnt=/run/horcrux-initramfs/data
    mkdir -p "$mnt"
    mount -t ext4 -o ro,noload "$dev" "$mnt" 2>/dev/null || return 0
    id=$(cat "$mnt/lib/horcrux/node/machine-id" 2>/dev/null)
    umount "$mnt"
    case "$id" in
    *[!0-9a-f]*) return 0 ;;
    esac
    [ ${#id} -eq 32 ] || return 0
    echo "$id" >/run/horcrux-initramfs/machine-id
    mount -o bind /run/horcrux-initramfs/machine-id "${NEWROOT}/etc/machine-id" || true
    return 0
}

horcrux_machine_id
unset -f horcrux_machine_id
unset dev mnt id
