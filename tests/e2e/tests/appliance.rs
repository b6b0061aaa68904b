//! The appliance end to end: one node booted from the image under QEMU
//! serves every case, in order. Run with `make e2e` (or
//! `HORCRUX_E2E=1 cargo test -p horcrux-e2e --test appliance -- [FILTER...]`).
//! Without HORCRUX_E2E=1 it only says it was skipped, so `cargo test
//! --workspace` stays fast.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use horcrux_e2e::node::{Node, Options, Via};
use horcrux_e2e::runner::{self, Case, Metrics};
use horcrux_e2e::{http, image, repo_root, work_dir};

#[path = "appliance/cluster.rs"]
mod cluster;
#[path = "appliance/net.rs"]
mod net;
#[path = "appliance/update.rs"]
mod update;
#[path = "appliance/vm.rs"]
mod vm;
#[path = "appliance/zfs.rs"]
mod zfs;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

struct Ctx {
    image: PathBuf,
    key: PathBuf,
    node: Option<Node>,
    /// The other members of the cluster case (node2, node3), booted for
    /// it only.
    peers: Vec<Node>,
    metrics: Metrics,
}

impl Ctx {
    /// The shared node, booted on first use.
    fn node(&mut self) -> Result<&mut Node> {
        if self.node.is_none() {
            eprintln!("e2e: booting node1 from {}", self.image.display());
            let node = Node::boot(&self.image, &self.key, &Options::default())?;
            eprintln!(
                "e2e: node1: ssh port {}, status port {}, serial console {}",
                node.ssh_port,
                node.http_port,
                node.serial_log.display()
            );
            self.node = Some(node);
        }
        self.node.as_mut().context("no node")
    }

    /// The node and the metrics, borrowed together.
    fn parts(&mut self) -> Result<(&mut Node, &mut Metrics)> {
        self.node()?;
        let node = self.node.as_mut().context("no node")?;
        Ok((node, &mut self.metrics))
    }

    /// Starts QEMU for each of `opts` not running yet, without waiting
    /// for them: they boot side by side (and beside whatever node1 does).
    fn boot_peers(&mut self, opts: &[Options]) -> Result<()> {
        for o in opts {
            if self.peers.iter().any(|p| p.name == o.name) {
                continue;
            }
            let peer = Node::boot(&self.image, &self.key, o)?;
            eprintln!(
                "e2e: {}: ssh port {}, status port {}, serial console {}",
                peer.name,
                peer.ssh_port,
                peer.http_port,
                peer.serial_log.display()
            );
            self.peers.push(peer);
        }
        Ok(())
    }

    /// node1, the peers and the metrics, borrowed together.
    fn cluster_parts(&mut self) -> Result<(&mut Node, &mut [Node], &mut Metrics)> {
        self.node()?;
        let node = self.node.as_mut().context("no node")?;
        Ok((node, &mut self.peers, &mut self.metrics))
    }
}

/// A copy of an example tree under target/e2e/trees/NAME, for edits.
fn tree_copy(example: &str, name: &str) -> Result<PathBuf> {
    let dst = work_dir().join("trees").join(name);
    let _ = fs::remove_dir_all(&dst);
    fs::create_dir_all(&dst)?;
    horcrux_e2e::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(repo_root().join(example).join("."))
            .arg(&dst),
    )?;
    Ok(dst)
}

/// The tree `name` as earlier cases left it under target/e2e/trees
/// (cases that build on each other keep their state in it), or a fresh
/// copy of examples/single-node.
fn kept_tree(name: &str) -> Result<PathBuf> {
    let tree = work_dir().join("trees").join(name);
    if !tree.exists() {
        let copy = tree_copy("examples/single-node", name)?;
        ensure!(copy == tree, "tree_copy put the tree at {}", copy.display());
    }
    Ok(tree)
}

fn example() -> PathBuf {
    repo_root().join("examples/single-node")
}

fn broken() -> PathBuf {
    repo_root().join("tests/fixtures/broken-tree")
}

