//! `node.toml`: this node's own settings. Never replicated.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Spanned, Table, builtin_defaults};
use crate::types::{IfaceAddr, InterfaceName, IpNet, ResourceName, ZfsDataset};
use crate::{decode_table, keyword_enum};

keyword_enum! {
    /// QEMU accelerator. `tcg` (software emulation) is for testing only.
    pub enum Accel { Kvm = "kvm", Tcg = "tcg" }
}

/// The node's own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// This node's name; in a cluster it must be one of the members.
    pub name: Spanned<ResourceName>,
    /// The read-only status endpoint.
    #[serde(default)]
    pub status: StatusSection,
    /// Static management address; absent: DHCP on the first NIC.
    pub management: Option<Management>,
    /// Logical uplink name (used by networks) -> this node's interface.
    #[serde(default)]
    pub uplinks: BTreeMap<Spanned<ResourceName>, Spanned<InterfaceName>>,
    /// ZFS pools on this node.
    #[serde(default)]
    pub zfs: ZfsSection,
    /// How QEMU runs on this node.
    #[serde(default)]
    pub qemu: QemuSection,
    /// The node's own input policy (table `inet horcrux`).
    #[serde(default)]
    pub firewall: NodeFirewall,
}

fn read_node(t: &mut Table) -> Option<Node> {
    let name = t.required("name");
    let status = t.section("status");
    let management = t.optional::<Management>("management").map(|m| m.value);
    let uplinks = t.list("uplinks");
    let zfs = t.section("zfs");
    let qemu = t.section("qemu");
    let firewall = t.section("firewall");
    Some(Node {
        name: name?,
        status: status?,
        management,
        uplinks,
        zfs: zfs?,
        qemu: qemu?,
        firewall: firewall?,
    })
}
decode_table!(Node, read_node);

/// The read-only HTTP status endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    /// Address and port to serve HTML, JSON and /metrics on.
    #[serde(default = "default_listen")]
    pub listen: Spanned<SocketAddr>,
}

fn default_listen() -> Spanned<SocketAddr> {
    Spanned::builtin(SocketAddr::from(([0, 0, 0, 0], 8006)))
}

fn read_status(t: &mut Table) -> Option<StatusSection> {
    Some(StatusSection {
        listen: t.or_default("listen", default_listen),
    })
}
decode_table!(StatusSection, read_status);

/// The node's management address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Interface carrying the address; default: the first Ethernet NIC.
    pub interface: Option<Spanned<InterfaceName>>,
    /// Static address with prefix; absent: DHCP.
    pub address: Option<Spanned<IfaceAddr>>,
    /// Default gateway; needs `address`, and must be inside its subnet.
    pub gateway: Option<Spanned<IpAddr>>,
    /// DNS servers for a static address.
    #[serde(default)]
    pub dns: Vec<Spanned<IpAddr>>,
}

fn read_management(t: &mut Table) -> Option<Management> {
    let interface = t.optional("interface");
    let address = t.optional::<IfaceAddr>("address");
    let gateway = t.optional::<IpAddr>("gateway");
    if let Some(gw) = &gateway {
        match &address {
            None if !t.has("address") => {
                t.cx().diags.error_with_hint(
                    gw.span,
                    "`gateway` needs a static `address`",
                    "with DHCP the gateway comes from the DHCP server",
                );
            }
            Some(addr) if !addr.contains(**gw) => {
                let msg = format!("gateway {} is not inside {}", **gw, **addr);
                t.cx().diags.error(gw.span, msg);
            }
            _ => {}
        }
    }
    let dns = t.list("dns");
    Some(Management {
        interface,
        address,
        gateway,
        dns,
    })
}
decode_table!(Management, read_management);

/// ZFS pools this node may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZfsSection {
    /// Pools hostd may create volumes in. hostd never creates or destroys pools.
    #[serde(default)]
    pub pools: Vec<Spanned<ZfsDataset>>,
}

fn read_zfs(t: &mut Table) -> Option<ZfsSection> {
    let pools: Vec<Spanned<ZfsDataset>> = t.list("pools");
    for pool in &pools {
        if pool.as_str().contains('/') {
            let msg = format!("\"{}\" is a dataset, not a pool", **pool);
            let hint = format!(
                "list the pool \"{}\" here; datasets go in storage files",
                pool.pool()
            );
            t.cx().diags.error_with_hint(pool.span, msg, hint);
        }
    }
    Some(ZfsSection { pools })
}
decode_table!(ZfsSection, read_zfs);

/// How QEMU runs on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    /// QEMU accelerator; hostd falls back to `tcg` only when this says so.
    #[serde(default = "default_accel")]
    pub accel: Spanned<Accel>,
}

fn default_accel() -> Spanned<Accel> {
    Spanned::builtin(Accel::Kvm)
}

fn read_qemu(t: &mut Table) -> Option<QemuSection> {
    Some(QemuSection {
        accel: t.or_default("accel", default_accel),
    })
}
decode_table!(QemuSection, read_qemu);

/// What may reach the node itself. With `filter_input`, traffic to the
/// node is dropped unless it is loopback, established/related, ICMP,
/// DHCP replies, SSH or the status port from the listed sources, or gossip
/// and VXLAN from cluster members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeFirewall {
    /// Drop traffic to the node that no rule accepts. `false`: hostd
    /// installs no input chain at all.
    #[serde(default = "default_filter_input")]
    pub filter_input: Spanned<bool>,
    /// Networks that may reach SSH (port 22); empty: anywhere.
    #[serde(default)]
    pub ssh_from: Vec<Spanned<IpNet>>,
    /// Networks that may reach the status endpoint; empty: anywhere.
    #[serde(default)]
    pub status_from: Vec<Spanned<IpNet>>,
}

fn default_filter_input() -> Spanned<bool> {
    Spanned::builtin(true)
}

fn read_node_firewall(t: &mut Table) -> Option<NodeFirewall> {
    Some(NodeFirewall {
        filter_input: t.or_default("filter_input", default_filter_input),
        ssh_from: t.list("ssh_from"),
        status_from: t.list("status_from"),
    })
}
decode_table!(NodeFirewall, read_node_firewall);

/// The defaults of sections that may be left out, for the JSON Schema.
macro_rules! default_from_empty_table {
    ($($ty:ty),+) => {$(
        impl Default for $ty {
            fn default() -> Self {
                builtin_defaults().unwrap_or_else(|| unreachable!("every key of {} has a default", stringify!($ty)))
            }
        }
    )+};
}
default_from_empty_table!(StatusSection, ZfsSection, QemuSection, NodeFirewall);
