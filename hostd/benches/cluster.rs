//! Cluster propagation: N real hostd processes on loopback addresses
//! (127.0.0.101, .102, ...), default gossip interval. For each N it waits
//! until every node sees every member alive, then saves a new or changed
//! file on a random node 20 times and measures how long until the file is
//! byte-identical on every node (polled every 5 ms), and finally the idle
//! gossip traffic per node over 10 s without changes.
//!
//! ```text
//! cargo bench -p horcrux-hostd --bench cluster
//! HORCRUX_BENCH_NODES=3,10 cargo bench -p horcrux-hostd --bench cluster
//! ```
//!
//! Numbers are printed, not asserted. Needs ports 7946/udp and 8006/tcp
//! free on the addresses used.

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use horcrux_hostd::cluster::key::ClusterKey;
use serde_json::Value;

const SAMPLES: usize = 20;
const POLL: Duration = Duration::from_millis(5);
const IDLE: Duration = Duration::from_secs(10);
/// Node i listens on 127.0.0.(FIRST_HOST + i).
const FIRST_HOST: u8 = 101;
const GOSSIP_PORT: u16 = 7946;
const STATUS_PORT: u16 = 8006;
/// Hang guard for one propagation.
const SAMPLE_GUARD: Duration = Duration::from_secs(60);

struct Node {
    name: String,
    ip: Ipv4Addr,
    root: PathBuf,
    child: Child,
}

impl Node {
    fn file(&self, rel: &str) -> PathBuf {
        self.root.join("etc/cluster").join(rel)
    }

    fn status_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), STATUS_PORT)
    }

    fn try_status(&self) -> Option<Value> {
        let mut stream =
            TcpStream::connect_timeout(&self.status_addr(), Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream
            .write_all(b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        serde_json::from_str(body).ok()
    }

    fn status(&self) -> Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}: no status page; log:\n{}",
                self.name,
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Gossip bytes sent and received so far.
    fn traffic(&self) -> u64 {
        let t = &self.status()["cluster"]["transport"];
        t["sent_bytes"].as_u64().unwrap() + t["received_bytes"].as_u64().unwrap()
    }

    /// CPU time used so far (user + system), from /proc.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// Resident memory in MiB, from /proc.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("hostd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator (xorshift64*), enough to pick nodes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes the trees and starts `n` nodes.
fn start(n: usize, dir: &Path) -> Vec<Node> {
    assert!(
        n >= 2 && n <= usize::from(u8::MAX - FIRST_HOST),
        "2..={} nodes",
        u8::MAX - FIRST_HOST
    );
    let ips: Vec<Ipv4Addr> = (0..n)
        .map(|i| Ipv4Addr::new(127, 0, 0, FIRST_HOST + u8::try_from(i).unwrap()))
        .collect();
    for ip in &ips {
        let free = UdpSocket::bind((*ip, GOSSIP_PORT)).is_ok()
            && TcpListener::bind((*ip, STATUS_PORT)).is_ok();
        assert!(
            free,
            "{ip}: port {GOSSIP_PORT}/udp or {STATUS_PORT}/tcp is in use"
        );
    }
    let mut cluster = String::from("name = \"bench\"\n");
    for (i, ip) in ips.iter().enumerate() {
        cluster.push_str(&format!(
            "\n[[member]]\nname = \"node{}\"\naddress = \"{ip}\"\n",
            i + 1
        ));
    }
    cluster.push_str(&format!(
        "\n[gossip]\nport = {GOSSIP_PORT}\n\n[trust]\nrequire_signatures = false\n"
    ));
    let key = format!("{}\n", ClusterKey::generate().to_base64());
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let root = dir.join(&name);
        let etc = root.join("etc");
        std::fs::create_dir_all(etc.join("cluster/networks")).unwrap();
        std::fs::create_dir_all(etc.join("secrets")).unwrap();
        std::fs::write(
            etc.join("node.toml"),
            format!("name = \"{name}\"\n\n[status]\nlisten = \"{ip}:{STATUS_PORT}\"\n"),
        )
        .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(etc.join("secrets/gossip.key"))
            .unwrap()
            .write_all(key.as_bytes())
            .unwrap();
        std::fs::write(etc.join("cluster/cluster.toml"), &cluster).unwrap();
        std::fs::write(etc.join("cluster/networks/iso.toml"), "kind = \"bridge\"\n").unwrap();
        let log = std::fs::File::create(root.join("hostd.log")).unwrap();
        let path = |d: &str| root.join(d).to_str().unwrap().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_hostd"))
            .arg("--no-host-network")
            .args(["--config-dir", &path("etc")])
            .args(["--state-dir", &path("state")])
            .args(["--run-dir", &path("run")])
            .env("HOSTD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        nodes.push(Node {
            name,
            ip: *ip,
            root,
            child,
        });
    }
    nodes
}

