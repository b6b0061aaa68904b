//! Making a network's or a tap's links match the config, from whatever
//! the kernel has now: every step checks before it acts, so applying
//! twice, or after any partial failure or hand edit, ends in the same
//! state.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::desired::{NetworkLinks, Port, TapLink, Uplink, VXLAN_PORT};
use super::links::{BRIDGE, Link, Links, Netlink, NewLink, TUN, VLAN, VXLAN, Vxlan};
use super::names::{self, Role};
use super::observe::owned;
use super::{NetError, UplinkRecords, tap};

/// A link hostd is about to create or reuse, found by name.
enum Found<'a> {
    Missing,
    /// Ours and of the right kind.
    Usable(&'a Link),
    /// Ours (by name and alias) but of another kind: replaced.
    WrongKind(&'a Link),
}

/// Looks up `name`, which hostd wants as `network`'s link of `kind`. A
/// link of that name that is not hostd's is an error: hostd never takes
/// over a link it did not create. The one exception is a link with the
/// right name and kind and no alias at all, which is what a hostd stopped
/// between creating a link and naming it (two requests) leaves behind.
fn find<'a>(
    links: &'a Links,
    name: &str,
    network: &str,
    kind: &str,
) -> Result<Found<'a>, NetError> {
    let Some(link) = links.named(name) else {
        return Ok(Found::Missing);
    };
    let ours = names::owner(&link.name, link.alias.as_deref()).is_some_and(|(n, _)| n == network);
    match (ours, link.is_kind(kind)) {
        (true, true) => Ok(Found::Usable(link)),
        (true, false) => Ok(Found::WrongKind(link)),
        (false, true) if link.alias.is_none() => Ok(Found::Usable(link)),
        (false, _) => Err(NetError::Refused(format!(
            "a {} named {name} exists that hostd did not create (alias {}); \
             hostd uses that name for network {network}: remove or rename it",
            link.kind.as_deref().unwrap_or("device"),
            link.alias
                .as_deref()
                .map_or("none".to_string(), |a| format!("`{a}`")),
        ))),
    }
}

/// Makes sure `network`'s link `name` of `kind` exists with the alias,
/// creating it with `new` when missing or of the wrong kind.
async fn ensure(
    nl: &Netlink,
    links: &Links,
    name: &str,
    network: &str,
    kind: &str,
    new: NewLink<'_>,
    mtu: Option<u32>,
) -> Result<Link, NetError> {
    let existing = match find(links, name, network, kind)? {
        Found::Usable(link) => Some(link.clone()),
        Found::WrongKind(link) => {
            nl.delete(link).await?;
            None
        }
        Found::Missing => None,
    };
    let mut link = match existing {
        Some(link) => link,
        None => {
            let index = nl.create(name, new, mtu).await?;
            Link {
                index,
                name: name.to_string(),
                kind: Some(kind.to_string()),
                mtu,
                ..Link::default()
            }
        }
    };
    let alias = names::alias(network);
    if link.alias.as_deref() != Some(alias.as_str()) {
        nl.set_alias(&link, &alias).await?;
        link.alias = Some(alias);
    }
    Ok(link)
}

/// MTU (when the config sets one), master and up, each only if it
/// differs.
async fn configure(
    nl: &Netlink,
    link: &Link,
    mtu: Option<u32>,
    master: Option<&Link>,
) -> Result<(), NetError> {
    if let Some(mtu) = mtu
        && link.mtu != Some(mtu)
    {
        nl.set_mtu(link, mtu).await?;
    }
    if let Some(master) = master
        && link.master != Some(master.index)
    {
        nl.set_master(link, Some((master.index, &master.name)))
            .await?;
    }
    if !link.up {
        nl.set_up(link).await?;
    }
    Ok(())
}

fn interface<'a>(uplink: &'a Uplink, network: &str) -> Result<&'a str, NetError> {
    uplink.interface.as_deref().ok_or_else(|| {
        NetError::Refused(format!(
            "uplink `{}` of network {network} is not declared in node.toml [uplinks]",
            uplink.name
        ))
    })
}

fn lookup<'a>(links: &'a Links, iface: &str, uplink: &Uplink) -> Result<&'a Link, NetError> {
    links.named(iface).ok_or_else(|| {
        NetError::Missing(format!(
            "uplink interface {iface} (uplink `{}`) does not exist",
            uplink.name
        ))
    })
}

