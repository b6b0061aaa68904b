//! The firewall backend against the real kernel, with real traffic: each
//! test builds a "node" network namespace with a bridge, VMs as network
//! namespaces attached by veth pairs whose bridge ends carry the tap names
//! hostd derives from the config, and applies the ruleset with
//! `FirewallBackend` inside the node namespace. Needs root and `nft`.
//!
//! Filtering by security group needs conntrack for bridged traffic (and
//! bridge reject); tests that need it call `require` and say NOT RUN HERE
//! on kernels without it. Anti-spoofing, drift, other tables and the
//! node's own input policy run everywhere.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/netns.rs"]
mod netns;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use horcrux_config::Config;
use horcrux_hostd::apply::Backend as _;
use horcrux_hostd::backend::firewall::{self, CHANGED_OUTSIDE, FirewallBackend, NicPort};
use horcrux_hostd::plan::{Op, Plan, plan};
use netns::{Feature, NetNs, require, veth};

/// How long a dropped connection attempt is given.
const DROPPED: Duration = Duration::from_millis(1500);

/// A config tree on disk, loaded the way hostd loads it.
fn load_tree(files: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    load_dir(dir.path())
}

fn load_dir(dir: &Path) -> Config {
    match horcrux_config::load(dir).unwrap().into_valid() {
        Ok(config) => config,
        Err(errors) => panic!("invalid test tree: {errors:#?}"),
    }
}

/// A VM file with one NIC on `lan`.
fn vm(mac: &str, groups: &str) -> String {
    format!("[[nic]]\nnetwork = \"lan\"\nmac = \"{mac}\"\nfirewall = [{groups}]\n")
}

const NODE: &str = "name = \"node1\"\n";
const LAN: &str = "kind = \"bridge\"\n";
const MAC_A: &str = "52:54:00:00:00:0a";
const MAC_B: &str = "52:54:00:00:00:0b";

/// The node namespace with bridge `br0` and the VMs' endpoints.
struct Lab {
    node: NetNs,
    vms: Vec<(NicPort, NetNs)>,
}

impl Lab {
    /// Every NIC of `config` as a namespace with `eth0` (the NIC's MAC,
    /// 10.9.0.<n+1>/24) cabled to a bridge port named like its tap.
    fn new(config: &Config) -> Lab {
        let node = NetNs::new("node");
        node.ok("ip link add br0 type bridge && ip link set br0 up");
        let mut vms = Vec::new();
        for (n, port) in firewall::nic_ports(config, "node1").into_iter().enumerate() {
            let ns = NetNs::new(&port.vm);
            veth(&node, &port.tap, &ns, "eth0");
            node.ok(&format!("ip link set {} master br0", port.tap));
            ns.ok(&format!(
                "ip link set eth0 address {} && ip addr add 10.9.0.{}/24 dev eth0",
                port.mac,
                n + 1
            ));
            vms.push((port, ns));
        }
        Lab { node, vms }
    }

    fn vm(&self, name: &str) -> &NetNs {
        &self.vms.iter().find(|(p, _)| p.vm == name).unwrap().1
    }

    fn port(&self, name: &str) -> &NicPort {
        &self.vms.iter().find(|(p, _)| p.vm == name).unwrap().0
    }

    /// Observe, plan and apply, like one daemon cycle; returns the plan.
    fn converge(&self, backend: &FirewallBackend, config: &Config) -> Plan {
        converge_in(&self.node, backend, config)
    }
}

fn converge_in(ns: &NetNs, backend: &FirewallBackend, config: &Config) -> Plan {
    ns.block_on(|| async {
        let desired = backend.desired(config);
        let observed = backend.observe().await.unwrap();
        let plan = plan(&desired, &observed);
        for action in &plan.actions {
            let wanted = desired.iter().find(|d| d.id == action.id);
            backend.apply(action, wanted).await.unwrap();
        }
        plan
    })
}

