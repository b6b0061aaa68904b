//! VM cases: the tiny test guest (Debian cloud kernel + busybox
//! initramfs, built on the host by hostd's guest harness) declared in a
//! pushed tree and run by the node's hostd through a systemd unit, QEMU
//! under TCG inside the TCG node.

use std::fs;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use horcrux_e2e::node::{Node, Via};
use serde_json::Value;

use super::net::resource;
use super::{APPLY_TIMEOUT, Ctx, kept_tree, tree_copy};

// The e2e suite uses the guest builder, not its QEMU runner (guest.rs
// allows dead code itself).
#[path = "../../../../hostd/tests/support/guest.rs"]
mod guest;

/// Where the guest's kernel and initramfs live on the node: the data
/// partition, so they survive reboots like the config does.
pub(super) const GUEST_DIR: &str = "/var/lib/horcrux-e2e/guest";
/// What the guest prints five times a second once it runs its script.
const HEARTBEAT: &str = "tiny-guest-heartbeat";
/// QEMU under TCG inside a TCG node: the guest needs about a minute to
/// boot, more on a loaded machine.
pub(super) const NESTED_BOOT: Duration = Duration::from_secs(300);

/// The tree the VM cases push, kept between cases so each edits it.
fn tree() -> Result<PathBuf> {
    kept_tree("vm")
}

/// Builds a tiny guest running `script` and puts it on the node: the
/// kernel as `GUEST_DIR/vmlinuz`, the initramfs as `GUEST_DIR/<initrd>`.
pub(super) fn install_guest(node: &Node, script: &str, initrd: &str) -> Result<()> {
    let guest = guest::tiny_guest(script);
    node.upload(&guest.kernel, &format!("{GUEST_DIR}/vmlinuz"))?;
    node.upload(&guest.initrd, &format!("{GUEST_DIR}/{initrd}"))
}

/// Writes `cluster/vms/<name>.toml`: a small BIOS VM that boots the
/// guest kernel with `GUEST_DIR/<initrd>`; `keys` are more top-level
/// keys, `tables` more tables (disks, NICs, snapshots).
pub(super) fn write_guest_vm(
    tree: &Path,
    name: &str,
    initrd: &str,
    keys: &str,
    tables: &str,
) -> Result<()> {
    let cmdline = "console=ttyS0 panic=-1 quiet";
    let text = format!(
        "# the e2e suite's tiny guest\nfirmware = \"bios\"\nmemory = \"192MiB\"\nstop_timeout = \"45s\"\n{keys}\n{tables}\
         [boot]\nkernel = \"{GUEST_DIR}/vmlinuz\"\ninitrd = \"{GUEST_DIR}/{initrd}\"\ncmdline = \"{cmdline}\"\n"
    );
    fs::write(tree.join(format!("cluster/vms/{name}.toml")), text)?;
    Ok(())
}

fn write_vm(tree: &Path, body: &str) -> Result<()> {
    let nic = format!(
        "[[nic]]\nnetwork = \"{}\"\nfirewall = [\"web\"]\n",
        super::net::NETWORK
    );
    write_guest_vm(tree, "tiny", "initrd", body, &nic)
}

/// The status entry of VM `tiny`.
fn tiny(status: &Value) -> Option<&Value> {
    resource(status, "vm", "tiny")
}

/// Whether status.json shows VM `name` converged with its guest running.
pub(super) fn vm_running(status: &Value, name: &str) -> bool {
    resource(status, "vm", name)
        .is_some_and(|r| r["state"] == "converged" && r["observed"]["qmp"] == "running")
}

/// Whether status.json shows VM `name` converged and stopped.
pub(super) fn vm_stopped(status: &Value, name: &str) -> bool {
    resource(status, "vm", name)
        .is_some_and(|r| r["state"] == "converged" && r["observed"]["state"] == "stopped")
}

/// The PID of VM `name`'s QEMU ("0" when it does not run).
pub(super) fn vm_pid(node: &Node, name: &str) -> Result<String> {
    node.sh(&format!(
        "systemctl show -p MainPID --value horcrux-vm-{name}.service"
    ))
}

