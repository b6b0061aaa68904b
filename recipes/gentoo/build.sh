#!/usr/bin/env bash
# Builds the Horcrux appliance root filesystem from Gentoo and writes it as
# a tarball:
#
#   recipes/gentoo/build.sh OUT.tar
#
# The result meets the rootfs contract in recipes/README.md. How it works:
#
#   1. on the build machine: download the pinned stage3 (pins), check its
#      SHA-256, fetch the pinned ::gentoo commit with git (content-addressed),
#      unpack the stage3 into a work directory and chroot into it;
#   2. in that builder chroot (`build.sh --inside`): Portage config from
#      portage/, kernel/horcrux.config as a gentoo-kernel config fragment,
#      `emerge --buildpkg --usepkg @horcrux-world-set` (compiles what the
#      binary package cache lacks, into the builder itself), then
#      `emerge --root=/rootfs --root-deps=rdeps --with-bdeps=n --usepkgonly
#      @horcrux-world-set` (the rootfs gets binary packages and run-time
#      dependencies only: no compiler, no Portage);
#   3. in the rootfs: dracut initramfs (systemd, dm-verity root from
#      systemd's command line convention, the PXE root image module, the
#      machine-id module; checked with lsinitrd), /boot/vmlinuz and
#      /boot/initrd.img, OVMF at Debian's paths, the units Gentoo packages do
#      not enable by themselves, no per-machine identity; then tar with
#      numeric owners and xattrs.
#
# Needs root, curl, git, tar, xz, sha256sum and network access to Gentoo's
# mirrors and GitHub. A cold build takes hours (kernel, QEMU, systemd, GCC
# updates); with a warm binary package cache (HORCRUX_GENTOO_CACHE) minutes.
#
# Environment:
#   HORCRUX_GENTOO_CACHE    stage3, ::gentoo checkout, distfiles, binary
#                           packages (default: <repo>/target/gentoo-cache)
#   HORCRUX_GENTOO_MIRROR   default https://distfiles.gentoo.org
#   HORCRUX_GENTOO_REPO_URL default https://github.com/gentoo-mirror/gentoo.git
#   HORCRUX_GENTOO_BINHOST=1  also use Gentoo's official binhost (getbinpkg)
#   HORCRUX_GENTOO_REPO_COMMIT, HORCRUX_GENTOO_STAGE3, HORCRUX_GENTOO_STAGE3_SHA256
#                           override the pins for a trial build (not releases)
#
# STATUS: never run. No Gentoo mirror is reachable from the machines this
# was written on; only check.sh (syntax, shellcheck, atoms, contract map)
# ran. See README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "recipes/gentoo: $*" >&2; }
die() { echo "recipes/gentoo: error: $*" >&2; exit 1; }

# Values from the pins file (KEY=VALUE lines; never sourced).
pin() {
    local v
    v=$(sed -n "s/^$1=//p" "$here/pins" | tail -n 1)
    [[ -n $v ]] || die "pins: $1 is missing"
    echo "$v"
}

