#!/usr/bin/env bash
# Static checks of the Gentoo recipe: what can be checked without Gentoo
# mirrors (build.sh itself has never run here; see README.md).
#
#   recipes/gentoo/check.sh
#
#   1. bash -n / sh -n of every script, shellcheck when installed;
#   2. atom syntax of every line of `world` and portage/package.*;
#   3. make.conf and pins: required settings, pins either set or PIN_ME;
#   4. kernel/horcrux.config: only CONFIG_X=y|m|"..."|number or
#      "# CONFIG_X is not set", no symbol twice, the options issue 9 needs;
#   5. the rootfs contract (recipes/README.md, "Must provide"): every path
#      maps to an atom, and that atom is in `world`;
#   6. the machine-id dracut module and the sshd drop-in are present and
#      wired;
#   7. issue 9 (erofs + dm-verity root slots, PXE root image): the dracut
#      module 91horcrux-pxe-root (files, what it installs, its hooks, and its
#      job script run against stub commands), dracut.conf.d/horcrux.conf,
#      the kernel options, the atoms and USE flags (cryptsetup, lvm2,
#      systemd[boot,cryptsetup]), and what build.sh checks in the result.
#
# Needs bash, awk, grep, sed, mktemp and a POSIX sh; shellcheck when
# installed. No root, no network, nothing Gentoo.
# Exits non-zero when any check fails.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fails=0
checks=0
ok() { checks=$((checks + 1)); echo "ok    $*"; }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL  $*"; }
note() { echo "note  $*"; }
# Lines of a file without comments and blank lines, as "lineno<TAB>text".
lines() { awk '{ sub(/#.*/, ""); gsub(/^[ \t]+|[ \t]+$/, ""); if ($0 != "") print NR "\t" $0 }' "$1"; }

# --- 1. shell syntax and shellcheck -------------------------------------------
# bash: build.sh, check.sh, every dracut module-setup.sh (dracut sources them
# in bash); sh: every other script of a dracut module (they run in the
# initramfs, under dash or bash).
scripts=("$here/build.sh" "$here/check.sh")
hooks=()
for f in "$here"/dracut/*/*.sh; do
    case ${f##*/} in
    module-setup.sh) scripts+=("$f") ;;
    *) hooks+=("$f") ;;
    esac
done
for s in "${scripts[@]}"; do
    if bash -n "$s"; then ok "bash -n ${s#"$here"/}"; else bad "bash -n ${s#"$here"/}"; fi
done
for h in "${hooks[@]}"; do
    if sh -n "$h"; then ok "sh -n ${h#"$here"/}"; else bad "sh -n ${h#"$here"/}"; fi
done
hook=$here/dracut/90horcrux-machine-id/horcrux-machine-id.sh
if command -v shellcheck >/dev/null; then
    if shellcheck -x "${scripts[@]}" && shellcheck -s sh "${hooks[@]}"; then
        ok "shellcheck ($(shellcheck --version | sed -n 's/^version: //p')): ${#scripts[@]} bash scripts, ${#hooks[@]} sh scripts"
    else
        bad "shellcheck (findings above)"
    fi
else
    note "shellcheck is not installed: skipped (apt-get install shellcheck)"
fi

# --- 2. atom syntax -------------------------------------------------------------
# category/package[-version][:slot[/subslot]][::repo], with an operator
# (<, <=, =, ~, >=, >) exactly when a version is given; `=...-1.2*` allowed;
# `*/*` only in package.* files. USE dependencies ([...]) are not used here.
cat_re='[A-Za-z0-9+_][A-Za-z0-9+_.-]*'
pkg_re='[A-Za-z0-9+_][A-Za-z0-9+_-]*'
ver_re='[0-9]+(\.[0-9]+)*[a-z]?((_alpha|_beta|_pre|_rc|_p)[0-9]*)*(-r[0-9]+)?'
slot_re='(:[A-Za-z0-9+_][A-Za-z0-9+_.-]*(/[A-Za-z0-9+_][A-Za-z0-9+_.-]*)?)?'
repo_re='(::[A-Za-z0-9_][A-Za-z0-9_-]*)?'
plain_atom="^$cat_re/$pkg_re$slot_re$repo_re\$"
versioned_atom="^(<|<=|=|~|>=|>)$cat_re/$pkg_re-$ver_re\\*?$slot_re$repo_re\$"
valid_atom() {
    local a=$1
    [[ $a =~ $versioned_atom ]] && return 0
    [[ $a =~ $plain_atom ]] || return 1
    # Without an operator the name must not end in a version (cat/foo-1.2).
    [[ ! $a =~ -[0-9]+(\.[0-9]+)*[a-z]?(-r[0-9]+)?($|:) ]]
}
# package.use flags, package.accept_keywords keywords, package.license names.
flag_re='^-?[A-Za-z0-9][A-Za-z0-9+_@.-]*$'
kw_re='^(-?~?[a-z0-9-]+|\*\*|~\*|\*|-\*)$'