/// Adds an isolated bridge network to `tree`, a change hostd accepts.
fn add_network(tree: &Path, name: &str) -> Result<()> {
    fs::write(
        tree.join(format!("cluster/networks/{name}.toml")),
        "# added by the e2e suite\nkind = \"bridge\"\nmtu = 1500\n",
    )?;
    Ok(())
}

fn generation_count(node: &Node) -> Result<usize> {
    let json = node.sh("horcrux generations --json")?;
    let all: serde_json::Value = serde_json::from_str(&json)?;
    Ok(all.as_array().map_or(0, Vec::len))
}

fn first_boot_reaches_hostd_ready(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let ssh = node.wait_ssh(BOOT_TIMEOUT)?;
    let ready = node.wait_hostd_ready(BOOT_TIMEOUT)?;
    let in_guest =
        node.sh("systemctl show -p ActiveEnterTimestampMonotonic --value horcrux-hostd")?;
    metrics.record("first_boot_to_ssh", ssh.as_secs_f64());
    metrics.record("first_boot_to_hostd_ready", ready.as_secs_f64());
    if let Ok(us) = in_guest.parse::<f64>() {
        metrics.record("first_boot_kernel_to_hostd_ready_in_guest", us / 1e6);
    }
    Ok(())
}

fn first_boot_has_no_failed_units(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let failed = node.sh("systemctl --failed --no-legend --plain")?;
    ensure!(failed.is_empty(), "failed units:\n{failed}");
    Ok(())
}

fn first_boot_lays_out_data_partition_and_identity(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let var = node.sh("findmnt -n -o SOURCE,FSTYPE /var")?;
    ensure!(
        var.contains("ext4"),
        "/var is not the ext4 data partition: {var}"
    );
    let label = node.sh("lsblk -no PARTLABEL $(findmnt -n -o SOURCE /var)")?;
    ensure!(label == "horcrux-data", "/var comes from {label:?}");
    // The 8 GiB disk is larger than the image: the data partition grew.
    let size: u64 = node
        .sh("df -B1 --output=size /var | tail -n 1")?
        .trim()
        .parse()?;
    ensure!(size > 4 << 30, "/var was not grown: {size} bytes");
    let root = node.sh("findmnt -n -o OPTIONS /")?;
    ensure!(
        root.split(',').any(|o| o == "ro"),
        "/ is not read-only: {root}"
    );
    ensure!(
        node.ssh("touch /usr/lib/horcrux/x")?.status.code() != Some(0),
        "the root filesystem accepted a write"
    );
    let etc = node.sh("findmnt -n -o SOURCE /etc/horcrux")?;
    ensure!(
        etc.contains("/etc/horcrux"),
        "/etc/horcrux is not the bind mount: {etc}"
    );
    node.sh("test -s /var/lib/horcrux/node/ssh/ssh_host_ed25519_key")?;
    node.sh("test -d /var/lib/horcrux/config.git && test -d /etc/horcrux/secrets")?;
    // `git push root@node:config.git` resolves in root's home.
    node.sh("test -d /root/config.git/objects")?;
    let saved = node.sh("cat /var/lib/horcrux/node/machine-id")?;
    let live = node.sh("cat /etc/machine-id")?;
    ensure!(
        saved == live,
        "machine-id not persisted: saved {saved}, live {live}"
    );
    node.sh("test -s /var/lib/horcrux/node/hostid && test -s /etc/hostid")?;
    Ok(())
}

fn status_page_and_json_are_served(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let page = http::get(node.http_port, "/")?;
    ensure!(page.status == 200, "GET /: HTTP {}", page.status);
    ensure!(
        page.body.contains("<html"),
        "GET / is not HTML: {}",
        page.body
    );
    let status = node.status()?;
    ensure!(
        status["ready"] == true,
        "status.json: not ready: {status:#}"
    );
    let health = http::get(node.http_port, "/healthz")?;
    ensure!(health.status == 200, "GET /healthz: HTTP {}", health.status);
    let metrics = http::get(node.http_port, "/metrics")?;
    ensure!(
        metrics.status == 200,
        "GET /metrics: HTTP {}",
        metrics.status
    );
    Ok(())
}