# The rootfs contract paths build.sh checks in the finished root (check.sh
# maps the same paths to the atoms in `world`).
CONTRACT_PATHS=(
    boot/vmlinuz boot/initrd.img
    usr/lib/systemd/boot/efi/systemd-bootx64.efi
    usr/lib/systemd/systemd usr/bin/systemctl usr/bin/udevadm usr/bin/systemd-tmpfiles
    usr/lib/systemd/systemd-journald usr/lib/systemd/systemd-networkd
    usr/lib/systemd/systemd-resolved usr/bin/dbus-daemon
    usr/bin/qemu-system-x86_64 usr/bin/qemu-img
    usr/share/OVMF/OVMF_CODE_4M.fd usr/share/OVMF/OVMF_VARS_4M.fd
    usr/sbin/nft usr/sbin/ip usr/sbin/zfs usr/sbin/zpool usr/bin/zgenhostid
    usr/sbin/sshd usr/bin/ssh-keygen usr/bin/git usr/libexec/git-core/git-receive-pack
    usr/bin/rsync usr/bin/flock usr/bin/mktemp usr/bin/tar usr/bin/realpath
    usr/sbin/sfdisk usr/bin/partx usr/bin/lsblk usr/sbin/blkid
    usr/sbin/mkfs.ext4 usr/sbin/e2fsck usr/sbin/resize2fs
    usr/lib/udev/rules.d/60-persistent-storage.rules
    usr/lib/dracut/modules.d/90horcrux-machine-id/module-setup.sh
    usr/lib/dracut/modules.d/91horcrux-pxe-root/module-setup.sh
    usr/lib/systemd/systemd-veritysetup usr/lib/systemd/system-generators/systemd-veritysetup-generator
    usr/sbin/veritysetup usr/sbin/losetup usr/sbin/dmsetup
)

