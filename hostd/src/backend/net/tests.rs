//! The desired side of the network backend, from config trees.

use std::collections::BTreeMap;

use super::desired::{self, NetworkLinks, Port, TapLink, Uplink};
use crate::backend::naming::tap_name;
use crate::backend::test_support::config;
use crate::plan::{Desired, ResourceId, ResourceKind};

const CLUSTER: &str = "name = \"lab\"\n\
    [[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
    [[member]]\nname = \"node2\"\naddress = \"10.0.0.2\"\n\
    [[member]]\nname = \"node3\"\naddress = \"10.0.0.3\"\n\
    [trust]\nrequire_signatures = false\n";

const NODE1: &str = "name = \"node1\"\n[uplinks]\nlan = \"eth1\"\n";

fn fields(d: &Desired) -> BTreeMap<&str, &str> {
    d.fields
        .iter()
        .map(|(k, f)| {
            assert!(f.live, "every network field is live: {k}");
            (k.as_str(), f.value.as_str())
        })
        .collect()
}

fn find<'a>(all: &'a [Desired], kind: ResourceKind, name: &str) -> &'a Desired {
    all.iter()
        .find(|d| d.id == ResourceId::new(kind, name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {all:#?}"))
}

fn uplink(name: &str, iface: &str) -> Uplink {
    Uplink {
        name: name.to_string(),
        interface: Some(iface.to_string()),
    }
}

#[test]
fn isolated_bridge() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/networks/x.toml", "kind = \"bridge\"\n"),
        (
            "cluster/vms/a.toml",
            "state = \"stopped\"\n[[nic]]\nnetwork = \"x\"\n",
        ),
    ]);
    let all = desired::desired(&config);
    assert_eq!(all.len(), 1, "a stopped VM has no tap: {all:#?}");
    let x = find(&all, ResourceKind::Network, "x");
    assert_eq!(
        fields(x),
        BTreeMap::from([("bridge", "hxb-x"), ("port", "none"), ("up", "yes")])
    );
    let links: NetworkLinks = serde_json::from_str(&x.payload[desired::PAYLOAD]).unwrap();
    assert_eq!(links.port, Port::None);
    assert_eq!(links.peers, None);
}

#[test]
fn uplink_bridge_uses_this_nodes_interface() {
    let config = config(&[
        ("node.toml", NODE1),
        ("cluster/cluster.toml", CLUSTER),
        (
            "cluster/networks/x.toml",
            "kind = \"bridge\"\nuplink = \"lan\"\n",
        ),
        (
            "cluster/vms/a.toml",
            "node = \"node1\"\n[[nic]]\nnetwork = \"x\"\n",
        ),
    ]);
    let all = desired::desired(&config);
    let x = find(&all, ResourceKind::Network, "x");
    assert_eq!(fields(x)["port"], "uplink eth1");
    let links: NetworkLinks = serde_json::from_str(&x.payload[desired::PAYLOAD]).unwrap();
    assert_eq!(
        links.port,
        Port::Uplink {
            uplink: uplink("lan", "eth1")
        }
    );
}

#[test]
fn vlan_network_with_mtu() {
    let config = config(&[
        ("node.toml", NODE1),
        (
            "cluster/networks/prod.toml",
            "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 10\nmtu = 9000\n",
        ),
        ("cluster/vms/a.toml", "[[nic]]\nnetwork = \"prod\"\n"),
    ]);
    let all = desired::desired(&config);
    let prod = find(&all, ResourceKind::Network, "prod");
    assert_eq!(
        fields(prod),
        BTreeMap::from([
            ("bridge", "hxb-prod"),
            ("mtu", "9000"),
            ("port", "vlan hxv-prod on eth1 id 10"),
            ("up", "yes"),
        ])
    );
    let tap = find(&all, ResourceKind::Tap, &tap_name("a", 0).unwrap());
    assert_eq!(
        fields(tap),
        BTreeMap::from([("bridge", "hxb-prod"), ("mtu", "9000"), ("up", "yes")])
    );
    assert_eq!(
        tap.depends_on,
        [ResourceId::new(ResourceKind::Network, "prod")]
    );
}

