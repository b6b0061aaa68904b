//! ZFS storage cases: a test pool on the node's second disk (made here,
//! exported, and imported again by hostd), one zvol per VM disk under
//! `tank/vms` (examples/single-node's `local-zfs` storage), named and
//! scheduled snapshots, a linked clone, a disk grown under its running
//! guest, a refused shrink, an image import, and a removed VM's zvols
//! kept until purged. The VMs run the tiny guest of vm.rs with a script
//! that reports its disk.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use horcrux_e2e::node::{Node, Via};
use serde_json::Value;

use super::net::resource;
use super::vm::{self, NESTED_BOOT};
use super::{APPLY_TIMEOUT, Ctx, kept_tree, tree_copy};

/// The pool named in examples/single-node's node.toml `[zfs] pools`.
const POOL: &str = "tank";
/// The parent dataset of the `local-zfs` storage.
const PARENT: &str = "tank/vms";
const STORAGE: &str = "local-zfs";
/// The zfs guest's initramfs, beside vm.rs's in its guest directory.
const INITRD: &str = "zfs-initrd";
/// Creating a zvol, a snapshot (hostd first asks the guest agent the
/// tiny guest lacks) or importing an image, under TCG.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(180);
const MIB: u64 = 1 << 20;
/// What the test writes at the start of zdisk's disk before any guest
/// boots from it; the guests of zdisk and of its clone look for it.
const DISK_MARK: &str = "horcrux-mark!";
/// What each guest writes into its disk's second sector.
const GUEST_MARK: &str = "guest-was-here";
/// The start of the imported image's disk content.
const IMAGE_MARK: &str = "horcrux-image!";

/// The zfs guest: looks for [`DISK_MARK`] at the start of its disk
/// (/dev/vda), writes [`GUEST_MARK`] into the disk's second sector, then
/// reports the disk's size in sectors and whether the mark was there,
/// five times a second (`horcrux console` shows live output only and
/// ends after a second of quiet).
fn guest_script() -> String {
    format!(
        "n=0\n\
         while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do usleep 100000; n=$((n+1)); done\n\
         if [ ! -b /dev/vda ]; then m=no-disk\n\
         elif [ \"$(dd if=/dev/vda bs={len} count=1 2>/dev/null)\" = '{DISK_MARK}' ]; then m=found\n\
         else m=missing\n\
         fi\n\
         printf '{GUEST_MARK}' | dd of=/dev/vda bs=512 seek=1 conv=notrunc 2>/dev/null && sync\n\
         while true; do\n\
         read s < /sys/block/vda/size\n\
         echo \"zdisk-size $s zdisk-marker-$m\"\n\
         usleep 200000\n\
         done\n",
        len = DISK_MARK.len()
    )
}

/// The guest's console line for a disk of `mib` MiB; `marker` is
/// "found", "missing" or "" (either).
fn console_line(mib: u64, marker: &str) -> String {
    format!("zdisk-size {} zdisk-marker-{marker}", mib * MIB / 512)
}

/// The tree the ZFS cases push, kept between cases so each edits it.
fn tree() -> Result<PathBuf> {
    kept_tree("zfs")
}

/// The zvol of disk 0 of `vm`.
fn dataset(vm: &str) -> String {
    format!("{PARENT}/vm-{vm}-disk0")
}

/// The volume resource of disk 0 of `vm`.
fn volume_id(vm: &str) -> String {
    format!("{STORAGE}/vm-{vm}-disk0")
}

/// Writes VM `name` with the zfs guest and one disk on `local-zfs`;
/// `disk` holds the disk's other keys.
fn write_disk_vm(tree: &Path, name: &str, keys: &str, disk: &str, tables: &str) -> Result<()> {
    let tables = format!("[[disk]]\nstorage = \"{STORAGE}\"\n{disk}\n{tables}");
    vm::write_guest_vm(tree, name, INITRD, keys, &tables)
}

