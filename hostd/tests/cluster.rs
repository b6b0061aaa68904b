//! Replication of `cluster/` between real hostd processes: each node a
//! network namespace with one veth to a bridge in a namespace of its own,
//! its config tree on disk, and its status page read from inside its
//! namespace (on that namespace's loopback, so it stays readable while
//! the node is cut off). Links are taken down to partition the cluster.
//!
//! Every test has its own namespaces (and its own subnet, for readable
//! logs), so the tests run in parallel. Needs root (`ip netns`).
//!
//! Nothing here asserts a duration: timeouts are hang guards only.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/netns.rs"]
mod netns;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::{NetNs, veth};
use serde_json::Value;

/// Hang guard for anything the cluster must eventually do.
const GUARD: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// The status page, on each namespace's own loopback.
const STATUS: &str = "127.0.0.1:8006";
const GOSSIP_PORT: u16 = 7946;
const BRIDGE_NETWORK: &str = "kind = \"bridge\"\n";

/// One hostd in its namespace.
struct Node {
    name: String,
    ip: Ipv4Addr,
    /// Its veth's end on the bridge (in the bridge's namespace).
    port: String,
    /// Holds etc/, state/, run/ and hostd.log.
    root: PathBuf,
    child: Option<Child>,
    ns: NetNs,
    /// `--tombstone-ttl`, when the test shortens it.
    tombstone_ttl: Option<&'static str>,
}

impl Node {
    fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// A path under `cluster/`.
    fn file(&self, rel: &str) -> PathBuf {
        self.etc().join("cluster").join(rel)
    }

    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.file(rel)).ok()
    }

    /// Saves a file of `cluster/` the way editors do: a dotfile in the
    /// same directory (ignored by the loader), renamed over the file.
    fn save(&self, rel: &str, content: &str) {
        let path = self.file(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_atomically(&path, content.as_bytes());
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.file(rel)).unwrap();
    }

    fn log(&self) -> PathBuf {
        self.root.join("hostd.log")
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::File::create(self.log()).unwrap();
        let dir = |d: &str| self.root.join(d).to_str().unwrap().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), env!("CARGO_BIN_EXE_hostd")])
            .arg("--no-host-network")
            .args(["--config-dir", &dir("etc")])
            .args(["--state-dir", &dir("state")])
            .args(["--run-dir", &dir("run")])
            .args(["--listen", STATUS])
            .args(["--gossip-interval", "200ms", "--rescan-every", "2s"])
            .args(
                self.tombstone_ttl
                    .map(|ttl| ["--tombstone-ttl", ttl])
                    .iter()
                    .flatten(),
            )
            .env("HOSTD_LOG", "info,chitchat=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The status page, or why it cannot be read right now.
    fn try_status(&self) -> Result<Value, String> {
        let addr: SocketAddr = STATUS.parse().unwrap();
        let response = self.ns.run(|| -> Result<String, String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .map_err(|e| format!("send: {e}"))?;
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .map_err(|e| format!("read: {e}"))?;
            Ok(response)
        })?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not HTTP: {response}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("status page: {head}"));
        }
        serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
    }

    /// Polls the status page until `pred` holds.
    fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let last = self.try_status();
            if let Ok(s) = &last
                && pred(s)
            {
                return s.clone();
            }
            assert!(
                start.elapsed() < GUARD,
                "{}: timed out waiting for {what}; last status: {}",
                self.name,
                match &last {
                    Ok(s) => serde_json::to_string_pretty(&s["cluster"]).unwrap(),
                    Err(e) => e.clone(),
                }
            );
            std::thread::sleep(POLL);
        }
    }

    fn status(&self) -> Value {
        self.wait("the status page", |_| true)
    }

    fn generation_id(&self) -> u64 {
        self.status()["generation"]["id"].as_u64().unwrap()
    }

    fn transport(&self, counter: &str) -> u64 {
        self.status()["cluster"]["transport"][counter]
            .as_u64()
            .unwrap()
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Node {
    /// Kills hostd (as a crash or power loss would).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state `status` shows for member `name`.
fn member_state(status: &Value, name: &str) -> String {
    status["cluster"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no member {name} in {}", status["cluster"]))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn conflicts_for<'a>(status: &'a Value, path: &str) -> Vec<&'a Value> {
    status["cluster"]["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["path"] == path)
        .collect()
}

fn rejected_for<'a>(status: &'a Value, path: &str) -> Vec<&'a Value> {
    status["cluster"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == path)
        .collect()
}

/// Writes through a dotfile in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn horcrux(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "horcrux {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gossip_key() -> String {
    horcrux(&["gossip-key"])
}

/// The states a member was shown in, with when each was first seen.
struct Trace(Vec<(String, Duration)>);

impl Trace {
    fn has(&self, state: &str) -> bool {
        self.0.iter().any(|(s, _)| s == state)
    }
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|(s, at)| format!("{s} from {:.1} s", at.as_secs_f64()))
            .collect();
        f.write_str(&steps.join(", "))
    }
}

