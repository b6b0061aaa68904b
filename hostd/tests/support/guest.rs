//! A tiny Linux guest for tests that need a real VM under QEMU TCG: Debian
//! bookworm's `linux-image-cloud-amd64` kernel and an initramfs of
//! `busybox-static` plus a few kernel modules. It boots to a shell script
//! in a few seconds.
//!
//! Use it from an integration test with
//!
//! ```ignore
//! #[path = "support/guest.rs"]
//! mod guest;
//! ```
//!
//! (a module file, not `support/mod.rs`, so each test binary picks exactly
//! the helpers it includes). Then:
//!
//! ```ignore
//! if !guest::qemu_available() { return; }
//! let guest = guest::tiny_guest("echo hello-marker; mount -t iso9660 /dev/sr0 /mnt");
//! let mut vm = guest::Vm::spawn(&guest, &guest::VmConfig::default());
//! vm.wait_for("hello-marker", guest::BOOT_TIMEOUT);
//! // talk to vm.qmp_socket(), read vm.serial_output(), ...
//! ```
//!
//! # Getting the packages
//!
//! Nothing is installed on the host. `apt-get download` fetches the two
//! `.deb`s (running `apt-get update` once when the package lists are
//! missing, which needs root) and `dpkg-deb -x` unpacks them under
//! `<target>/guest-cache/pkgs-<hash>/`, the hash covering the exact package
//! files apt resolved, so a kernel update in the archive gives a new
//! directory. Offline, the newest complete download is reused. The
//! initramfs is written by this file (cpio "newc", uncompressed: the kernel
//! reads it as is, so neither `cpio` nor `gzip` is needed) under
//! `<target>/guest-cache/<hash>/`, the hash covering the packages, the init
//! script, the module list and the test's script. Directories are built
//! under a temporary name and renamed into place, so concurrent test
//! processes never see half a cache entry. `HORCRUX_GUEST_CACHE` overrides
//! the cache directory.
//!
//! # The guest
//!
//! `/init` mounts proc, sys and devtmpfs, loads the modules in [`MODULES`]
//! (dependencies first; the cloud kernel has virtio_blk, virtio_pci, the
//! CD and FAT drivers as modules and ext4 built in), arms the power
//! button, prints [`READY`] and then runs the test's script with
//! `/bin/sh` as its child, its output on the serial console. When the
//! script returns, init prints `horcrux-guest: script exited with N` and
//! idles; the guest keeps running until QEMU is told otherwise.
//!
//! The power button (QMP `system_powerdown`) is an ACPI event that the
//! kernel's `button` driver turns into a key press on the "Power Button"
//! input device; by default init waits on that device and runs
//! `poweroff -f`, so QEMU exits. With [`PowerButton::Ignore`] nothing
//! listens and the press does nothing, like a guest without ACPI support.
//!
//! Busybox has `findfs` (no `blkid`): `mount "$(findfs LABEL=CIDATA)"
//! /mnt` finds a labelled filesystem; `/proc/cmdline` carries
//! [`VmConfig::append`] for per-run parameters.
//!
//! Note: the cloud kernel has no AHCI driver (`CONFIG_SATA_AHCI` is not
//! set; checked: with `-device ahci -device ide-cd,bus=ahci0.0` there is
//! no /dev/sr0), so neither an `ahci` controller nor q35's built-in one is
//! visible to it. A seed for this guest must be on virtio-blk (/dev/vda),
//! on virtio-scsi (`-device scsi-cd`, /dev/sr0) or on `ide-cd` of the `pc`
//! machine (ata_piix).

#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Printed by `/init` on the serial console once setup is done, just
/// before the test's script runs.
pub const READY: &str = "HORCRUX-GUEST-READY";

/// Generous bound for booting to a marker: about 2 s alone under TCG, but
/// several guests booting at once on a 2-core CI machine take longer.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The Debian packages the guest is made of.
const KERNEL_META: &str = "linux-image-cloud-amd64";
const BUSYBOX: &str = "busybox-static";

/// Bump when the layout of a package cache directory changes.
const PACKAGES_FORMAT: &str = "packages-v1";

