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
#   6. the dracut module and the sshd drop-in are present and wired.
#
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
scripts=("$here/build.sh" "$here/check.sh" "$here/dracut/90horcrux-machine-id/module-setup.sh")
for s in "${scripts[@]}"; do
    if bash -n "$s"; then ok "bash -n ${s#"$here"/}"; else bad "bash -n ${s#"$here"/}"; fi
done
hook=$here/dracut/90horcrux-machine-id/horcrux-machine-id.sh
if sh -n "$hook"; then ok "sh -n ${hook#"$here"/}"; else bad "sh -n ${hook#"$here"/}"; fi
if command -v shellcheck >/dev/null; then
    if shellcheck -x "${scripts[@]}" && shellcheck -s sh "$hook"; then
        ok "shellcheck ($(shellcheck --version | sed -n 's/^version: //p')): ${#scripts[@]} bash scripts, 1 sh hook"
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
if sed 's/#.*//' "$mc" | grep -Eq -- '-march=native'; then bad "make.conf: -march=native (binary packages run elsewhere)"; fi

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
use_has() { cat "$here"/portage/package.use/* | sed 's/#.*//' | awk -v a="$1" '$1 == a { for (i = 2; i <= NF; i++) print $i }' | grep -qxF -- "$2"; }
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

echo
if ((fails == 0)); then
    echo "recipes/gentoo/check.sh: $checks checks passed"
    echo "(static only: build.sh has not been run; see recipes/gentoo/README.md)"
    exit 0
fi
echo "recipes/gentoo/check.sh: $fails of $checks checks FAILED"
exit 1
