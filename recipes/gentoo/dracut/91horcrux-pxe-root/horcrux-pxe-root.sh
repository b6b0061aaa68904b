#!/bin/sh
# /sbin/horcrux-pxe-root in the initramfs (module horcrux-pxe-root; see
# module-setup.sh): an initqueue job, queued once by
# parse-horcrux-pxe-root.sh when horcrux.root_image= is on the command line.
#
# Attaches the root image (erofs data + dm-verity hash tree at
# hash-offset) read-only to a loop device and opens it as /dev/mapper/root:
#   veritysetup open <loop> root <loop> <roothash> --hash-offset=<bytes>
# Parameters, all from the kernel command line:
#   horcrux.root_image=<path in the initramfs>
#   roothash=<hex>
#   systemd.verity_root_options=hash-offset=<bytes>[,<flag>...] where a flag
#     is one of ignore-corruption, restart-on-corruption,
#     panic-on-corruption, ignore-zero-blocks, check-at-most-once (passed
#     on as --<flag>); other options are ignored with a warning.
# When anything is missing or veritysetup refuses the image, it leaves no
# loop device behind and stops the boot through dracut's emergency handling:
# with the defaults of dracut.conf.d/horcrux.conf (rd.shell=0
# rd.emergency=reboot) the node reboots at once, like a kernel panic with
# panic=N; with rd.shell on the command line it opens a shell instead.
# Booting an unverified root is exactly what roothash= forbids.

# shellcheck source=/dev/null # dracut's library, in the initramfs only
command -v getarg >/dev/null || . /lib/dracut-lib.sh

fail() {
    warn "horcrux-pxe-root: $*"
    emergency_shell -n horcrux-pxe-root "horcrux-pxe-root: /dev/mapper/root is not set up; the root cannot be mounted"
    exit 1
}

image=$(getarg horcrux.root_image=)
[ -n "$image" ] || exit 0
[ -e /dev/mapper/root ] && exit 0

roothash=$(getarg roothash=)
case "$roothash" in
'' | *[!0-9a-fA-F]*) fail "roothash= is missing or not hexadecimal: '$roothash'" ;;
esac

offset=
flags=
set -f
saved_ifs=$IFS
IFS=,
for opt in $(getarg systemd.verity_root_options=); do
    case "$opt" in
    hash-offset=*) offset=${opt#hash-offset=} ;;
    ignore-corruption | restart-on-corruption | panic-on-corruption | ignore-zero-blocks | check-at-most-once)
        flags="$flags --$opt" ;;
    *) warn "horcrux-pxe-root: systemd.verity_root_options: '$opt' is not supported for the PXE root image; ignored" ;;
    esac
done
IFS=$saved_ifs
set +f
case "$offset" in
'' | *[!0-9]*) fail "systemd.verity_root_options= has no hash-offset=<bytes>: '$offset'" ;;
esac

[ -f "$image" ] || fail "$image is not in the initramfs (did iPXE load the root image?)"

# Built in or loaded already: modprobe succeeds or fails quietly; what is
# missing shows up as an error of losetup, veritysetup or the mount.
for kmod in loop dm_mod dm_verity erofs; do
    modprobe -q "$kmod" || :
done

loop=$(losetup --find --show --read-only "$image") || fail "losetup --read-only $image failed"
# shellcheck disable=SC2086 # $flags: veritysetup options, one word each
if ! veritysetup open "$loop" root "$loop" "$roothash" --hash-offset="$offset" $flags; then
    losetup --detach "$loop" || :
    fail "veritysetup refused $image (wrong roothash= or hash-offset=, or a corrupt image)"
fi
info "horcrux-pxe-root: $image on $loop is /dev/mapper/root (dm-verity, hash tree at byte $offset)"
exit 0
