//! The few rtnetlink requests the network backend makes, over one
//! connection: dump links, addresses and the bridge FDB; create, change
//! and delete links; add and remove VXLAN flood entries.
//!
//! Everything returns plain data ([`Link`]) or a [`LinkError`] carrying
//! what was attempted and the kernel's own error text.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures_util::{StreamExt as _, TryStreamExt as _};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{
    InfoData, InfoVlan, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVlan, LinkVxlan};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// A request the kernel refused, with its `strerror` text ("File
    /// exists (os error 17)") rather than rtnetlink's dump of the reply.
    #[error("{what}: {reason}")]
    Request { what: String, reason: String },
    /// The connection failed or answered nonsense.
    #[error("{what}: {reason}")]
    Connection { what: String, reason: String },
}

impl LinkError {
    fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
        let what = what.into();
        move |e| match e {
            rtnetlink::Error::NetlinkError(msg) => LinkError::Request {
                what,
                reason: msg.to_io().to_string(),
            },
            other => LinkError::Connection {
                what,
                reason: other.to_string(),
            },
        }
    }

    /// Whether the connection should be opened anew.
    pub fn is_connection(&self) -> bool {
        matches!(self, LinkError::Connect(_) | LinkError::Connection { .. })
    }
}

/// The VXLAN parameters hostd sets and checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: Option<u32>,
    pub local: Option<IpAddr>,
    /// The underlay device's index.
    pub dev: Option<u32>,
    pub port: Option<u16>,
    pub learning: Option<bool>,
}

/// What the backend needs to know about one link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND` (`bridge`, `vlan`, `vxlan`, `tun`, `veth`, ...);
    /// `None` for physical NICs.
    pub kind: Option<String>,
    pub master: Option<u32>,
    /// `IFLA_LINK`: a VLAN's lower device.
    pub lower: Option<u32>,
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub vlan_id: Option<u16>,
    pub vxlan: Option<Vxlan>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            up: msg.header.flags.contains(LinkFlags::Up),
            ..Link::default()
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::IfAlias(alias) => link.alias = Some(alias),
                LinkAttribute::Mtu(mtu) => link.mtu = Some(mtu),
                // Index 0 means "none" for both.
                LinkAttribute::Controller(m) => link.master = Some(m).filter(|m| *m != 0),
                LinkAttribute::Link(l) => link.lower = Some(l).filter(|l| *l != 0),
                LinkAttribute::LinkInfo(infos) => link.read_info(infos),
                _ => {}
            }
        }
        link
    }

    fn read_info(&mut self, infos: Vec<LinkInfo>) {
        for info in infos {
            match info {
                LinkInfo::Kind(kind) => self.kind = Some(kind.to_string()),
                LinkInfo::Data(InfoData::Vlan(data)) => {
                    for item in data {
                        if let InfoVlan::Id(id) = item {
                            self.vlan_id = Some(id);
                        }
                    }
                }
                LinkInfo::Data(InfoData::Vxlan(data)) => {
                    let mut vxlan = Vxlan::default();
                    for item in data {
                        match item {
                            InfoVxlan::Id(vni) => vxlan.vni = Some(vni),
                            InfoVxlan::Local(ip) => vxlan.local = Some(ip.into()),
                            InfoVxlan::Local6(ip) => vxlan.local = Some(ip.into()),
                            InfoVxlan::Link(dev) => vxlan.dev = Some(dev).filter(|d| *d != 0),
                            InfoVxlan::Port(port) => vxlan.port = Some(port),
                            InfoVxlan::Learning(on) => vxlan.learning = Some(on),
                            _ => {}
                        }
                    }
                    self.vxlan = Some(vxlan);
                }
                _ => {}
            }
        }
    }

    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// Every link, by index, from one dump.
#[derive(Clone, Debug, Default)]
pub struct Links {
    pub by_index: BTreeMap<u32, Link>,
}

impl Links {
    pub fn named(&self, name: &str) -> Option<&Link> {
        self.by_index.values().find(|l| l.name == name)
    }