/// The plan observing would give now, without applying it.
fn plan_now(ns: &NetNs, backend: &FirewallBackend, config: &Config) -> Plan {
    ns.block_on(|| async {
        let observed = backend.observe().await.unwrap();
        plan(&backend.desired(config), &observed)
    })
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Whether a UDP datagram from `from` reaches `to`'s socket on 10.9.0.2.
fn udp_delivered(from: &NetNs, to: &std::net::UdpSocket, payload: &[u8]) -> bool {
    let sender = from.udp_socket(addr("0.0.0.0", 0));
    sender.send_to(payload, addr("10.9.0.2", 5000)).unwrap();
    to.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    // Anything else that arrives (nothing should) is not this payload.
    while let Ok((n, _)) = to.recv_from(&mut buf) {
        if &buf[..n] == payload {
            return true;
        }
    }
    false
}

#[test]
fn anti_spoofing_drops_frames_with_a_foreign_source_mac_before_the_bridge_learns_it() {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/vms/a.toml", &vm(MAC_A, "")),
        ("cluster/vms/b.toml", &vm(MAC_B, "")),
    ]);
    let lab = Lab::new(&config);
    let (a, b) = (lab.vm("a"), lab.vm("b"));
    // A knows B's MAC, so nothing depends on ARP from a spoofed source.
    a.ok(&format!(
        "ip neigh replace 10.9.0.2 lladdr {MAC_B} dev eth0"
    ));
    let inbox = b.udp_socket(addr("10.9.0.2", 5000));
    let spoofed = "52:54:00:66:66:66";

    // Without the firewall a spoofed frame is delivered: the check below
    // can see the difference.
    a.ok(&format!("ip link set eth0 address {spoofed}"));
    assert!(udp_delivered(a, &inbox, b"spoofed, no firewall"));

    lab.converge(&FirewallBackend::new(firewall::NFT), &config);
    // Forget what the bridge learned before (the datagram above, and
    // IPv6 chatter after the MAC change), then spoof again.
    let tap = &lab.port("a").tap;
    let _ = lab
        .node
        .sh(&format!("bridge fdb del {spoofed} dev {tap} master"));
    assert!(!udp_delivered(a, &inbox, b"spoofed"));
    let fdb = lab.node.ok("bridge fdb show br br0");
    assert!(
        !fdb.contains(spoofed),
        "the bridge learned the spoofed MAC:\n{fdb}"
    );

    a.ok(&format!("ip link set eth0 address {MAC_A}"));
    assert!(udp_delivered(a, &inbox, b"genuine"));
}

#[test]
fn a_real_tap_gets_its_chains_by_name() {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/vms/a.toml", &vm(MAC_A, "")),
    ]);
    let node = NetNs::new("node");
    let port = &firewall::nic_ports(&config, "node1")[0];
    node.ok(&format!(
        "ip link add br0 type bridge && ip link set br0 up && \
         ip tuntap add {0} mode tap && ip link set {0} master br0 && ip link set {0} up",
        port.tap
    ));
    let backend = FirewallBackend::new(firewall::NFT);
    converge_in(&node, &backend, &config);
    let prerouting = node.ok("nft list chain bridge horcrux prerouting");
    assert!(
        prerouting.contains(&format!("\"{0}\" : jump from-{0}", port.tap)),
        "{prerouting}"
    );
    let chain = node.ok(&format!("nft list chain bridge horcrux from-{}", port.tap));
    assert!(
        chain.contains(&format!("ether saddr != {MAC_A} drop")),
        "{chain}"
    );
    let link = node.ok(&format!("ip -d link show {}", port.tap));
    assert!(
        link.contains("tun") && link.contains("master br0"),
        "{link}"
    );
}