/// Brings network `want`'s bridge, port and flood entries in line.
pub(super) async fn network(
    nl: &Netlink,
    records: &UplinkRecords,
    want: &NetworkLinks,
) -> Result<(), NetError> {
    let links = nl.links().await?;
    let network = want.network.as_str();
    // Created without MTU: set afterwards, it counts as chosen by the user
    // and the kernel stops adjusting it to the smallest port's.
    let bridge = ensure(
        nl,
        &links,
        &want.bridge,
        network,
        BRIDGE,
        NewLink::Bridge,
        None,
    )
    .await?;
    if let Some(mtu) = want.mtu
        && bridge.mtu != Some(mtu)
    {
        nl.set_mtu(&bridge, mtu).await?;
    }

    // Whatever port the network had before and should not have now goes
    // first: a device of the other kind, an uplink it no longer uses.
    let keep = match &want.port {
        Port::Vlan { name, .. } | Port::Vxlan { name, .. } => Some(name.as_str()),
        Port::None | Port::Uplink { .. } => None,
    };
    if let Some(mine) = owned(&links).get(network) {
        for port in &mine.ports {
            if Some(port.name.as_str()) != keep {
                nl.delete(port).await?;
            }
        }
    }
    let wanted_uplink = match &want.port {
        Port::Uplink { uplink } => uplink.interface.as_deref(),
        _ => None,
    };
    if let Some(recorded) = records.read(network)?
        && Some(recorded.as_str()) != wanted_uplink
    {
        release(nl, &links, &recorded, &bridge).await?;
        records.remove(network)?;
    }

    match &want.port {
        Port::None => {}
        Port::Uplink { uplink } => {
            enslave_uplink(nl, records, &links, network, uplink, &bridge).await?;
        }
        Port::Vlan { name, uplink, id } => {
            let lower = lookup(&links, interface(uplink, network)?, uplink)?.index;
            // The kernel cannot change these on a VLAN device.
            let stale = links
                .named(name)
                .is_some_and(|l| l.vlan_id != Some(*id) || l.lower != Some(lower));
            let links = replace_if(nl, links, name, network, stale).await?;
            let new = NewLink::Vlan { lower, id: *id };
            let port = ensure(nl, &links, name, network, VLAN, new, want.mtu).await?;
            configure(nl, &port, want.mtu, Some(&bridge)).await?;
        }
        Port::Vxlan {
            name,
            vni,
            local,
            uplink,
        } => {
            let dev = match uplink {
                Some(uplink) => Some(lookup(&links, interface(uplink, network)?, uplink)?.index),
                None => None,
            };
            let params = Vxlan {
                vni: Some(*vni),
                local: *local,
                dev,
                port: Some(VXLAN_PORT),
                learning: Some(true),
            };
            // The kernel cannot change these on a VXLAN device.
            let stale = links
                .named(name)
                .is_some_and(|l| l.vxlan.as_ref() != Some(&params));
            let links = replace_if(nl, links, name, network, stale).await?;
            let new = NewLink::Vxlan(&params);
            let port = ensure(nl, &links, name, network, VXLAN, new, want.mtu).await?;
            configure(nl, &port, want.mtu, Some(&bridge)).await?;
            let peers = want.peers.as_deref().unwrap_or_default();
            flood(nl, &port, peers).await?;
        }
    }
    if !bridge.up {
        nl.set_up(&bridge).await?;
    }
    Ok(())
}

/// Deletes hostd's link `name` when its immutable settings are wrong,
/// and returns the links as they are then.
async fn replace_if(
    nl: &Netlink,
    links: Links,
    name: &str,
    network: &str,
    stale: bool,
) -> Result<Links, NetError> {
    let Some(link) = links.named(name) else {
        return Ok(links);
    };
    if !stale || names::owner(&link.name, link.alias.as_deref()).is_none_or(|(n, _)| n != network) {
        // Not ours: `ensure` refuses it with the reason.
        return Ok(links);
    }
    nl.delete(link).await?;
    Ok(nl.links().await?)
}