/// Adds VM `name` with a 64MiB disk made from `source` to the tree,
/// pushes it and waits until the volume is there; returns when the push
/// started.
fn push_vm_from(node: &Node, name: &str, keys: &str, source: &str) -> Result<Instant> {
    let tree = tree()?;
    let disk = format!("size = \"64MiB\"\nsource = \"{source}\"");
    write_disk_vm(&tree, name, keys, &disk, "")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status(
        &format!("{name}'s volume made from {source}"),
        STORAGE_TIMEOUT,
        |s| volume_shows(s, name, "size", "64MiB"),
    )?;
    Ok(started)
}

/// Writes VM `zdisk`: a disk of `size`, a snapshot every minute keeping
/// one, and the named snapshots `named`.
fn write_zdisk(tree: &Path, size: &str, named: &[&str], keys: &str) -> Result<()> {
    let mut tables = String::from("[snapshots]\nevery = \"1m\"\nkeep = 1\n");
    for name in named {
        tables.push_str(&format!("[[snapshot]]\nname = \"{name}\"\n"));
    }
    write_disk_vm(tree, "zdisk", keys, &format!("size = \"{size}\""), &tables)
}

/// The status entry of disk 0 of `vm`.
fn volume<'a>(status: &'a Value, vm: &str) -> Option<&'a Value> {
    resource(status, "volume", &volume_id(vm))
}

/// Whether disk 0 of `vm` is converged with `field` observed as `value`.
fn volume_shows(status: &Value, vm: &str, field: &str, value: &str) -> bool {
    volume(status, vm).is_some_and(|v| v["state"] == "converged" && v["observed"][field] == value)
}

fn orphan<'a>(status: &'a Value, vm: &str) -> Option<&'a Value> {
    status["orphaned_vms"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == vm)
}

/// `zfs get` of one property, as ZFS shows it (`none`, `64M`, ...).
fn zfs_get(node: &Node, property: &str, dataset: &str) -> Result<String> {
    node.sh(&format!("zfs get -H -o value {property} {dataset}"))
}

/// `zfs get -p` of a numeric property (bytes, seconds since the epoch).
fn zfs_number(node: &Node, property: &str, dataset: &str) -> Result<u64> {
    let text = node.sh(&format!("zfs get -Hp -o value {property} {dataset}"))?;
    text.parse()
        .with_context(|| format!("{property} of {dataset}: {text:?}"))
}

/// The snapshots of `dataset`: the name after `@` and `horcrux:snapshot`
/// ("named", "scheduled", or "-" for one hostd did not make).
fn snapshots(node: &Node, dataset: &str) -> Result<Vec<(String, String)>> {
    let out = node.sh(&format!(
        "zfs list -H -d 1 -t snapshot -o name,horcrux:snapshot {dataset}"
    ))?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let (name, kind) = line.split_once('\t')?;
            Some((name.split_once('@')?.1.to_string(), kind.to_string()))
        })
        .collect())
}

fn has_snapshot(snapshots: &[(String, String)], name: &str, kind: &str) -> bool {
    snapshots.iter().any(|(n, k)| n == name && k == kind)
}

/// A scheduled snapshot's name: `auto-YYYYMMDDTHHMMSSZ`.
fn is_scheduled_name(name: &str) -> bool {
    name.strip_prefix("auto-").is_some_and(|stamp| {
        let bytes = stamp.as_bytes();
        bytes.len() == 16
            && bytes[8] == b'T'
            && bytes[15] == b'Z'
            && bytes[..8]
                .iter()
                .chain(&bytes[9..15])
                .all(u8::is_ascii_digit)
    })
}

