//! Reading networks and taps back from the kernel: one link dump, plus
//! one FDB dump when hostd has VXLAN devices.
//!
//! Fields are built with the same functions as the desired ones, so a
//! correct system reads back exactly as desired (an empty plan) and any
//! drift shows as a differing field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::desired::{
    NONE, VXLAN_PORT, describe_peers, describe_uplink, describe_vlan, describe_vxlan,
};
use super::links::{BRIDGE, Link, Links, TUN, VLAN, VXLAN};
use super::names::{self, Role};
use super::{NetError, UplinkRecords};
use crate::plan::{Observed, ResourceId, ResourceKind};

/// The links hostd owns for one network.
#[derive(Debug, Default)]
pub(super) struct Owned<'a> {
    pub bridge: Option<&'a Link>,
    /// VLAN and VXLAN devices (normally at most one), by name.
    pub ports: Vec<&'a Link>,
}

/// hostd's links grouped by network.
pub(super) fn owned(links: &Links) -> BTreeMap<String, Owned<'_>> {
    let mut out: BTreeMap<String, Owned<'_>> = BTreeMap::new();
    for link in links.iter() {
        if let Some((network, role)) = names::owner(&link.name, link.alias.as_deref()) {
            let entry = out.entry(network).or_default();
            match role {
                Role::Bridge => entry.bridge = Some(link),
                Role::Vlan | Role::Vxlan => entry.ports.push(link),
            }
        }
    }
    out
}

/// The observed `port` text of a VLAN or VXLAN device hostd owns:
/// the desired form, plus whatever differs from what hostd creates.
pub(super) fn describe_port(link: &Link, links: &Links, bridge: Option<&Link>) -> String {
    let lower = |index: Option<u32>| {
        index.map(|i| {
            links
                .name_of(i)
                .map_or_else(|| format!("ifindex {i}"), str::to_string)
        })
    };
    let mut out = match (&link.vxlan, link.kind.as_deref()) {
        (Some(vx), _) => {
            let mut text = describe_vxlan(
                &link.name,
                vx.vni.unwrap_or_default(),
                vx.local,
                lower(vx.dev).as_deref(),
            );
            if let Some(port) = vx.port.filter(|p| *p != VXLAN_PORT) {
                text.push_str(&format!(" dstport {port}"));
            }
            if vx.learning == Some(false) {
                text.push_str(" nolearning");
            }
            text
        }
        (None, Some(VLAN)) => describe_vlan(
            &link.name,
            &lower(link.lower).unwrap_or_else(|| "?".to_string()),
            link.vlan_id.unwrap_or_default(),
        ),
        (None, kind) => format!("{} {}", kind.unwrap_or("device"), link.name),
    };
    if bridge.is_none_or(|b| link.master != Some(b.index)) {
        out.push_str(" (not in the bridge)");
    }
    out
}

/// Every network with a link hostd owns, and every tap.
pub(super) async fn all(
    nl: &super::links::Netlink,
    records: &UplinkRecords,
) -> Result<Vec<Observed>, NetError> {
    let links = nl.links().await?;
    let owned = owned(&links);
    let vxlans: BTreeSet<u32> = owned
        .values()
        .flat_map(|o| o.ports.iter())
        .filter(|l| l.is_kind(VXLAN))
        .map(|l| l.index)
        .collect();
    let floods = nl.flood_entries(&vxlans).await?;
    let mut out = Vec::new();
    for (network, links_of) in &owned {
        let uplink = records.read(network)?;
        out.push(network_fields(
            network,
            links_of,
            &links,
            uplink.as_deref(),
            &floods,
        ));
    }
    for link in links.iter() {
        if names::is_tap_name(&link.name) && link.is_kind(TUN) {
            out.push(tap_fields(link, &links));
        }
    }
    Ok(out)
}

fn network_fields(
    network: &str,
    owned: &Owned<'_>,
    links: &Links,
    recorded_uplink: Option<&str>,
    floods: &BTreeMap<u32, Vec<IpAddr>>,
) -> Observed {
    let bridge = owned.bridge;
    let bridge_text = match bridge {
        Some(b) if b.is_kind(BRIDGE) => b.name.clone(),
        Some(b) => format!("{} ({} instead of a bridge)", b.name, kind(b)),
        None => "missing".to_string(),
    };
    let mut ports: Vec<String> = owned
        .ports
        .iter()
        .map(|p| describe_port(p, links, bridge))
        .collect();
    if let (Some(iface), Some(b)) = (recorded_uplink, bridge)
        && links
            .named(iface)
            .is_some_and(|l| l.master == Some(b.index))
    {
        ports.push(describe_uplink(iface));
    }
    ports.sort();
    let port = if ports.is_empty() {
        NONE.to_string()
    } else {
        ports.join(", ")
    };
    let mine: Vec<&Link> = bridge
        .into_iter()
        .chain(owned.ports.iter().copied())
        .collect();
    let up = if mine.iter().all(|l| l.up) {
        "yes"
    } else {
        "no"
    };
    let mut observed = Observed::new(ResourceId::new(ResourceKind::Network, network))
        .field("bridge", bridge_text)
        .field("port", port)
        .field("mtu", mtu_text(&mine))
        .field("up", up);
    if let Some(vx) = owned.ports.iter().find(|p| p.is_kind(VXLAN)) {
        let peers = floods.get(&vx.index).map_or(&[][..], Vec::as_slice);
        observed = observed.field("peers", describe_peers(peers));
    }
    observed
}