/// Makes the uplink interface itself a port of `bridge`, unless that
/// would cut the node off: an interface with a global address loses it
/// (in effect) as a bridge port.
async fn enslave_uplink(
    nl: &Netlink,
    records: &UplinkRecords,
    links: &Links,
    network: &str,
    uplink: &Uplink,
    bridge: &Link,
) -> Result<(), NetError> {
    let iface = interface(uplink, network)?;
    let link = lookup(links, iface, uplink)?;
    if link.master == Some(bridge.index) {
        // Already in place (also after a hostd crash between the two
        // steps below): make sure it is released when no longer wanted.
        return records.write(network, iface);
    }
    if let Some(other) = link.master {
        let other = links.name_of(other).unwrap_or("another device");
        return Err(NetError::Refused(format!(
            "uplink interface {iface} is already a port of {other}; network {network} \
             has no `vlan`, so it needs the whole interface: give one of the networks a \
             `vlan`, or use another uplink"
        )));
    }
    if let Some(address) = nl.global_address(link.index).await? {
        return Err(NetError::Refused(format!(
            "refusing to add uplink interface {iface} to bridge {}: it carries the address \
             {address}, which would stop working (the node could lose its connection); give \
             network {network} a `vlan` on this uplink, or use a dedicated NIC without an \
             address",
            bridge.name
        )));
    }
    // Recorded first, so a crash right after enslaving still leaves hostd
    // knowing that it may release the interface.
    records.write(network, iface)?;
    nl.set_master(link, Some((bridge.index, &bridge.name)))
        .await?;
    Ok(())
}

/// Releases interface `iface` if it is a port of `bridge`.
async fn release(nl: &Netlink, links: &Links, iface: &str, bridge: &Link) -> Result<(), NetError> {
    if let Some(link) = links.named(iface)
        && link.master == Some(bridge.index)
    {
        nl.set_master(link, None).await?;
    }
    Ok(())
}

/// Gives VXLAN device `dev` one all-zero FDB entry per peer, and none
/// for anything else.
async fn flood(nl: &Netlink, dev: &Link, peers: &[IpAddr]) -> Result<(), NetError> {
    let current = nl
        .flood_entries(&BTreeSet::from([dev.index]))
        .await?
        .remove(&dev.index)
        .unwrap_or_default();
    for peer in peers {
        if !current.contains(peer) {
            nl.add_flood(dev, *peer).await?;
        }
    }
    for stale in current.iter().filter(|c| !peers.contains(c)) {
        nl.remove_flood(dev, *stale).await?;
    }
    Ok(())
}

/// Removes network `network`'s links and releases the uplink hostd
/// enslaved. Ports hostd did not add are released by the kernel when the
/// bridge goes.
pub(super) async fn remove_network(
    nl: &Netlink,
    records: &UplinkRecords,
    network: &str,
) -> Result<(), NetError> {
    let links = nl.links().await?;
    let owned = owned(&links);
    let mine = owned.get(network);
    if let (Some(iface), Some(bridge)) = (records.read(network)?, mine.and_then(|m| m.bridge)) {
        release(nl, &links, &iface, bridge).await?;
    }
    if let Some(mine) = mine {
        for port in &mine.ports {
            nl.delete(port).await?;
        }
        if let Some(bridge) = mine.bridge {
            nl.delete(bridge).await?;
        }
    }
    records.remove(network)
}

/// Creates tap `want` if missing, and puts it on its bridge, up.
pub(super) async fn tap(nl: &Netlink, want: &TapLink) -> Result<(), NetError> {
    let links = nl.links().await?;
    let bridge = links
        .named(&want.bridge)
        .filter(|b| {
            names::owner(&b.name, b.alias.as_deref()) == Some((want.network.clone(), Role::Bridge))
        })
        .ok_or_else(|| {
            NetError::Missing(format!(
                "bridge {} of network {} does not exist",
                want.bridge, want.network
            ))
        })?;
    let mut link = match links.named(&want.name) {
        Some(link) if link.is_kind(TUN) => link.clone(),
        Some(link) => {
            return Err(NetError::Refused(format!(
                "a {} named {} exists; hostd needs that name for the tap of NIC {} of VM {}",
                link.kind.as_deref().unwrap_or("device"),
                want.name,
                want.nic,
                want.vm
            )));
        }
        None => {
            tap::create(&want.name)?;
            Link {
                index: nl.index_of(&want.name).await?,
                name: want.name.clone(),
                kind: Some(TUN.to_string()),
                ..Link::default()
            }
        }
    };
    // Tells operators reading `ip link` which network the tap is on.
    let alias = names::alias(&want.network);
    if link.alias.as_deref() != Some(alias.as_str()) {
        nl.set_alias(&link, &alias).await?;
        link.alias = Some(alias);
    }
    configure(nl, &link, want.mtu, Some(bridge)).await
}

/// Deletes tap `name`, if it is still there and still a tap.
pub(super) async fn remove_tap(nl: &Netlink, name: &str) -> Result<(), NetError> {
    let links = nl.links().await?;
    match links.named(name) {
        Some(link) if link.is_kind(TUN) && names::is_tap_name(name) => Ok(nl.delete(link).await?),
        _ => Ok(()),
    }
}