check_atoms() { # FILE KIND(world|use|keywords|license)
    local f=$1 kind=$2 n=0 errs=0 no line atom rest w
    while IFS=$'\t' read -r no line; do
        n=$((n + 1))
        read -r atom rest <<<"$line"
        if ! valid_atom "$atom" && ! [[ $kind != world && $atom == '*/*' ]]; then
            echo "      ${f#"$here"/}:$no: not an atom: $atom"
            errs=$((errs + 1))
            continue
        fi
        case $kind in
        world)
            [[ -z $rest ]] || { echo "      ${f#"$here"/}:$no: one atom per line: $line"; errs=$((errs + 1)); }
            [[ $atom =~ ^[a-z] ]] || { echo "      ${f#"$here"/}:$no: world wants plain atoms: $atom"; errs=$((errs + 1)); } ;;
        use)
            [[ -n $rest ]] || { echo "      ${f#"$here"/}:$no: no USE flags: $line"; errs=$((errs + 1)); }
            for w in $rest; do
                [[ $w =~ $flag_re ]] || { echo "      ${f#"$here"/}:$no: bad USE flag: $w"; errs=$((errs + 1)); }
            done ;;
        keywords)
            for w in $rest; do
                [[ $w =~ $kw_re ]] || { echo "      ${f#"$here"/}:$no: bad keyword: $w"; errs=$((errs + 1)); }
            done ;;
        license)
            [[ -n $rest ]] || { echo "      ${f#"$here"/}:$no: no licence: $line"; errs=$((errs + 1)); }
            for w in $rest; do
                [[ $w =~ $flag_re ]] || { echo "      ${f#"$here"/}:$no: bad licence name: $w"; errs=$((errs + 1)); }
            done ;;
        esac
    done < <(lines "$f")
    if ((errs == 0 && n > 0)); then
        ok "atoms: ${f#"$here"/} ($n lines)"
    elif ((n == 0)); then
        bad "atoms: ${f#"$here"/} has no entries"
    else
        bad "atoms: ${f#"$here"/} ($errs errors in $n lines)"
    fi
}
# A few known-good and known-bad atoms: the regexes themselves are tested.
selftest=0
for a in sys-apps/systemd '>=sys-fs/zfs-2.2.6' '=sys-kernel/gentoo-kernel-6.6.58-r1' \
    'app-emulation/qemu:0' 'sys-fs/zfs-kmod:0/2.2::gentoo' '~dev-vcs/git-2.45.2' '=x11-libs/gtk+-3.24*'; do
    valid_atom "$a" || { echo "      self-test: rejected valid atom $a"; selftest=1; }
done
for a in systemd sys-apps/ 'sys-apps/systemd-255' '>=sys-apps/systemd' 'sys apps/systemd' 'sys-apps/systemd[boot]'; do
    valid_atom "$a" && { echo "      self-test: accepted invalid atom $a"; selftest=1; }
done
if ((selftest == 0)); then ok "atom regex self-test (7 valid, 6 invalid)"; else bad "atom regex self-test"; fi

check_atoms "$here/world" world
for f in "$here"/portage/package.use/*; do check_atoms "$f" use; done
for f in "$here"/portage/package.accept_keywords/*; do check_atoms "$f" keywords; done
[[ -f $here/portage/package.license ]] && check_atoms "$here/portage/package.license" license

# A flag both set and unset for the same atom (e.g. `cryptsetup` and
# `-cryptsetup`): Portage takes the last one, which hides mistakes.
conflicts=$(cat "$here"/portage/package.use/* | sed 's/#.*//' | awk '
    NF > 1 { for (i = 2; i <= NF; i++) { f = $i; neg = sub(/^-/, "", f); seen[$1 " " f] = seen[$1 " " f] (neg ? "-" : "+") } }
    END { for (k in seen) if (seen[k] ~ /\+/ && seen[k] ~ /-/) print k }' | sort)
if [[ -z $conflicts ]]; then ok "package.use: no flag both set and unset for one atom"; else bad "package.use: set and unset: $(tr '\n' ';' <<<"$conflicts")"; fi

dups=$(lines "$here/world" | cut -f2 | sort | uniq -d)
if [[ -z $dups ]]; then ok "world: no duplicate atoms"; else bad "world: duplicates: $dups"; fi
# Every package configured in package.* should be installed (or be a
# build-time-only tool of the builder, listed here).
builder_only=(sys-kernel/installkernel)
unused=()
while IFS= read -r atom; do
    name=$(sed -E 's/^[<>=~]+//; s/::.*//; s/:.*//' <<<"$atom")
    lines "$here/world" | cut -f2 | grep -qxF "$name" && continue
    printf '%s\n' "${builder_only[@]}" | grep -qxF "$name" && continue
    unused+=("$name")