fn git_push_of_invalid_tree_is_rejected_with_errors(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let before = node.generation()?;
    let pushed = node.push_git(&broken())?;
    ensure!(
        !pushed.ok,
        "the push of an invalid tree succeeded:\n{}",
        pushed.output
    );
    for expected in [
        "remote: error: unknown key `cpu`",
        "cluster/vms/www.toml:2:1",
        "push rejected",
        "pre-receive hook declined",
    ] {
        ensure!(
            pushed.output.contains(expected),
            "push output lacks {expected:?}:\n{}",
            pushed.output
        );
    }
    ensure!(
        node.generation()? == before,
        "a rejected push changed the generation"
    );
    Ok(())
}

fn git_push_of_valid_tree_becomes_a_generation(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let started = Instant::now();
    let status = node.apply_tree(&example(), Via::Git, APPLY_TIMEOUT)?;
    metrics.record("git_push_to_generation", started.elapsed().as_secs_f64());
    ensure!(
        status["generation"]["source"] == "push",
        "source: {status:#}"
    );
    ensure!(status["node"] == "node1", "node: {}", status["node"]);
    // A change on top becomes the next generation; the push output names it.
    let tree = tree_copy("examples/single-node", "git-second")?;
    add_network(&tree, "extra")?;
    let before = node.generation()?.context("no generation")?;
    let pushed = node.push_git(&tree)?;
    ensure!(pushed.ok, "second push failed:\n{}", pushed.output);
    let expected = format!("hostd accepted it as generation {}", before + 1);
    ensure!(
        pushed.output.contains(&expected),
        "push output lacks {expected:?}:\n{}",
        pushed.output
    );
    node.sh("test -f /etc/horcrux/cluster/networks/extra.toml")?;
    Ok(())
}

fn rsync_push_becomes_one_generation(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let tree = tree_copy("examples/single-node", "rsync")?;
    add_network(&tree, "pushed-by-rsync")?;
    fs::remove_file(tree.join("cluster/vms/build.toml"))?;
    let count = generation_count(node)?;
    let started = Instant::now();
    let status = node.apply_tree(&tree, Via::Rsync, APPLY_TIMEOUT)?;
    metrics.record("rsync_push_to_generation", started.elapsed().as_secs_f64());
    ensure!(
        status["generation"]["source"] == "push",
        "source: {status:#}"
    );
    let after = generation_count(node)?;
    ensure!(
        after == count + 1,
        "rsync made {} generations, not one",
        after - count
    );
    node.sh("test -f /etc/horcrux/cluster/networks/pushed-by-rsync.toml")?;
    node.sh("test ! -e /etc/horcrux/cluster/vms/build.toml")?;
    // --delete never reaches node-local secrets.
    node.sh("test -f /etc/horcrux/secrets/README")?;
    Ok(())
}

fn rsync_push_of_invalid_tree_is_refused(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let before = node.generation()?;
    let node_toml = node.sh("sha256sum /etc/horcrux/node.toml")?;
    let pushed = node.push_rsync(&broken())?;
    ensure!(
        !pushed.ok,
        "rsync of an invalid tree succeeded:\n{}",
        pushed.output
    );
    ensure!(
        pushed.output.contains("unknown key `cpu`"),
        "rsync output lacks the error:\n{}",
        pushed.output
    );
    ensure!(
        node.generation()? == before,
        "a refused rsync changed the generation"
    );
    ensure!(
        node.sh("sha256sum /etc/horcrux/node.toml")? == node_toml,
        "node.toml changed"
    );
    Ok(())
}

