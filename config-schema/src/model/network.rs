//! `cluster/networks/<name>.toml`: one network VMs attach to.

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Bounded, Spanned, Table};
use crate::types::ResourceName;
use crate::{decode_table, keyword_enum};

pub type VlanId = Bounded<1, 4094>;
pub type Vni = Bounded<1, 16_777_215>;
pub type Mtu = Bounded<576, 9216>;

keyword_enum! {
    /// A local bridge (optionally on a VLAN of an uplink) or a VXLAN overlay
    /// spanning the cluster members.
    pub enum NetworkKind { Bridge = "bridge", Vxlan = "vxlan" }
}

/// A network. The file name is the network name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `bridge`: a local bridge, optionally on a VLAN of an uplink. `vxlan`: an overlay across the members.
    pub kind: Spanned<NetworkKind>,
    /// Logical uplink (a key of `[uplinks]` in node.toml) the network is
    /// bridged to. Absent: an isolated bridge (or, for VXLAN, the route to
    /// the other members decides).
    pub uplink: Option<Spanned<ResourceName>>,
    /// 802.1Q VLAN tag on the uplink (1 to 4094).
    pub vlan: Option<Spanned<VlanId>>,
    /// MTU of the bridge and its ports (576 to 9216). Default: the kernel's.
    pub mtu: Option<Spanned<Mtu>>,
    /// VXLAN network identifier (1 to 16777215), unique across networks.
    /// Required for, and only allowed with, `kind = "vxlan"`.
    pub vni: Option<Spanned<Vni>>,
}

fn read_network(t: &mut Table) -> Option<Network> {
    let kind = t.required::<NetworkKind>("kind");
    let uplink = t.optional("uplink");
    let vlan = match kind.as_deref() {
        Some(NetworkKind::Vxlan) => {
            t.forbid("vlan", "`vlan` is only allowed with kind = \"bridge\"; a VXLAN network is identified by `vni`");
            None
        }
        _ => t.optional("vlan"),
    };
    let mtu = t.optional("mtu");
    let vni = match kind.as_deref() {
        Some(NetworkKind::Vxlan) => t.required("vni"),
        Some(NetworkKind::Bridge) => {
            t.forbid("vni", "`vni` is only allowed with kind = \"vxlan\"");
            None
        }
        None => t.optional("vni"),
    };
    Some(Network {
        kind: kind?,
        uplink,
        vlan,
        mtu,
        vni,
    })
}
decode_table!(Network, read_network);