/// Waits until every node shows every member alive.
fn wait_all_alive(nodes: &[Node]) {
    let guard = Duration::from_secs(60 + 3 * nodes.len() as u64);
    let start = Instant::now();
    for node in nodes {
        loop {
            let s = node.status();
            let members = s["cluster"]["members"].as_array().unwrap();
            let alive = members.iter().filter(|m| m["state"] == "alive").count();
            if alive == nodes.len() {
                break;
            }
            assert!(
                start.elapsed() < guard,
                "{}: only {alive} of {} members alive after {guard:?}: {}\nlog:\n{}",
                node.name,
                nodes.len(),
                s["cluster"],
                node.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Saves `content` at `rel` on `writer`; how long until it is on every
/// node, and until the first other node has it.
fn propagate(nodes: &[Node], writer: usize, rel: &str, content: &str) -> (Duration, Duration) {
    let mut pending: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != writer)
        .map(|(_, n)| n)
        .collect();
    let start = Instant::now();
    write_atomically(&nodes[writer].file(rel), content.as_bytes());
    let mut first = None;
    while !pending.is_empty() {
        pending.retain(|n| std::fs::read(n.file(rel)).ok().as_deref() != Some(content.as_bytes()));
        let now = start.elapsed();
        if first.is_none() && pending.len() < nodes.len() - 1 {
            first = Some(now);
        }
        if pending.is_empty() {
            break;
        }
        assert!(
            now < SAMPLE_GUARD,
            "{rel} from {} did not reach {} nodes (e.g. {}) within {SAMPLE_GUARD:?}; its log:\n{}",
            nodes[writer].name,
            pending.len(),
            pending[0].name,
            pending[0].tail()
        );
        std::thread::sleep(POLL);
    }
    let all = start.elapsed();
    (all, first.unwrap_or(all))
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

struct Row {
    nodes: usize,
    alive_after: Duration,
    all: Vec<Duration>,
    first: Vec<Duration>,
    idle_bytes_per_s: f64,
    idle_cpu_percent: f64,
    rss_mean: f64,
    rss_max: f64,
}

fn run(n: usize, rng: &mut Rng) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let nodes = start(n, dir.path());
    wait_all_alive(&nodes);
    let alive_after = started.elapsed();
    eprintln!(
        "{n} nodes: all alive after {:.1} s",
        alive_after.as_secs_f64()
    );

    let mut all = Vec::new();
    let mut first = Vec::new();
    for k in 0..SAMPLES {
        // Even samples create a file, odd ones change the one just made.
        let rel = format!("networks/bench-{}.toml", k / 2);
        let writer = rng.below(n);
        let content = format!(
            "kind = \"bridge\"\n# sample {k}, saved on {}\n",
            nodes[writer].name
        );
        let (to_all, to_first) = propagate(&nodes, writer, &rel, &content);
        eprintln!(
            "  sample {k:2}: {} on {:>6}: first peer {:>5} ms, all {:>5} ms",
            if k % 2 == 0 { "create" } else { "change" },
            nodes[writer].name,
            ms(to_first),
            ms(to_all)
        );
        all.push(to_all);
        first.push(to_first);
        // Out of phase with the gossip rounds, and time for the nodes to
        // take in the new generation.
        std::thread::sleep(Duration::from_millis(300 + rng.below(500) as u64));
    }
    all.sort();
    first.sort();

    // Idle: let the last change settle, then 10 s per node. The status
    // page refreshes its counters once a second, so each node is read
    // twice exactly IDLE apart (same phase of its refresh).
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<(Instant, u64, Duration)> = nodes
        .iter()
        .map(|node| (Instant::now(), node.traffic(), node.cpu()))
        .collect();
    let mut bytes = 0u64;
    let mut cpu = Duration::ZERO;
    for (node, (at, traffic, used)) in nodes.iter().zip(&before) {
        std::thread::sleep((*at + IDLE).saturating_duration_since(Instant::now()));
        bytes += node.traffic() - traffic;
        cpu += node.cpu() - *used;
    }
    let rss: Vec<f64> = nodes.iter().map(Node::rss_mib).collect();
    drop(nodes);
    Row {
        nodes: n,
        alive_after,
        all,
        first,
        idle_bytes_per_s: bytes as f64 / n as f64 / IDLE.as_secs_f64(),
        idle_cpu_percent: cpu.as_secs_f64() / n as f64 / IDLE.as_secs_f64() * 100.0,
        rss_mean: rss.iter().sum::<f64>() / rss.len() as f64,
        rss_max: rss.iter().copied().fold(0.0, f64::max),
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("HORCRUX_BENCH_NODES")
        .unwrap_or_else(|_| "3,10,50".to_string())
        .split(',')
        .map(|s| s.trim().parse().expect("HORCRUX_BENCH_NODES: e.g. 3,10,50"))
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut rows = Vec::new();
    for n in sizes {
        rows.push(run(n, &mut rng));
    }

    println!();
    println!(
        "cluster propagation: a file saved on one node until byte-identical on all \
         ({SAMPLES} edits per size, default gossip interval 500 ms)"
    );
    println!(
        "{:>5}  {:>10}  {:>8}  {:>8}  {:>8}  {:>10}  {:>12}  {:>9}  {:>12}",
        "nodes",
        "all alive",
        "p50 ms",
        "p99 ms",
        "max ms",
        "1st peer",
        "idle B/s",
        "idle CPU",
        "RSS MiB"
    );
    println!(
        "{:>5}  {:>10}  {:>8}  {:>8}  {:>8}  {:>10}  {:>12}  {:>9}  {:>12}",
        "", "after", "", "", "", "p50 ms", "per node", "per node", "mean/max"
    );
    for r in &rows {
        println!(
            "{:>5}  {:>8.1} s  {:>8}  {:>8}  {:>8}  {:>10}  {:>12.0}  {:>8.1}%  {:>12}",
            r.nodes,
            r.alive_after.as_secs_f64(),
            ms(percentile(&r.all, 50.0)),
            ms(percentile(&r.all, 99.0)),
            ms(*r.all.last().unwrap()),
            ms(percentile(&r.first, 50.0)),
            r.idle_bytes_per_s,
            r.idle_cpu_percent,
            format!("{:.1}/{:.1}", r.rss_mean, r.rss_max)
        );
    }
}
