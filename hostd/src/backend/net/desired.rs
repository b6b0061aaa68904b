//! What the config wants of a node's network links: pure, so the daemon,
//! `horcrux plan` and `horcrux render` compute the same thing.
//!
//! A network is on a node when a VM placed there has a NIC on it, running
//! or not, so starting a VM never waits for its bridge. A tap exists only
//! for the NICs of running VMs: QEMU opens it by name when it starts.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use horcrux_config::Config;
use horcrux_config::model::State;
use horcrux_config::model::network::{Network, NetworkKind};
use horcrux_config::types::ResourceName;
use serde::{Deserialize, Serialize};

use super::names::{self, Role};
use crate::backend::artifacts::placement;
use crate::backend::naming;
use crate::plan::{Desired, ResourceId, ResourceKind};

/// The UDP port of every VXLAN device (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// Payload key of a network's or tap's [`Desired`]: its links as JSON.
pub const PAYLOAD: &str = "links";

/// A logical uplink and the interface it stands for on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    /// The key in node.toml `[uplinks]`.
    pub name: String,
    /// `None` when node.toml does not declare it (only when rendering for
    /// another node: validation requires it on this one).
    pub interface: Option<String>,
}

impl Uplink {
    /// The interface, or the logical name in angle brackets when unknown.
    fn display(&self) -> String {
        self.interface
            .clone()
            .unwrap_or_else(|| format!("<{}>", self.name))
    }
}

/// The one device besides the bridge that carries a network's traffic
/// off the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Port {
    /// An isolated bridge: VMs of this node only.
    None,
    /// The uplink interface itself is a port of the bridge.
    Uplink { uplink: Uplink },
    /// An 802.1Q device on the uplink.
    Vlan {
        name: String,
        uplink: Uplink,
        id: u16,
    },
    /// A VXLAN device; `uplink` is its underlay device when set.
    Vxlan {
        name: String,
        vni: u32,
        local: Option<IpAddr>,
        uplink: Option<Uplink>,
    },
}

/// The `port` field of a VLAN port, desired or observed.
pub fn describe_vlan(name: &str, lower: &str, id: u16) -> String {
    format!("vlan {name} on {lower} id {id}")
}

/// The `port` field of a VXLAN port, desired or observed.
pub fn describe_vxlan(name: &str, vni: u32, local: Option<IpAddr>, dev: Option<&str>) -> String {
    let mut out = format!("vxlan {name} vni {vni}");
    if let Some(local) = local {
        out.push_str(&format!(" local {local}"));
    }
    if let Some(dev) = dev {
        out.push_str(&format!(" dev {dev}"));
    }
    out
}

/// The `port` field of an enslaved uplink, desired or observed.
pub fn describe_uplink(interface: &str) -> String {
    format!("uplink {interface}")
}

/// A `port` or `peers` field with nothing in it.
pub const NONE: &str = "none";

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::None => f.write_str(NONE),
            Port::Uplink { uplink } => f.write_str(&describe_uplink(&uplink.display())),
            Port::Vlan { name, uplink, id } => {
                f.write_str(&describe_vlan(name, &uplink.display(), *id))
            }
            Port::Vxlan {
                name,
                vni,
                local,
                uplink,
            } => {
                let dev = uplink.as_ref().map(Uplink::display);
                f.write_str(&describe_vxlan(name, *vni, *local, dev.as_deref()))
            }
        }
    }
}

/// The `peers` field: sorted addresses, or `none`.
pub fn describe_peers(peers: &[IpAddr]) -> String {
    if peers.is_empty() {
        return NONE.to_string();
    }
    let list: Vec<String> = peers.iter().map(IpAddr::to_string).collect();
    list.join(",")
}

/// Everything hostd creates for one network on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLinks {
    pub network: String,
    pub bridge: String,
    pub port: Port,
    /// For the bridge and its port device; `None`: the kernel's.
    pub mtu: Option<u32>,
    /// VXLAN only: the other members' addresses, sorted, each the
    /// destination of an all-zero FDB entry (unicast flooding).
    pub peers: Option<Vec<IpAddr>>,
}

