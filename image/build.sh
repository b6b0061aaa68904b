#!/usr/bin/env bash
# Builds the Horcrux appliance from a rootfs recipe and the horcrux binaries,
# with two cached layers:
#
#   1. the base rootfs (recipes/<recipe>/build.sh -> rootfs-<recipe>-<hash>.tar),
#      keyed by the recipe's files: rebuilt only when the recipe changes;
#   2. the appliance (horcrux-<hash>/), keyed by the base, the binaries,
#      units/, image/ and the baked SSH and update keys: a code change costs
#      one assembly (1-2 minutes), not a rootfs build.
#
#   image/build.sh                 # build (or reuse); prints the disk image path last
#   HORCRUX_AUTHORIZED_KEYS=~/.ssh/id_ed25519.pub image/build.sh
#
# One build writes (docs/operator-guide.md, "Image, PXE and updates"):
#   horcrux-<hash>/disk.raw        GPT disk image to flash: ESP (systemd-boot),
#                                  root slots A and B, data partition
#   horcrux-<hash>/update.bundle   the signed update bundle (tar: manifest.toml,
#                                  manifest.toml.minisig, vmlinuz, initrd.img, root.img)
#   horcrux-<hash>/manifest.toml   the bundle's manifest
#   horcrux-<hash>/pxe/            vmlinuz, initrd.img, root.img, boot.ipxe
# A root slot holds an erofs filesystem followed by its dm-verity hash tree;
# the boot entry carries the root hash.
#
# Environment:
#   HORCRUX_IMAGE_CACHE      cache directory (default: target/image-cache)
#   HORCRUX_RECIPE           recipe under recipes/ (default: debian)
#   HORCRUX_BIN_DIR          where hostd and horcrux are (default: target/release)
#   HORCRUX_AUTHORIZED_KEYS  public keys for root, baked into the image
#   HORCRUX_UPDATE_KEY       minisign secret key that signs the update bundle
#                            (default: a development key made once in the cache,
#                            update-key/horcrux-dev.key; a warning says so)
#   HORCRUX_UPDATE_PUBKEYS   minisign public keys the image trusts for updates,
#                            space-separated (default: the signing key's .pub)
#   HORCRUX_SLOT_MIB         size of each root slot (default: 2048)
#   HORCRUX_IMAGE_LABEL      a label in the version and the cache name (test updates)
#   HORCRUX_BUNDLE_ONLY      1: write the update bundle only (no disk, no PXE)
#   HORCRUX_IMAGE_KEEP       builds and rootfs tarballs kept per kind (default: 2)
#
# Needs root, sfdisk, mkfs.erofs, veritysetup, mkfs.vfat, mtools, minisign.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HORCRUX_IMAGE_CACHE:-$repo/target/image-cache}
recipe=${HORCRUX_RECIPE:-debian}
bin_dir=${HORCRUX_BIN_DIR:-$repo/target/release}
keys=${HORCRUX_AUTHORIZED_KEYS:-}
keep=${HORCRUX_IMAGE_KEEP:-2}
slot_mib=${HORCRUX_SLOT_MIB:-2048}
label=${HORCRUX_IMAGE_LABEL:-}
bundle_only=${HORCRUX_BUNDLE_ONLY:-0}

ESP_MIB=256
DATA_MIB=256 # grown to the end of the disk on first boot
# GPT partition types (Discoverable Partitions Specification).
TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
TYPE_ROOT=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
TYPE_LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4
CONSOLE_CMDLINE="console=tty0 console=ttyS0,115200 net.ifnames=0 panic=10"
# systemd.verity=no: the initramfs opened the root; systemd's own verity
# generator would set it up again in the booted system. A systemd
# initramfs (dracut) opens a slot with that generator
# (rd.systemd.verity=yes); for PXE it must stay off there too, or it waits
# 90 s for partitions derived from the root hash that do not exist.
SLOT_CMDLINE="$CONSOLE_CMDLINE systemd.verity=no rd.systemd.verity=yes"
PXE_CMDLINE="$CONSOLE_CMDLINE systemd.verity=no"

log() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }
step_start=$SECONDS
step() { log "$* (t+$((SECONDS - step_start))s)"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap, chroot, file ownership in the rootfs)"
for tool in sfdisk mkfs.erofs veritysetup mkfs.vfat mcopy mmd tar sha256sum minisign; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing: apt-get install fdisk erofs-utils cryptsetup-bin dosfstools mtools tar coreutils minisign"
done
[[ $label =~ ^[a-z0-9-]{0,32}$ ]] || die "HORCRUX_IMAGE_LABEL=$label: up to 32 of [a-z0-9-]"
[[ $slot_mib =~ ^[0-9]+$ ]] || die "HORCRUX_SLOT_MIB=$slot_mib is not a number"
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

# Keeps the newest $keep entries matching a glob, removes the rest.
prune() {
    local old
    # shellcheck disable=SC2012,SC2086 # $1 is a glob of our own names
    mapfile -t old < <(ls -1td "$cache"/$1 2>/dev/null | tail -n +$((keep + 1)))
    ((${#old[@]} == 0)) || rm -rf "${old[@]}"
}

# The key that signs update bundles: the operator's, or a development key
# kept with the cache (so that rebuilt images keep trusting it).
sign_key=${HORCRUX_UPDATE_KEY:-}
if [[ -z $sign_key ]]; then
    sign_key=$cache/update-key/horcrux-dev.key
    if [[ ! -f $sign_key ]]; then
        install -d -m 0700 "$cache/update-key"
        minisign -G -W -p "${sign_key%.key}.pub" -s "$sign_key" >/dev/null
    fi
    log "WARNING: update bundles are signed with the development key $sign_key (set HORCRUX_UPDATE_KEY)"
fi
[[ -r $sign_key ]] || die "HORCRUX_UPDATE_KEY=$sign_key is not readable"
read -r -a trusted_keys <<<"${HORCRUX_UPDATE_PUBKEYS:-${sign_key%.key}.pub}"
for k in "${trusted_keys[@]}"; do
    [[ -r $k && $k == *.pub ]] || die "update public key $k is not a readable .pub file (HORCRUX_UPDATE_PUBKEYS)"
done

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

# --- layer 2: the appliance ---------------------------------------------------
mapfile -t layer_files < <(files_under "$repo/units" "$repo/image" "$bin_dir/hostd" "$bin_dir/horcrux" \
    ${keys:+"$keys"} "${trusted_keys[@]}")
image_hash=$( (echo "$base_hash $slot_mib $label $bundle_only"; hash_files "${layer_files[@]}") |
    sha256sum | cut -c1-16)
kind=horcrux
[[ -z $label ]] || kind=update-$label
out=$cache/$kind-$image_hash
result=$out/disk.raw
[[ $bundle_only != 1 ]] || result=$out/update.bundle
if [[ -f $result ]]; then
    step "appliance: cached $out"
    [[ $bundle_only == 1 ]] || ln -sfn "${out##*/}/disk.raw" "$cache/horcrux.raw"
    echo "$result"
    exit 0
fi

free_mib=$(df -Pm "$cache" | awk 'NR == 2 {print $4}')
((free_mib >= 4096)) ||
    die "only $free_mib MiB free under $cache; a build needs about 4 GiB (unpacked rootfs, root image, bundle)"

# Leftovers of earlier runs (removal runs in the background, see below).
rm -rf "$cache"/work.*.done 2>/dev/null || true
work=$(mktemp -d "$cache/work.XXXXXX")
# Removing the unpacked rootfs takes longer than unpacking it: do it in the
# background so the caller can boot the image meanwhile.
trap 'mv "$work" "$work.done" && { rm -rf "$work.done" </dev/null >/dev/null 2>&1 8>&- & }' EXIT
root=$work/root
out_tmp=$work/out
mkdir "$root" "$out_tmp"
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
version=$(date -u -d "$built" +%Y.%m.%d-%H%M%S)${label:+-$label}
image_id=horcrux-$image_hash

step "assembling: unpacking the base rootfs"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base"

step "assembling: horcrux binaries, units, receivers, appliance config"
install -m 0755 "$bin_dir/hostd" "$bin_dir/horcrux" "$root/usr/bin/"
install -d "$root/usr/lib/horcrux/git-hooks" "$root/usr/local/bin" "$root/usr/lib/systemd/system-generators"
install -m 0644 "$repo"/units/*.service "$root/usr/lib/systemd/system/"
for f in "$repo"/units/libexec/*; do
    install -m 0755 "$f" "$root/usr/lib/horcrux/${f##*/}"
done
install -m 0755 "$repo"/units/generators/* "$root/usr/lib/systemd/system-generators/"
install -m 0755 "$repo"/units/git-hooks/* "$root/usr/lib/horcrux/git-hooks/"
ln -sfn /usr/lib/horcrux/rsync-receiver "$root/usr/local/bin/rsync"
cp -a "$repo/image/overlay/." "$root/"
install -d -m 0755 "$root/etc/ssh/authorized_keys.d"
if [[ -n $keys ]]; then
    install -m 0644 "$keys" "$root/etc/ssh/authorized_keys.d/root"
    log "baked $(grep -c . "$keys") authorized key(s) for root"
fi
install -d -m 0755 "$root/usr/lib/horcrux/update-keys"
for k in "${trusted_keys[@]}"; do
    install -m 0644 "$k" "$root/usr/lib/horcrux/update-keys/${k##*/}"
done
log "baked ${#trusted_keys[@]} update key(s): ${trusted_keys[*]##*/}"
install -d -m 0755 "$root/etc/horcrux" "$root/efi"
ln -sfn /var/lib/horcrux/node/hostid "$root/etc/hostid"
ln -sfn /var/lib/horcrux/config.git "$root/root/config.git"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

enable=(horcrux-hostd.service horcrux-firstboot.service horcrux-management.service
    horcrux-boot-health.service systemd-networkd.service systemd-resolved.service)
# Not on an appliance: interactive first-boot prompts, waiting for the
# network, package-manager timers (the root is read-only). ZFS: loading the
# module and importing pools is hostd's job (the pools node.toml declares);
# the distribution's units would pull in systemd-udev-settle (10-20 s of
# boot under emulation) and want a zpool.cache in the read-only /etc.
# Boot counting: horcrux-boot-health blesses a new slot only once hostd is
# READY; systemd-bless-boot (where the distribution ships it) would bless
# any boot that gets as far as boot-complete.target.
mask=(systemd-firstboot.service systemd-networkd-wait-online.service apt-daily.timer
    apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service man-db.timer
    dpkg-db-backup.timer zfs-load-module.service zfs-import-cache.service
    zfs-import-scan.service systemd-bless-boot.service)
chroot "$root" systemctl enable --quiet "${enable[@]}"
for unit in "${mask[@]}"; do
    ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done

cat >"$root/usr/lib/horcrux/image-release" <<EOF
IMAGE_ID=$image_id
VERSION=$version
RECIPE=$recipe
BASE_ROOTFS=$base_hash
BUILT=$built
SOURCE=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
EOF

# /var moves to the data partition: the image keeps its contents as the
# factory copy that horcrux-var.service lays down on first boot.
mv "$root/var" "$root/usr/lib/horcrux/factory-var.tmp"
install -d "$root/usr/lib/horcrux/factory"
mv "$root/usr/lib/horcrux/factory-var.tmp" "$root/usr/lib/horcrux/factory/var"
echo "$image_id" >"$root/usr/lib/horcrux/factory/var.id"
install -d -m 0755 "$root/var"
rm -rf "${root:?}/tmp" && install -d -m 1777 "$root/tmp"

kernel=$(readlink -f "$root/boot/vmlinuz")
initrd=$(readlink -f "$root/boot/initrd.img")
boot_efi=$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[[ -f $kernel && -f $initrd ]] || die "the rootfs has no /boot/vmlinuz or /boot/initrd.img (rootfs contract)"
[[ -f $boot_efi ]] || die "the rootfs has no $boot_efi (rootfs contract: systemd-boot)"
cp "$kernel" "$out_tmp/vmlinuz"
cp "$initrd" "$out_tmp/initrd.img"
cp "$boot_efi" "$work/systemd-bootx64.efi"

step "root image: erofs (lz4hc)"
mkfs.erofs -zlz4hc "$work/root.erofs" "$root" >"$work/mkfs.log" 2>&1 ||
    { cat "$work/mkfs.log" >&2; die "mkfs.erofs failed"; }
rm -rf "${root:?}" # its space is needed below
data_bytes=$(stat -c %s "$work/root.erofs")
((data_bytes % 4096 == 0)) || die "mkfs.erofs wrote $data_bytes bytes, not a multiple of 4096"

step "root image: dm-verity hash tree over $((data_bytes / 1048576)) MiB"
# The hash tree follows the filesystem in the same file (and partition):
# sha256 over 4 KiB blocks, 128 digests per tree block, after a 4 KiB
# superblock.
blocks=$((data_bytes / 4096))
tree=0
n=$blocks
while ((n > 1)); do
    n=$(((n + 127) / 128))
    tree=$((tree + n))
done
root_bytes=$((data_bytes + 4096 + tree * 4096))
mv "$work/root.erofs" "$out_tmp/root.img"
truncate -s "$root_bytes" "$out_tmp/root.img"
veritysetup format --data-blocks="$blocks" --hash-offset="$data_bytes" \
    "$out_tmp/root.img" "$out_tmp/root.img" >"$work/verity.log"
root_hash=$(awk '/^Root hash:/ {print $3}' "$work/verity.log")
[[ $root_hash =~ ^[0-9a-f]{64}$ ]] || { cat "$work/verity.log" >&2; die "veritysetup printed no root hash"; }
veritysetup verify --hash-offset="$data_bytes" "$out_tmp/root.img" "$out_tmp/root.img" "$root_hash" ||
    die "the root image does not verify against its own hash tree"
root_mib=$(((root_bytes + 1048575) / 1048576))
((root_mib <= slot_mib)) || die "the root image ($root_mib MiB) does not fit a $slot_mib MiB slot: raise HORCRUX_SLOT_MIB"

step "update bundle: manifest, minisign signature, tar"
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat >"$out_tmp/manifest.toml" <<EOF
# Horcrux update bundle. \`horcrux update\` checks the minisign signature
# of this file, then every payload against the sizes and digests below.
format = 1
image_id = "$image_id"
version = "$version"
built = "$built"
cmdline = "$SLOT_CMDLINE"

[root]
file = "root.img"
size = $root_bytes
sha256 = "$(sha "$out_tmp/root.img")"
fstype = "erofs"
verity_root_hash = "$root_hash"
verity_hash_offset = $data_bytes

[kernel]
file = "vmlinuz"
size = $(stat -c %s "$out_tmp/vmlinuz")
sha256 = "$(sha "$out_tmp/vmlinuz")"

[initrd]
file = "initrd.img"
size = $(stat -c %s "$out_tmp/initrd.img")
sha256 = "$(sha "$out_tmp/initrd.img")"
EOF
minisign -S -s "$sign_key" -m "$out_tmp/manifest.toml" -x "$out_tmp/manifest.toml.minisig" \
    -t "horcrux update bundle $image_id $version" </dev/null >/dev/null ||
    die "minisign could not sign the manifest with $sign_key"
tar -C "$out_tmp" --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 \
    -cf "$out_tmp/update.bundle" manifest.toml manifest.toml.minisig vmlinuz initrd.img root.img

if [[ $bundle_only != 1 ]]; then
    # Partition UUIDs derived from the image hash: rebuilding the same
    # inputs gives the same layout.
    uuid() {
        local h
        h=$(echo "$image_hash-$1" | sha256sum)
        echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"
    }
    uuid_a=$(uuid root-a)
    uuid_b=$(uuid root-b)
    verity="roothash=$root_hash systemd.verity_root_data=PARTUUID=$uuid_a"
    verity+=" systemd.verity_root_hash=PARTUUID=$uuid_a systemd.verity_root_options=hash-offset=$data_bytes"
    cmdline="root=/dev/mapper/root rootfstype=erofs ro $verity horcrux.slot=a horcrux.image=$image_id $SLOT_CMDLINE"

    step "ESP: systemd-boot, the slot A entry"
    mkfs.vfat -C -F 32 -n HORCRUX-ESP "$work/esp.img" $((ESP_MIB * 1024)) >/dev/null
    mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/horcrux ::/horcrux/a
    mcopy -i "$work/esp.img" "$work/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$work/esp.img" "$work/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi
    mcopy -i "$work/esp.img" "$out_tmp/vmlinuz" ::/horcrux/a/vmlinuz
    mcopy -i "$work/esp.img" "$out_tmp/initrd.img" ::/horcrux/a/initrd.img
    # No default entry: systemd-boot boots the first entry sorted by
    # sort-key, then version (newest first), with entries out of boot tries
    # last; `horcrux update` gives the slot it writes the next version. No
    # editor: the command line carries the root hash.
    printf 'timeout 0\neditor no\n' >"$work/loader.conf"
    printf 'title Horcrux %s (slot A)\nversion 1\nsort-key horcrux\nlinux /horcrux/a/vmlinuz\ninitrd /horcrux/a/initrd.img\noptions %s\n' \
        "$version" "$cmdline" >"$work/horcrux-a.conf"
    mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
    mcopy -i "$work/esp.img" "$work/horcrux-a.conf" ::/loader/entries/horcrux-a.conf

    step "GPT disk: ESP $ESP_MIB MiB, root slots A and B $slot_mib MiB each, data $DATA_MIB MiB"
    disk=$out_tmp/disk.raw
    esp_start=1
    a_start=$((esp_start + ESP_MIB))
    b_start=$((a_start + slot_mib))
    data_start=$((b_start + slot_mib))
    total_mib=$((data_start + DATA_MIB + 1))
    truncate -s "${total_mib}M" "$disk"
    sfdisk --quiet "$disk" <<EOF
label: gpt
unit: sectors
start=$((esp_start * 2048)), size=$((ESP_MIB * 2048)), type=$TYPE_ESP, name="horcrux-esp"
start=$((a_start * 2048)), size=$((slot_mib * 2048)), type=$TYPE_ROOT, name="horcrux-root-a", uuid=$uuid_a
start=$((b_start * 2048)), size=$((slot_mib * 2048)), type=$TYPE_ROOT, name="horcrux-root-b", uuid=$uuid_b
start=$((data_start * 2048)), size=$((DATA_MIB * 2048)), type=$TYPE_LINUX, name="horcrux-data"
EOF
    dd if="$work/esp.img" of="$disk" bs=1M seek="$esp_start" conv=notrunc,sparse status=none
    dd if="$out_tmp/root.img" of="$disk" bs=1M seek="$a_start" conv=notrunc,sparse status=none

    step "PXE artifacts"
    mkdir "$out_tmp/pxe"
    ln "$out_tmp/vmlinuz" "$out_tmp/initrd.img" "$out_tmp/root.img" "$out_tmp/pxe/"
    cat >"$out_tmp/pxe/boot.ipxe" <<EOF
#!ipxe
# Horcrux $version ($image_id), diskless. The root image travels as a
# second initrd that iPXE wraps as /horcrux-root.img; the initramfs opens it
# with dm-verity against the root hash below before mounting it. /var is a
# tmpfs (horcrux.data=tmpfs); node.toml comes from the system credential
# horcrux.node.toml (SMBIOS type 11; see the operator guide). Relative
# names are fetched from where this script came from (HTTP or TFTP).
kernel vmlinuz initrd=initrd.img initrd=root.img root=/dev/mapper/root rootfstype=erofs ro roothash=$root_hash horcrux.root_image=/horcrux-root.img systemd.verity_root_options=hash-offset=$data_bytes horcrux.slot=pxe horcrux.data=tmpfs horcrux.image=$image_id $PXE_CMDLINE
initrd initrd.img
initrd root.img /horcrux-root.img
boot
EOF
fi

rm -f "$out_tmp/vmlinuz" "$out_tmp/initrd.img" "$out_tmp/root.img" "$out_tmp/manifest.toml.minisig"
rm -rf "$out"
mv "$out_tmp" "$out"
prune "$kind-*"
if [[ $bundle_only != 1 ]]; then
    ln -sfn "${out##*/}/disk.raw" "$cache/horcrux.raw"
    step "disk image: $out/disk.raw ($total_mib MiB, $(du -h "$out/disk.raw" | cut -f1) allocated)"
fi
step "root slot image: $root_bytes bytes ($root_mib MiB: erofs $((data_bytes / 1048576)) MiB + verity $(((root_bytes - data_bytes) / 1024)) KiB); update bundle $(du -h "$out/update.bundle" | cut -f1)"
echo "$result"
