#!/bin/sh
# dracut cmdline hook (module horcrux-pxe-root; see module-setup.sh).
#
# With horcrux.root_image= on the kernel command line: queue
# /sbin/horcrux-pxe-root (loop device + veritysetup) once in the settled
# initqueue, and keep the initqueue running until /dev/mapper/root exists.
# If the job fails, it stops the boot itself (dracut's emergency handling;
# see horcrux-pxe-root.sh), with the reason in the journal and on the
# console.
#
# dracut sources hooks (no `exit`: it would end the hook runner): all work
# happens in a function that returns.

horcrux_pxe_root_parse() {
    _image=$(getarg horcrux.root_image=)
    [ -n "$_image" ] || return 0

    _root=$(getarg root=)
    if [ "$_root" != /dev/mapper/root ]; then
        warn "horcrux-pxe-root: root=$_root; the PXE root image is opened as /dev/mapper/root (root=/dev/mapper/root)"
    fi
    # roothash= without systemd.verity_root_data=: the veritysetup generator
    # would wait (about 90 s, in the initramfs and again after switch-root)
    # for partitions whose UUIDs it derives from the root hash.
    _verity=$(getarg rd.systemd.verity=)
    [ -n "$_verity" ] || _verity=$(getarg systemd.verity=)
    case "$_verity" in
    0 | no | n | false | off) ;;
    *) warn "horcrux-pxe-root: systemd.verity=0 is missing from the command line: systemd-veritysetup-generator will wait for partitions derived from roothash=" ;;
    esac

    info "horcrux-pxe-root: root image $_image"
    /sbin/initqueue --settled --onetime --unique --name horcrux-pxe-root /sbin/horcrux-pxe-root
    wait_for_dev -n /dev/mapper/root
    return 0
}

horcrux_pxe_root_parse
unset -f horcrux_pxe_root_parse
unset _image _root _verity