/// Kernel modules the guest loads, by module name (`-` and `_` are the
/// same), with their dependencies. Built-in ones are skipped. `true`
/// marks modules whose absence is an error.
pub const MODULES: &[(&str, bool)] = &[
    // virtio devices (virtio_pci pulls in virtio and virtio_ring)
    ("virtio_pci", true),
    ("virtio_blk", true),
    ("virtio_scsi", true),
    ("virtio_net", true),
    ("virtio_console", true),
    // disks and CDs: SCSI disk/CD, IDE on the `pc` machine
    ("sd_mod", true),
    ("sr_mod", true),
    ("cdrom", true),
    ("ata_piix", true),
    ("ata_generic", true),
    // AHCI: not built for the cloud kernel; loaded should a later one have it
    ("ahci", false),
    // a cloud-init seed: iso9660 or vfat labelled `cidata`
    ("isofs", true),
    ("vfat", true),
    ("nls_cp437", true),
    ("nls_iso8859_1", true),
    ("nls_utf8", true),
    ("nls_ascii", true),
    // the ACPI power button as an input device, readable as /dev/input/event*
    ("button", true),
    ("evdev", true),
];

/// What the guest does when the ACPI power button is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerButton {
    /// `poweroff -f`: QEMU exits (without `-no-shutdown`).
    PowerOff,
    /// Nothing.
    Ignore,
}

/// A bootable kernel and initramfs.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// A guest that powers off on the power button and runs `script` (a
/// `/bin/sh` script, busybox applets on PATH) after setup; print markers
/// with `echo`, they go to the serial console.
pub fn tiny_guest(script: &str) -> Guest {
    tiny_guest_with(script, PowerButton::PowerOff)
}

/// [`tiny_guest`] with a choice of power button behaviour.
pub fn tiny_guest_with(script: &str, power_button: PowerButton) -> Guest {
    // One build at a time in this process; other processes are kept
    // apart by building under temporary names and renaming.
    static BUILD: Mutex<()> = Mutex::new(());
    let _serial = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let packages = packages();
    let init = init_script(power_button);
    let mut hash = Sha256::new();
    // This file's own text stands for the initramfs layout and module
    // list: any change to the harness rebuilds the images.
    for part in [
        packages.key.as_str(),
        include_str!("guest.rs"),
        init.as_str(),
        script,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let dir = cache_root().join(hex(&hash.finalize()[..8]));
    let initrd = dir.join("initrd.img");
    if !initrd.exists() {
        let image = initramfs(packages, &init, script);
        build_dir(&dir, |tmp| {
            fs::write(tmp.join("initrd.img"), &image).unwrap();
            fs::write(tmp.join("init"), &init).unwrap();
            fs::write(tmp.join("script"), script).unwrap();
        });
    }
    Guest {
        kernel: packages.kernel.clone(),
        initrd,
    }
}

/// Whether QEMU tests can run here. Like `qemu_argv.rs`: without
/// `qemu-system-x86_64` the test is skipped with a note, unless `CI` is
/// set, where `.ci/run` installed it and its absence is a failure.
pub fn qemu_available() -> bool {
    let installed = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-system-x86_64 is required in CI"
        );
        eprintln!("skipped: qemu-system-x86_64 is not installed (run .ci/run's apt-get line)");
    }
    installed
}

// ---------------------------------------------------------------- packages

#[derive(Debug)]
struct Packages {
    /// Identifies the exact package files.
    key: String,
    /// The unpacked packages.
    root: PathBuf,
    kernel: PathBuf,
    /// `uname -r` of the kernel: the directory under lib/modules.
    release: String,
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HORCRUX_GUEST_CACHE") {
        return PathBuf::from(dir);
    }
    // CARGO_TARGET_TMPDIR is <target>/tmp; its parent honours
    // CARGO_TARGET_DIR.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("guest-cache")
}