#[test]
fn vxlan_floods_to_every_other_member() {
    let config = config(&[
        ("node.toml", NODE1),
        ("cluster/cluster.toml", CLUSTER),
        (
            "cluster/networks/overlay.toml",
            "kind = \"vxlan\"\nvni = 100\nuplink = \"lan\"\n",
        ),
        (
            "cluster/networks/plain.toml",
            "kind = \"vxlan\"\nvni = 101\n",
        ),
        (
            "cluster/vms/a.toml",
            "node = \"node1\"\n[[nic]]\nnetwork = \"overlay\"\n[[nic]]\nnetwork = \"plain\"\n",
        ),
    ]);
    let all = desired::desired(&config);
    let overlay = find(&all, ResourceKind::Network, "overlay");
    assert_eq!(
        fields(overlay),
        BTreeMap::from([
            ("bridge", "hxb-overlay"),
            ("peers", "10.0.0.2,10.0.0.3"),
            ("port", "vxlan hxx-overlay vni 100 local 10.0.0.1 dev eth1"),
            ("up", "yes"),
        ])
    );
    let plain = find(&all, ResourceKind::Network, "plain");
    assert_eq!(
        fields(plain)["port"],
        "vxlan hxx-plain vni 101 local 10.0.0.1"
    );
    // Both NICs of the running VM get a tap, each on its own bridge.
    let taps: Vec<&Desired> = all
        .iter()
        .filter(|d| d.id.kind == ResourceKind::Tap)
        .collect();
    assert_eq!(taps.len(), 2);
    let nic1: TapLink = serde_json::from_str(
        &find(&all, ResourceKind::Tap, &tap_name("a", 1).unwrap()).payload[desired::PAYLOAD],
    )
    .unwrap();
    assert_eq!((nic1.vm.as_str(), nic1.nic), ("a", 1));
    assert_eq!(nic1.bridge, "hxb-plain");
}

#[test]
fn unclustered_vxlan_has_no_local_and_no_peers() {
    let config = config(&[
        ("node.toml", "name = \"solo\"\n"),
        ("cluster/networks/ov.toml", "kind = \"vxlan\"\nvni = 7\n"),
        ("cluster/vms/a.toml", "[[nic]]\nnetwork = \"ov\"\n"),
    ]);
    let all = desired::desired(&config);
    let ov = fields(find(&all, ResourceKind::Network, "ov"));
    assert_eq!(ov["port"], "vxlan hxx-ov vni 7");
    assert_eq!(ov["peers"], "none");
}

#[test]
fn taps_only_for_running_vms_and_networks_only_where_used() {
    let config = config(&[
        ("node.toml", NODE1),
        ("cluster/cluster.toml", CLUSTER),
        ("cluster/networks/here.toml", "kind = \"bridge\"\n"),
        ("cluster/networks/there.toml", "kind = \"bridge\"\n"),
        ("cluster/networks/unused.toml", "kind = \"bridge\"\n"),
        (
            "cluster/vms/run.toml",
            "node = \"node1\"\n[[nic]]\nnetwork = \"here\"\n",
        ),
        (
            "cluster/vms/stop.toml",
            "node = \"node1\"\nstate = \"stopped\"\n[[nic]]\nnetwork = \"here\"\n",
        ),
        (
            "cluster/vms/far.toml",
            "node = \"node2\"\n[[nic]]\nnetwork = \"there\"\n",
        ),
    ]);
    let all = desired::desired(&config);
    let ids: Vec<String> = all.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "network here".to_string(),
            format!("tap {}", tap_name("run", 0).unwrap())
        ]
    );
}

#[test]
fn long_network_names_get_hashed_link_names() {
    let long = "a-network-with-a-long-name";
    let config = config(&[
        ("node.toml", NODE1),
        (
            &format!("cluster/networks/{long}.toml"),
            "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 20\n",
        ),
        (
            "cluster/vms/a.toml",
            &format!("[[nic]]\nnetwork = \"{long}\"\n"),
        ),
    ]);
    let all = desired::desired(&config);
    let net = fields(find(&all, ResourceKind::Network, long));
    assert_eq!(net["bridge"].len(), 11);
    assert!(net["bridge"].starts_with("hxb"));
    assert!(net["port"].starts_with("vlan hxv"), "{}", net["port"]);
}

#[test]
fn render_lists_bridges_ports_and_taps_for_any_member() {
    let config = config(&[
        ("node.toml", NODE1),
        ("cluster/cluster.toml", CLUSTER),
        (
            "cluster/networks/prod.toml",
            "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 10\n",
        ),
        (
            "cluster/vms/a.toml",
            "node = \"node2\"\n[[nic]]\nnetwork = \"prod\"\n",
        ),
    ]);
    assert!(desired::render_links(&config, "node1").is_empty());
    let links = desired::render_links(&config, "node2");
    let kinds: Vec<&str> = links.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bridge", "vlan", "tap"]);
    assert_eq!(links[0]["name"], "hxb-prod");
    assert_eq!(links[0]["alias"], "horcrux network prod");
    // node.toml is node1's: node2's interface for `lan` is unknown here.
    assert_eq!(links[1]["link"], "<lan>");
    assert_eq!(links[1]["id"], 10);
    assert_eq!(links[2]["name"], tap_name("a", 0).unwrap());
    assert_eq!(links[2]["master"], "hxb-prod");
}
