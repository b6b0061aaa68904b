//! The cluster case: node1 (the suite's node) and node2 and node3, booted
//! for this case only, form the three-member cluster `e2e` over their
//! second NICs, which share one Ethernet segment (a QEMU multicast socket
//! netdev, see `node::cluster_segment`), and replicate `cluster/`: what
//! node1 starts with (seeds), a change set pushed to it and a deletion
//! made on it appear byte-exact on the others and become generations from
//! the cluster there; each node converges only the VMs placed on it; a
//! member whose hostd stops is reported and catches up when it comes
//! back.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use horcrux_e2e::node::{Node, Options, Via};
use horcrux_e2e::work_dir;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::net::resource;
use super::vm::vm_stopped;
use super::{APPLY_TIMEOUT, BOOT_TIMEOUT, Ctx};

/// The members and their addresses on the cluster segment (a /24).
const MEMBERS: [(&str, &str); 3] = [
    ("node1", "10.99.0.1"),
    ("node2", "10.99.0.2"),
    ("node3", "10.99.0.3"),
];
/// The cluster key, relative to /etc/horcrux (never replicated).
const KEY_FILE: &str = "secrets/gossip.key";
/// A change reaches the other members within a second or two (gossip
/// every 500 ms); this is for a loaded host under TCG.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(90);
/// A bridge network without uplink, valid on every member; converged
/// only where a VM uses it (node2).
const NETWORK: &str = "replicated";
/// A stopped VM placed on node2, with a NIC on [`NETWORK`]: only node2
/// converges it.
const VM: &str = "on-node2";
/// The file of [`NETWORK`], changed twice.
const REPLICATED: &str = "networks/replicated.toml";
/// Files the case adds and removes.
const ADDED: &str = "networks/added.toml";
const WHILE_AWAY: &str = "networks/while-away.toml";

/// node2 and node3: smaller than node1, they run no guests.
pub(super) fn peer_options() -> [Options; 2] {
    ["node2", "node3"].map(|name| Options {
        name: name.into(),
        memory_mib: 1024,
        cpus: 1,
        ..Options::default()
    })
}

fn cluster_toml() -> String {
    let mut text = String::from(
        "# The e2e suite's cluster: the nodes' second NICs share one segment.\n\
         name = \"e2e\"\n",
    );
    for (name, address) in MEMBERS {
        text.push_str(&format!(
            "\n[[member]]\nname = \"{name}\"\naddress = \"{address}\"\n"
        ));
    }
    text.push_str(&format!(
        "\n[gossip]\nport = 7946\nkey_file = \"{KEY_FILE}\"\n\n\
         [trust]\n# Signed changes are not what this case covers.\nrequire_signatures = false\n"
    ));
    text
}

fn network(mtu: u32) -> String {
    format!("# replicated by the e2e suite\nkind = \"bridge\"\nmtu = {mtu}\n")
}