/// Downloads and unpacks the packages once per process (and once per
/// package version on this machine).
fn packages() -> &'static Packages {
    static PACKAGES: std::sync::OnceLock<Packages> = std::sync::OnceLock::new();
    PACKAGES.get_or_init(|| {
        let root = cache_root();
        fs::create_dir_all(&root).unwrap();
        let uris = match resolve() {
            Ok(uris) => uris,
            Err(why) => match newest_download(&root) {
                Some(dir) => {
                    eprintln!(
                        "note: {why}; reusing the guest packages in {}",
                        dir.display()
                    );
                    return open_packages(&dir);
                }
                None => panic!("cannot get the tiny guest's packages: {why}"),
            },
        };
        let mut hash = Sha256::new();
        hash.update(PACKAGES_FORMAT);
        for line in &uris {
            // "'URI' FILE SIZE SHA256:..." - the file name and hash, not
            // the mirror, identify a package.
            let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
            hash.update(fields.join(" "));
            hash.update("\n");
        }
        let dir = root.join(format!("pkgs-{}", hex(&hash.finalize()[..8])));
        if !dir.join("complete").exists() {
            let names: Vec<String> = uris
                .iter()
                .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
                .collect();
            eprintln!("note: downloading the tiny guest's packages: {names:?}");
            build_dir(&dir, |tmp| download(tmp, &uris));
        }
        open_packages(&dir)
    })
}

/// `apt-get download --print-uris` lines for the kernel and busybox.
fn resolve() -> Result<Vec<String>, String> {
    match try_resolve() {
        Ok(uris) => Ok(uris),
        Err(first) => {
            // A fresh machine (or container) may have no package lists.
            eprintln!("note: {first}; running apt-get update");
            let updated = Command::new("apt-get")
                .args(["update", "-qq"])
                .status()
                .map_err(|e| format!("cannot run apt-get update: {e}"))?;
            if !updated.success() {
                return Err(format!("{first}; apt-get update failed ({updated})"));
            }
            try_resolve()
        }
    }
}

fn try_resolve() -> Result<Vec<String>, String> {
    // The metapackage depends on the versioned kernel package.
    let show = output(Command::new("apt-cache").args(["show", "--no-all-versions", KERNEL_META]))?;
    let kernel = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .and_then(|deps| {
            deps.split(',')
                .map(|d| d.split_whitespace().next().unwrap_or(""))
                .find(|d| d.starts_with("linux-image-"))
        })
        .ok_or_else(|| format!("{KERNEL_META} does not depend on a linux-image package"))?
        .to_string();
    let uris =
        output(Command::new("apt-get").args(["download", "--print-uris", &kernel, BUSYBOX]))?;
    let uris: Vec<String> = uris
        .lines()
        .filter(|l| l.starts_with('\''))
        .map(str::to_string)
        .collect();
    if uris.len() != 2 {
        return Err(format!(
            "apt-get resolved {uris:?} for {kernel} and {BUSYBOX}"
        ));
    }
    Ok(uris)
}

fn download(dir: &Path, uris: &[String]) {
    let names: Vec<&str> = uris
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let packages: Vec<&str> = names.iter().filter_map(|n| n.split('_').next()).collect();
    // As root apt hands downloads to the `_apt` user, which cannot write
    // into our directory; download as the caller instead.
    let status = Command::new("apt-get")
        .args(["download", "-qq", "-o", "APT::Sandbox::User=root"])
        .args(&packages)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "apt-get download {packages:?} failed ({status})"
    );
    let root = dir.join("root");
    for name in names {
        // apt names the file after the URI, with `:` escaped.
        let deb = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "deb")
                    && p.file_name()
                        .and_then(|f| f.to_str())
                        .and_then(|f| f.split('_').next())
                        == name.split('_').next()
            })
            .unwrap_or_else(|| panic!("apt-get did not download {name}"));
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
        fs::remove_file(&deb).unwrap();
    }
    fs::write(dir.join("complete"), uris.join("\n")).unwrap();
}

fn newest_download(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("pkgs-"))
                && p.join("complete").exists()
        })
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn open_packages(dir: &Path) -> Packages {
    let root = dir.join("root");
    let modules = root.join("lib/modules");
    let release = fs::read_dir(&modules)
        .unwrap_or_else(|e| panic!("{}: {e}", modules.display()))
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .max()
        .unwrap_or_else(|| panic!("no kernel under {}", modules.display()));
    let kernel = root.join("boot").join(format!("vmlinuz-{release}"));
    assert!(kernel.exists(), "{} is missing", kernel.display());
    let key = dir
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default()
        .to_string();
    Packages {
        key,
        root,
        kernel,
        release,
    }
}

// ----------------------------------------------------------------- modules