done < <(cat "$here"/portage/package.use/* "$here"/portage/package.accept_keywords/* |
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' | awk '{print $1}' | sort -u)
if ((${#unused[@]} == 0)); then
    ok "package.use / accept_keywords: every package is in world (or builder-only)"
else
    note "configured but not in world (pulled in as dependencies): ${unused[*]}"
fi

# --- 3. make.conf and pins --------------------------------------------------------
mc=$here/portage/make.conf
for want in 'COMMON_FLAGS=.*-march=x86-64-v2' '^FEATURES=.*buildpkg' '^USE=.*-X' '^USE=.*-gtk' \
    '^USE=.*-qt5' '^USE=.*-wayland' '^[[:space:]]*-doc' '^USE=.*systemd|[[:space:]]systemd[[:space:]]' \
    '^ACCEPT_LICENSE=' '^QEMU_SOFTMMU_TARGETS="x86_64"$' '^QEMU_USER_TARGETS=""$'; do
    if grep -Eq -- "$want" "$mc"; then ok "make.conf: /$want/"; else bad "make.conf: no line matches /$want/"; fi
done
if grep -Eq -- '-march=native' <<<"$(sed 's/#.*//' "$mc")"; then bad "make.conf: -march=native (binary packages run elsewhere)"; fi

pins=$here/pins
pin_state=ok
for key in GENTOO_REPO_COMMIT STAGE3 STAGE3_SHA256 PROFILE; do
    val=$(sed -n "s/^$key=//p" "$pins" | tail -n 1)
    case $key:$val in
    *:) bad "pins: $key is missing"; pin_state=bad ;;
    *:PIN_ME) note "pins: $key is PIN_ME (build.sh refuses to run until the release engineer sets it)" ;;
    GENTOO_REPO_COMMIT:*) [[ $val =~ ^[0-9a-f]{40}$ ]] || { bad "pins: $key is not 40 hex digits"; pin_state=bad; } ;;
    STAGE3_SHA256:*) [[ $val =~ ^[0-9a-f]{64}$ ]] || { bad "pins: $key is not 64 hex digits"; pin_state=bad; } ;;
    STAGE3:*) [[ $val =~ ^[0-9TZ]+/stage3-amd64-systemd-[0-9TZ]+\.tar\.xz$ ]] || { bad "pins: $key is not a systemd stage3 path"; pin_state=bad; } ;;
    PROFILE:*) [[ $val == default/linux/amd64/*/systemd* ]] || { bad "pins: $key is not an amd64 systemd profile"; pin_state=bad; } ;;
    esac
done
[[ $pin_state == ok ]] && ok "pins: well-formed (values set, or PIN_ME)"
if grep -q 'PIN_ME' "$pins" && grep -q 'PIN_ME' "$here/build.sh"; then
    ok "build.sh refuses PIN_ME pins"
fi

# --- 4. kernel config fragment ------------------------------------------------------
kc=$here/kernel/horcrux.config
kerrs=0
kn=0
while IFS= read -r line; do
    [[ -z $line ]] && continue
    if [[ $line =~ ^CONFIG_[A-Z0-9_]+=(y|m|\"[^\"]*\"|-?[0-9]+|0x[0-9a-fA-F]+)$ ]] ||
        [[ $line =~ ^#\ CONFIG_[A-Z0-9_]+\ is\ not\ set$ ]]; then
        kn=$((kn + 1))
    elif [[ $line =~ ^# && ! $line =~ CONFIG_ ]]; then
        : # a comment
    else
        echo "      kernel/horcrux.config: bad line: $line"
        kerrs=$((kerrs + 1))
    fi
done <"$kc"
if ((kerrs == 0)); then ok "kernel fragment: $kn settings, all CONFIG_X=y|m|\"...\"|N or '# CONFIG_X is not set'"; else bad "kernel fragment: $kerrs bad lines"; fi
kdups=$(grep -oE '^(# )?CONFIG_[A-Z0-9_]+' "$kc" | sed 's/^# //' | sort | uniq -d)
if [[ -z $kdups ]]; then ok "kernel fragment: no symbol set twice"; else bad "kernel fragment: set twice: $kdups"; fi
kmissing=()
for sym in KVM KVM_INTEL KVM_AMD VFIO VFIO_PCI IOMMU_SUPPORT BRIDGE BRIDGE_VLAN_FILTERING VLAN_8021Q \
    VXLAN TUN VETH NF_TABLES NF_TABLES_INET NF_TABLES_BRIDGE NF_CONNTRACK NFT_CT NFT_REJECT \
    DM_VERITY EROFS_FS SQUASHFS SQUASHFS_XZ SQUASHFS_ZSTD WATCHDOG I6300ESB_WDT ITCO_WDT \
    VIRTIO_PCI VIRTIO_BLK VIRTIO_NET VIRTIO_CONSOLE EFI_STUB EFIVAR_FS VHOST_NET; do
    grep -Eq "^CONFIG_$sym=(y|m)$" "$kc" || kmissing+=("$sym")
done
if ((${#kmissing[@]} == 0)); then ok "kernel fragment: the options issue 9 names are all y or m"; else bad "kernel fragment: missing ${kmissing[*]}"; fi
# The image format of issue 9: erofs (+ compression, i.e. LZ4) on
# dm-verity, loop for the PXE root image, efivarfs (updater, boot health),
# DMI in sysfs (SMBIOS credentials), watchdogs, vfat (the ESP).
kmissing=()
for sym in BLK_DEV_DM DM_VERITY CRYPTO_SHA256 EROFS_FS EROFS_FS_ZIP BLK_DEV_LOOP EFIVAR_FS DMI DMI_SYSFS \
    WATCHDOG I6300ESB_WDT ITCO_WDT VFAT_FS NLS_CODEPAGE_437 NLS_ISO8859_1; do
    grep -Eq "^CONFIG_$sym=(y|m)$" "$kc" || kmissing+=("$sym")
done
if ((${#kmissing[@]} == 0)); then
    ok "kernel fragment: image format options (dm-verity, sha256, erofs+zip, loop, efivarfs, DMI sysfs, watchdogs, vfat)"
else
    bad "kernel fragment: image format options missing: ${kmissing[*]}"
fi
# What the initramfs needs before the root exists is built in (=y) or is a
# module dracut installs (add_drivers in dracut.conf.d/horcrux.conf). The
# hash of dm-verity (sha256) has no entry there: it must be built in.
kc_val() { sed -n "s/^CONFIG_$1=//p" "$kc"; }
dc_words() { sed 's/#.*//' "$here/dracut.conf.d/horcrux.conf" | sed -n "s/^[[:space:]]*$1+\{0,1\}=[[:space:]]*\"\(.*\)\"/\1/p" | tr -s ' \t' '\n' | sed '/^$/d'; }
kinit=()
for pair in BLK_DEV_DM:dm-mod DM_VERITY:dm-verity EROFS_FS:erofs BLK_DEV_LOOP:loop; do
    sym=${pair%%:*} mod=${pair#*:}
    case $(kc_val "$sym") in
    y) ;;
    m) grep -qxF "$mod" <<<"$(dc_words add_drivers)" || kinit+=("$sym=m but $mod is not in add_drivers") ;;
    *) kinit+=("$sym unset") ;;
    esac