/// Writes the tree `target/e2e/trees/cluster-<node>`: node.toml of `node`,
/// cluster.toml and `files` (paths relative to cluster/).
fn write_tree(node: &str, files: &BTreeMap<&str, String>) -> Result<PathBuf> {
    let dir = work_dir().join("trees").join(format!("cluster-{node}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("cluster"))?;
    fs::write(
        dir.join("node.toml"),
        format!("name = \"{node}\"\n\n[status]\nlisten = \"0.0.0.0:8006\"\n"),
    )?;
    fs::write(dir.join("cluster/cluster.toml"), cluster_toml())?;
    for (path, text) in files {
        let file = dir.join("cluster").join(path);
        fs::create_dir_all(file.parent().context("no parent")?)?;
        fs::write(file, text)?;
    }
    Ok(dir)
}

/// A shell test that holds when `cluster/<path>` has exactly `content`
/// (`None`: does not exist).
fn file_check(path: &str, content: Option<&str>) -> String {
    let file = format!("/etc/horcrux/cluster/{path}");
    match content {
        Some(text) => {
            let hash: String = Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("[ \"$(sha256sum < {file} 2>/dev/null)\" = \"{hash}  -\" ]")
        }
        None => format!("[ ! -e {file} ]"),
    }
}

/// All of `files` hold on the node.
fn files_check(files: &[(&str, Option<&str>)]) -> String {
    files
        .iter()
        .map(|(path, content)| file_check(path, *content))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Waits until `check` holds on the node, looking every 50 ms on the node
/// itself (no SSH round trip per look); returns when it held, as seen
/// from here.
fn wait_on_node(node: &Node, check: &str, timeout: Duration) -> Result<Instant> {
    let script = format!(
        "end=$(( $(date +%s) + {} )); until {check}; do \
         [ $(date +%s) -lt $end ] || exit 1; sleep 0.05; done",
        timeout.as_secs()
    );
    let out = node.ssh(&script)?;
    let at = Instant::now();
    if !out.status.success() {
        let listing = node
            .sh("cd /etc/horcrux/cluster && find . -type f | sort | xargs sha256sum")
            .unwrap_or_default();
        let cluster = node.status().map_or(Value::Null, |s| s["cluster"].clone());
        bail!(
            "on {}: `{check}` did not hold within {} s ({}); cluster/ holds:\n{listing}\n\
             its cluster status: {cluster:#}",
            node.name,
            timeout.as_secs(),
            out.status
        );
    }
    Ok(at)
}

/// Does `change` (a push to node1, an edit on it) while watching every
/// one of `peers` until `expected` holds there. Returns how long `change`
/// took and how long until every peer held `expected`, both from the
/// start of `change`.
fn replicate(
    peers: &[&Node],
    expected: &[(&str, Option<&str>)],
    change: impl FnOnce() -> Result<()>,
) -> Result<(Duration, Duration)> {
    let check = files_check(expected);
    std::thread::scope(|s| {
        let waiters: Vec<_> = peers
            .iter()
            .map(|peer| s.spawn(|| wait_on_node(peer, &check, REPLICATION_TIMEOUT)))
            .collect();
        let started = Instant::now();
        let changed = change();
        let took = started.elapsed();
        let mut everywhere = Duration::ZERO;
        let mut failures = Vec::new();
        for waiter in waiters {
            match waiter.join().map_err(|_| anyhow!("a waiter panicked"))? {
                Ok(at) => everywhere = everywhere.max(at.saturating_duration_since(started)),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        changed?;
        ensure!(failures.is_empty(), "{}", failures.join("\n"));
        Ok((took, everywhere))
    })
}

/// `git push` of `tree` to node1; fails unless hostd accepted it.
fn push(node1: &Node, tree: &Path) -> Result<()> {
    let pushed = node1.push_git(tree)?;
    ensure!(
        pushed.ok && pushed.output.contains("hostd accepted it as generation"),
        "the push of {} to node1 failed:\n{}",
        tree.display(),
        pushed.output
    );
    Ok(())
}

/// The node's clock minus this host's, in seconds, from the `date` with
/// the shortest round trip of three (good to about half of it).
fn clock_offset(node: &Node) -> Result<f64> {
    let mut best: Option<(Duration, f64)> = None;
    for _ in 0..3 {
        let before = SystemTime::now();
        let out = node.sh("date +%s.%N")?;
        let rtt = before.elapsed()?;
        let host = before.duration_since(UNIX_EPOCH)?.as_secs_f64() + rtt.as_secs_f64() / 2.0;
        let guest: f64 = out
            .trim()
            .parse()
            .with_context(|| format!("date: {out:?}"))?;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, guest - host));
        }
    }
    best.map(|(_, offset)| offset).context("no clock sample")
}

/// When `cluster/<path>` was last written on the node, on this host's
/// clock (`offset` from [`clock_offset`]).
fn written_at(node: &Node, path: &str, offset: f64) -> Result<f64> {
    let out = node.sh(&format!("date -r /etc/horcrux/cluster/{path} +%s.%N"))?;
    let at: f64 = out
        .trim()
        .parse()
        .with_context(|| format!("date -r: {out:?}"))?;
    Ok(at - offset)
}

fn members(status: &Value) -> &[Value] {
    status["cluster"]["members"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn member_state<'a>(status: &'a Value, name: &str) -> Option<&'a str> {
    members(status)
        .iter()
        .find(|m| m["name"] == name)?
        .get("state")?
        .as_str()
}

/// The node lists the three members, every one alive.
fn all_alive(status: &Value) -> bool {
    members(status).len() == MEMBERS.len()
        && MEMBERS
            .iter()
            .all(|(name, _)| member_state(status, name) == Some("alive"))
}

/// Replication settled without trouble: no conflict, nothing refused or
/// waiting, gossip running.
fn settled(status: &Value) -> bool {
    let c = &status["cluster"];
    c["error"].is_null()
        && c["conflicts"].as_array().is_some_and(Vec::is_empty)
        && c["rejected"].as_array().is_some_and(Vec::is_empty)
        && c["waiting_changes"] == 0
}

fn converged(status: &Value, kind: &str, name: &str) -> bool {
    resource(status, kind, name).is_some_and(|r| r["state"] == "converged")
}

pub fn cluster_of_three_replicates_its_directory(ctx: &mut Ctx) -> Result<()> {
    let case_started = Instant::now();
    // node2 and node3 boot (unless an earlier case started them) while
    // node1 is prepared.
    ctx.boot_peers(&peer_options())?;
    let (node1, peers, metrics) = ctx.cluster_parts()?;

    // node1 first, as an administrator would start: its cluster address,
    // a new cluster key, and a tree with cluster.toml, a network and a
    // VM placed on node2 (all of them seeds: node1 never replicated).
    node1.set_cluster_address(&format!("{}/24", MEMBERS[0].1))?;
    let key = node1.sh(&format!(
        "umask 077 && horcrux gossip-key > /etc/horcrux/{KEY_FILE}.new && \
         mv /etc/horcrux/{KEY_FILE}.new /etc/horcrux/{KEY_FILE} && cat /etc/horcrux/{KEY_FILE}"
    ))?;
    ensure!(key.trim().len() == 44, "horcrux gossip-key printed {key:?}");
    let mut files: BTreeMap<&str, String> = BTreeMap::new();
    files.insert(REPLICATED, network(1500));
    files.insert(
        "vms/on-node2.toml",
        format!(
            "# placed on node2: only node2 converges it (kept stopped) and its network\n\
             node = \"node2\"\nstate = \"stopped\"\nmemory = \"64MiB\"\n\n\
             [[nic]]\nnetwork = \"{NETWORK}\"\n"
        ),
    );
    let tree1 = write_tree("node1", &files)?;
    let status = node1.apply_tree(&tree1, Via::Git, APPLY_TIMEOUT)?;
    ensure!(
        status["cluster"]["name"] == "e2e",
        "node1 shows no cluster e2e: {:#}",
        status["cluster"]
    );

    // Then node2 and node3, side by side: their own node.toml, the same
    // cluster.toml and key.
    let mut booted = Duration::ZERO;
    for peer in peers.iter_mut() {
        peer.wait_ssh(BOOT_TIMEOUT)?;
        booted = booted.max(peer.wait_hostd_ready(BOOT_TIMEOUT)?);
    }
    metrics.record("cluster_peers_boot_to_hostd_ready", booted.as_secs_f64());
    let configured = Instant::now();
    let key = key.trim();
    std::thread::scope(|s| {
        let joins: Vec<_> = peers
            .iter()
            .zip(&MEMBERS[1..])
            .map(|(peer, (name, address))| {
                s.spawn(move || -> Result<()> {
                    ensure!(peer.name == *name, "peer {} is not {name}", peer.name);
                    peer.set_cluster_address(&format!("{address}/24"))?;
                    peer.sh(&format!(
                        "umask 077 && printf '%s\\n' '{key}' > /etc/horcrux/{KEY_FILE}"
                    ))?;
                    let tree = write_tree(name, &BTreeMap::new())?;
                    peer.apply_tree(&tree, Via::Git, APPLY_TIMEOUT)?;
                    Ok(())
                })
            })
            .collect();
        joins
            .into_iter()
            .try_for_each(|j| j.join().map_err(|_| anyhow!("a peer setup panicked"))?)
    })?;
    let (node1, peers) = (&*node1, &*peers);
    let all: Vec<&Node> = std::iter::once(node1).chain(peers.iter()).collect();
    for node in &all {
        node.wait_status("all three members alive", REPLICATION_TIMEOUT, all_alive)
            .with_context(|| format!("on {}", node.name))?;
    }
    metrics.record(
        "cluster_peer_config_to_all_alive",
        configured.elapsed().as_secs_f64(),
    );

    // What node1 had reached the others byte-exact and became a
    // generation from the cluster there.
    let cluster_text = cluster_toml();
    let expected: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(path, text)| (*path, Some(text.as_str())))
        .chain([("cluster.toml", Some(cluster_text.as_str()))])
        .collect();
    for peer in peers {
        wait_on_node(peer, &files_check(&expected), REPLICATION_TIMEOUT)?;
        let status = peer.wait_status(
            "the replicated files accepted as a generation from the cluster",
            APPLY_TIMEOUT,
            |s| {
                s["generation"]["source"] == "cluster"
                    && s["config_errors"].as_array().is_some_and(Vec::is_empty)
                    && s["cluster"]["files"] == expected.len()
            },
        )?;
        ensure!(
            status["node"] == peer.name.as_str(),
            "{} says it is {}",
            peer.name,
            status["node"]
        );
    }
    metrics.record(
        "cluster_peer_config_to_replicated",
        configured.elapsed().as_secs_f64(),
    );
    // node2 converges the VM placed on it and the network its NIC is on;
    // the others neither, but show where the VM is placed.
    let node2 = &peers[0];
    node2.wait_status(
        &format!("VM {VM} (stopped) and network {NETWORK} converged on node2"),
        APPLY_TIMEOUT,
        |s| vm_stopped(s, VM) && converged(s, "network", NETWORK),
    )?;
    for node in [node1, &peers[1]] {
        let status = node.status()?;
        for (kind, name) in [("vm", VM), ("network", NETWORK)] {
            ensure!(
                resource(&status, kind, name).is_none(),
                "{} converges {kind} {name}, which only node2 uses: {:#}",
                node.name,
                resource(&status, kind, name).unwrap_or(&Value::Null)
            );
        }
        ensure!(
            status["cluster"]["placement"][format!("vm/{VM}")] == "node2",
            "{} does not show {VM} on node2: {:#}",
            node.name,
            status["cluster"]["placement"]
        );
    }

    // A change set (a new file and a changed one) pushed to node1: timed
    // from the push, and from the write on node1 to the writes on the
    // others (each node's clock set against this host's).
    files.insert(ADDED, network(9000));
    files.insert(REPLICATED, network(1400));
    let tree1 = write_tree("node1", &files)?;
    let change = [
        (ADDED, Some(files[ADDED].as_str())),
        (REPLICATED, Some(files[REPLICATED].as_str())),
    ];
    let (pushed, replicated) = replicate(&[&peers[0], &peers[1]], &change, || push(node1, &tree1))?;
    metrics.record("cluster_push_to_generation", pushed.as_secs_f64());
    metrics.record("cluster_push_to_replicated", replicated.as_secs_f64());
    let written = written_at(node1, ADDED, clock_offset(node1)?)?;
    let mut edit_to_replica = 0.0f64;
    for peer in peers {
        let there = written_at(peer, ADDED, clock_offset(peer)?)? - written;
        eprintln!(
            "e2e: {ADDED} written on {} {there:.3} s after node1",
            peer.name
        );
        edit_to_replica = edit_to_replica.max(there);
    }
    metrics.record("cluster_edit_to_replica", edit_to_replica);

    // A deletion, made on node1 itself (an edit of /etc/horcrux, not a
    // push): from the `rm` until it is gone everywhere.
    files.remove(ADDED);
    let (_, deleted) = replicate(&[&peers[0], &peers[1]], &[(ADDED, None)], || {
        node1
            .sh(&format!("rm /etc/horcrux/cluster/{ADDED}"))
            .map(drop)
    })?;
    metrics.record("cluster_local_delete_to_replicated", deleted.as_secs_f64());

    // node3's hostd stops: node1 reports it; a change made meanwhile
    // reaches node2 at once and node3 when its hostd is back.
    let node3 = &peers[1];
    let node3_generation = node3.generation()?;
    node3.sh("systemctl stop horcrux-hostd")?;
    let stopped = Instant::now();
    let status = node1.wait_status("node3 suspect or dead", REPLICATION_TIMEOUT, |s| {
        matches!(member_state(s, "node3"), Some("suspect" | "dead"))
    })?;
    metrics.record(
        "cluster_hostd_stop_to_reported",
        stopped.elapsed().as_secs_f64(),
    );
    eprintln!(
        "e2e: node1 shows node3 {} {:.1} s after its hostd stopped",
        member_state(&status, "node3").unwrap_or("?"),
        stopped.elapsed().as_secs_f64()
    );
    files.insert(WHILE_AWAY, network(1500));
    files.insert(REPLICATED, network(1300));
    let tree1 = write_tree("node1", &files)?;
    let meanwhile = [
        (WHILE_AWAY, Some(files[WHILE_AWAY].as_str())),
        (REPLICATED, Some(files[REPLICATED].as_str())),
        (ADDED, None),
    ];
    replicate(&[&peers[0]], &meanwhile, || push(node1, &tree1))?;
    let state = member_state(&node1.status()?, "node3")
        .unwrap_or("?")
        .to_string();
    ensure!(
        state != "alive",
        "node1 shows node3 alive while its hostd is stopped"
    );
    node3
        .sh(&format!("test ! -e /etc/horcrux/cluster/{WHILE_AWAY}"))
        .context("node3 got the change while its hostd was stopped")?;
    let restarted = Instant::now();
    node3.sh("systemctl start horcrux-hostd")?;
    wait_on_node(node3, &files_check(&meanwhile), REPLICATION_TIMEOUT)?;
    metrics.record(
        "cluster_restart_to_caught_up",
        restarted.elapsed().as_secs_f64(),
    );
    node3.wait_status(
        "the change it missed accepted as a generation from the cluster",
        APPLY_TIMEOUT,
        |s| {
            s["generation"]["id"].as_u64() > node3_generation
                && s["generation"]["source"] == "cluster"
                && s["config_errors"].as_array().is_some_and(Vec::is_empty)
        },
    )?;
    for node in &all {
        node.wait_status(
            "all three members alive, nothing conflicting, refused or waiting",
            REPLICATION_TIMEOUT,
            |s| all_alive(s) && settled(s),
        )
        .with_context(|| format!("on {}", node.name))?;
    }
    // The hand-made cluster addresses survived every convergence.
    for (node, (_, address)) in all.iter().zip(MEMBERS) {
        node.sh(&format!("ip -br addr | grep -qw {address}/24"))
            .with_context(|| format!("{}'s cluster address is gone", node.name))?;
    }
    let transport = &node1.status()?["cluster"]["transport"];
    eprintln!("e2e: node1 gossip transport: {transport}");
    metrics.record("cluster_case", case_started.elapsed().as_secs_f64());
    // Passed: node2 and node3 are not needed any more.
    ctx.peers.clear();
    Ok(())
}
