//! The network backend against real netlink, each "node" a network
//! namespace: desired state from a config tree on disk, observe, plan with
//! the public planner, apply every action, then look at the result with
//! `ip`/`bridge` and with traffic between endpoint namespaces.
//!
//! Endpoints are attached to hostd's bridges by hand with a veth, like a
//! container or an operator's test port: hostd must tolerate such ports
//! (and leave them alone) while keeping its own in place.
//!
//! Needs root. Tests that need 802.1Q call `require(Feature::Vlan, ..)`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/converge.rs"]
mod converge;
#[path = "support/netns.rs"]
mod netns;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use horcrux_config::Config;
use horcrux_hostd::apply::Backend as _;
use horcrux_hostd::backend::naming::{Layout, tap_name};
use horcrux_hostd::backend::net::NetworkBackend;
use horcrux_hostd::plan::{Plan, ResourceId, ResourceKind};
use netns::{Feature, NetNs, require, veth};
use serde_json::Value;

/// One node: a namespace, its config tree and its run dir (where the
/// backend records the uplinks it enslaved).
struct Node {
    ns: NetNs,
    dirs: tempfile::TempDir,
}

impl Node {
    fn new(label: &str) -> Node {
        Node {
            ns: NetNs::new(label),
            dirs: tempfile::tempdir().unwrap(),
        }
    }

    fn etc(&self) -> std::path::PathBuf {
        self.dirs.path().join("etc")
    }

    /// Writes (or, with `None`, removes) one file of the config tree.
    fn file(&self, path: &str, text: Option<&str>) {
        let path = self.etc().join(path);
        match text {
            Some(text) => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            None => std::fs::remove_file(path).unwrap(),
        }
    }

    fn config(&self) -> Config {
        match horcrux_config::load(&self.etc()).unwrap().into_valid() {
            Ok(config) => config,
            Err(errors) => panic!("invalid tree: {errors:#?}"),
        }
    }

    /// Network `lan` on the uplink `up0`, used by a stopped VM `a`.
    fn lan_on_uplink_up0(&self) {
        self.file(
            "node.toml",
            Some("name = \"n1\"\n[uplinks]\nlan = \"up0\"\n"),
        );
        self.file(
            "cluster/networks/lan.toml",
            Some("kind = \"bridge\"\nuplink = \"lan\"\n"),
        );
        self.file(
            "cluster/vms/a.toml",
            Some("state = \"stopped\"\n[[nic]]\nnetwork = \"lan\"\n"),
        );
    }

    fn layout(&self) -> Layout {
        Layout::new(self.dirs.path().join("run"), self.dirs.path().join("state"))
    }

    /// Observes and plans, without applying.
    fn plan(&self) -> Plan {
        let config = self.config();
        let layout = self.layout();
        // The connection is opened inside this runtime and namespace.
        self.ns.block_on(|| async {
            converge::plan_once(&NetworkBackend::new(&layout), &config).await
        })
    }

    /// Observes, plans and applies every action in order; returns the
    /// plan and the errors of the actions that failed.
    fn try_converge(&self) -> (Plan, Vec<String>) {
        let config = self.config();
        let layout = self.layout();
        self.ns.block_on(|| async {
            converge::apply_once(&NetworkBackend::new(&layout), &config).await
        })
    }

    /// Converges, requires success, and requires the next plan to be
    /// empty (idempotence).
    fn converge(&self) -> Plan {
        let (plan, errors) = self.try_converge();
        assert!(
            errors.is_empty(),
            "apply failed: {errors:#?}\nplan: {plan:#?}"
        );
        let again = self.plan();
        assert!(again.is_empty(), "not idempotent: {again:#?}");
        plan
    }

    /// `ip -d -j link show dev NAME`, or `None` if there is no such link.
    fn link(&self, name: &str) -> Option<Value> {
        let out = self.ns.sh(&format!("ip -d -j link show dev {name}"));
        if !out.status.success() {
            return None;
        }
        let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(parsed[0].clone())
    }