    pub fn name_of(&self, index: u32) -> Option<&str> {
        self.by_index.get(&index).map(|l| l.name.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.by_index.values()
    }
}

/// A link to create, with the settings it is created with.
#[derive(Debug)]
pub enum NewLink<'a> {
    Bridge,
    Vlan { lower: u32, id: u16 },
    Vxlan(&'a Vxlan),
}

/// The all-zero MAC of VXLAN default (flooding) entries.
const ZERO_MAC: [u8; 6] = [0; 6];

/// An open rtnetlink connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace and runs
    /// its connection on the current tokio runtime.
    pub fn connect() -> Result<Netlink, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub async fn links(&self) -> Result<Links, LinkError> {
        let mut by_index = BTreeMap::new();
        let mut dump = self.handle.link().get().execute();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(LinkError::request("cannot list links"))?
        {
            let link = Link::from_message(msg);
            by_index.insert(link.index, link);
        }
        Ok(Links { by_index })
    }

    /// An address of global scope on interface `index`, if it has one
    /// (IPv4 or IPv6; link-local ones do not count).
    pub async fn global_address(&self, index: u32) -> Result<Option<IpAddr>, LinkError> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let what = "cannot list addresses";
        while let Some(msg) = dump.try_next().await.map_err(LinkError::request(what))? {
            if msg.header.index != index || msg.header.scope != AddressScope::Universe {
                continue;
            }
            for attr in msg.attributes {
                if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = attr {
                    return Ok(Some(ip));
                }
            }
        }
        Ok(None)
    }

    /// The destinations of the all-zero (flooding) FDB entries of each
    /// of `devices`, sorted.
    pub async fn flood_entries(
        &self,
        devices: &BTreeSet<u32>,
    ) -> Result<BTreeMap<u32, Vec<IpAddr>>, LinkError> {
        if devices.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut out: BTreeMap<u32, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut dump = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        let what = "cannot list the bridge forwarding database";
        while let Some(msg) = dump.try_next().await.map_err(LinkError::request(what))? {
            if !devices.contains(&msg.header.ifindex) {
                continue;
            }
            let mut zero = false;
            let mut dst = None;
            for attr in &msg.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(mac) => zero = mac[..] == ZERO_MAC,
                    NeighbourAttribute::Destination(address) => dst = ip_of(address),
                    _ => {}
                }
            }
            if let (true, Some(dst)) = (zero, dst) {
                out.entry(msg.header.ifindex).or_default().insert(dst);
            }
        }
        Ok(out
            .into_iter()
            .map(|(dev, peers)| (dev, peers.into_iter().collect()))
            .collect())
    }

    /// Creates link `name` (down, without master) and returns its index.
    pub async fn create(
        &self,
        name: &str,
        new: NewLink<'_>,
        mtu: Option<u32>,
    ) -> Result<u32, LinkError> {
        let message = match new {
            NewLink::Bridge => with_mtu(LinkBridge::new(name), mtu).build(),
            NewLink::Vlan { lower, id } => with_mtu(LinkVlan::new(name, lower, id), mtu).build(),
            NewLink::Vxlan(params) => {
                let mut builder = LinkVxlan::new(name, params.vni.unwrap_or_default())
                    .port(params.port.unwrap_or_default())
                    .learning(params.learning.unwrap_or(true));
                match params.local {
                    Some(IpAddr::V4(ip)) => builder = builder.local(ip),
                    Some(IpAddr::V6(ip)) => builder = builder.local6(ip),
                    None => {}
                }
                if let Some(dev) = params.dev {
                    builder = builder.dev(dev);
                }
                with_mtu(builder, mtu).build()
            }
        };
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(LinkError::request(format!("cannot create {name}")))?;
        self.index_of(name).await
    }

    /// The index of link `name`, asked of the kernel (for a link just
    /// created, whose index the create reply does not carry).
    pub async fn index_of(&self, name: &str) -> Result<u32, LinkError> {
        let what = format!("cannot find {name}");
        let mut found = self.handle.link().get().match_name(name).execute();
        match found
            .try_next()
            .await
            .map_err(LinkError::request(what.clone()))?
        {
            Some(msg) => Ok(msg.header.index),
            None => Err(LinkError::Request {
                what,
                reason: "no such device".into(),
            }),
        }
    }

    pub async fn set_alias(&self, link: &Link, alias: &str) -> Result<(), LinkError> {
        let message = LinkUnspec::new_with_index(link.index)
            .append_extra_attribute(LinkAttribute::IfAlias(alias.to_string()))
            .build();
        self.change(message, format!("cannot set the alias of {}", link.name))
            .await
    }

    pub async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), LinkError> {
        let message = LinkUnspec::new_with_index(link.index).mtu(mtu).build();
        self.change(message, format!("cannot set MTU {mtu} on {}", link.name))
            .await
    }

    /// Makes `link` a port of `master`, or of nothing.
    pub async fn set_master(
        &self,
        link: &Link,
        master: Option<(u32, &str)>,
    ) -> Result<(), LinkError> {
        let builder = LinkUnspec::new_with_index(link.index);
        let (message, what) = match master {
            Some((index, name)) => (
                builder.controller(index).build(),
                format!("cannot add {} to {name}", link.name),
            ),
            None => (
                builder.nocontroller().build(),
                format!("cannot release {} from its master", link.name),
            ),
        };
        self.change(message, what).await
    }

    pub async fn set_up(&self, link: &Link) -> Result<(), LinkError> {
        let message = LinkUnspec::new_with_index(link.index).up().build();
        self.change(message, format!("cannot set {} up", link.name))
            .await
    }

    pub async fn delete(&self, link: &Link) -> Result<(), LinkError> {
        self.handle
            .link()
            .del(link.index)
            .execute()
            .await
            .map_err(LinkError::request(format!("cannot delete {}", link.name)))
    }

    async fn change(&self, message: LinkMessage, what: String) -> Result<(), LinkError> {
        self.handle
            .link()
            .change(message)
            .execute()
            .await
            .map_err(LinkError::request(what))
    }

    /// Adds `dst` to the flooding entry of VXLAN device `dev`, keeping the
    /// others (`bridge fdb append 00:00:00:00:00:00 dev DEV dst DST`).
    pub async fn add_flood(&self, dev: &Link, dst: IpAddr) -> Result<(), LinkError> {
        let mut message = flood_message(dev.index, dst);
        message.header.state = NeighbourState::Permanent;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
        // APPEND instead of EXCL/REPLACE: the all-zero entry holds one
        // destination per peer.
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let what = format!("cannot add flood entry {dst} to {}", dev.name);
        let mut handle = self.handle.clone();
        let mut replies = handle
            .request(request)
            .map_err(LinkError::request(what.clone()))?;
        while let Some(reply) = replies.next().await {
            if let NetlinkPayload::Error(e) = reply.payload
                && e.code.is_some()
            {
                return Err(LinkError::Request {
                    what,
                    reason: e.to_io().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Removes `dst` from the flooding entry of VXLAN device `dev`.
    pub async fn remove_flood(&self, dev: &Link, dst: IpAddr) -> Result<(), LinkError> {
        self.handle
            .neighbours()
            .del(flood_message(dev.index, dst))
            .execute()
            .await
            .map_err(LinkError::request(format!(
                "cannot remove flood entry {dst} from {}",
                dev.name
            )))
    }
}

/// The IP address of an FDB entry's destination. In AF_BRIDGE messages
/// it comes as raw bytes (the message's family is not an IP family), so
/// the length says which version it is.
fn ip_of(address: &NeighbourAddress) -> Option<IpAddr> {
    match address {
        NeighbourAddress::Inet(ip) => Some((*ip).into()),
        NeighbourAddress::Inet6(ip) => Some((*ip).into()),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(&bytes[..]).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(&bytes[..]).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn with_mtu<T>(builder: LinkMessageBuilder<T>, mtu: Option<u32>) -> LinkMessageBuilder<T> {
    match mtu {
        Some(mtu) => builder.mtu(mtu),
        None => builder,
    }
}

/// The all-zero FDB entry of a VXLAN device towards `dst`, as the
/// device's own entry (`NTF_SELF`), not a bridge's.
fn flood_message(index: u32, dst: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.flags = NeighbourFlags::Own;
    message.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(ZERO_MAC.to_vec()),
        NeighbourAttribute::Destination(match dst {
            IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
            IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
        }),
    ];
    message
}

/// `IFLA_INFO_KIND` of the links hostd creates, as the kernel reports
/// them (a tap's is `tun`).
pub const BRIDGE: &str = "bridge";
pub const VLAN: &str = "vlan";
pub const VXLAN: &str = "vxlan";
pub const TUN: &str = "tun";