# ---------------------------------------------------------------------------
# Stage 2 and 3: inside the builder chroot (the verified stage3).
# ---------------------------------------------------------------------------
inside() {
    local rootfs=/rootfs profile kver
    profile=$(pin PROFILE)
    export FEATURES="${FEATURES:-}" EMERGE_WARNING_DELAY=0 CLEAN_DELAY=0

    log "builder: Portage config, profile $profile, ::gentoo at ${HORCRUX_GENTOO_COMMIT:-?}"
    rm -rf /etc/portage/package.use /etc/portage/package.accept_keywords /etc/portage/package.license
    cp -a "$here/portage/." /etc/portage/
    install -d /etc/portage/repos.conf /etc/portage/sets /etc/kernel/config.d
    # The tree is a read-only bind mount of the pinned checkout: never synced.
    cat >/etc/portage/repos.conf/gentoo.conf <<'EOF'
[DEFAULT]
main-repo = gentoo

[gentoo]
location = /var/db/repos/gentoo
auto-sync = no
EOF
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/world" >/etc/portage/sets/horcrux-world-set
    install -m 0644 "$here/kernel/horcrux.config" /etc/kernel/config.d/horcrux.config
    ln -sfn "../../var/db/repos/gentoo/profiles/$profile" /etc/portage/make.profile
    [[ -d /etc/portage/make.profile/ ]] || die "profile $profile is not in the pinned tree"
    local binhost=()
    [[ ${HORCRUX_GENTOO_BINHOST:-0} == 1 ]] && binhost=(--getbinpkg)

    # A binary kernel package built with another fragment must not be
    # reused: the fragment is not part of its USE flags.
    local frag_sum stamp=/var/cache/binpkgs/.horcrux-kernel-config.sha256 exclude=()
    frag_sum=$(sha256sum <"$here/kernel/horcrux.config" | cut -d' ' -f1)
    if [[ $(cat "$stamp" 2>/dev/null) != "$frag_sum" ]]; then
        log "builder: kernel fragment changed: rebuilding gentoo-kernel and zfs-kmod from source"
        exclude=(--usepkg-exclude 'sys-kernel/gentoo-kernel sys-fs/zfs-kmod')
    fi

    log "builder: emerge @horcrux-world-set into the builder (binary packages; compiles what the cache lacks)"
    emerge --update --deep --newuse --with-bdeps=y --buildpkg --usepkg "${binhost[@]}" "${exclude[@]}" \
        --quiet-build=y @horcrux-world-set
    echo "$frag_sum" >"$stamp"

    log "rootfs: emerge --root=$rootfs --root-deps=rdeps --with-bdeps=n --usepkgonly @horcrux-world-set"
    install -d "$rootfs"
    emerge --root="$rootfs" --config-root=/ --root-deps=rdeps --with-bdeps=n \
        --usepkgonly --quiet-build=y @horcrux-world-set

    # shellcheck disable=SC2012 # kernel version directory names
    kver=$(ls "$rootfs/lib/modules" | sort -V | tail -n 1)
    [[ -n $kver ]] || die "no kernel modules in $rootfs/lib/modules"
    log "rootfs: kernel $kver"
    find "$rootfs/lib/modules/$kver" -name 'zfs.ko*' | grep -q . ||
        die "zfs.ko is missing for kernel $kver (zfs-kmod not built against gentoo-kernel?)"
    find "$rootfs/lib/modules/$kver" -name 'spl.ko*' | grep -q . ||
        die "spl.ko is missing for kernel $kver"
    check_kernel_config "$rootfs" "$kver"

    # With --root, dist-kernel does not run installkernel for the rootfs:
    # copy the image from the package's files.
    local image
    for image in "$rootfs/boot/vmlinuz-$kver" "$rootfs/lib/modules/$kver/vmlinuz" \
        "$rootfs/usr/src/linux-$kver/arch/x86/boot/bzImage"; do
        [[ -f $image ]] && break
    done
    [[ -f $image ]] || die "no kernel image for $kver in $rootfs"
    [[ $image == "$rootfs/boot/vmlinuz-$kver" ]] || install -m 0644 "$image" "$rootfs/boot/vmlinuz-$kver"

    local moddir mod
    for moddir in "$here"/dracut/*/; do
        mod=$(basename "$moddir")
        log "rootfs: dracut module $mod"
        install -d "$rootfs/usr/lib/dracut/modules.d/$mod"
        install -m 0755 "$moddir"*.sh "$rootfs/usr/lib/dracut/modules.d/$mod/"
    done
    log "rootfs: initramfs for $kver"
    install -d "$rootfs/etc/dracut.conf.d"
    install -m 0644 "$here/dracut.conf.d/horcrux.conf" "$rootfs/etc/dracut.conf.d/horcrux.conf"
    with_mounts "$rootfs" chroot "$rootfs" dracut --force --kver "$kver" "/boot/initramfs-$kver.img"
    lsinitrd_check "$rootfs" "$kver"
    ln -sfn "vmlinuz-$kver" "$rootfs/boot/vmlinuz"
    ln -sfn "initramfs-$kver.img" "$rootfs/boot/initrd.img"

    install_ovmf "$rootfs"

    log "rootfs: recipe overlay (sshd drop-in)"
    cp -a "$here/overlay/." "$rootfs/"
    grep -Eq '^[[:space:]]*Include[[:space:]]+"?/etc/ssh/sshd_config\.d/\*\.conf' "$rootfs/etc/ssh/sshd_config" ||
        die "/etc/ssh/sshd_config does not include /etc/ssh/sshd_config.d/*.conf (contract)"

    # Debian's package scripts enable these; Gentoo's packages enable
    # nothing. The image tool enables hostd, first boot, networkd and
    # resolved itself and masks the ZFS import units.
    log "rootfs: enabling sshd, getty on tty1, zfs.target, zfs-zed, zfs-mount"
    with_mounts "$rootfs" chroot "$rootfs" systemctl enable \
        sshd.service getty@tty1.service zfs.target zfs-zed.service zfs-mount.service

    log "rootfs: removing per-machine identity and the kernel build tree"
    rm -f "$rootfs"/etc/ssh/ssh_host_* "$rootfs/etc/hostid" "$rootfs/var/lib/dbus/machine-id"
    rm -f "$rootfs/etc/machine-id" && : >"$rootfs/etc/machine-id"
    chmod 0444 "$rootfs/etc/machine-id"
    # zfs-kmod is built; the node never compiles anything (contract).
    rm -rf "$rootfs"/usr/src/linux-* "$rootfs/usr/src/linux" "$rootfs/lib/modules/$kver/build"
    rm -rf "$rootfs"/var/tmp/portage "$rootfs"/var/cache/binpkgs "$rootfs"/var/cache/distfiles
    rm -rf "$rootfs"/usr/share/man "$rootfs"/usr/share/info

    log "rootfs: checking the contract paths"
    local p missing=0
    for p in "${CONTRACT_PATHS[@]}"; do
        if [[ ! -e $rootfs/$p && ! -L $rootfs/$p ]]; then
            log "missing: /$p"
            missing=1
        fi
    done
    [[ -f $rootfs/etc/machine-id && ! -s $rootfs/etc/machine-id ]] || { log "/etc/machine-id is not an empty file"; missing=1; }
    if compgen -G "$rootfs/etc/ssh/ssh_host_*" >/dev/null || [[ -e $rootfs/etc/hostid ]]; then
        log "per-machine identity left in the rootfs"
        missing=1
    fi
    [[ $missing == 0 ]] || die "the rootfs does not meet the contract (see above)"
    log "rootfs: done"
}

# Runs a command with /proc, /sys and /dev mounted in the root $1.
with_mounts() {
    local r=$1 rc=0
    shift
    mount -t proc proc "$r/proc"
    mount -t sysfs sys "$r/sys"
    mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"
    "$@" || rc=$?
    umount -R "$r/dev" "$r/sys" "$r/proc"
    return "$rc"
}

# The merged kernel config against the fragment: =y must be y, =m may be m
# or y (selected), "is not set" must not be y or m. A mismatch means the
# fragment names a symbol this kernel no longer has (or a dependency is off).
check_kernel_config() {
    local r=$1 kver=$2 cfg line sym want have bad=0
    for cfg in "$r/usr/src/linux-$kver/.config" "$r/lib/modules/$kver/config" "$r/boot/config-$kver"; do
        [[ -f $cfg ]] && break
    done
    [[ -f $cfg ]] || die "no kernel .config for $kver in the rootfs"
    log "rootfs: checking $cfg against kernel/horcrux.config"
    while IFS= read -r line; do
        if [[ $line =~ ^(CONFIG_[A-Z0-9_]+)=(.*)$ ]]; then
            sym=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
        elif [[ $line =~ ^#\ (CONFIG_[A-Z0-9_]+)\ is\ not\ set$ ]]; then
            sym=${BASH_REMATCH[1]} want=n
        else
            continue
        fi
        have=$(sed -n "s/^$sym=//p" "$cfg")
        case $want:$have in
        y:y | m:m | m:y | n: ) ;;
        \"*:"$want") ;;
        *)
            log "kernel config: $sym=${have:-<unset>} (fragment: $want)"
            bad=1
            ;;
        esac
    done <"$here/kernel/horcrux.config"
    [[ $bad == 0 ]] || die "the kernel config does not match kernel/horcrux.config"
}

# The initramfs must carry systemd, the machine-id hook and what opens the
# erofs root on dm-verity: systemd-veritysetup and its generator (disk
# slots), the PXE root module with losetup and veritysetup, the
# device-mapper udev rules (/dev/mapper/root), and the loop, dm-verity and
# erofs kernel modules unless they are built in. Its default command line
# must make failures reboot.
lsinitrd_check() {
    local r=$1 kver=$2 listing kmod want
    listing=$(chroot "$r" lsinitrd "/boot/initramfs-$kver.img")
    for want in 'usr/lib/systemd/systemd$' \
        'pre-pivot/90-horcrux-machine-id\.sh$' \
        'usr/lib/systemd/systemd-veritysetup$' \
        'system-generators/systemd-veritysetup-generator$' \
        'cmdline/91-parse-horcrux-pxe-root\.sh$' \
        'sbin/horcrux-pxe-root$' \
        'bin/veritysetup$' 'bin/losetup$' \
        'rules\.d/10-dm\.rules$' \
        'etc/cmdline\.d/01-default\.conf$'; do
        grep -Eq -- "$want" <<<"$listing" || die "the initramfs lacks ${want%\$} (lsinitrd)"
    done
    for kmod in loop dm-verity erofs; do
        grep -Eq "/$kmod\.ko$" "$r/lib/modules/$kver/modules.builtin" 2>/dev/null && continue
        grep -Eq "/$kmod\.ko(\.(xz|zst|gz))?$" <<<"$listing" ||
            die "the initramfs lacks the $kmod kernel module"
    done
    chroot "$r" lsinitrd -f etc/cmdline.d/01-default.conf "/boot/initramfs-$kver.img" |
        grep -q 'rd.emergency=reboot' || die "the initramfs's default command line lacks rd.emergency=reboot"
}

# OVMF at the paths hostd uses (Debian's): raw 4 MiB images without Secure
# Boot. sys-firmware/edk2-bin ships them under /usr/share/edk2/OvmfX64, the
# 4 MiB ones as QCOW2 in current versions: converted to raw here.
install_ovmf() {
    local r=$1 dir unit src
    dir=$r/usr/share/edk2/OvmfX64
    [[ -d $dir ]] || dir=$r/usr/share/edk2-ovmf
    [[ -d $dir ]] || die "no OVMF directory in the rootfs (sys-firmware/edk2-bin)"
    install -d "$r/usr/share/OVMF"
    for unit in CODE VARS; do
        if [[ -f $dir/OVMF_${unit}_4M.fd ]]; then
            src=$dir/OVMF_${unit}_4M.fd
            log "rootfs: /usr/share/OVMF/OVMF_${unit}_4M.fd <- ${src#"$r"}"
            cp --reflink=auto "$src" "$r/usr/share/OVMF/OVMF_${unit}_4M.fd"
        elif [[ -f $dir/OVMF_${unit}_4M.qcow2 ]]; then
            src=$dir/OVMF_${unit}_4M.qcow2
            log "rootfs: /usr/share/OVMF/OVMF_${unit}_4M.fd <- ${src#"$r"} (qcow2 -> raw)"
            qemu-img convert -f qcow2 -O raw "$src" "$r/usr/share/OVMF/OVMF_${unit}_4M.fd"
        else
            die "no 4 MiB OVMF_${unit} image in ${dir#"$r"}"
        fi
        chmod 0644 "$r/usr/share/OVMF/OVMF_${unit}_4M.fd"
    done
    [[ $(stat -c %s "$r/usr/share/OVMF/OVMF_CODE_4M.fd") -eq 4194304 ]] ||
        die "OVMF_CODE_4M.fd is not 4 MiB"
}

if [[ ${1:-} == --inside ]]; then
    inside
    exit 0
fi

# ---------------------------------------------------------------------------
# Stage 1: on the build machine.
# ---------------------------------------------------------------------------
out=${1:?usage: recipes/gentoo/build.sh OUT.tar}
[[ $out == *.tar ]] || die "the output must end in .tar: $out"
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot, mounts, file ownership in the rootfs)"
for tool in curl git tar xz sha256sum chroot mount; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
out=$(realpath -m "$out")
repo_root=$(cd "$here/../.." && pwd)
cache=${HORCRUX_GENTOO_CACHE:-$repo_root/target/gentoo-cache}
mirror=${HORCRUX_GENTOO_MIRROR:-https://distfiles.gentoo.org}
repo_url=${HORCRUX_GENTOO_REPO_URL:-https://github.com/gentoo-mirror/gentoo.git}
commit=${HORCRUX_GENTOO_REPO_COMMIT:-$(pin GENTOO_REPO_COMMIT)}
stage3=${HORCRUX_GENTOO_STAGE3:-$(pin STAGE3)}
stage3_sha=${HORCRUX_GENTOO_STAGE3_SHA256:-$(pin STAGE3_SHA256)}

for v in commit stage3 stage3_sha; do
    [[ ${!v} != PIN_ME ]] ||
        die "pins: $v is PIN_ME. The release engineer pins the ::gentoo commit and the stage3 (name and SHA-256) in $here/pins; see README.md"
done
[[ $commit =~ ^[0-9a-f]{40}$ ]] || die "pins: GENTOO_REPO_COMMIT is not 40 hex digits: $commit"
[[ $stage3_sha =~ ^[0-9a-f]{64}$ ]] || die "pins: STAGE3_SHA256 is not 64 hex digits: $stage3_sha"
[[ $stage3 =~ ^[0-9TZ]+/stage3-amd64-systemd-[0-9TZ]+\.tar\.xz$ ]] ||
    die "pins: STAGE3 is not <date>/stage3-amd64-systemd-<date>.tar.xz: $stage3"

install -d "$cache/stage3" "$cache/distfiles" "$cache/binpkgs"
tarball=$cache/stage3/${stage3##*/}
if [[ ! -f $tarball ]]; then
    log "downloading $mirror/releases/amd64/autobuilds/$stage3"
    curl -fL --retry 3 -o "$tarball.part" "$mirror/releases/amd64/autobuilds/$stage3"
    mv "$tarball.part" "$tarball"