#[test]
fn applying_the_same_config_again_has_nothing_to_do() {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/vms/a.toml", &vm(MAC_A, "")),
        ("cluster/vms/b.toml", &vm(MAC_B, "")),
    ]);
    let node = NetNs::new("node");
    let backend = FirewallBackend::new(firewall::NFT);
    let first = converge_in(&node, &backend, &config);
    assert_eq!(first.actions.len(), 1);
    assert_eq!(first.actions[0].op, Op::Create);
    let again = plan_now(&node, &backend, &config);
    assert!(again.is_empty(), "{again:#?}");

    // A new hostd (no memory of what it applied) re-applies once.
    let fresh = FirewallBackend::new(firewall::NFT);
    let restarted = converge_in(&node, &fresh, &config);
    assert_eq!(restarted.actions.len(), 1);
    let change = &restarted.actions[0].changes;
    assert!(
        change
            .iter()
            .any(|c| c.from.as_deref() == Some(CHANGED_OUTSIDE)),
        "{change:#?}"
    );
    assert!(plan_now(&node, &fresh, &config).is_empty());
}

#[test]
fn a_hand_edit_is_drift_and_the_next_apply_restores_the_ruleset() {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/vms/a.toml", &vm(MAC_A, "")),
    ]);
    let node = NetNs::new("node");
    let backend = FirewallBackend::new(firewall::NFT);
    converge_in(&node, &backend, &config);
    let clean = node.ok("nft list table bridge horcrux");

    node.ok("nft add rule bridge horcrux forward accept");
    let drift = plan_now(&node, &backend, &config);
    assert_eq!(drift.actions.len(), 1, "{drift:#?}");
    let ruleset = drift.actions[0]
        .changes
        .iter()
        .find(|c| c.field == "ruleset")
        .unwrap();
    assert_eq!(ruleset.from.as_deref(), Some(CHANGED_OUTSIDE));

    converge_in(&node, &backend, &config);
    assert!(plan_now(&node, &backend, &config).is_empty());
    assert_eq!(node.ok("nft list table bridge horcrux"), clean);

    // Deleting a table by hand is drift too.
    node.ok("nft delete table inet horcrux");
    assert_eq!(plan_now(&node, &backend, &config).actions.len(), 1);
}

#[test]
fn tables_of_others_are_left_alone_by_apply_and_delete() {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/vms/a.toml", &vm(MAC_A, "")),
    ]);
    let node = NetNs::new("node");
    node.ok(
        "printf 'table inet other {\\n chain input {\\n type filter hook input priority 10; policy accept;\\n \
         tcp dport 9 counter accept\\n }\\n}\\ntable bridge other {\\n chain forward {\\n \
         type filter hook forward priority 5; policy accept;\\n ether type arp accept\\n }\\n}\\n' | nft -f -",
    );
    let others = || node.ok("nft list table inet other") + &node.ok("nft list table bridge other");
    let before = others();
    let backend = FirewallBackend::new(firewall::NFT);
    converge_in(&node, &backend, &config);
    assert_eq!(others(), before);
    assert!(node.sh("nft list table bridge horcrux").status.success());

    // Without node.toml nothing is desired: both tables go, others stay.
    let removed = converge_in(&node, &backend, &Config::default());
    assert_eq!(removed.actions[0].op, Op::Delete);
    assert_eq!(others(), before);
    for family in ["bridge", "inet"] {
        let listed = node.sh(&format!("nft list table {family} horcrux"));
        assert!(!listed.status.success(), "{family} horcrux still exists");
    }
    assert!(plan_now(&node, &backend, &Config::default()).is_empty());
}