    fn master(&self, name: &str) -> Option<String> {
        let link = self.link(name).unwrap_or_else(|| panic!("no link {name}"));
        link["master"].as_str().map(str::to_string)
    }
}

fn ids(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{} {}", a.op.symbol(), a.id))
        .collect()
}

fn changed_fields(plan: &Plan, id: &ResourceId) -> Vec<String> {
    plan.action(id)
        .unwrap_or_else(|| panic!("{id} not in {plan:#?}"))
        .changes
        .iter()
        .map(|c| c.field.clone())
        .collect()
}

/// An endpoint namespace with `addr` on a veth whose other end,
/// `port`, is added by hand to `bridge` in `node`.
fn endpoint(node: &Node, bridge: &str, port: &str, label: &str, addr: &str) -> NetNs {
    let ep = NetNs::new(label);
    veth(&node.ns, port, &ep, "eth0");
    node.ns.ok(&format!("ip link set {port} master {bridge}"));
    ep.ok(&format!("ip addr add {addr}/24 dev eth0"));
    ep
}

/// Whether `from` reaches a server on `to` within a few tries (the first
/// ARP exchange and bridge learning take a moment).
fn reaches(from: &NetNs, to: SocketAddr, tries: u32) -> bool {
    (0..tries).any(|_| from.tcp_connects(to, Duration::from_secs(1)))
}

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 7000)
}

/// What hostd could have changed on a link (not its timers).
fn settings(link: &Value) -> Vec<Value> {
    ["ifindex", "flags", "mtu", "master", "ifalias", "address"]
        .iter()
        .map(|key| link[key].clone())
        .collect()
}

fn network(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Network, name)
}

#[test]
fn bridge_with_veth_uplink_connects_endpoints_and_is_idempotent() {
    let node = Node::new("n");
    node.lan_on_uplink_up0();
    // Endpoint A sits behind the uplink, endpoint B on a hand-added port.
    let a = NetNs::new("a");
    veth(&node.ns, "up0", &a, "eth0");
    a.ok("ip addr add 192.0.2.1/24 dev eth0");

    let plan = node.converge();
    assert_eq!(ids(&plan), ["+ network lan"]);
    let bridge = node.link("hxb-lan").expect("bridge created");
    assert_eq!(bridge["linkinfo"]["info_kind"], "bridge");
    assert_eq!(bridge["ifalias"], "horcrux network lan");
    assert!(
        bridge["flags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("UP"))
    );
    assert_eq!(node.master("up0").as_deref(), Some("hxb-lan"));

    let b = endpoint(&node, "hxb-lan", "ep-b", "b", "192.0.2.2");
    b.tcp_server(addr("192.0.2.2"));
    assert!(reaches(&a, addr("192.0.2.2"), 5), "A cannot reach B");
    // The hand-added port is tolerated: still nothing to do.
    let again = node.plan();
    assert!(again.is_empty(), "{again:#?}");
}

#[test]
fn uplink_with_a_global_address_is_refused() {
    let node = Node::new("n");
    node.lan_on_uplink_up0();
    let peer = NetNs::new("p");
    veth(&node.ns, "up0", &peer, "eth0");
    node.ns.ok("ip addr add 192.0.2.10/24 dev up0");
    let (_, errors) = node.try_converge();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("network lan: refusing to add uplink interface up0")
            && errors[0].contains("192.0.2.10")
            && errors[0].contains("`vlan`"),
        "{errors:#?}"
    );
    assert_eq!(node.master("up0"), None, "the uplink was not enslaved");
}