/// One MTU when the bridge and its port agree (the desired form), each
/// link's otherwise.
fn mtu_text(links: &[&Link]) -> String {
    let distinct: BTreeSet<Option<u32>> = links.iter().map(|l| l.mtu).collect();
    match (distinct.len(), distinct.first()) {
        (1, Some(Some(mtu))) => mtu.to_string(),
        _ => links
            .iter()
            .map(|l| {
                let mtu = l.mtu.map_or_else(|| "?".to_string(), |m| m.to_string());
                format!("{} {mtu}", l.name)
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn kind(link: &Link) -> &str {
    link.kind.as_deref().unwrap_or("device")
}

fn tap_fields(tap: &Link, links: &Links) -> Observed {
    let master = tap.master.and_then(|m| links.by_index.get(&m));
    let mut observed = Observed::new(ResourceId::new(ResourceKind::Tap, tap.name.as_str()))
        .field("bridge", master.map_or(NONE, |m| m.name.as_str()))
        .field("mtu", tap.mtu.map_or_else(String::new, |m| m.to_string()))
        .field("up", if tap.up { "yes" } else { "no" });
    if let Some(m) = master
        && let Some((network, Role::Bridge)) = names::owner(&m.name, m.alias.as_deref())
    {
        observed = observed.depends_on(ResourceId::new(ResourceKind::Network, network));
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::net::links::Vxlan;

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.to_string(),
            kind: kind.map(str::to_string),
            mtu: Some(1500),
            up: true,
            ..Link::default()
        }
    }

    fn ours(mut l: Link, network: &str) -> Link {
        l.alias = Some(names::alias(network));
        l
    }

    fn table(all: Vec<Link>) -> Links {
        Links {
            by_index: all.into_iter().map(|l| (l.index, l)).collect(),
        }
    }

    #[test]
    fn a_correct_vlan_network_reads_back_as_desired() {
        let eth1 = link(2, "eth1", None);
        let bridge = ours(link(10, "hxb-lan", Some(BRIDGE)), "lan");
        let mut vlan = ours(link(11, "hxv-lan", Some(VLAN)), "lan");
        vlan.master = Some(10);
        vlan.lower = Some(2);
        vlan.vlan_id = Some(10);
        let links = table(vec![eth1, bridge, vlan]);
        let owned = owned(&links);
        let observed = network_fields("lan", &owned["lan"], &links, None, &BTreeMap::new());
        assert_eq!(observed.fields["bridge"], "hxb-lan");
        assert_eq!(observed.fields["port"], "vlan hxv-lan on eth1 id 10");
        assert_eq!(observed.fields["mtu"], "1500");
        assert_eq!(observed.fields["up"], "yes");
        assert!(!observed.fields.contains_key("peers"));
    }

    #[test]
    fn drift_shows_in_the_fields() {
        let bridge = ours(link(10, "hxb-ov", Some(BRIDGE)), "ov");
        let mut vx = ours(link(11, "hxx-ov", Some(VXLAN)), "ov");
        vx.vxlan = Some(Vxlan {
            vni: Some(100),
            local: Some("10.0.0.1".parse().unwrap()),
            dev: None,
            port: Some(8472),
            learning: Some(true),
        });
        vx.mtu = Some(1450);
        vx.up = false;
        let links = table(vec![bridge, vx]);
        let floods = BTreeMap::from([(11, vec!["10.0.0.2".parse().unwrap()])]);
        let observed = network_fields("ov", &owned(&links)["ov"], &links, None, &floods);
        assert_eq!(
            observed.fields["port"],
            "vxlan hxx-ov vni 100 local 10.0.0.1 dstport 8472 (not in the bridge)"
        );
        assert_eq!(observed.fields["mtu"], "hxb-ov 1500, hxx-ov 1450");
        assert_eq!(observed.fields["up"], "no");
        assert_eq!(observed.fields["peers"], "10.0.0.2");
    }

    #[test]
    fn a_recorded_uplink_counts_only_while_it_is_in_the_bridge() {
        let bridge = ours(link(10, "hxb-lan", Some(BRIDGE)), "lan");
        let mut eth1 = link(2, "eth1", None);
        eth1.master = Some(10);
        let foreign = {
            let mut l = link(3, "veth-ep", Some("veth"));
            l.master = Some(10);
            l
        };
        let links = table(vec![bridge.clone(), eth1.clone(), foreign]);
        let o = owned(&links);
        let with = network_fields("lan", &o["lan"], &links, Some("eth1"), &BTreeMap::new());
        assert_eq!(with.fields["port"], "uplink eth1");
        let without = network_fields("lan", &o["lan"], &links, None, &BTreeMap::new());
        assert_eq!(
            without.fields["port"], "none",
            "a hand-added port is not ours"
        );
        eth1.master = None;
        let links = table(vec![bridge, eth1]);
        let o = owned(&links);
        let detached = network_fields("lan", &o["lan"], &links, Some("eth1"), &BTreeMap::new());
        assert_eq!(detached.fields["port"], "none");
    }

    #[test]
    fn taps_depend_on_the_network_of_their_bridge() {
        let bridge = ours(link(10, "hxb-lan", Some(BRIDGE)), "lan");
        let mut tap = link(20, "hx0123abcdn0", Some(TUN));
        tap.master = Some(10);
        let links = table(vec![bridge, tap.clone()]);
        let observed = tap_fields(&tap, &links);
        assert_eq!(observed.fields["bridge"], "hxb-lan");
        assert_eq!(
            observed.depends_on,
            [ResourceId::new(ResourceKind::Network, "lan")]
        );
        tap.master = None;
        let observed = tap_fields(&tap, &table(vec![tap.clone()]));
        assert_eq!(observed.fields["bridge"], "none");
        assert!(observed.depends_on.is_empty());
    }
}