#[test]
fn node_input_allows_ssh_only_from_listed_sources() {
    let config = load_tree(&[(
        "node.toml",
        "name = \"node1\"\n[status]\nlisten = \"0.0.0.0:8006\"\n\
         [firewall]\nssh_from = [\"10.8.0.0/24\"]\n",
    )]);
    let node = NetNs::new("node");
    let trusted = NetNs::new("trusted");
    let other = NetNs::new("other");
    veth(&node, "up0", &trusted, "eth0");
    veth(&node, "up1", &other, "eth0");
    node.ok("ip addr add 10.8.0.1/24 dev up0 && ip addr add 10.7.0.1/24 dev up1");
    trusted.ok("ip addr add 10.8.0.2/24 dev eth0");
    other.ok("ip addr add 10.7.0.2/24 dev eth0");
    for port in [22, 8006, 8080] {
        node.tcp_server(addr("0.0.0.0", port));
    }
    // Everything is reachable before the policy is applied.
    assert!(other.tcp_connects(addr("10.7.0.1", 8080), DROPPED));

    converge_in(&node, &FirewallBackend::new(firewall::NFT), &config);
    assert!(trusted.tcp_connects(addr("10.8.0.1", 22), DROPPED));
    assert!(!other.tcp_connects(addr("10.7.0.1", 22), DROPPED));
    // The status port is open to all (status_from is empty) ...
    assert!(other.tcp_connects(addr("10.7.0.1", 8006), DROPPED));
    // ... and anything else is dropped, for everyone.
    assert!(!trusted.tcp_connects(addr("10.8.0.1", 8080), DROPPED));
    assert!(!other.tcp_connects(addr("10.7.0.1", 8080), DROPPED));
    // The node's own outgoing connections get their replies.
    other.tcp_server(addr("10.7.0.2", 7000));
    assert!(node.tcp_connects(addr("10.7.0.2", 7000), DROPPED));
}

#[test]
fn filter_input_false_leaves_the_node_open() {
    let config = load_tree(&[(
        "node.toml",
        "name = \"node1\"\n[firewall]\nfilter_input = false\n",
    )]);
    let node = NetNs::new("node");
    let client = NetNs::new("client");
    veth(&node, "up0", &client, "eth0");
    node.ok("ip addr add 10.8.0.1/24 dev up0");
    client.ok("ip addr add 10.8.0.2/24 dev eth0");
    node.tcp_server(addr("0.0.0.0", 8080));
    let backend = FirewallBackend::new(firewall::NFT);
    converge_in(&node, &backend, &config);
    assert!(client.tcp_connects(addr("10.8.0.1", 8080), DROPPED));
    assert!(node.sh("nft list table inet horcrux").status.success());
    assert!(plan_now(&node, &backend, &config).is_empty());
}

/// How a TCP connection attempt from inside `ns` ended, and how fast.
fn connect(ns: &NetNs, to: SocketAddr) -> (Result<(), ErrorKind>, Duration) {
    ns.run(|| {
        let started = Instant::now();
        let result = TcpStream::connect_timeout(&to, DROPPED)
            .map(drop)
            .map_err(|e| e.kind());
        (result, started.elapsed())
    })
}

const WEB: &str = "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\n\
    ports = \"80\"\ncomment = \"http\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"22\"\n\
    comment = \"ssh refused\"\n\
    [[rule]]\ndirection = \"out\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"25\"\n\
    comment = \"no smtp\"\n";

/// VM `a` in group `web`, VM `b` unfiltered, a bridge address for the node.
fn filtered_lab() -> (Config, Lab) {
    let config = load_tree(&[
        ("node.toml", NODE),
        ("cluster/networks/lan.toml", LAN),
        ("cluster/firewall/web.toml", WEB),
        ("cluster/vms/a.toml", &vm(MAC_A, "\"web\"")),
        ("cluster/vms/b.toml", &vm(MAC_B, "")),
    ]);
    let lab = Lab::new(&config);
    lab.node.ok("ip addr add 10.9.0.254/24 dev br0");
    (config, lab)
}

#[test]
fn groups_accept_listed_ports_drop_the_rest_and_reject_fast() {
    if !require(
        Feature::BridgeConntrack,
        "groups_accept_listed_ports_drop_the_rest_and_reject_fast",
    ) {
        return;
    }
    let (config, lab) = filtered_lab();
    let (a, b) = (lab.vm("a"), lab.vm("b"));
    for port in [22, 80, 8080] {
        a.tcp_server(addr("10.9.0.1", port));
    }
    lab.converge(&FirewallBackend::new(firewall::NFT), &config);

    assert!(b.tcp_connects(addr("10.9.0.1", 80), DROPPED));
    assert!(!b.tcp_connects(addr("10.9.0.1", 8080), DROPPED));
    let (refused, took) = connect(b, addr("10.9.0.1", 22));
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_millis(500), "{took:?}");
    // The node's own traffic to the VM (bridge output hook) is filtered
    // too; reject cannot be used there, so it is a drop.
    assert!(lab.node.tcp_connects(addr("10.9.0.1", 80), DROPPED));
    assert!(!lab.node.tcp_connects(addr("10.9.0.1", 8080), DROPPED));
    // ARP kept working throughout: b resolved a.
    let neigh = b.ok("ip neigh show 10.9.0.1");
    assert!(neigh.contains(MAC_A), "{neigh}");
}