/// Nodes on one bridge, with their config trees.
struct Lab {
    nodes: Vec<Node>,
    bridge: NetNs,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Namespaces and links for `names` on 10.231.`subnet`.0/24, and for
    /// each a config tree: node.toml, the shared gossip key, and
    /// `cluster/` with cluster.toml (every name a member, signatures
    /// off) and one network. Nothing runs yet.
    fn new(label: &str, subnet: u8, names: &[&str]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let bridge = NetNs::new(&format!("{label}-br"));
        bridge.ok("ip link add br0 type bridge && ip link set br0 up");
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = NetNs::new(&format!("{label}-{}", i + 1));
            let port = format!("p{}", i + 1);
            let ip = Ipv4Addr::new(10, 231, subnet, u8::try_from(i + 1).unwrap());
            veth(&bridge, &port, &ns, "eth0");
            bridge.ok(&format!("ip link set {port} master br0"));
            ns.ok(&format!("ip addr add {ip}/24 dev eth0"));
            nodes.push(Node {
                name: name.to_string(),
                ip,
                port,
                root: dir.path().join(name),
                child: None,
                ns,
                tombstone_ttl: None,
            });
        }
        let lab = Lab { nodes, bridge, dir };
        let key = gossip_key();
        let cluster_toml = lab.cluster_toml("require_signatures = false\n");
        for node in &lab.nodes {
            std::fs::create_dir_all(node.root.join("state")).unwrap();
            std::fs::create_dir_all(node.root.join("run")).unwrap();
            std::fs::create_dir_all(node.file("networks")).unwrap();
            std::fs::write(node.etc().join("node.toml"), lab.node_toml(node)).unwrap();
            write_secret(&node.etc().join("secrets/gossip.key"), key.as_bytes());
            std::fs::write(node.file("cluster.toml"), &cluster_toml).unwrap();
            std::fs::write(node.file("networks/iso.toml"), BRIDGE_NETWORK).unwrap();
        }
        lab
    }

    fn node_toml(&self, node: &Node) -> String {
        format!(
            "name = \"{}\"\n\n[status]\nlisten = \"{STATUS}\"\n",
            node.name
        )
    }

    /// cluster.toml naming every node, with this `[trust]` section body.
    fn cluster_toml(&self, trust: &str) -> String {
        let mut text = String::from("name = \"lab\"\n");
        for node in &self.nodes {
            text.push_str(&format!(
                "\n[[member]]\nname = \"{}\"\naddress = \"{}\"\n",
                node.name, node.ip
            ));
        }
        text.push_str(&format!(
            "\n[gossip]\nport = {GOSSIP_PORT}\n\n[trust]\n{trust}"
        ));
        text
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn start(&mut self) {
        for node in &mut self.nodes {
            node.start();
        }
    }

    /// Waits until each of `nodes` is ready and sees all of `nodes` alive.
    fn wait_alive(&self, nodes: &[&str]) {
        for name in nodes {
            self.node(name).wait(&format!("{nodes:?} alive"), |s| {
                s["ready"] == true && nodes.iter().all(|n| member_state(s, n) == "alive")
            });
        }
    }

    /// Takes a node's link to the bridge down or up.
    fn link(&self, name: &str, up: bool) {
        let port = &self.node(name).port;
        let state = if up { "up" } else { "down" };
        self.bridge.ok(&format!("ip link set {port} {state}"));
    }

    /// Waits until each of `nodes` has `want` at `rel` (`None`: no file),
    /// byte for byte.
    fn wait_file(&self, nodes: &[&str], rel: &str, want: Option<&str>) {
        let start = Instant::now();
        for name in nodes {
            let node = self.node(name);
            while node.read(rel).as_deref() != want.map(str::as_bytes) {
                assert!(
                    start.elapsed() < GUARD,
                    "{name}: timed out waiting for cluster/{rel} to be {want:?}; it is {:?}",
                    node.read(rel)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                );
                std::thread::sleep(POLL);
            }
        }
    }

    /// Follows how `observer` shows `target` until it shows it dead; each
    /// state it showed, with when it first did. A state never goes back
    /// (nothing reaches a cut-off node).
    fn trace_until_dead(&self, observer: &str, target: &str) -> Trace {
        let node = self.node(observer);
        let start = Instant::now();
        let mut trace = Trace(Vec::new());
        loop {
            let state = member_state(&node.status(), target);
            if trace.0.last().is_none_or(|(last, _)| *last != state) {
                trace.0.push((state.clone(), start.elapsed()));
            }
            let order: Vec<usize> = trace
                .0
                .iter()
                .map(|(s, _)| {
                    ["alive", "suspect", "dead"]
                        .iter()
                        .position(|o| o == s)
                        .unwrap()
                })
                .collect();
            assert!(
                order.is_sorted(),
                "{observer} shows {target}: {trace}, not alive, suspect, dead in that order"
            );
            if state == "dead" {
                return trace;
            }
            assert!(
                start.elapsed() < GUARD,
                "{observer} never showed {target} dead: {trace}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The generation ids of all nodes.
    fn generations(&self) -> Vec<u64> {
        self.nodes.iter().map(Node::generation_id).collect()
    }

    /// Waits until every node runs a generation newer than in `before`,
    /// and checks its source: "local" on `editor`, "cluster" elsewhere.
    fn check_new_generations(&self, before: &[u64], editor: &str) {
        for (node, &id) in self.nodes.iter().zip(before) {
            let s = node.wait("a new generation", |s| {
                s["generation"]["id"].as_u64().unwrap() > id
            });
            let want = if node.name == editor {
                "local"
            } else {
                "cluster"
            };
            assert_eq!(
                s["generation"]["source"], want,
                "{}: {}",
                node.name, s["generation"]
            );
            assert_eq!(s["config_errors"].as_array().unwrap().len(), 0, "{s}");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!(
                    "---- {} ({}) hostd.log, last lines:\n{}",
                    node.name,
                    node.ip,
                    node.tail(40)
                );
            }
            eprintln!("(the trees were in {})", self.dir.path().display());
        }
    }
}

/// Creating, changing and deleting a file on any node reaches every other
/// node byte for byte, as a generation from the cluster; node.toml and
/// secrets/ stay each node's own.
#[test]
fn create_change_and_delete_reach_every_node() {
    let mut lab = Lab::new("ccd", 1, &["node1", "node2", "node3"]);
    let node1_toml = format!(
        "{}# marker: only node1 has this line\n",
        lab.node_toml(lab.node("node1"))
    );
    std::fs::write(lab.node("node1").etc().join("node.toml"), &node1_toml).unwrap();
    let originals: Vec<(Vec<u8>, Vec<u8>)> = lab
        .nodes
        .iter()
        .map(|n| {
            (
                std::fs::read(n.etc().join("node.toml")).unwrap(),
                std::fs::read(n.etc().join("secrets/gossip.key")).unwrap(),
            )
        })
        .collect();
    lab.start();
    let all = ["node1", "node2", "node3"];
    lab.wait_alive(&all);

    // Created on node1.
    let rel = "networks/web.toml";
    let v1 = "kind = \"bridge\"\n# version 1, créée sur node1\n";
    let before = lab.generations();
    lab.node("node1").save(rel, v1);
    lab.wait_file(&all, rel, Some(v1));
    lab.check_new_generations(&before, "node1");
    for node in &lab.nodes {
        let s = node.wait("the new file counted", |s| s["cluster"]["files"] == 3);
        assert_eq!(s["cluster"]["conflicts"], serde_json::json!([]), "{s}");
    }

    // Changed on node2 (no newline at the end: bytes, not lines, travel).
    let v2 = "kind = \"bridge\"\n# version 2, from node2";
    let before = lab.generations();
    lab.node("node2").save(rel, v2);
    lab.wait_file(&all, rel, Some(v2));
    lab.check_new_generations(&before, "node2");

    // Deleted on node3.
    let before = lab.generations();
    lab.node("node3").remove(rel);
    lab.wait_file(&all, rel, None);
    lab.check_new_generations(&before, "node3");
    for node in &lab.nodes {
        let s = node.wait("the deletion counted", |s| s["cluster"]["files"] == 2);
        assert_eq!(s["cluster"]["conflicts"], serde_json::json!([]), "{s}");
        assert_eq!(s["cluster"]["rejected"], serde_json::json!([]), "{s}");
    }

    // The other files and everything outside cluster/ are as they were.
    for (node, (node_toml, key)) in lab.nodes.iter().zip(&originals) {
        assert_eq!(
            &std::fs::read(node.etc().join("node.toml")).unwrap(),
            node_toml,
            "{}: node.toml changed",
            node.name
        );
        assert_eq!(
            &std::fs::read(node.etc().join("secrets/gossip.key")).unwrap(),
            key,
            "{}: the key changed",
            node.name
        );
        let mut top: Vec<String> = std::fs::read_dir(node.etc())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["cluster", "node.toml", "secrets"], "{}", node.name);
        let secrets: Vec<_> = std::fs::read_dir(node.etc().join("secrets"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(secrets, ["gossip.key"], "{}", node.name);
        assert!(!node.file("node.toml").exists(), "{}", node.name);
        assert_eq!(
            node.read("networks/iso.toml").unwrap(),
            BRIDGE_NETWORK.as_bytes()
        );
    }
    assert!(
        !std::fs::read_to_string(lab.node("node2").etc().join("node.toml"))
            .unwrap()
            .contains("marker")
    );
}

/// A node cut off misses changes, is declared dead (never coming back to
/// life on the way), and catches up when its link returns.
#[test]
fn a_partitioned_node_is_declared_dead_and_catches_up_after_healing() {
    let mut lab = Lab::new("part", 2, &["node1", "node2", "node3"]);
    lab.start();
    let all = ["node1", "node2", "node3"];
    lab.wait_alive(&all);

    lab.link("node3", false);
    let rel = "networks/while-away.toml";
    let text = "kind = \"bridge\"\n# written while node3 was cut off\n";
    lab.node("node1").save(rel, text);
    lab.wait_file(&["node1", "node2"], rel, Some(text));
    assert_eq!(lab.node("node3").read(rel), None);

    let trace = lab.trace_until_dead("node1", "node3");
    eprintln!("node1's view of node3 after its link went down: {trace}");
    let s = lab.node("node1").status();
    assert_eq!(member_state(&s, "node2"), "alive", "{}", s["cluster"]);
    // node3, on its side, has lost both others.
    lab.node("node3").wait("node1 and node2 dead", |s| {
        member_state(s, "node1") == "dead" && member_state(s, "node2") == "dead"
    });
    assert_eq!(lab.node("node3").read(rel), None);

    lab.link("node3", true);
    lab.wait_file(&["node3"], rel, Some(text));
    lab.wait_alive(&all);
    let s = lab.node("node3").wait("the change applied", |s| {
        s["generation"]["source"] == "cluster" && s["cluster"]["files"] == 3
    });
    assert_eq!(s["cluster"]["conflicts"], serde_json::json!([]), "{s}");
}

/// A member that falls silent is shown suspect (silent for a few seconds)
/// before the failure detector declares it dead.
#[test]
fn a_silent_member_is_shown_suspect_before_it_is_dead() {
    let mut lab = Lab::new("susp", 6, &["node1", "node2"]);
    lab.start();
    lab.wait_alive(&["node1", "node2"]);
    lab.link("node2", false);
    let trace = lab.trace_until_dead("node1", "node2");
    assert!(
        trace.has("suspect"),
        "node1 never showed node2 suspect after its link went down: {trace}"
    );
}

/// Both sides of a partition edit the same file: after healing, every
/// node has the same winner and shows the other version as the loser of
/// one conflict.
#[test]
fn concurrent_edits_converge_and_the_loser_is_shown_everywhere() {
    let mut lab = Lab::new("conc", 3, &["node1", "node2", "node3"]);
    let rel = "networks/shared.toml";
    for node in &lab.nodes {
        std::fs::write(node.file(rel), BRIDGE_NETWORK).unwrap();
    }
    lab.start();
    let all = ["node1", "node2", "node3"];
    lab.wait_alive(&all);

    lab.link("node2", false);
    lab.node("node1").wait("node2 no longer alive", |s| {
        member_state(s, "node2") != "alive"
    });
    let from1 = "kind = \"bridge\"\n# edited on node1\n";
    let from2 = "kind = \"bridge\"\n# edited on node2, cut off\n";
    let before = lab.generations();
    lab.node("node1").save(rel, from1);
    lab.node("node2").save(rel, from2);
    lab.wait_file(&["node1", "node3"], rel, Some(from1));
    // Both edits are accepted locally before the link returns.
    for (node, id) in lab.nodes.iter().zip(&before).take(2) {
        node.wait("the edit accepted", |s| {
            s["generation"]["id"].as_u64().unwrap() > *id
        });
    }
    assert_eq!(lab.node("node2").read(rel).unwrap(), from2.as_bytes());

    lab.link("node2", true);
    lab.wait_alive(&all);
    // Converged: the same content everywhere, one of the two edits.
    let start = Instant::now();
    let winner = loop {
        let contents: Vec<_> = lab.nodes.iter().map(|n| n.read(rel)).collect();
        if contents.iter().all(|c| c == &contents[0]) {
            break String::from_utf8(contents[0].clone().unwrap()).unwrap();
        }
        assert!(start.elapsed() < GUARD, "no convergence: {contents:?}");
        std::thread::sleep(POLL);
    };
    assert!(winner == from1 || winner == from2, "{winner:?}");
    let (loser, loser_author) = if winner == from1 {
        (from2, "node2")
    } else {
        (from1, "node1")
    };
    for node in &lab.nodes {
        let s = node.wait("exactly one conflict", |s| conflicts_for(s, rel).len() == 1);
        let c = conflicts_for(&s, rel)[0];
        assert_eq!(c["loser"]["content"], loser, "{}: {c}", node.name);
        assert_eq!(c["loser"]["author"], loser_author, "{}: {c}", node.name);
        assert_ne!(c["winner_author"], loser_author, "{}: {c}", node.name);
        assert_eq!(
            s["cluster"]["conflicts"].as_array().unwrap().len(),
            1,
            "{}: {}",
            node.name,
            s["cluster"]["conflicts"]
        );
    }
    // Converged for good: nothing left waiting, the same winner everywhere.
    for node in &lab.nodes {
        let s = node.wait("nothing waiting", |s| s["cluster"]["waiting_changes"] == 0);
        assert_eq!(s["config_errors"].as_array().unwrap().len(), 0, "{s}");
        assert_eq!(node.read(rel).unwrap(), winner.as_bytes(), "{}", node.name);
    }
    eprintln!("winner: {winner:?}");
}

/// A member with another key can neither read nor write the cluster; the
/// others count its datagrams as unauthenticated.
#[test]
fn a_node_with_the_wrong_key_gets_nothing_and_gives_nothing() {
    let mut lab = Lab::new("key", 4, &["node1", "node2", "node3", "node4"]);
    let other_key = gossip_key();
    let node4 = lab.node("node4");
    let key_file = node4.etc().join("secrets/gossip.key");
    std::fs::remove_file(&key_file).unwrap();
    write_secret(&key_file, other_key.as_bytes());
    lab.start();
    let good = ["node1", "node2", "node3"];
    lab.wait_alive(&good);
    let node4 = lab.node("node4");
    let s = node4.wait("ready", |s| s["ready"] == true);
    assert_eq!(s["cluster"]["error"], Value::Null, "{}", s["cluster"]);

    // node1's file reaches the members with the key, never node4, though
    // node4 keeps receiving (and dropping) their datagrams afterwards.
    let rel = "networks/from-node1.toml";
    let text = "kind = \"bridge\"\n# from node1\n";
    lab.node("node1").save(rel, text);
    lab.wait_file(&good, rel, Some(text));
    let dropped = node4.transport("dropped_unauthenticated");
    node4.wait("more datagrams dropped", |s| {
        s["cluster"]["transport"]["dropped_unauthenticated"]
            .as_u64()
            .unwrap()
            >= dropped + 5
    });
    assert_eq!(node4.read(rel), None);

    // node4's file reaches nobody, though node4 keeps sending after it
    // accepted the file (the others drop what it sends).
    let rel4 = "networks/from-node4.toml";
    let text4 = "kind = \"bridge\"\n# from node4\n";
    let before = node4.generation_id();
    node4.save(rel4, text4);
    node4.wait("node4 accepted its file", |s| {
        s["generation"]["id"].as_u64().unwrap() > before && s["cluster"]["files"] == 3
    });
    for name in good {
        let node = lab.node(name);
        let dropped = node.transport("dropped_unauthenticated");
        node.wait("more datagrams from node4 dropped", |s| {
            s["cluster"]["transport"]["dropped_unauthenticated"]
                .as_u64()
                .unwrap()
                >= dropped + 3
        });
    }
    for name in good {
        let node = lab.node(name);
        assert_eq!(node.read(rel4), None, "{name}");
        let s = node.status();
        assert_eq!(
            member_state(&s, "node4"),
            "dead",
            "{name}: {}",
            s["cluster"]
        );
        assert!(
            s["cluster"]["transport"]["dropped_unauthenticated"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(s["cluster"]["files"], 3, "{name}: {}", s["cluster"]);
    }
    let s = node4.status();
    for name in good {
        assert_eq!(member_state(&s, name), "dead", "{}", s["cluster"]);
    }
    assert_eq!(
        s["cluster"]["transport"]["received_packets"], 0,
        "{}",
        s["cluster"]
    );
}

/// With `[trust] require_signatures`, a signed change replicates, and an
/// unsigned one from a member that turned checking off on its own (a
/// compromised node that has the cluster key) is refused by the others.
#[test]
fn unsigned_changes_from_a_rogue_member_are_refused() {
    let mut lab = Lab::new("sig", 5, &["node1", "node2", "node3", "rogue"]);
    let keypair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let secret_key = lab.dir.path().join("minisign.key");
    write_secret(
        &secret_key,
        keypair.sk.to_box(None).unwrap().to_string().as_bytes(),
    );
    let trusted = lab.cluster_toml(&format!(
        "keys = [\"{}\"]\nrequire_signatures = true\n",
        keypair.pk.to_base64()
    ));
    let secret_key = secret_key.to_str().unwrap();
    for name in ["node1", "node2", "node3"] {
        let node = lab.node(name);
        std::fs::write(node.file("cluster.toml"), &trusted).unwrap();
        let etc = node.etc();
        let out = horcrux(&[
            "sign",
            "--secret-key",
            secret_key,
            "--config-dir",
            etc.to_str().unwrap(),
        ]);
        assert!(out.contains("signed 2, already signed 0"), "{out}");
    }
    lab.start();
    let all = ["node1", "node2", "node3", "rogue"];
    lab.wait_alive(&all);

    // A signed change replicates, signature and all.
    let rel = "networks/signed.toml";
    let text = "kind = \"bridge\"\n# signed on node1\n";
    let node1 = lab.node("node1");
    node1.save(rel, text);
    horcrux(&[
        "sign",
        "--secret-key",
        secret_key,
        "--config-dir",
        node1.etc().to_str().unwrap(),
        node1.file(rel).to_str().unwrap(),
    ]);
    let signature = String::from_utf8(node1.read("networks/signed.toml.minisig").unwrap()).unwrap();
    assert!(
        signature.contains("horcrux file path=networks/signed.toml"),
        "{signature}"
    );
    lab.wait_file(&all, rel, Some(text));
    lab.wait_file(&all, "networks/signed.toml.minisig", Some(&signature));
    for name in ["node2", "node3"] {
        let s = lab.node(name).wait("the signed file accepted", |s| {
            s["cluster"]["files"] == 3 && s["generation"]["source"] == "cluster"
        });
        assert_eq!(s["config_errors"].as_array().unwrap().len(), 0, "{s}");
    }

    // The rogue's unsigned file is refused by everyone else.
    let rogue = lab.node("rogue");
    let evil = "networks/evil.toml";
    let before = rogue.generation_id();
    rogue.save(evil, "kind = \"bridge\"\n# unsigned, from the rogue\n");
    rogue.wait("the rogue accepted its own file", |s| {
        s["generation"]["id"].as_u64().unwrap() > before
    });
    for name in ["node1", "node2", "node3"] {
        let s = lab.node(name).wait("the unsigned file refused", |s| {
            !rejected_for(s, evil).is_empty()
        });
        let refused = rejected_for(&s, evil);
        assert_eq!(refused.len(), 1, "{name}: {refused:?}");
        assert_eq!(refused[0]["author"], "rogue", "{name}: {}", refused[0]);
        assert!(
            refused[0]["reason"].as_str().unwrap().contains("sign"),
            "{name}: {}",
            refused[0]
        );
        assert!(!lab.node(name).file(evil).exists(), "{name}");
        assert_eq!(s["cluster"]["files"], 3, "{name}: {}", s["cluster"]);
        assert_eq!(s["config_errors"].as_array().unwrap().len(), 0, "{s}");
    }
    // Deletions need a signature too: the rogue's `rm` is refused...
    let rogue = lab.node("rogue");
    rogue.remove(rel);
    for name in ["node1", "node2", "node3"] {
        let s = lab.node(name).wait("the unsigned deletion refused", |s| {
            rejected_for(s, rel).iter().any(|r| r["author"] == "rogue")
        });
        let refused = rejected_for(&s, rel);
        assert!(
            refused[0]["reason"].as_str().unwrap().contains("sign"),
            "{name}: {}",
            refused[0]
        );
        assert_eq!(lab.node(name).read(rel).unwrap(), text.as_bytes(), "{name}");
    }
    // ...and a signed one (by another member) replicates, as do later
    // signed changes, while the rogue's file stays out.
    let node2 = lab.node("node2");
    let out = horcrux(&[
        "sign",
        "--secret-key",
        secret_key,
        "--config-dir",
        node2.etc().to_str().unwrap(),
        "--delete",
        node2.file(rel).to_str().unwrap(),
    ]);
    assert!(out.contains("deleted"), "{out}");
    lab.wait_file(&all, rel, None);
    let deletion = String::from_utf8(node2.read("networks/signed.toml.minisig").unwrap()).unwrap();
    assert!(
        deletion.contains("horcrux delete path=networks/signed.toml"),
        "{deletion}"
    );
    lab.wait_file(&all, "networks/signed.toml.minisig", Some(&deletion));
    for name in ["node1", "node2", "node3"] {
        let s = lab.node(name).wait("the signed deletion accepted", |s| {
            s["cluster"]["files"] == 2
        });
        assert_eq!(s["config_errors"].as_array().unwrap().len(), 0, "{s}");
        assert!(!lab.node(name).file(evil).exists(), "{name}");
    }
}

/// A node away for longer than deletions are remembered comes back with a
/// file deleted meanwhile: it removes it, and does not bring it back on
/// the others (whose record of the deletion has expired).
#[test]
fn a_node_back_after_deletions_expired_resynchronises() {
    let mut lab = Lab::new("resync", 7, &["node1", "node2", "node3"]);
    for node in &mut lab.nodes {
        node.tombstone_ttl = Some("3s");
    }
    lab.start();
    let all = ["node1", "node2", "node3"];
    lab.wait_alive(&all);
    let rel = "networks/doomed.toml";
    lab.node("node1").save(rel, BRIDGE_NETWORK);
    lab.wait_file(&all, rel, Some(BRIDGE_NETWORK));

    lab.nodes[2].stop();
    lab.node("node1").remove(rel);
    lab.wait_file(&["node1", "node2"], rel, None);
    // Longer than the 3 s the deletion is remembered (a wait, not a check).
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        lab.node("node3").read(rel).as_deref(),
        Some(BRIDGE_NETWORK.as_bytes())
    );

    lab.nodes[2].start();
    lab.wait_file(&["node3"], rel, None);
    lab.wait_alive(&all);
    // A few more gossip rounds: had node3 offered the file, it would be back.
    std::thread::sleep(Duration::from_secs(2));
    for name in all {
        assert_eq!(
            lab.node(name).read(rel),
            None,
            "{name} has the deleted file again"
        );
    }
}

/// The documented set-up: the first node has the whole tree, the others
/// join later with only node.toml, cluster.toml and the key. They get
/// every file, even though the first node's cluster.toml loses to an
/// identical one of theirs.
#[test]
fn nodes_joining_later_get_the_first_nodes_tree() {
    let mut lab = Lab::new("join", 8, &["node1", "node2", "node3"]);
    let rel = "networks/from-node1.toml";
    lab.node("node1").save(rel, BRIDGE_NETWORK);
    for name in ["node2", "node3"] {
        lab.node(name).remove("networks/iso.toml");
    }
    lab.nodes[0].start();
    lab.node("node1").wait("ready", |s| s["ready"] == true);
    lab.nodes[1].start();
    lab.wait_alive(&["node1", "node2"]);
    lab.nodes[2].start();
    lab.wait_file(&["node2", "node3"], rel, Some(BRIDGE_NETWORK));
    lab.wait_file(
        &["node2", "node3"],
        "networks/iso.toml",
        Some(BRIDGE_NETWORK),
    );
    for name in ["node2", "node3"] {
        lab.node(name).wait("nothing waiting", |s| {
            s["cluster"]["files"] == 3 && s["cluster"]["waiting_changes"] == 0
        });
    }
}