/// Runs `script` on the node until it exits 0.
fn wait_until(node: &Node, what: &str, timeout: Duration, script: &str) -> Result<()> {
    let started = Instant::now();
    while !node.ssh(script)?.status.success() {
        if started.elapsed() > timeout {
            bail!("{what}: not within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// `/dev/zvol/...` links are made by udev, after the zvol.
fn wait_for_device(node: &Node, dataset: &str) -> Result<()> {
    wait_until(
        node,
        &format!("/dev/zvol/{dataset} to appear"),
        Duration::from_secs(30),
        &format!("test -b /dev/zvol/{dataset}"),
    )
}

pub fn zfs_pool_is_imported_and_a_zvol_vm_boots(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    vm::install_guest(node, &guest_script(), INITRD)?;
    // A fresh tree under TCG without the example's own VMs: `www` would
    // start a 2 GiB UEFI VM with its disk on the pool, `build` make a
    // 40 GiB file on the dir storage.
    let tree = tree_copy("examples/single-node", "zfs")?;
    let node_toml = fs::read_to_string(tree.join("node.toml"))?;
    fs::write(tree.join("node.toml"), vm::with_tcg(&node_toml))?;
    for example_vm in ["www", "build"] {
        fs::remove_file(tree.join(format!("cluster/vms/{example_vm}.toml")))?;
    }
    // Pushed before the pool exists, so that nothing of hostd's holds the
    // pool while it is made and exported.
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.make_test_pool(POOL, PARENT)?;

    // zdisk's volume first, stopped: the test marks it before any guest
    // runs, so zdisk and its clone (of @base, taken after the mark) can
    // boot side by side, two nested guests in the time of one.
    write_zdisk(&tree, "64MiB", &[], "state = \"stopped\"\n")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("pool tank imported and ONLINE", STORAGE_TIMEOUT, |s| {
        resource(s, "pool", POOL)
            .is_some_and(|p| p["state"] == "converged" && p["observed"]["health"] == "ONLINE")
    })?;
    let status = node.wait_status("zdisk's volume converged", STORAGE_TIMEOUT, |s| {
        volume_shows(s, "zdisk", "size", "64MiB")
    })?;
    metrics.record("push_to_zvol_converged", started.elapsed().as_secs_f64());
    let ds = dataset("zdisk");
    let vol = volume(&status, "zdisk").context("zdisk's volume vanished")?;
    ensure!(vol["observed"]["location"] == ds.as_str(), "{vol:#}");
    wait_for_device(node, &ds)?;
    node.sh(&format!("printf '{DISK_MARK}' > /dev/zvol/{ds} && sync"))?;

    write_zdisk(&tree, "64MiB", &["base"], "")?;
    let clone = "size = \"64MiB\"\nsource = \"clone:zdisk/disk0@base\"";
    write_disk_vm(&tree, "zclone", "", clone, "")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("VMs zdisk and zclone running", NESTED_BOOT, |s| {
        vm::vm_running(s, "zdisk") && vm::vm_running(s, "zclone")
    })?;
    metrics.record("push_to_zvol_vm_running", started.elapsed().as_secs_f64());
    vm::wait_for_console(node, "zdisk", &console_line(64, "found"))?;
    metrics.record("push_to_zvol_guest_marker", started.elapsed().as_secs_f64());
    // What the guest wrote is on the zvol.
    let written = node.sh(&format!(
        "dd if=/dev/zvol/{ds} bs=512 skip=1 count=1 2>/dev/null | head -c {}",
        GUEST_MARK.len()
    ))?;
    ensure!(written == GUEST_MARK, "zdisk's second sector: {written:?}");

    let owner = zfs_get(node, "horcrux:volume", &ds)?;
    ensure!(
        owner == volume_id("zdisk"),
        "horcrux:volume of {ds} is {owner:?}"
    );
    let reservation = zfs_get(node, "refreservation", &ds)?;
    ensure!(
        reservation == "none",
        "{ds} is not sparse: refreservation {reservation}"
    );
    let size = zfs_number(node, "volsize", &ds)?;
    ensure!(size == 64 * MIB, "volsize of {ds} is {size}");
    Ok(())
}

/// Pushes zdisk (64MiB) with the named snapshots `named`, waits until
/// its volume shows just those, and returns the zvol's snapshots.
fn declare_named_snapshots(node: &Node, named: &[&str]) -> Result<Vec<(String, String)>> {
    let tree = tree()?;
    write_zdisk(&tree, "64MiB", named, "")?;
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    let shown = named.join(", ");
    node.wait_status(
        &format!("zdisk's named snapshots: {shown}"),
        STORAGE_TIMEOUT,
        |s| volume_shows(s, "zdisk", "snapshots", &shown),
    )?;
    snapshots(node, &dataset("zdisk"))
}

pub fn zfs_named_snapshots_follow_the_config(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let ds = dataset("zdisk");
    // Made by hand: hostd must never touch it.
    node.sh(&format!("zfs snapshot {ds}@mine"))?;
    let taken = declare_named_snapshots(node, &["base", "extra"])?;
    ensure!(
        has_snapshot(&taken, "base", "named") && has_snapshot(&taken, "extra", "named"),
        "named snapshots missing: {taken:?}"
    );
    ensure!(has_snapshot(&taken, "mine", "-"), "@mine: {taken:?}");

    let left = declare_named_snapshots(node, &["base"])?;
    ensure!(
        !left.iter().any(|(name, _)| name == "extra"),
        "@extra is still there: {left:?}"
    );
    ensure!(has_snapshot(&left, "base", "named"), "@base went: {left:?}");
    ensure!(
        has_snapshot(&left, "mine", "-"),
        "hostd touched @mine: {left:?}"
    );
    Ok(())
}

pub fn zfs_clone_boots_with_the_origin_data(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    // Pushed with zdisk's start (see the first case): a clone of @base,
    // taken after the test marked zdisk's disk.
    ensure!(
        vm::vm_running(&node.status()?, "zclone"),
        "VM zclone is not running"
    );
    vm::wait_for_console(node, "zclone", &console_line(64, "found"))?;
    let ds = dataset("zclone");
    let origin = zfs_get(node, "origin", &ds)?;
    let expected = format!("{}@base", dataset("zdisk"));
    ensure!(origin == expected, "origin of {ds} is {origin:?}");
    let owner = zfs_get(node, "horcrux:volume", &ds)?;
    ensure!(
        owner == volume_id("zclone"),
        "horcrux:volume of {ds} is {owner:?}"
    );
    Ok(())
}

pub fn zfs_grow_reaches_the_running_guest(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let pid = vm::vm_pid(node, "zdisk")?;
    ensure!(pid != "0", "zdisk is not running");
    let tree = tree()?;
    write_zdisk(&tree, "96MiB", &["base"], "")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("zdisk's volume at 96MiB", STORAGE_TIMEOUT, |s| {
        volume_shows(s, "zdisk", "size", "96MiB")
    })?;
    let ds = dataset("zdisk");
    let size = zfs_number(node, "volsize", &ds)?;
    ensure!(size == 96 * MIB, "volsize of {ds} is {size}");
    vm::wait_for_console(node, "zdisk", &console_line(96, ""))?;
    metrics.record("grow_to_guest_seconds", started.elapsed().as_secs_f64());
    ensure!(
        vm::vm_pid(node, "zdisk")? == pid,
        "growing the disk restarted the VM"
    );
    Ok(())
}

pub fn zfs_shrink_is_rejected(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let pid = vm::vm_pid(node, "zdisk")?;
    let tree = tree()?;
    write_zdisk(&tree, "32MiB", &["base"], "")?;
    // The receiver may take the push (one tree alone is valid); hostd
    // compares it with the generation it runs and refuses it.
    let pushed = node.push(&tree, Via::Git)?;
    if pushed.ok {
        node.wait_status("a config error about the shrink", APPLY_TIMEOUT, |s| {
            s["config_errors"].to_string().contains("would shrink")
        })?;
    } else {
        ensure!(
            pushed.output.contains("would shrink"),
            "the push failed for another reason:\n{}",
            pushed.output
        );
    }
    let ds = dataset("zdisk");
    let size = zfs_number(node, "volsize", &ds)?;
    ensure!(size == 96 * MIB, "the refused shrink left {ds} at {size}");
    let status = node.status()?;
    let vol = volume(&status, "zdisk").context("zdisk's volume vanished")?;
    ensure!(vol["desired"]["size"] == "96MiB", "{vol:#}");
    ensure!(vm::vm_pid(node, "zdisk")? == pid, "the VM was restarted");

    write_zdisk(&tree, "96MiB", &["base"], "")?;
    // The same tree as the running generation: maybe no new generation,
    // but the errors go.
    let pushed = node.push(&tree, Via::Git)?;
    ensure!(
        pushed.ok,
        "the push back to 96MiB failed:\n{}",
        pushed.output
    );
    node.wait_status("no config errors", APPLY_TIMEOUT, |s| {
        s["config_errors"].as_array().is_some_and(Vec::is_empty)
    })?;
    Ok(())
}

pub fn zfs_schedule_takes_and_prunes(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let ds = dataset("zdisk");
    // A snapshot in the first slot, the next one minute boundary later
    // (pruning the first): about two minutes after the zvol was made.
    let created = zfs_number(node, "creation", &ds)?;
    let now: u64 = node.sh("date +%s")?.parse()?;
    let timeout = Duration::from_secs((created + 210).saturating_sub(now).max(60));
    let started = Instant::now();
    let mut last_seen = String::new();
    let run = loop {
        let status = node.status()?;
        let run = &status["snapshot_schedules"]["zdisk"];
        if let (Some(last), Some(delay)) = (run["last"].as_str(), run["delay_seconds"].as_f64())
            && last != last_seen
        {
            metrics.record("snapshot_delay_seconds", delay);
            last_seen = last.to_string();
        }
        if run["taken"].as_u64() >= Some(2) && run["pruned"].as_u64() >= Some(1) {
            break run.clone();
        }
        if started.elapsed() > timeout {
            bail!(
                "zdisk's schedule did not take 2 snapshots and prune 1 within {} s: {run:#}",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    ensure!(run["every"] == "1m" && run["keep"] == 1, "{run:#}");
    // Exactly one left; at a minute boundary there are two for a moment.
    let started = Instant::now();
    loop {
        let all = snapshots(node, &ds)?;
        let scheduled: Vec<&(String, String)> = all
            .iter()
            .filter(|(name, _)| name.starts_with("auto-"))
            .collect();
        if let [(name, kind)] = scheduled[..] {
            ensure!(
                is_scheduled_name(name) && kind == "scheduled",
                "{name}: {kind}"
            );
            ensure!(has_snapshot(&all, "base", "named"), "@base went: {all:?}");
            ensure!(has_snapshot(&all, "mine", "-"), "@mine went: {all:?}");
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("expected exactly one scheduled snapshot of {ds}: {all:?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A 32 MiB qcow2 on the host whose disk content starts with
/// [`IMAGE_MARK`].
fn test_image() -> Result<PathBuf> {
    let dir = horcrux_e2e::work_dir().join("zfs");
    fs::create_dir_all(&dir)?;
    let raw = dir.join("test.raw");
    let mut file = fs::File::create(&raw)?;
    file.write_all(IMAGE_MARK.as_bytes())?;
    file.set_len(32 * MIB)?;
    drop(file);
    let image = dir.join("test.qcow2");
    let _ = fs::remove_file(&image);
    horcrux_e2e::run(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&image),
    )?;
    fs::remove_file(&raw)?;
    Ok(image)
}

pub fn zfs_image_import(ctx: &mut Ctx) -> Result<()> {
    let image = test_image()?;
    let (node, metrics) = ctx.parts()?;
    node.upload(&image, "/var/lib/horcrux/images/test.qcow2")?;
    let started = push_vm_from(node, "zimg", "state = \"stopped\"", "image:test.qcow2")?;
    metrics.record("image_import_seconds", started.elapsed().as_secs_f64());
    let ds = dataset("zimg");
    wait_for_device(node, &ds)?;
    let head = node.sh(&format!("head -c {} /dev/zvol/{ds}", IMAGE_MARK.len()))?;
    ensure!(head == IMAGE_MARK, "{ds} starts with {head:?}");
    let size = zfs_number(node, "volsize", &ds)?;
    ensure!(size == 64 * MIB, "volsize of {ds} is {size}");
    Ok(())
}

pub fn zfs_removed_vm_keeps_its_zvol_until_purged(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let removed = ["zclone", "zimg"];
    let tree = tree()?;
    for name in removed {
        fs::remove_file(tree.join(format!("cluster/vms/{name}.toml")))?;
    }
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    let status = node.wait_status(
        "zclone and zimg removed and listed as orphaned",
        APPLY_TIMEOUT * 3,
        |s| {
            removed
                .iter()
                .all(|name| resource(s, "vm", name).is_none() && orphan(s, name).is_some())
        },
    )?;
    for name in removed {
        let paths = orphan(&status, name).map_or(Value::Null, |o| o["paths"].clone());
        ensure!(
            paths.to_string().contains(&format!("vm-{name}-disk0")),
            "orphaned VM {name} does not list its zvol: {paths}"
        );
        let unit = format!("horcrux-vm-{name}.service");
        wait_until(
            node,
            &format!("{unit} to be gone"),
            APPLY_TIMEOUT,
            &format!("! systemctl is-active -q {unit} && test ! -e /run/systemd/system/{unit}"),
        )?;
        node.sh(&format!("zfs list -H -o name {}", dataset(name)))
            .with_context(|| format!("the zvol of removed VM {name} is gone before the purge"))?;
    }
    for name in removed {
        node.sh(&format!("horcrux purge vm {name} --yes"))?;
        let ds = dataset(name);
        ensure!(
            node.ssh(&format!("zfs list -H -o name {ds}"))?
                .status
                .code()
                == Some(1),
            "{ds} survived the purge"
        );
    }
    node.wait_status("no zfs orphan left", APPLY_TIMEOUT, |s| {
        removed.iter().all(|name| orphan(s, name).is_none())
    })?;
    let left = snapshots(node, &dataset("zdisk"))?;
    ensure!(
        has_snapshot(&left, "base", "named"),
        "zdisk's @base went with its clone: {left:?}"
    );

    let text = horcrux_e2e::http::get(node.http_port, "/metrics")?.body;
    let lines: Vec<&str> = text.lines().collect();
    let exact = [
        format!("horcrux_pool_healthy{{pool=\"{POOL}\"}} 1"),
        format!(
            "horcrux_volume_size_bytes{{volume=\"{}\"}} {}",
            volume_id("zdisk"),
            96 * MIB
        ),
    ];
    for expected in &exact {
        ensure!(
            lines.contains(&expected.as_str()),
            "no {expected:?} in:\n{text}"
        );
    }
    for prefix in [
        "horcrux_snapshots_taken_total{vm=\"zdisk\"} ",
        "horcrux_snapshot_delay_seconds{vm=\"zdisk\"} ",
    ] {
        ensure!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no {prefix:?} in:\n{text}"
        );
    }

    // Stopped, so that later cases and reboots do not wait for it.
    write_zdisk(&tree, "96MiB", &["base"], "state = \"stopped\"")?;
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("zdisk stopped", APPLY_TIMEOUT * 3, |s| {
        vm::vm_stopped(s, "zdisk")
    })?;
    Ok(())
}