#[test]
fn drift_is_repaired_and_foreign_links_are_left_alone() {
    let node = Node::new("n");
    node.file(
        "node.toml",
        Some("name = \"n1\"\n[uplinks]\nlan = \"up0\"\n"),
    );
    node.file(
        "cluster/networks/lan.toml",
        Some("kind = \"bridge\"\nuplink = \"lan\"\nmtu = 1400\n"),
    );
    node.file("cluster/vms/a.toml", Some("[[nic]]\nnetwork = \"lan\"\n"));
    let peer = NetNs::new("p");
    veth(&node.ns, "up0", &peer, "eth0");
    node.ns.ok("ip link add foreign type bridge");
    node.ns
        .ok("ip link add foreign-port type veth peer name foreign-peer");
    node.ns.ok("ip link set foreign-port master foreign");
    let foreign_before = settings(&node.link("foreign").unwrap());
    let tap = tap_name("a", 0).unwrap();
    let tap_id = ResourceId::new(ResourceKind::Tap, tap.as_str());

    let plan = node.converge();
    assert_eq!(
        ids(&plan),
        ["+ network lan".to_string(), format!("+ tap {tap}")]
    );
    assert_eq!(node.link("hxb-lan").unwrap()["mtu"], 1400);
    assert_eq!(node.master(&tap).as_deref(), Some("hxb-lan"));
    assert_eq!(node.link(&tap).unwrap()["mtu"], 1400);

    // The bridge deleted by hand: recreated, with its uplink and tap.
    node.ns.ok("ip link del hxb-lan");
    let plan = node.plan();
    assert_eq!(
        ids(&plan),
        ["+ network lan".to_string(), format!("~ tap {tap}")]
    );
    node.converge();
    assert_eq!(node.master("up0").as_deref(), Some("hxb-lan"));
    assert_eq!(node.master(&tap).as_deref(), Some("hxb-lan"));

    // The tap and the uplink detached by hand: put back.
    node.ns.ok(&format!("ip link set {tap} nomaster"));
    node.ns.ok("ip link set up0 nomaster");
    let plan = node.plan();
    assert_eq!(changed_fields(&plan, &tap_id), ["bridge"]);
    assert_eq!(changed_fields(&plan, &network("lan")), ["port"]);
    node.converge();
    assert_eq!(node.master(&tap).as_deref(), Some("hxb-lan"));
    assert_eq!(node.master("up0").as_deref(), Some("hxb-lan"));

    // MTU changed and the bridge set down by hand: corrected.
    node.ns.ok("ip link set hxb-lan mtu 1300 down");
    let plan = node.plan();
    assert_eq!(changed_fields(&plan, &network("lan")), ["mtu", "up"]);
    node.converge();
    let bridge = node.link("hxb-lan").unwrap();
    assert_eq!(bridge["mtu"], 1400);
    assert!(
        bridge["flags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("UP"))
    );

    // Taking the network away removes hostd's links and releases the
    // uplink; the foreign bridge and its port were never touched.
    node.file("cluster/vms/a.toml", None);
    node.file("cluster/networks/lan.toml", None);
    let plan = node.converge();
    assert_eq!(
        ids(&plan),
        [format!("- tap {tap}"), "- network lan".to_string()]
    );
    assert!(node.link("hxb-lan").is_none());
    assert!(node.link(&tap).is_none());
    assert_eq!(node.master("up0"), None);
    assert_eq!(settings(&node.link("foreign").unwrap()), foreign_before);
    assert_eq!(node.master("foreign-port").as_deref(), Some("foreign"));
}

#[test]
fn running_vms_get_persistent_taps_that_qemu_accepts() {
    let node = Node::new("n");
    node.file("node.toml", Some("name = \"n1\"\n"));
    node.file("cluster/networks/lan.toml", Some("kind = \"bridge\"\n"));
    node.file(
        "cluster/vms/a.toml",
        Some("[[nic]]\nnetwork = \"lan\"\n[[nic]]\nnetwork = \"lan\"\n"),
    );
    node.converge();
    for index in 0..2 {
        let tap = tap_name("a", index).unwrap();
        let link = node.link(&tap).expect("tap created");
        assert_eq!(link["linkinfo"]["info_kind"], "tun", "{link:#}");
        let data = &link["linkinfo"]["info_data"];
        assert_eq!(data["type"], "tap", "{link:#}");
        assert_eq!(data["pi"], false, "{link:#}");
        assert_eq!(data["vnet_hdr"], true, "{link:#}");
        assert_eq!(data["persist"], true, "{link:#}");
        assert_eq!(data["multi_queue"], false, "{link:#}");
        assert_eq!(link["master"], "hxb-lan");
        assert_eq!(link["ifalias"], "horcrux network lan");
    }

    // QEMU opens the persistent tap by name, as the VM unit will.
    let tap = tap_name("a", 0).unwrap();
    let netdev = format!("tap,id=net0,ifname={tap},script=no,downscript=no");
    let spawned = node.ns.run(|| {
        Command::new("qemu-system-x86_64")
            .args(["-machine", "none", "-nodefaults", "-display", "none"])
            .args(["-netdev", &netdev])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    });
    let strict = std::env::var_os("HORCRUX_NET_TESTS_STRICT").is_some_and(|v| v == "1");
    match spawned {
        Ok(mut qemu) => {
            // QEMU sets the tap's carrier once it has attached.
            let attached = (0..50).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                let flags = node.link(&tap).unwrap()["flags"].clone();
                flags.as_array().unwrap().contains(&Value::from("LOWER_UP"))
            });
            let exited = qemu.try_wait().unwrap();
            let _ = qemu.kill();
            let out = qemu.wait_with_output().unwrap();
            assert!(
                attached && exited.is_none(),
                "QEMU did not attach to {tap}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // QEMU gone, the tap stays (persistent) and in the bridge.
            assert_eq!(node.master(&tap).as_deref(), Some("hxb-lan"));
            assert!(node.plan().is_empty());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !strict => {
            eprintln!("QEMU attaching to a tap: NOT RUN HERE: no qemu-system-x86_64");
        }
        Err(e) => panic!("cannot start qemu-system-x86_64: {e}"),
    }

    node.file(
        "cluster/vms/a.toml",
        Some("state = \"stopped\"\n[[nic]]\nnetwork = \"lan\"\n[[nic]]\nnetwork = \"lan\"\n"),
    );
    let plan = node.converge();
    assert_eq!(plan.actions.len(), 2, "{plan:#?}");
    assert!(node.link(&tap).is_none(), "tap of a stopped VM removed");
    assert!(
        node.link("hxb-lan").is_some(),
        "the network stays for the stopped VM"
    );
}

const TWO_NODES: &str = "name = \"lab\"\n\
    [[member]]\nname = \"node1\"\naddress = \"198.51.100.1\"\n\
    [[member]]\nname = \"node2\"\naddress = \"198.51.100.2\"\n\
    [trust]\nrequire_signatures = false\n";

/// Two nodes with the same cluster tree, each with its own node.toml
/// (uplink `lan` = `ul0`), joined by a veth between their `ul0`s.
fn two_nodes(files: &[(&str, &str)]) -> (Node, Node) {
    let n1 = Node::new("n1");
    let n2 = Node::new("n2");
    veth(&n1.ns, "ul0", &n2.ns, "ul0");
    for (node, name) in [(&n1, "node1"), (&n2, "node2")] {
        node.file(
            "node.toml",
            Some(&format!("name = \"{name}\"\n[uplinks]\nlan = \"ul0\"\n")),
        );
        node.file("cluster/cluster.toml", Some(TWO_NODES));
        for (path, text) in files {
            node.file(path, Some(text));
        }
    }
    (n1, n2)
}

#[test]
fn vxlan_connects_endpoints_on_two_nodes() {
    let (n1, n2) = two_nodes(&[
        (
            "cluster/networks/ov.toml",
            "kind = \"vxlan\"\nvni = 100\nuplink = \"lan\"\n",
        ),
        (
            "cluster/vms/v1.toml",
            "node = \"node1\"\nstate = \"stopped\"\n[[nic]]\nnetwork = \"ov\"\n",
        ),
        (
            "cluster/vms/v2.toml",
            "node = \"node2\"\nstate = \"stopped\"\n[[nic]]\nnetwork = \"ov\"\n",
        ),
    ]);
    n1.ns.ok("ip addr add 198.51.100.1/24 dev ul0");
    n2.ns.ok("ip addr add 198.51.100.2/24 dev ul0");
    n1.converge();
    n2.converge();

    let vx = n1.link("hxx-ov").expect("vxlan device");
    let data = &vx["linkinfo"]["info_data"];
    assert_eq!(data["id"], 100, "{vx:#}");
    assert_eq!(data["local"], "198.51.100.1", "{vx:#}");
    assert_eq!(data["link"], "ul0", "{vx:#}");
    assert_eq!(data["port"], 4789, "{vx:#}");
    assert_eq!(data["learning"], true, "{vx:#}");
    assert_eq!(vx["master"], "hxb-ov");
    let fdb = n1.ns.ok("bridge fdb show dev hxx-ov");
    assert!(
        fdb.contains("00:00:00:00:00:00 dst 198.51.100.2"),
        "flood entry missing: {fdb}"
    );

    let e1 = endpoint(&n1, "hxb-ov", "ep1", "e1", "203.0.113.1");
    let e2 = endpoint(&n2, "hxb-ov", "ep2", "e2", "203.0.113.2");
    e2.tcp_server(addr("203.0.113.2"));
    assert!(
        reaches(&e1, addr("203.0.113.2"), 5),
        "no TCP across the VXLAN"
    );

    // A flood entry deleted by hand shows as `peers` and is put back.
    n1.ns
        .ok("bridge fdb del 00:00:00:00:00:00 dev hxx-ov dst 198.51.100.2");
    let plan = n1.plan();
    assert_eq!(changed_fields(&plan, &network("ov")), ["peers"]);
    n1.converge();
    assert!(
        n1.ns
            .ok("bridge fdb show dev hxx-ov")
            .contains("00:00:00:00:00:00 dst 198.51.100.2")
    );

    // A new VNI replaces the device (the kernel cannot change it in
    // place); the endpoints stay on the bridge and talk again.
    let ov = "kind = \"vxlan\"\nvni = 200\nuplink = \"lan\"\n";
    n1.file("cluster/networks/ov.toml", Some(ov));
    n2.file("cluster/networks/ov.toml", Some(ov));
    assert_eq!(changed_fields(&n1.plan(), &network("ov")), ["port"]);
    n1.converge();
    n2.converge();
    let vx = n1.link("hxx-ov").unwrap();
    assert_eq!(vx["linkinfo"]["info_data"]["id"], 200, "{vx:#}");
    assert_eq!(vx["master"], "hxb-ov");
    assert!(reaches(&e1, addr("203.0.113.2"), 5), "no TCP on VNI 200");
}

#[test]
fn an_uplink_no_longer_used_is_released() {
    let node = Node::new("n");
    node.lan_on_uplink_up0();
    let peer = NetNs::new("p");
    veth(&node.ns, "up0", &peer, "eth0");
    node.converge();
    assert_eq!(node.master("up0").as_deref(), Some("hxb-lan"));
    node.file("cluster/networks/lan.toml", Some("kind = \"bridge\"\n"));
    assert_eq!(changed_fields(&node.plan(), &network("lan")), ["port"]);
    node.converge();
    assert_eq!(node.master("up0"), None);
    assert!(node.link("hxb-lan").is_some());
}

#[test]
fn a_link_with_our_name_that_is_not_ours_is_refused() {
    let node = Node::new("n");
    node.file("node.toml", Some("name = \"n1\"\n"));
    node.file("cluster/networks/lan.toml", Some("kind = \"bridge\"\n"));
    node.file(
        "cluster/vms/a.toml",
        Some("state = \"stopped\"\n[[nic]]\nnetwork = \"lan\"\n"),
    );
    node.ns
        .ok("ip link add hxb-lan type bridge && ip link set hxb-lan alias 'my bridge'");
    let (plan, errors) = node.try_converge();
    assert_eq!(ids(&plan), ["+ network lan"]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("a bridge named hxb-lan exists that hostd did not create"),
        "{errors:#?}"
    );
    assert_eq!(node.link("hxb-lan").unwrap()["ifalias"], "my bridge");
}

#[test]
fn vlans_isolate_networks_and_join_nodes() {
    if !require(Feature::Vlan, "vlans_isolate_networks_and_join_nodes") {
        return;
    }
    let vms = "state = \"stopped\"\n[[nic]]\nnetwork = \"v10\"\n[[nic]]\nnetwork = \"v20\"\n";
    let v10 = "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 10\n";
    let (n1, n2) = two_nodes(&[
        ("cluster/networks/v10.toml", v10),
        (
            "cluster/networks/v20.toml",
            "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 20\n",
        ),
        ("cluster/vms/a1.toml", &format!("node = \"node1\"\n{vms}")),
        ("cluster/vms/a2.toml", &format!("node = \"node2\"\n{vms}")),
    ]);
    n1.converge();
    n2.converge();
    let vlan = n1.link("hxv-v10").expect("vlan device");
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 10, "{vlan:#}");
    assert_eq!(vlan["link"], "ul0");
    assert_eq!(vlan["master"], "hxb-v10");

    // One subnet for all, so only the VLANs keep them apart.
    let e1a = endpoint(&n1, "hxb-v10", "ep-a", "e1a", "192.0.2.1");
    let e1b = endpoint(&n1, "hxb-v20", "ep-b", "e1b", "192.0.2.2");
    let e2a = endpoint(&n2, "hxb-v10", "ep-a", "e2a", "192.0.2.3");
    e2a.tcp_server(addr("192.0.2.3"));
    e1b.tcp_server(addr("192.0.2.2"));
    assert!(
        reaches(&e1a, addr("192.0.2.3"), 5),
        "same VLAN across nodes"
    );
    assert!(
        !reaches(&e1b, addr("192.0.2.3"), 2),
        "VLAN 20 reached VLAN 10"
    );
    assert!(
        !reaches(&e1a, addr("192.0.2.2"), 2),
        "VLAN 10 reached VLAN 20"
    );

    // A new VLAN id replaces the device (its id cannot change in place).
    let v10_30 = v10.replace("vlan = 10", "vlan = 30");
    n1.file("cluster/networks/v10.toml", Some(&v10_30));
    n2.file("cluster/networks/v10.toml", Some(&v10_30));
    assert_eq!(changed_fields(&n1.plan(), &network("v10")), ["port"]);
    n1.converge();
    n2.converge();
    assert_eq!(
        n1.link("hxv-v10").unwrap()["linkinfo"]["info_data"]["id"],
        30
    );
    assert!(reaches(&e1a, addr("192.0.2.3"), 5), "VLAN 30 across nodes");
}

#[test]
fn a_lost_netlink_connection_is_opened_again() {
    let node = Node::new("n");
    node.file("node.toml", Some("name = \"n1\"\n"));
    let backend = NetworkBackend::new(&node.layout());
    node.ns
        .block_on(|| async { backend.observe().await.unwrap() });
    // That runtime, and with it the connection's task, is gone: the next
    // request fails, and the one after it runs on a new connection.
    let (first, second) = node
        .ns
        .block_on(|| async { (backend.observe().await, backend.observe().await) });
    let error = first.unwrap_err();
    assert!(error.retryable, "{error:?}");
    assert_eq!(second.unwrap(), []);
}