/// The tap of one NIC of a running VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapLink {
    pub name: String,
    pub vm: String,
    pub nic: usize,
    pub network: String,
    pub bridge: String,
    pub mtu: Option<u32>,
}

/// The links of every network used by VMs placed on `node`, and the
/// taps of the running ones, sorted by name.
pub fn links(config: &Config, node: &str) -> (Vec<NetworkLinks>, Vec<TapLink>) {
    let mut used: BTreeSet<&ResourceName> = BTreeSet::new();
    let mut taps = Vec::new();
    for (vm_name, vm) in &config.vms {
        if placement(config, vm).is_none_or(|n| n.as_str() != node) {
            continue;
        }
        for (index, nic) in vm.nics.iter().enumerate() {
            used.insert(&nic.network.value);
            if *vm.state != State::Running {
                continue;
            }
            // A NIC index too large for a tap name fails the VM's own
            // render (and so its start), which reports it.
            let Ok(name) = naming::tap_name(vm_name.as_str(), index) else {
                continue;
            };
            taps.push(TapLink {
                name,
                vm: vm_name.to_string(),
                nic: index,
                network: nic.network.to_string(),
                bridge: names::bridge_name(nic.network.as_str()),
                mtu: config.networks.get(&*nic.network).and_then(|n| mtu_of(n)),
            });
        }
    }
    taps.sort_by(|a, b| a.name.cmp(&b.name));
    let networks = used
        .into_iter()
        .filter_map(|name| {
            let network = config.networks.get(name)?;
            Some(network_links(config, node, name.as_str(), network))
        })
        .collect();
    (networks, taps)
}

fn mtu_of(network: &Network) -> Option<u32> {
    network
        .mtu
        .as_ref()
        .and_then(|m| u32::try_from(m.get()).ok())
}

fn network_links(config: &Config, node: &str, name: &str, network: &Network) -> NetworkLinks {
    let this_node = config.node_name().is_some_and(|n| n.as_str() == node);
    // node.toml is this node's own: other nodes' interfaces are unknown.
    let uplinks = config
        .node
        .as_ref()
        .filter(|_| this_node)
        .map(|n| &n.uplinks);
    let uplink = network.uplink.as_ref().map(|logical| Uplink {
        name: logical.to_string(),
        interface: uplinks
            .and_then(|u| u.iter().find(|(k, _)| k.value == logical.value))
            .map(|(_, iface)| iface.to_string()),
    });
    let mut peers = None;
    let port = match *network.kind {
        NetworkKind::Bridge => match (uplink, &network.vlan) {
            (None, _) => Port::None,
            (Some(uplink), None) => Port::Uplink { uplink },
            (Some(uplink), Some(vlan)) => Port::Vlan {
                name: names::link_name(Role::Vlan, name),
                uplink,
                // Validation keeps VLAN ids within 1..=4094.
                id: u16::try_from(vlan.get()).unwrap_or(u16::MAX),
            },
        },
        NetworkKind::Vxlan => {
            let (local, others) = member_addresses(config, node);
            peers = Some(others);
            Port::Vxlan {
                name: names::link_name(Role::Vxlan, name),
                // Validation requires a VNI (1..=16777215) on VXLAN networks.
                vni: network
                    .vni
                    .as_ref()
                    .and_then(|v| u32::try_from(v.get()).ok())
                    .unwrap_or(0),
                local,
                uplink,
            }
        }
    };
    NetworkLinks {
        network: name.to_string(),
        bridge: names::bridge_name(name),
        port,
        mtu: mtu_of(network),
        peers,
    }
}

/// `node`'s own member address and the other members' (sorted, without
/// duplicates); unclustered: none of either.
fn member_addresses(config: &Config, node: &str) -> (Option<IpAddr>, Vec<IpAddr>) {
    let Some(cluster) = &config.cluster else {
        return (None, Vec::new());
    };
    let mut local = None;
    let mut others = BTreeSet::new();
    for member in &cluster.members {
        if member.name.as_str() == node {
            local = Some(*member.address);
        } else {
            others.insert(*member.address);
        }
    }
    if let Some(local) = local {
        others.remove(&local);
    }
    (local, others.into_iter().collect())
}