done
[[ $(kc_val CRYPTO_SHA256) == y ]] || kinit+=("CRYPTO_SHA256 is not =y")
if ((${#kinit[@]} == 0)); then
    ok "kernel fragment: root-device options are built in or modules in the initramfs (add_drivers)"
else
    bad "kernel fragment vs dracut.conf: ${kinit[*]}"
fi

# --- 5. rootfs contract: path -> providing atom -> in world ----------------------------
# recipes/README.md, "Must provide". The atom is the Gentoo package that
# installs the path (build.sh checks the paths themselves in the built root).
contract=(
    "/boot/vmlinuz|sys-kernel/gentoo-kernel"
    "/boot/initrd.img|sys-kernel/dracut"
    "/usr/lib/systemd/boot/efi/systemd-bootx64.efi|sys-apps/systemd"
    "/usr/lib/systemd/systemd (PID 1)|sys-apps/systemd"
    "/usr/bin/systemctl|sys-apps/systemd"
    "/usr/bin/udevadm|sys-apps/systemd"
    "/usr/lib/systemd/systemd-journald|sys-apps/systemd"
    "/usr/lib/systemd/systemd-networkd|sys-apps/systemd"
    "/usr/lib/systemd/systemd-resolved|sys-apps/systemd"
    "/usr/bin/systemd-tmpfiles|sys-apps/systemd"
    "/usr/lib/udev/rules.d/60-persistent-storage.rules (by-partlabel)|sys-apps/systemd"
    "/usr/bin/dbus-daemon|sys-apps/dbus"
    "/usr/bin/qemu-system-x86_64|app-emulation/qemu"
    "/usr/bin/qemu-img|app-emulation/qemu"
    "/usr/share/OVMF/OVMF_CODE_4M.fd|sys-firmware/edk2-bin"
    "/usr/share/OVMF/OVMF_VARS_4M.fd|sys-firmware/edk2-bin"
    "/usr/sbin/nft|net-firewall/nftables"
    "/usr/sbin/ip|sys-apps/iproute2"
    "zfs.ko, spl.ko for the shipped kernel|sys-fs/zfs-kmod"
    "/usr/sbin/zfs|sys-fs/zfs"
    "/usr/sbin/zpool|sys-fs/zfs"
    "/usr/bin/zgenhostid|sys-fs/zfs"
    "/usr/sbin/sshd, sshd.service, sshd_config.d|net-misc/openssh"
    "/usr/bin/ssh-keygen|net-misc/openssh"
    "/usr/bin/git, git-receive-pack|dev-vcs/git"
    "/usr/bin/rsync|net-misc/rsync"
    "/usr/bin/flock|sys-apps/util-linux"
    "/usr/bin/mktemp|sys-apps/coreutils"
    "/usr/bin/tar|app-arch/tar"
    "/usr/bin/realpath|sys-apps/coreutils"
    "/usr/sbin/sfdisk|sys-apps/util-linux"
    "/usr/bin/partx|sys-apps/util-linux"
    "/usr/bin/lsblk|sys-apps/util-linux"
    "/usr/sbin/blkid|sys-apps/util-linux"
    "/usr/sbin/mkfs.ext4|sys-fs/e2fsprogs"
    "/usr/sbin/e2fsck|sys-fs/e2fsprogs"
    "/usr/sbin/resize2fs|sys-fs/e2fsprogs"
    "/etc/machine-id (empty regular file)|sys-apps/systemd"
    "initramfs machine-id bind mount|sys-kernel/dracut"
    "modprobe (hostd loads zfs)|sys-apps/kmod"
    "/usr/bin/bash (units, receivers)|app-shells/bash"
    "veritysetup (initramfs: PXE root image; the node: veritysetup status)|sys-fs/cryptsetup"
    "systemd-veritysetup, systemd-veritysetup-generator (initramfs: disk slots; USE cryptsetup)|sys-apps/systemd"
    "dmsetup, device-mapper udev rules (dracut module dm: /dev/mapper/root)|sys-fs/lvm2"
    "losetup (initramfs: PXE root image)|sys-apps/util-linux"
    "initramfs opening the dm-verity root (dracut: systemd-veritysetup, horcrux-pxe-root)|sys-kernel/dracut"
    "dm-verity, erofs, loop, efivarfs, DMI, vfat in the shipped kernel|sys-kernel/gentoo-kernel"
)
world_atoms=$(lines "$here/world" | cut -f2)
cmissing=0
for entry in "${contract[@]}"; do
    path=${entry%%|*} atom=${entry##*|}
    if ! grep -qxF "$atom" <<<"$world_atoms"; then
        echo "      contract: $path needs $atom, which is not in world"
        cmissing=$((cmissing + 1))
    fi
done
if ((cmissing == 0)); then ok "contract: ${#contract[@]} required paths, each provided by an atom in world"; else bad "contract: $cmissing paths without their atom in world"; fi
# The same paths as build.sh's final check (so the two lists do not drift).
bpaths=$(sed -n '/^CONTRACT_PATHS=(/,/^)/p' "$here/build.sh" | tr ' ' '\n' | grep -c '^[a-z]')
if ((bpaths >= 30)); then ok "build.sh checks $bpaths contract paths in the built rootfs"; else bad "build.sh: CONTRACT_PATHS has only $bpaths entries"; fi
# Required USE flags for the contract.
use_has() { grep -qxF -- "$2" <<<"$(cat "$here"/portage/package.use/* | sed 's/#.*//' | awk -v a="$1" '$1 == a { for (i = 2; i <= NF; i++) print $i }')"; }
for req in "sys-apps/systemd boot" "sys-apps/systemd sysv-utils" "sys-fs/zfs-kmod dist-kernel" \
    "app-emulation/qemu seccomp" "app-emulation/qemu vhost-net" "app-emulation/qemu vnc" \
    "app-emulation/qemu aio" "app-emulation/qemu caps" "app-emulation/qemu -gtk" "app-emulation/qemu -sdl" \
    "app-emulation/qemu -spice" "app-emulation/qemu -opengl"; do
    if use_has "${req% *}" "${req#* }"; then ok "USE: ${req% *} ${req#* }"; else bad "USE: ${req% *} lacks ${req#* }"; fi
done

# --- 6. dracut module, dracut.conf, sshd drop-in ---------------------------------------
dm=$here/dracut/90horcrux-machine-id
if grep -q 'inst_hook pre-pivot' "$dm/module-setup.sh" && grep -q 'horcrux-machine-id.sh' "$dm/module-setup.sh"; then
    ok "dracut module: installs horcrux-machine-id.sh as a pre-pivot hook"
else bad "dracut module: no pre-pivot hook"; fi
if grep -q 'by-partlabel/horcrux-data' "$hook" && grep -q 'lib/horcrux/node/machine-id' "$hook" &&
    grep -q 'NEWROOT}/etc/machine-id' "$hook"; then
    ok "dracut hook: horcrux-data:lib/horcrux/node/machine-id -> \$NEWROOT/etc/machine-id"
else bad "dracut hook: not the contract's bind mount"; fi
if grep -Eq '^[[:space:]]*exit' "$hook"; then bad "dracut hook: uses exit (hooks are sourced)"; else ok "dracut hook: no exit (sourced by dracut)"; fi
dc=$here/dracut.conf.d/horcrux.conf
if grep -q '^hostonly="no"' "$dc" && grep -q 'horcrux-machine-id' "$dc"; then
    ok "dracut.conf.d/horcrux.conf: generic (hostonly=no), adds horcrux-machine-id"
else bad "dracut.conf.d/horcrux.conf: not generic or module not added"; fi
if [[ -f $here/overlay/usr/lib/systemd/system/sshd.service.d/horcrux-gentoo.conf ]]; then
    ok "sshd.service drop-in (no host key generation on the read-only root)"
else bad "sshd.service drop-in missing"; fi

# --- 7. issue 9: erofs + dm-verity root slots, PXE root image --------------------
px=$here/dracut/91horcrux-pxe-root
pxfiles=(module-setup.sh parse-horcrux-pxe-root.sh horcrux-pxe-root.sh)
pxmissing=()
for f in "${pxfiles[@]}"; do [[ -f $px/$f && -x $px/$f ]] || pxmissing+=("$f"); done
if ((${#pxmissing[@]} == 0)); then
    ok "dracut/91horcrux-pxe-root: ${pxfiles[*]} (executable)"
else
    bad "dracut/91horcrux-pxe-root: missing or not executable: ${pxmissing[*]}"
fi
ms=$px/module-setup.sh
# The body of a shell function of module-setup.sh (from "name() {" to "}").
fn_body() { sed -n "/^$1() {/,/^}/p" "$ms"; }
fb_check=$(fn_body check) fb_depends=$(fn_body depends) fb_kernel=$(fn_body installkernel) fb_install=$(fn_body install)
if grep -Eq 'require_binaries .*losetup' <<<"$fb_check" && grep -Eq 'require_binaries .*veritysetup' <<<"$fb_check" &&
    grep -Eq 'inst_multiple .*losetup' <<<"$fb_install" && grep -Eq 'inst_multiple .*veritysetup' <<<"$fb_install"; then
    ok "91horcrux-pxe-root: requires and installs losetup and veritysetup"
else bad "91horcrux-pxe-root: check()/install() do not require and install losetup and veritysetup"; fi
if grep -Eq 'instmods( .*)? loop( |$)' <<<"$fb_kernel" && grep -Eq 'instmods .*dm-verity' <<<"$fb_kernel" &&
    grep -Eq 'instmods .*erofs' <<<"$fb_kernel" && grep -q "hostonly=''" <<<"$fb_kernel"; then
    ok "91horcrux-pxe-root: installs the loop, dm-verity and erofs kernel modules (not host-only)"
else bad "91horcrux-pxe-root: installkernel() does not install loop, dm-verity and erofs for every host"; fi
# shellcheck disable=SC2016 # literal "$moddir" in module-setup.sh
if grep -q 'inst_hook cmdline [0-9]* "$moddir/parse-horcrux-pxe-root.sh"' <<<"$fb_install" &&
    grep -q 'inst_script "$moddir/horcrux-pxe-root.sh" /sbin/horcrux-pxe-root' <<<"$fb_install" &&
    grep -q 'dracut_need_initqueue' <<<"$fb_install" && grep -q 'deps="dm ' <<<"$fb_depends" &&
    grep -q 'initqueue' <<<"$fb_depends"; then
    ok "91horcrux-pxe-root: cmdline hook, /sbin/horcrux-pxe-root, initqueue (also dracut-ng >= 108's module), depends on dm"
else bad "91horcrux-pxe-root: hooks, job script, initqueue or dependencies not wired"; fi
ph=$px/parse-horcrux-pxe-root.sh
if grep -q 'getarg horcrux.root_image=' "$ph" &&
    grep -q '/sbin/initqueue --settled --onetime --unique --name horcrux-pxe-root /sbin/horcrux-pxe-root' "$ph" &&
    grep -q 'wait_for_dev -n /dev/mapper/root' "$ph" && grep -q 'systemd.verity=' "$ph"; then
    ok "91horcrux-pxe-root cmdline hook: horcrux.root_image= -> settled initqueue job, waits for /dev/mapper/root, warns without systemd.verity=0"
else bad "91horcrux-pxe-root cmdline hook: not wired"; fi
if grep -Eq '^[[:space:]]*exit' "$ph"; then bad "91horcrux-pxe-root cmdline hook: uses exit (hooks are sourced)"; else ok "91horcrux-pxe-root cmdline hook: no exit (sourced by dracut)"; fi

# The job script against stub commands (getarg reads a fake kernel command
# line; losetup, veritysetup, modprobe, warn, info and emergency_shell log
# their arguments): what it runs, and that it fails closed.
job=$px/horcrux-pxe-root.sh
jsh=$(command -v dash || command -v sh)
if [[ -e /dev/mapper/root ]]; then
    note "this machine has /dev/mapper/root: the job script would stop early; its tests are skipped"
elif ! t=$(mktemp -d); then
    bad "91horcrux-pxe-root job: mktemp -d failed"
else
    mkdir "$t/bin"
    cat >"$t/bin/getarg" <<'STUB'
#!/bin/sh
want=${1%=}; val=
for a in $TEST_CMDLINE; do case $a in "$want="*) val=${a#"$want="} ;; esac; done
printf '%s\n' "$val"
STUB
    # shellcheck disable=SC2016 # the stubs' own $* and $TEST_LOG
    for c in warn info emergency_shell modprobe; do printf '#!/bin/sh\necho "%s $*" >>"$TEST_LOG"\n' "$c" >"$t/bin/$c"; done
    # shellcheck disable=SC2016 # the stub's own variables
    printf '#!/bin/sh\necho "losetup $*" >>"$TEST_LOG"\n[ "$1" = --find ] && echo /dev/loop7\nexit 0\n' >"$t/bin/losetup"
    # shellcheck disable=SC2016 # the stub's own variables
    printf '#!/bin/sh\necho "veritysetup $*" >>"$TEST_LOG"\nexit "${TEST_VERITY_RC:-0}"\n' >"$t/bin/veritysetup"
    chmod +x "$t"/bin/*
    : >"$t/root.img"
    rh=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    # job CASE CMDLINE [VERITY_RC]: exit status in $jrc, log in $jlog
    job_run() {
        : >"$t/log"
        TEST_LOG=$t/log TEST_CMDLINE=$2 TEST_VERITY_RC=${3:-0} PATH="$t/bin:$PATH" "$jsh" "$job" >/dev/null 2>&1
        jrc=$?
        jlog=$(cat "$t/log")
    }
    base="root=/dev/mapper/root rootfstype=erofs ro roothash=$rh horcrux.root_image=$t/root.img"
    job_run ok "$base systemd.verity_root_options=hash-offset=1048576,panic-on-corruption systemd.verity=0"
    if ((jrc == 0)) && grep -qxF "losetup --find --show --read-only $t/root.img" <<<"$jlog" &&
        grep -qxF "veritysetup open /dev/loop7 root /dev/loop7 $rh --hash-offset=1048576 --panic-on-corruption" <<<"$jlog" &&
        ! grep -q '^emergency_shell' <<<"$jlog"; then
        ok "job: losetup --find --show --read-only IMAGE; veritysetup open LOOP root LOOP HASH --hash-offset=N (+ verity flags)"
    else bad "job: unexpected commands or status $jrc: $(tr '\n' ';' <<<"$jlog")"; fi
    job_run none "root=/dev/mapper/root roothash=$rh systemd.verity_root_options=hash-offset=4096"
    if ((jrc == 0)) && [[ -z $jlog ]]; then ok "job: does nothing without horcrux.root_image= (disk boots)"; else bad "job: acted without horcrux.root_image=: $(tr '\n' ';' <<<"$jlog")"; fi
    jfail=()
    job_run badhash "${base/roothash=$rh/roothash=not-hex} systemd.verity_root_options=hash-offset=4096"
    ((jrc != 0)) && grep -q '^emergency_shell' <<<"$jlog" && ! grep -q '^veritysetup' <<<"$jlog" || jfail+=("bad roothash=")
    job_run nooffset "$base"
    ((jrc != 0)) && grep -q '^emergency_shell' <<<"$jlog" && ! grep -q '^losetup' <<<"$jlog" || jfail+=("no hash-offset=")
    job_run noimage "${base/$t\/root.img/$t/missing.img} systemd.verity_root_options=hash-offset=4096"
    ((jrc != 0)) && grep -q '^emergency_shell' <<<"$jlog" && ! grep -q '^losetup' <<<"$jlog" || jfail+=("missing image")
    job_run refused "$base systemd.verity_root_options=hash-offset=4096" 1
    ((jrc != 0)) && grep -q '^emergency_shell' <<<"$jlog" && grep -qxF 'losetup --detach /dev/loop7' <<<"$jlog" || jfail+=("veritysetup refusing")
    if ((${#jfail[@]} == 0)); then
        ok "job: fails closed (emergency handling, no loop device left) on a bad roothash=, no hash-offset=, a missing image, veritysetup refusing"
    else bad "job: does not fail closed for: ${jfail[*]}"; fi
    rm -rf "$t"
fi

# dracut.conf.d/horcrux.conf
want_mods=(systemd systemd-veritysetup dm rootfs-block horcrux-pxe-root horcrux-machine-id)
dmiss=()
for m in "${want_mods[@]}"; do
    grep -qxF "$m" <<<"$(dc_words add_dracutmodules)" || dmiss+=("add_dracutmodules lacks $m")
    grep -qxF "$m" <<<"$(dc_words omit_dracutmodules)" && dmiss+=("omit_dracutmodules has $m")
done
grep -qxF erofs <<<"$(dc_words filesystems)" || dmiss+=("filesystems lacks erofs")
for m in loop dm-verity erofs; do grep -qxF "$m" <<<"$(dc_words add_drivers)" || dmiss+=("add_drivers lacks $m"); done
if ((${#dmiss[@]} == 0)); then
    ok "dracut.conf.d/horcrux.conf: modules ${want_mods[*]}; erofs; drivers loop dm-verity erofs"
else bad "dracut.conf.d/horcrux.conf: ${dmiss[*]}"; fi
if grep -Eq '^kernel_cmdline="([^"]* )?rd\.shell=0( [^"]*)?"' "$here/dracut.conf.d/horcrux.conf" &&
    grep -Eq '^kernel_cmdline="([^"]* )?rd\.emergency=reboot( [^"]*)?"' "$here/dracut.conf.d/horcrux.conf"; then
    ok "dracut.conf.d/horcrux.conf: initramfs failures reboot (rd.shell=0 rd.emergency=reboot)"
else bad "dracut.conf.d/horcrux.conf: kernel_cmdline lacks rd.shell=0 rd.emergency=reboot"; fi

# Atoms and USE flags
wmiss=()
for a in sys-fs/cryptsetup sys-fs/lvm2 sys-apps/systemd sys-kernel/dracut sys-apps/util-linux; do
    grep -qxF "$a" <<<"$world_atoms" || wmiss+=("$a")
done
if ((${#wmiss[@]} == 0)); then ok "world: sys-fs/cryptsetup, sys-fs/lvm2 (and systemd, dracut, util-linux)"; else bad "world lacks ${wmiss[*]}"; fi
if grep -qxF sys-fs/erofs-utils <<<"$world_atoms"; then
    bad "world: sys-fs/erofs-utils (the image tool makes the erofs; the node never does)"
else ok "world: no sys-fs/erofs-utils (not needed on the node)"; fi
# One systemd flavour: the full sys-apps/systemd (with USE boot for
# systemd-boot); sys-apps/systemd-utils would block it.
named=$(for f in "$here/world" "$here"/portage/package.* "$here"/portage/package.*/*; do
    [[ -f $f ]] || continue
    sed 's/#.*//' "$f"
done)
if grep -Eq '(^|[[:space:]<>=~])sys-apps/systemd-utils' <<<"$named"; then
    bad "sys-apps/systemd-utils is named: the recipe uses the full sys-apps/systemd (USE boot for systemd-boot)"
else ok "one systemd flavour: sys-apps/systemd (USE boot), no sys-apps/systemd-utils"; fi
for req in "sys-apps/systemd cryptsetup" "sys-fs/cryptsetup openssl" "sys-fs/cryptsetup udev" \
    "sys-fs/cryptsetup -static" "sys-fs/cryptsetup -static-libs" "sys-fs/lvm2 udev" "sys-fs/lvm2 -lvm"; do
    if use_has "${req% *}" "${req#* }"; then ok "USE: ${req% *} ${req#* }"; else bad "USE: ${req% *} lacks ${req#* }"; fi
done

# build.sh: what it puts into the rootfs and checks in the result
bmiss=()
# shellcheck disable=SC2016 # literal "$here" in build.sh
grep -q 'for moddir in "$here"/dracut/\*/; do' "$here/build.sh" || bmiss+=("installs every dracut/*/ module")
for p in usr/lib/systemd/boot/efi/systemd-bootx64.efi usr/lib/dracut/modules.d/91horcrux-pxe-root/module-setup.sh \
    usr/lib/systemd/systemd-veritysetup usr/lib/systemd/system-generators/systemd-veritysetup-generator \
    usr/sbin/veritysetup usr/sbin/losetup usr/sbin/dmsetup; do
    grep -qxF "$p" <<<"$(sed -n '/^CONTRACT_PATHS=(/,/^)/p' "$here/build.sh" | tr ' ' '\n')" || bmiss+=("CONTRACT_PATHS lacks $p")
done
lc=$(sed -n '/^lsinitrd_check() {/,/^}/p' "$here/build.sh")
for w in systemd-veritysetup-generator 91-parse-horcrux-pxe-root 'sbin/horcrux-pxe-root' 'bin/veritysetup' 'bin/losetup' \
    '10-dm' 'for kmod in loop dm-verity erofs' 'rd.emergency=reboot'; do
    grep -qF -- "$w" <<<"$lc" || bmiss+=("lsinitrd_check lacks $w")
done
if ((${#bmiss[@]} == 0)); then
    ok "build.sh: installs both dracut modules, checks the verity tools in the rootfs and in the initramfs (lsinitrd)"
else bad "build.sh: ${bmiss[*]}"; fi

echo
if ((fails == 0)); then
    echo "recipes/gentoo/check.sh: $checks checks passed"
    echo "(static only: build.sh has not been run; see recipes/gentoo/README.md)"
    exit 0
fi
echo "recipes/gentoo/check.sh: $fails of $checks checks FAILED"
exit 1