/// The `.ko` files to load, dependencies first.
fn module_files(packages: &Packages) -> Vec<(String, PathBuf)> {
    let base = packages.root.join("lib/modules").join(&packages.release);
    let builtin: BTreeSet<String> = fs::read_to_string(base.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(module_name)
        .collect();
    let mut available = BTreeMap::new();
    index_modules(&base.join("kernel"), &mut available);

    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for &(name, required) in MODULES {
        let name = name.replace('-', "_");
        if builtin.contains(&name) {
            continue;
        }
        if !available.contains_key(&name) {
            assert!(
                !required,
                "kernel {} has no module {name}",
                packages.release
            );
            continue;
        }
        visit(&name, &available, &builtin, &mut seen, &mut order);
    }
    order
        .into_iter()
        .map(|name| {
            let path = available[&name].clone();
            (name, path)
        })
        .collect()
}

/// Depth-first: a module after everything it depends on.
fn visit(
    name: &str,
    available: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) {
    if builtin.contains(name) || !seen.insert(name.to_string()) {
        return;
    }
    let path = available
        .get(name)
        .unwrap_or_else(|| panic!("module dependency {name} not found"));
    for dep in depends(path) {
        visit(&dep, available, builtin, seen, order);
    }
    order.push(name.to_string());
}

fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            index_modules(&path, out);
        } else if let Some(name) = path.to_str().and_then(module_name) {
            out.insert(name, path);
        }
    }
}

/// "kernel/fs/nls/nls_iso8859-1.ko" -> "nls_iso8859_1".
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_suffix(".ko")?;
    Some(stem.replace('-', "_"))
}

/// The `depends=` entry of a module's `.modinfo` section (NUL-separated
/// `key=value` strings), without parsing ELF: depmod is not installed on
/// a fresh machine and the package ships no modules.dep.
fn depends(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap();
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &bytes[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

// --------------------------------------------------------------- initramfs

fn init_script(power_button: PowerButton) -> String {
    let power = match power_button {
        PowerButton::PowerOff => "poweroff",
        PowerButton::Ignore => "ignore",
    };
    format!(
        r#"#!/bin/sh
# /init of the Horcrux tiny test guest (hostd/tests/support/guest.rs).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/horcrux-modules); do
    insmod /lib/modules/$m.ko || echo "horcrux-guest: insmod $m failed"
done

if [ {power} = poweroff ]; then
    armed=0
    for ev in /sys/class/input/event*; do
        [ "$(cat $ev/device/name 2>/dev/null)" = "Power Button" ] || continue
        dev=${{ev##*/}}
        # Open the device before announcing readiness, so a press right
        # after READY is not lost. evdev reads whole 24-byte events.
        (
            exec 3</dev/input/$dev || exit 1
            : > /run/power-button-$dev
            dd bs=24 count=1 <&3 >/dev/null 2>&1
            echo "horcrux-guest: power button pressed; powering off"
            poweroff -f
        ) &
        while [ ! -e /run/power-button-$dev ] && kill -0 $! 2>/dev/null; do :; done
        [ -e /run/power-button-$dev ] && armed=1
    done
    [ $armed = 1 ] || echo "horcrux-guest: no power button input device"
fi

echo {READY}
sh /script
echo "horcrux-guest: script exited with $?"
while :; do sleep 3600; done
"#
    )
}

/// The cpio archive: busybox with its applet links, the modules, /init and
/// the test's script.
fn initramfs(packages: &Packages, init: &str, script: &str) -> Vec<u8> {
    let busybox = packages.root.join("bin/busybox");
    let applets = Command::new(&busybox).arg("--list-full").output().unwrap();
    assert!(
        applets.status.success(),
        "{} --list-full failed",
        busybox.display()
    );
    let applets = String::from_utf8(applets.stdout).unwrap();

    let mut cpio = Cpio::default();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "root",
    ] {
        cpio.dir(dir);
    }
    cpio.file("bin/busybox", 0o755, &fs::read(&busybox).unwrap());
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet != "bin/busybox" {
            let depth = applet.matches('/').count();
            let target = format!("{}bin/busybox", "../".repeat(depth));
            cpio.symlink(applet, &target);
        }
    }
    let modules = module_files(packages);
    let mut list = String::new();
    for (name, path) in &modules {
        cpio.file(
            &format!("lib/modules/{name}.ko"),
            0o644,
            &fs::read(path).unwrap(),
        );
        list.push_str(name);
        list.push('\n');
    }
    cpio.file("etc/horcrux-modules", 0o644, list.as_bytes());
    cpio.file("init", 0o755, init.as_bytes());
    cpio.file("script", 0o755, script.as_bytes());
    cpio.finish()
}

/// A cpio "newc" writer: the format the kernel unpacks into its rootfs.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, target.as_bytes());
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let size = u32::try_from(data.len()).unwrap();
        let namesize = u32::try_from(name.len() + 1).unwrap();
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.inode, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

// ------------------------------------------------------------------- cache

/// Fills `dir` atomically: `fill` writes into a temporary sibling that is
/// renamed into place; if another process won the race, its copy is kept.
fn build_dir(dir: &Path, fill: impl FnOnce(&Path)) {
    if dir.exists() {
        return;
    }
    let parent = dir.parent().unwrap();
    fs::create_dir_all(parent).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .unwrap();
    fill(tmp.path());
    let tmp = tmp.keep();
    if fs::rename(&tmp, dir).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        assert!(dir.exists(), "cannot create {}", dir.display());
    }
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------- VM

/// How to run a guest.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `-machine` type: q35 like Horcrux's VMs; `pc` gives an IDE (ata_piix)
    /// controller the cloud kernel can drive.
    pub machine: String,
    pub memory_mib: u32,
    /// Added to the kernel command line after `console=ttyS0 panic=-1 quiet`.
    pub append: String,
    /// The serial console goes to a file ([`Vm::serial_output`],
    /// [`Vm::wait_for`]). Set to false to attach your own serial device
    /// through `extra_args`.
    pub serial_to_file: bool,
    /// More QEMU arguments (disks, CDs, NICs, `-no-shutdown`, ...).
    pub extra_args: Vec<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            machine: "q35".to_string(),
            memory_mib: 256,
            append: String::new(),
            serial_to_file: true,
            extra_args: Vec::new(),
        }
    }
}