/// VM `name`'s serial output for a few seconds, through `horcrux
/// console` (live output only: no scrollback).
pub(super) fn console_output(node: &Node, name: &str) -> Result<String> {
    let out = node.ssh(&format!("timeout 6 horcrux console {name} </dev/null"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `node.toml` with `[qemu] accel = "tcg"`, whatever it said before.
pub(super) fn with_tcg(node_toml: &str) -> String {
    let mut out: Vec<&str> = node_toml
        .lines()
        .filter(|l| !l.trim_start().starts_with("accel"))
        .collect();
    match out.iter().position(|l| l.trim() == "[qemu]") {
        Some(at) => out.insert(at + 1, "accel = \"tcg\""),
        None => out.extend(["", "[qemu]", "accel = \"tcg\""]),
    }
    out.join("\n") + "\n"
}

/// Waits until the guest runs its script (and so handles the power
/// button: a powerdown sent while it still boots is ignored and the stop
/// takes the whole `stop_timeout`).
fn wait_for_heartbeat(node: &Node) -> Result<()> {
    wait_for_console(node, "tiny", HEARTBEAT)
}

/// Waits until VM `name`'s console shows `marker` (the guest must repeat
/// it faster than once a second: see [`console_output`]).
pub(super) fn wait_for_console(node: &Node, name: &str, marker: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let seen = console_output(node, name)?;
        if seen.contains(marker) {
            return Ok(());
        }
        if started.elapsed() > NESTED_BOOT {
            let tail: Vec<&str> = seen.lines().rev().take(3).collect();
            bail!("no {marker:?} from VM {name} on its console; last lines: {tail:?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

pub fn vm_tiny_guest_runs_under_systemd(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    // Faster than `horcrux console`'s one-second quiet time, so a session
    // started at any moment sees a heartbeat before it ends.
    install_guest(
        node,
        &format!("while true; do echo {HEARTBEAT}; usleep 200000; done"),
        "initrd",
    )?;
    // A fresh copy: later cases edit it in turn.
    let tree = tree_copy("examples/single-node", "vm")?;
    // Nested KVM does not exist here: the node runs its VMs under TCG.
    let node_toml = fs::read_to_string(tree.join("node.toml"))?;
    fs::write(tree.join("node.toml"), with_tcg(&node_toml))?;
    write_vm(&tree, "")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    let running = node.wait_status("VM tiny running", NESTED_BOOT, |s| vm_running(s, "tiny"))?;
    metrics.record("push_to_vm_running", started.elapsed().as_secs_f64());
    let vm = tiny(&running).context("tiny vanished")?;
    ensure!(vm["observed"]["state"] == "running", "{vm:#}");
    ensure!(vm["observed"]["unit_state"] == "active (running)", "{vm:#}");
    ensure!(vm["desired"]["memory"] == "192MiB", "{vm:#}");
    ensure!(
        node.sh("systemctl is-active horcrux-vm-tiny.service")? == "active",
        "unit not active"
    );
    let unit = node.sh("cat /run/systemd/system/horcrux-vm-tiny.service")?;
    ensure!(unit.contains("accel=tcg"), "{unit}");
    let metrics_text = horcrux_e2e::http::get(node.http_port, "/metrics")?.body;
    ensure!(
        metrics_text.contains("horcrux_vm_up{vm=\"tiny\"} 1"),
        "{metrics_text}"
    );
    // The guest itself runs: its heartbeat comes out of the console.
    wait_for_heartbeat(node)?;
    metrics.record("push_to_guest_userspace", started.elapsed().as_secs_f64());
    metrics.record(
        "hostd_cpu_percent_one_vm_idle",
        hostd_cpu_percent(node, 20)?,
    );
    Ok(())
}

/// hostd's CPU use over `seconds`, in percent of one CPU, from its
/// utime + stime in /proc (clock ticks).
fn hostd_cpu_percent(node: &Node, seconds: u32) -> Result<f64> {
    let script = format!(
        "pid=$(systemctl show -p MainPID --value horcrux-hostd); hz=$(getconf CLK_TCK); \
         a=$(awk '{{print $14+$15}}' /proc/$pid/stat); sleep {seconds}; \
         b=$(awk '{{print $14+$15}}' /proc/$pid/stat); echo $a $b $hz"
    );
    let out = node.sh(&script)?;
    let numbers: Vec<f64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [a, b, hz] = numbers[..] else {
        bail!("unexpected CPU sample: {out}");
    };
    Ok((b - a) / hz / f64::from(seconds) * 100.0)
}

pub fn vm_hardware_change_waits_for_a_restart(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let pid = vm_pid(node, "tiny")?;
    let tree = tree()?;
    write_vm(&tree, "cpus = 2")?;
    node.apply_tree(&tree, Via::Rsync, APPLY_TIMEOUT)?;
    let status = node.wait_status("restart pending on tiny", APPLY_TIMEOUT, |s| {
        tiny(s).is_some_and(|r| r["restart_pending"] == true && r["desired"]["cpus"] == "2")
    })?;
    let vm = tiny(&status).context("tiny vanished")?;
    ensure!(
        vm["observed"]["cpus"] == "1" && vm["desired"]["cpus"] == "2",
        "{vm:#}"
    );
    ensure!(
        vm_pid(node, "tiny")? == pid,
        "the VM was restarted by surprise"
    );
    let plan = node.ssh("horcrux plan")?;
    let plan = String::from_utf8_lossy(&plan.stdout);
    ensure!(
        plan.contains("! vm tiny"),
        "plan does not show the pending restart:\n{plan}"
    );
    // Back to what runs, so later cases start from a converged VM.
    write_vm(&tree, "")?;
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("tiny converged without restart", APPLY_TIMEOUT, |s| {
        tiny(s).is_some_and(|r| r["state"] == "converged" && r["restart_pending"] == false)
    })?;
    ensure!(
        vm_pid(node, "tiny")? == pid,
        "the VM was restarted by surprise"
    );
    Ok(())
}

pub fn vm_keeps_running_when_hostd_is_killed(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let pid = vm_pid(node, "tiny")?;
    ensure!(pid != "0", "tiny is not running");
    let hostd = node.sh("systemctl show -p MainPID --value horcrux-hostd")?;
    node.sh(&format!("kill -9 {hostd}"))?;
    let adopted = Instant::now();
    node.wait_status("a new hostd that sees tiny running", APPLY_TIMEOUT, |s| {
        s["ready"] == true
            && tiny(s)
                .is_some_and(|r| r["state"] == "converged" && r["observed"]["state"] == "running")
    })?;
    let now = node.sh("systemctl show -p MainPID --value horcrux-hostd")?;
    ensure!(now != hostd, "hostd was not restarted (MainPID {now})");
    ensure!(
        vm_pid(node, "tiny")? == pid,
        "killing hostd restarted the VM"
    );
    eprintln!(
        "e2e: hostd back and tiny adopted after {:.1}s",
        adopted.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn vm_stop_powers_the_guest_down_gracefully(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let tree = tree()?;
    let (tap, _) = super::net::tiny_tap(&node.status()?).context("tiny has no tap")?;
    write_vm(&tree, "state = \"stopped\"")?;
    let started = Instant::now();
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("tiny stopped", APPLY_TIMEOUT * 3, |s| vm_stopped(s, "tiny"))?;
    metrics.record("push_to_vm_stopped", started.elapsed().as_secs_f64());
    super::net::ensure_tap_removed(node, &tap)?;
    let journal = node.sh("journalctl -u horcrux-vm-tiny.service --no-pager -o cat")?;
    ensure!(
        journal.contains("powered down after"),
        "the stop was not a guest powerdown:\n{journal}"
    );
    // Wanted running again for the reboot case, which checks it comes
    // back. Its guest is not waited for (minutes of nested TCG): the
    // reboot stops it mid-boot, which the stop timeout covers.
    write_vm(&tree, "")?;
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status("tiny running again", NESTED_BOOT, |s| vm_running(s, "tiny"))?;
    Ok(())
}

pub fn vm_comes_back_after_reboot(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    // The reboot case ran just before: units in /run are gone and hostd
    // must have written and started them again.
    node.wait_status("tiny running after the reboot", NESTED_BOOT, |s| {
        vm_running(s, "tiny")
    })?;
    ensure!(node.sh("systemctl is-active horcrux-vm-tiny.service")? == "active");
    wait_for_heartbeat(node)
}

pub fn vm_removal_keeps_data_until_purged(ctx: &mut Ctx) -> Result<()> {
    let (node, _) = ctx.parts()?;
    let tree = tree()?;
    fs::remove_file(tree.join("cluster/vms/tiny.toml"))?;
    node.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
    node.wait_status(
        "tiny removed and listed as orphaned",
        APPLY_TIMEOUT * 3,
        |s| {
            tiny(s).is_none()
                && s["orphaned_vms"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|v| v["name"] == "tiny"))
        },
    )?;
    ensure!(
        node.ssh("test -e /run/systemd/system/horcrux-vm-tiny.service")?
            .status
            .code()
            == Some(1),
        "the unit file is still there"
    );
    let listed = node.ssh("horcrux purge vm tiny")?;
    ensure!(
        listed.status.code() == Some(1),
        "purge without --yes must not delete"
    );
    node.sh("horcrux purge vm tiny --yes")?;
    node.wait_status("no orphan left", APPLY_TIMEOUT, |s| {
        s["orphaned_vms"]
            .as_array()
            .is_some_and(|o| o.iter().all(|v| v["name"] != "tiny"))
    })?;
    Ok(())
}