fn hostd_is_restarted_by_systemd_after_kill_9(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let generation = node.generation()?;
    let pid = node.sh("systemctl show -p MainPID --value horcrux-hostd")?;
    ensure!(pid != "0", "hostd has no main PID");
    node.sh(&format!("kill -9 {pid}"))?;
    let started = Instant::now();
    loop {
        let now = node.sh("systemctl show -p MainPID --value horcrux-hostd")?;
        let active = node
            .sh("systemctl is-active horcrux-hostd")
            .unwrap_or_default();
        if now != pid && now != "0" && active == "active" {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("hostd not back after kill -9: MainPID {now}, {active}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    metrics.record("kill_9_to_hostd_ready", started.elapsed().as_secs_f64());
    let restarts = node.sh("systemctl show -p NRestarts --value horcrux-hostd")?;
    ensure!(restarts != "0", "NRestarts is {restarts}");
    let status = node.wait_status("ready", Duration::from_secs(30), |s| s["ready"] == true)?;
    ensure!(
        status["generation"]["id"].as_u64() == generation,
        "the restarted hostd runs another generation: {status:#}"
    );
    Ok(())
}

fn reboot_keeps_config_generation_and_identity(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let probe = "cat /etc/machine-id; ssh-keygen -lf /var/lib/horcrux/node/ssh/ssh_host_ed25519_key.pub; \
                 find /etc/horcrux -type f | sort | xargs sha256sum; cat /etc/hostid | od -An -tx1";
    let before = node.sh(probe)?;
    let generation = node.generation()?;
    ensure!(generation.is_some(), "no generation before the reboot");
    let down = node.reboot(BOOT_TIMEOUT)?;
    metrics.record("reboot_to_ssh", down.as_secs_f64());
    let ready = node.wait_hostd_ready(BOOT_TIMEOUT)?;
    metrics.record("reboot_to_hostd_ready", ready.as_secs_f64());
    let after = node.sh(probe)?;
    ensure!(
        before == after,
        "changed across the reboot:\nbefore:\n{before}\nafter:\n{after}"
    );
    let status = node.wait_status("ready", Duration::from_secs(30), |s| s["ready"] == true)?;
    ensure!(
        status["generation"]["id"].as_u64() == generation,
        "after the reboot hostd runs {}, not {generation:?}",
        status["generation"]["id"]
    );
    let failed = node.sh("systemctl --failed --no-legend --plain")?;
    ensure!(
        failed.is_empty(),
        "failed units after the reboot:\n{failed}"
    );
    Ok(())
}

const CASES: &[Case<Ctx>] = &[
    Case {
        name: "first_boot_reaches_hostd_ready",
        run: first_boot_reaches_hostd_ready,
    },
    Case {
        name: "first_boot_has_no_failed_units",
        run: first_boot_has_no_failed_units,
    },
    Case {
        name: "first_boot_lays_out_data_partition_and_identity",
        run: first_boot_lays_out_data_partition_and_identity,
    },
    Case {
        name: "status_page_and_json_are_served",
        run: status_page_and_json_are_served,
    },
    Case {
        name: "net_suites_pass_on_the_appliance_kernel",
        run: net::net_suites_pass_on_the_appliance_kernel,
    },
    Case {
        name: "git_push_of_invalid_tree_is_rejected_with_errors",
        run: git_push_of_invalid_tree_is_rejected_with_errors,
    },
    Case {
        name: "git_push_of_valid_tree_becomes_a_generation",
        run: git_push_of_valid_tree_becomes_a_generation,
    },
    Case {
        name: "rsync_push_becomes_one_generation",
        run: rsync_push_becomes_one_generation,
    },
    Case {
        name: "rsync_push_of_invalid_tree_is_refused",
        run: rsync_push_of_invalid_tree_is_refused,
    },
    Case {
        name: "vm_tiny_guest_runs_under_systemd",
        run: vm::vm_tiny_guest_runs_under_systemd,
    },
    Case {
        name: "net_vm_nic_on_bridge_behind_firewall",
        run: net::net_vm_nic_on_bridge_behind_firewall,
    },
    Case {
        name: "vm_hardware_change_waits_for_a_restart",
        run: vm::vm_hardware_change_waits_for_a_restart,
    },
    Case {
        name: "vm_keeps_running_when_hostd_is_killed",
        run: vm::vm_keeps_running_when_hostd_is_killed,
    },
    Case {
        name: "vm_stop_powers_the_guest_down_gracefully",
        run: vm::vm_stop_powers_the_guest_down_gracefully,
    },
    Case {
        name: "hostd_is_restarted_by_systemd_after_kill_9",
        run: hostd_is_restarted_by_systemd_after_kill_9,
    },
    Case {
        name: "reboot_keeps_config_generation_and_identity",
        run: reboot_keeps_config_generation_and_identity,
    },
    Case {
        name: "vm_comes_back_after_reboot",
        run: vm::vm_comes_back_after_reboot,
    },
    Case {
        name: "vm_removal_keeps_data_until_purged",
        run: vm::vm_removal_keeps_data_until_purged,
    },
    Case {
        name: "zfs_pool_is_imported_and_a_zvol_vm_boots",
        run: zfs::zfs_pool_is_imported_and_a_zvol_vm_boots,
    },
    Case {
        name: "zfs_named_snapshots_follow_the_config",
        run: zfs::zfs_named_snapshots_follow_the_config,
    },
    Case {
        name: "zfs_clone_boots_with_the_origin_data",
        run: zfs::zfs_clone_boots_with_the_origin_data,
    },
    Case {
        name: "zfs_grow_reaches_the_running_guest",
        run: zfs::zfs_grow_reaches_the_running_guest,
    },
    Case {
        name: "zfs_shrink_is_rejected",
        run: zfs::zfs_shrink_is_rejected,
    },
    Case {
        name: "zfs_schedule_takes_and_prunes",
        run: zfs::zfs_schedule_takes_and_prunes,
    },
    Case {
        name: "zfs_image_import",
        run: zfs::zfs_image_import,
    },
    Case {
        name: "zfs_removed_vm_keeps_its_zvol_until_purged",
        run: zfs::zfs_removed_vm_keeps_its_zvol_until_purged,
    },
    // Last: it replaces node1's tree with a cluster's and boots two more
    // nodes for itself (stopped again when it passes).
    Case {
        name: "cluster_of_three_replicates_its_directory",
        run: cluster::cluster_of_three_replicates_its_directory,
    },
    // The image format and updates: these reboot node1 several times and
    // leave it on slot B.
    Case {
        name: "root_is_erofs_behind_dm_verity",
        run: update::root_is_erofs_behind_dm_verity,
    },
    Case {
        name: "broken_update_rolls_back_to_slot_a",
        run: update::broken_update_rolls_back_to_slot_a,
    },
    Case {
        name: "signed_update_boots_slot_b",
        run: update::signed_update_boots_slot_b,
    },
    Case {
        name: "tampered_update_bundles_are_refused",
        run: update::tampered_update_bundles_are_refused,
    },
    Case {
        name: "pxe_boot_reaches_hostd_ready",
        run: update::pxe_boot_reaches_hostd_ready,
    },
];

fn main() -> ExitCode {
    if std::env::var("HORCRUX_E2E").as_deref() != Ok("1") {
        println!(
            "e2e: skipped (needs root, QEMU and about 10 minutes; run `make e2e` or set HORCRUX_E2E=1)"
        );
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let started = Instant::now();
    let mut metrics = Metrics::default();
    let setup = image::ssh_key().and_then(|key| Ok((image::ensure()?, key)));
    metrics.record("image_build_or_reuse", started.elapsed().as_secs_f64());
    let (image, key) = match setup {
        Ok(found) => found,
        Err(e) => {
            println!("e2e: cannot build the image: {e:#}");
            println!("e2e: 0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let mut ctx = Ctx {
        image,
        key,
        node: None,
        peers: Vec::new(),
        metrics,
    };
    let selected = runner::selected(CASES, &filters);
    let failed = runner::run(&mut ctx, CASES, &selected, |ctx, name| {
        for peer in &mut ctx.peers {
            let saved = peer.save_diagnostics();
            println!("e2e: {name} failed; {} diagnostics:\n{saved}", peer.name);
            println!(
                "e2e: {} serial console tail:\n{}",
                peer.name,
                peer.serial_tail(20)
            );
        }
        let Some(node) = ctx.node.as_mut() else {
            return false;
        };
        println!(
            "e2e: {name} failed; diagnostics:\n{}",
            node.save_diagnostics()
        );
        println!("e2e: serial console tail:\n{}", node.serial_tail(20));
        node.alive()
    });
    ctx.metrics.record("suite", started.elapsed().as_secs_f64());
    let _ = fs::write(
        work_dir().join("metrics.json"),
        ctx.metrics.to_json().to_string(),
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