impl NetworkLinks {
    pub fn id(&self) -> ResourceId {
        ResourceId::new(ResourceKind::Network, self.network.as_str())
    }

    /// The resource; observing a system built from it gives the same
    /// fields (see `observe`).
    pub fn desired(&self) -> Desired {
        let mut desired = Desired::new(self.id())
            .field("bridge", self.bridge.as_str())
            .field("port", self.port.to_string())
            .field("up", "yes");
        if let Some(mtu) = self.mtu {
            desired = desired.field("mtu", mtu.to_string());
        }
        if let Some(peers) = &self.peers {
            desired = desired.field("peers", describe_peers(peers));
        }
        with_payload(desired, self)
    }
}

impl TapLink {
    pub fn desired(&self) -> Desired {
        let mut desired = Desired::new(ResourceId::new(ResourceKind::Tap, self.name.as_str()))
            .field("bridge", self.bridge.as_str())
            .field("up", "yes")
            .depends_on(ResourceId::new(
                ResourceKind::Network,
                self.network.as_str(),
            ));
        if let Some(mtu) = self.mtu {
            desired = desired.field("mtu", mtu.to_string());
        }
        with_payload(desired, self)
    }
}

/// Attaches the links as JSON for `apply`. Serializing these plain
/// structs cannot fail; if it ever did, the apply reports the missing
/// payload instead of guessing.
fn with_payload(desired: Desired, links: &impl Serialize) -> Desired {
    match serde_json::to_string(links) {
        Ok(json) => desired.payload(PAYLOAD, json),
        Err(_) => desired,
    }
}

/// Every desired network and tap resource of this node.
pub fn desired(config: &Config) -> Vec<Desired> {
    let Some(node) = config.node_name() else {
        return Vec::new();
    };
    let (networks, taps) = links(config, node.as_str());
    networks
        .iter()
        .map(NetworkLinks::desired)
        .chain(taps.iter().map(TapLink::desired))
        .collect()
}

/// What hostd would create on `node`, for `horcrux render`: each
/// network's bridge and port, then the taps. Uplinks are resolved only
/// for this node (node.toml is node-local); elsewhere they show as
/// `<logical name>`.
pub fn render_links(config: &Config, node: &str) -> Vec<serde_json::Value> {
    let (networks, taps) = links(config, node);
    let mut out = Vec::new();
    for n in &networks {
        out.push(serde_json::json!({
            "kind": "bridge",
            "name": n.bridge,
            "network": n.network,
            "alias": names::alias(&n.network),
            "mtu": n.mtu,
        }));
        let port = match &n.port {
            Port::None => None,
            Port::Uplink { uplink } => Some(serde_json::json!({
                "kind": "uplink",
                "name": uplink.display(),
                "uplink": uplink.name,
                "master": n.bridge,
            })),
            Port::Vlan { name, uplink, id } => Some(serde_json::json!({
                "kind": "vlan",
                "name": name,
                "network": n.network,
                "alias": names::alias(&n.network),
                "link": uplink.display(),
                "id": id,
                "master": n.bridge,
                "mtu": n.mtu,
            })),
            Port::Vxlan {
                name,
                vni,
                local,
                uplink,
            } => Some(serde_json::json!({
                "kind": "vxlan",
                "name": name,
                "network": n.network,
                "alias": names::alias(&n.network),
                "vni": vni,
                "local": local,
                "dev": uplink.as_ref().map(Uplink::display),
                "dstport": VXLAN_PORT,
                "learning": true,
                "flood": n.peers.as_deref().unwrap_or_default(),
                "master": n.bridge,
                "mtu": n.mtu,
            })),
        };
        out.extend(port);
    }
    for t in &taps {
        out.push(serde_json::json!({
            "kind": "tap",
            "name": t.name,
            "vm": t.vm,
            "nic": t.nic,
            "network": t.network,
            "master": t.bridge,
            "mtu": t.mtu,
        }));
    }
    out
}
