#!/usr/bin/env bash
# Builds the bootable Horcrux disk image (raw, GPT) from a rootfs recipe and
# the horcrux binaries, with two cached layers:
#
#   1. the base rootfs (recipes/<recipe>/build.sh -> rootfs-<recipe>-<hash>.tar),
#      keyed by the recipe's files: rebuilt only when the recipe changes;
#   2. the disk image (horcrux-<hash>.raw), keyed by the base, the binaries,
#      units/, image/ and the baked SSH keys: a code change costs one
#      assembly (20-30 s), not a rootfs build.
#
#   image/build.sh                 # build (or reuse) and print the image path last
#   HORCRUX_AUTHORIZED_KEYS=~/.ssh/id_ed25519.pub image/build.sh
#
# Environment:
#   HORCRUX_IMAGE_CACHE      cache directory (default: target/image-cache)
#   HORCRUX_RECIPE           recipe under recipes/ (default: debian)
#   HORCRUX_BIN_DIR          where hostd and horcrux are (default: target/release)
#   HORCRUX_AUTHORIZED_KEYS  public keys for root, baked into the image
#   HORCRUX_IMAGE_KEEP       images and rootfs tarballs kept per kind (default: 2)
#
# The layout (see recipes/README.md): ESP with systemd-boot, root slot A
# (read-only ext4), root slot B (reserved, empty), data partition (grown and
# formatted on first boot). Needs root, sfdisk, mkfs.ext4, mkfs.vfat, mtools.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HORCRUX_IMAGE_CACHE:-$repo/target/image-cache}
recipe=${HORCRUX_RECIPE:-debian}
bin_dir=${HORCRUX_BIN_DIR:-$repo/target/release}
keys=${HORCRUX_AUTHORIZED_KEYS:-}
keep=${HORCRUX_IMAGE_KEEP:-2}

ESP_MIB=256
DATA_MIB=256 # grown to the end of the disk on first boot
# GPT partition types (Discoverable Partitions Specification).
TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
TYPE_ROOT=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
TYPE_LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4

log() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }
step_start=$SECONDS
step() { log "$* (t+$((SECONDS - step_start))s)"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap, chroot, file ownership in the rootfs)"
for tool in sfdisk mkfs.ext4 tune2fs mkfs.vfat mcopy mmd tar sha256sum; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing: apt-get install fdisk e2fsprogs dosfstools mtools tar coreutils"
done
recipe_dir=$repo/recipes/$recipe
[[ -x $recipe_dir/build.sh ]] || die "no recipe $recipe_dir/build.sh"
for b in hostd horcrux; do
    [[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing: run 'cargo build --release' (or make build) first"
done
[[ -z $keys || -r $keys ]] || die "HORCRUX_AUTHORIZED_KEYS=$keys is not readable"
mkdir -p "$cache"
# One build at a time per cache (make demo and make e2e may overlap).
exec 8>"$cache/.lock"
if ! flock -n 8; then
    log "waiting for another image build using $cache"
    flock 8
fi

# Hash of files: names relative to the repo and contents.
hash_files() {
    local f
    for f in "$@"; do
        printf '%s\0' "${f#"$repo"/}"
        sha256sum <"$f"
    done | sha256sum | cut -c1-16
}
files_under() { find "$@" -type f -o -type l | LC_ALL=C sort; }

# Keeps the newest $keep files matching a glob, removes the rest.
prune() {
    local old
    # shellcheck disable=SC2012,SC2086 # $1 is a glob of our own names
    mapfile -t old < <(ls -1t "$cache"/$1 2>/dev/null | tail -n +$((keep + 1)))
    ((${#old[@]} == 0)) || rm -f "${old[@]}"
}

# --- layer 1: the base rootfs -------------------------------------------------
mapfile -t recipe_files < <(files_under "$recipe_dir")
base_hash=$(hash_files "${recipe_files[@]}")
base=$cache/rootfs-$recipe-$base_hash.tar
if [[ -f $base ]]; then
    step "base rootfs: cached $base"
else
    step "base rootfs: building with $recipe_dir/build.sh (5-20 minutes, most of it the DKMS build of ZFS)"
    partial=${base%.tar}.partial.tar
    rm -rf "$partial"
    "$recipe_dir/build.sh" "$partial"
    [[ -f $partial ]] || die "$recipe_dir/build.sh did not write the tarball $partial"
    mv "$partial" "$base"
    prune "rootfs-$recipe-*.tar"
    step "base rootfs: done"
fi

# --- layer 2: the disk image --------------------------------------------------
mapfile -t layer_files < <(files_under "$repo/units" "$repo/image" "$bin_dir/hostd" "$bin_dir/horcrux" ${keys:+"$keys"})
image_hash=$( (echo "$base_hash"; hash_files "${layer_files[@]}") | sha256sum | cut -c1-16)
image=$cache/horcrux-$image_hash.raw
if [[ -f $image ]]; then
    step "disk image: cached $image"
    ln -sfn "${image##*/}" "$cache/horcrux.raw"
    echo "$image"
    exit 0
fi

# Leftovers of earlier runs (removal runs in the background, see below).
rm -rf "$cache"/work.*.done 2>/dev/null || true
work=$(mktemp -d "$cache/work.XXXXXX")
# Removing the unpacked rootfs takes longer than unpacking it: do it in the
# background so the caller can boot the image meanwhile.
trap 'mv "$work" "$work.done" && { rm -rf "$work.done" </dev/null >/dev/null 2>&1 8>&- & }' EXIT
root=$work/root
mkdir "$root"

step "assembling: unpacking the base rootfs"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base"

step "assembling: horcrux binaries, units, receivers, appliance config"
install -m 0755 "$bin_dir/hostd" "$bin_dir/horcrux" "$root/usr/bin/"
install -d "$root/usr/lib/horcrux/git-hooks" "$root/usr/local/bin"
install -m 0644 "$repo"/units/*.service "$root/usr/lib/systemd/system/"
for f in "$repo"/units/libexec/*; do
    install -m 0755 "$f" "$root/usr/lib/horcrux/${f##*/}"
done
install -m 0755 "$repo"/units/git-hooks/* "$root/usr/lib/horcrux/git-hooks/"
ln -sfn /usr/lib/horcrux/rsync-receiver "$root/usr/local/bin/rsync"
cp -a "$repo/image/overlay/." "$root/"
install -d -m 0755 "$root/etc/ssh/authorized_keys.d"
if [[ -n $keys ]]; then
    install -m 0644 "$keys" "$root/etc/ssh/authorized_keys.d/root"
    log "baked $(grep -c . "$keys") authorized key(s) for root"
fi
install -d -m 0755 "$root/etc/horcrux"
ln -sfn /var/lib/horcrux/node/hostid "$root/etc/hostid"
ln -sfn /var/lib/horcrux/config.git "$root/root/config.git"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

enable=(horcrux-hostd.service horcrux-firstboot.service horcrux-management.service systemd-networkd.service systemd-resolved.service)
# Not on an appliance: interactive first-boot prompts, waiting for the
# network, package-manager timers (the root is read-only). ZFS: loading the
# module and importing pools is hostd's job (the pools node.toml declares);
# the distribution's units would pull in systemd-udev-settle (10-20 s of
# boot under emulation) and want a zpool.cache in the read-only /etc.
mask=(systemd-firstboot.service systemd-networkd-wait-online.service apt-daily.timer
    apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service man-db.timer
    dpkg-db-backup.timer zfs-load-module.service zfs-import-cache.service
    zfs-import-scan.service)
chroot "$root" systemctl enable --quiet "${enable[@]}"
for unit in "${mask[@]}"; do
    ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done

cat >"$root/usr/lib/horcrux/image-release" <<EOF
IMAGE_ID=horcrux-$image_hash
RECIPE=$recipe
BASE_ROOTFS=$base_hash
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SOURCE=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
EOF

# /var moves to the data partition: the image keeps its contents as the
# factory copy that horcrux-var.service lays down on first boot.
mv "$root/var" "$root/usr/lib/horcrux/factory-var.tmp"
install -d "$root/usr/lib/horcrux/factory"
mv "$root/usr/lib/horcrux/factory-var.tmp" "$root/usr/lib/horcrux/factory/var"
echo "horcrux-$image_hash" >"$root/usr/lib/horcrux/factory/var.id"
install -d -m 0755 "$root/var"
rm -rf "${root:?}/tmp" && install -d -m 1777 "$root/tmp"

kernel=$(readlink -f "$root/boot/vmlinuz")
initrd=$(readlink -f "$root/boot/initrd.img")
boot_efi=$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[[ -f $kernel && -f $initrd ]] || die "the rootfs has no /boot/vmlinuz or /boot/initrd.img (rootfs contract)"
[[ -f $boot_efi ]] || die "the rootfs has no $boot_efi (rootfs contract: systemd-boot)"

# Partition UUIDs derived from the image hash: rebuilding the same inputs
# gives the same layout.
uuid() {
    local h
    h=$(echo "$image_hash-$1" | sha256sum)
    echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"
}
uuid_a=$(uuid root-a)
uuid_b=$(uuid root-b)

step "assembling: root filesystem (ext4, read-only)"
used_mib=$(($(du -sb --apparent-size "$root" | cut -f1) / 1048576))
root_mib=$(((used_mib * 115 / 100 + 128 + 63) / 64 * 64))
mkfs.ext4 -q -L horcrux-root -O ^has_journal -m 0 -N $((used_mib * 64 + 65536)) \
    -E root_owner=0:0 -d "$root" "$work/root.img" "${root_mib}M" >&2
tune2fs -O read-only "$work/root.img" >/dev/null

step "assembling: ESP (systemd-boot, slot A entry)"
mkfs.vfat -C -F 32 -n HORCRUX-ESP "$work/esp.img" $((ESP_MIB * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/horcrux ::/horcrux/a
mcopy -i "$work/esp.img" "$boot_efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$boot_efi" ::/EFI/systemd/systemd-bootx64.efi
mcopy -i "$work/esp.img" "$kernel" ::/horcrux/a/vmlinuz
mcopy -i "$work/esp.img" "$initrd" ::/horcrux/a/initrd.img
cmdline="root=PARTUUID=$uuid_a ro rootwait console=tty0 console=ttyS0,115200 net.ifnames=0 panic=10"
printf 'default horcrux-a.conf\ntimeout 0\neditor yes\n' >"$work/loader.conf"
printf 'title Horcrux (slot A)\nversion %s\nlinux /horcrux/a/vmlinuz\ninitrd /horcrux/a/initrd.img\noptions %s\n' \
    "$image_hash" "$cmdline" >"$work/horcrux-a.conf"
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$work/esp.img" "$work/horcrux-a.conf" ::/loader/entries/horcrux-a.conf

step "assembling: GPT disk (ESP ${ESP_MIB} MiB, root A/B ${root_mib} MiB each, data ${DATA_MIB} MiB)"
disk=$work/disk.raw
esp_start=1
a_start=$((esp_start + ESP_MIB))
b_start=$((a_start + root_mib))
data_start=$((b_start + root_mib))
total_mib=$((data_start + DATA_MIB + 1))
truncate -s "${total_mib}M" "$disk"
sfdisk --quiet "$disk" <<EOF
label: gpt
unit: sectors
start=$((esp_start * 2048)), size=$((ESP_MIB * 2048)), type=$TYPE_ESP, name="esp"
start=$((a_start * 2048)), size=$((root_mib * 2048)), type=$TYPE_ROOT, name="horcrux-root-a", uuid=$uuid_a
start=$((b_start * 2048)), size=$((root_mib * 2048)), type=$TYPE_ROOT, name="horcrux-root-b", uuid=$uuid_b
start=$((data_start * 2048)), size=$((DATA_MIB * 2048)), type=$TYPE_LINUX, name="horcrux-data"
EOF
dd if="$work/esp.img" of="$disk" bs=1M seek="$esp_start" conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek="$a_start" conv=notrunc,sparse status=none

mv "$disk" "$image"
ln -sfn "${image##*/}" "$cache/horcrux.raw"
prune "horcrux-*.raw"
step "disk image: $image ($((total_mib)) MiB, $(du -h "$image" | cut -f1) allocated)"
echo "$image"