#[test]
fn replies_to_the_vm_s_own_connections_pass_unsolicited_inbound_does_not() {
    if !require(
        Feature::BridgeConntrack,
        "replies_to_the_vm_s_own_connections_pass_unsolicited_inbound_does_not",
    ) {
        return;
    }
    let (config, lab) = filtered_lab();
    let (a, b) = (lab.vm("a"), lab.vm("b"));
    b.tcp_server(addr("10.9.0.2", 9000));
    a.tcp_server(addr("10.9.0.1", 9000));
    b.tcp_server(addr("10.9.0.2", 25));
    lab.converge(&FirewallBackend::new(firewall::NFT), &config);

    assert!(a.tcp_connects(addr("10.9.0.2", 9000), DROPPED));
    assert!(!b.tcp_connects(addr("10.9.0.1", 9000), DROPPED));
    // An outbound reject refuses at once.
    let (refused, took) = connect(a, addr("10.9.0.2", 25));
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    assert!(took < Duration::from_millis(500), "{took:?}");
}

/// 1,000 VMs with one NIC each in a group of 5 rules.
fn thousand_vms(groups: &str) -> Config {
    let mut files: Vec<(String, String)> = vec![
        ("node.toml".into(), NODE.into()),
        ("cluster/networks/lan.toml".into(), LAN.into()),
        (
            "cluster/firewall/web.toml".into(),
            "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"80,443\"\n\
             [[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"22\"\nsource = \"10.0.0.0/8\"\n\
             [[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"icmp\"\n\
             [[rule]]\ndirection = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"3306\"\n\
             [[rule]]\ndirection = \"out\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"25\"\n"
                .into(),
        ),
    ];
    for i in 0..1000 {
        files.push((
            format!("cluster/vms/vm-{i:04}.toml"),
            format!("[[nic]]\nnetwork = \"lan\"\nfirewall = [{groups}]\n"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in &files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    load_dir(dir.path())
}

/// Loads the ruleset of `config` into a fresh namespace and prints how
/// long the apply (nft -f, then reading both tables back) and an observe
/// took. Figures only: no timing is asserted.
fn measure(label: &str, config: &Config) {
    let node = NetNs::new("bench");
    let backend = FirewallBackend::new(firewall::NFT);
    let text = firewall::render_ruleset(config, "node1");
    let (apply, observe) = node.block_on(|| async {
        let desired = backend.desired(config);
        let create = plan(&desired, &[]);
        let started = Instant::now();
        backend
            .apply(&create.actions[0], Some(&desired[0]))
            .await
            .unwrap();
        let apply = started.elapsed();
        let started = Instant::now();
        let observed = backend.observe().await.unwrap();
        let observe = started.elapsed();
        // What was loaded reads back as what is desired.
        assert!(plan(&desired, &observed).is_empty(), "{observed:#?}");
        (apply, observe)
    });
    eprintln!(
        "{label}: {} bytes of ruleset; apply {apply:?} (nft -f and read-back), observe {observe:?}",
        text.len()
    );
}

#[test]
fn apply_time_for_1000_vms() {
    measure(
        "1000 VMs x 1 NIC, no groups (anti-spoofing only)",
        &thousand_vms(""),
    );
    if !require(
        Feature::BridgeConntrack,
        "apply_time_for_1000_vms (with groups)",
    ) {
        return;
    }
    measure(
        "1000 VMs x 1 NIC x group of 5 rules",
        &thousand_vms("\"web\""),
    );
}