fi
log "verifying the stage3 SHA-256"
echo "$stage3_sha  $tarball" | sha256sum -c --quiet - ||
    die "SHA-256 mismatch for $tarball (delete it to download again; never edit the pin to match)"

# git checks every object against the commit id: the tree is what was pinned.
gentoo_repo=$cache/gentoo-repo
if [[ $(git -C "$gentoo_repo" rev-parse HEAD 2>/dev/null) != "$commit" ]]; then
    log "fetching ::gentoo at $commit from $repo_url (shallow)"
    [[ -d $gentoo_repo/.git ]] || git init --quiet "$gentoo_repo"
    git -C "$gentoo_repo" fetch --quiet --depth=1 "$repo_url" "$commit"
    git -C "$gentoo_repo" -c advice.detachedHead=false checkout --quiet --force FETCH_HEAD
fi
[[ $(git -C "$gentoo_repo" rev-parse HEAD) == "$commit" ]] || die "::gentoo checkout is not at $commit"

work=$(mktemp -d "$cache/work.XXXXXX")
builder=$work/builder
cleanup() {
    local m
    # Unmount in reverse order of mounting (nested mounts first).
    for m in $(findmnt -rno TARGET | grep -F "$work/" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

log "unpacking the stage3 into $builder"
install -d "$builder"
tar -C "$builder" --numeric-owner --xattrs --xattrs-include='*' -xpf "$tarball"
install -d "$builder/horcrux-recipe" "$builder/var/db/repos/gentoo" \
    "$builder/var/cache/distfiles" "$builder/var/cache/binpkgs"
cp -a "$here/." "$builder/horcrux-recipe/"
cp -L /etc/resolv.conf "$builder/etc/resolv.conf"
mount --bind "$gentoo_repo" "$builder/var/db/repos/gentoo"
mount -o remount,bind,ro "$builder/var/db/repos/gentoo"
mount --bind "$cache/distfiles" "$builder/var/cache/distfiles"
mount --bind "$cache/binpkgs" "$builder/var/cache/binpkgs"
mount -t proc proc "$builder/proc"
mount -t sysfs sys "$builder/sys"
mount --rbind /dev "$builder/dev" && mount --make-rslave "$builder/dev"
mount -t tmpfs tmpfs "$builder/run"

log "entering the builder chroot"
env -i HOME=/root TERM="${TERM:-dumb}" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HORCRUX_GENTOO_BINHOST="${HORCRUX_GENTOO_BINHOST:-0}" HORCRUX_GENTOO_COMMIT="$commit" \
    chroot "$builder" /horcrux-recipe/build.sh --inside

log "writing $out"
tar -C "$builder/rootfs" --numeric-owner --xattrs --xattrs-include='*' -cf "$out" .
log "wrote $out ($(du -h "$out" | cut -f1))"