/// A running QEMU (TCG) with the guest; killed when dropped.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    exited: Option<ExitStatus>,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Vm {
    /// Starts QEMU: TCG, no default devices, no reboot (a guest reboot or
    /// panic ends QEMU), QMP on `qmp.sock` and the serial console in
    /// `serial.log`, both in a fresh temporary directory ([`Vm::dir`]; in
    /// the system temp dir, since unix socket paths are limited to 108
    /// bytes).
    pub fn spawn(guest: &Guest, config: &VmConfig) -> Vm {
        let dir = tempfile::Builder::new()
            .prefix("horcrux-guest-")
            .tempdir()
            .unwrap();
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
            .args(["-machine", &config.machine])
            .args(["-m", &config.memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&guest.kernel)
            .arg("-initrd")
            .arg(&guest.initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 panic=-1 quiet {}", config.append).trim_end())
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                dir.path().join("qmp.sock").display()
            ));
        if config.serial_to_file {
            command.arg("-chardev").arg(format!(
                "file,id=serial0,path={}",
                dir.path().join("serial.log").display()
            ));
            command.args(["-serial", "chardev:serial0"]);
        }
        command.args(&config.extra_args);
        let stderr = fs::File::create(dir.path().join("qemu.stderr")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
        Vm {
            child,
            exited: None,
            dir,
            started: Instant::now(),
        }
    }

    /// The temporary directory holding the sockets and logs; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.path().join("qmp.sock")
    }

    pub fn serial_log(&self) -> PathBuf {
        self.dir.path().join("serial.log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the guest printed on the serial console so far.
    pub fn serial_output(&self) -> String {
        fs::read(self.serial_log())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What QEMU printed on stderr.
    pub fn qemu_stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("qemu.stderr")).unwrap_or_default()
    }

    /// Waits until `marker` appears on the serial console; returns the time
    /// since QEMU was started. Panics, showing the console and QEMU's
    /// stderr, when QEMU exits first or `timeout` passes.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial_output().contains(marker) {
                return self.started.elapsed();
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "QEMU exited ({status}) before the guest printed {marker:?}\n{}",
                    self.report()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {marker:?} from the guest within {timeout:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// QEMU's exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited
    }

    /// Waits up to `timeout` for QEMU to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The serial console and QEMU's stderr, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- serial console ---\n{}\n--- qemu stderr ---\n{}",
            self.serial_output(),
            self.qemu_stderr()
        )
    }

    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
