//! The ruleset text: pure, so `horcrux render` prints exactly what the
//! daemon applies.
//!
//! Two tables, always replaced together:
//!
//! * `table bridge horcrux` filters VM NICs per tap. Traffic between VMs on
//!   one bridge is switched at layer 2 and never reaches an `inet` table,
//!   so the bridge family is the only place to see it.
//! * `table inet horcrux` is the node's own input policy.
//!
//! Where the bridge chains hook in follows from two kernel facts:
//!
//! * The bridge learns a frame's source MAC right after the `prerouting`
//!   hook. Anti-spoofing therefore runs there: a spoofed frame dropped any
//!   later would already have poisoned the forwarding database and pulled
//!   the victim's traffic to the spoofer's port.
//! * `reject` in the bridge family is only allowed in chains reached from
//!   `prerouting` and `input` (nft_reject_bridge); the kernel refuses the
//!   whole ruleset otherwise. So a VM's outbound rules (`from-<tap>`) run
//!   in `prerouting`, which also sees frames to the node's own stack, and
//!   inbound reject rules are evaluated early (`early-in-<groups>`), keyed
//!   on the destination MAC. The complete inbound policy (`to-<tap>`, from
//!   `forward` and `output`) turns `reject` into `drop`: the early chain
//!   has refused what it could, and what is left (the node's own traffic
//!   to the VM, frames flooded to an unknown MAC) is still blocked. The
//!   refusals themselves leave through `output` with no conntrack entry
//!   and are let through there.
//!
//! Chains reached from `prerouting` end in `return`, never `accept`: an
//! `accept` would end the base chain and skip the destination's early
//! reject check. Reaching the end of `prerouting` means accept (its policy).
//!
//! Per NIC there are only `from-<tap>` (anti-spoofing) and `to-<tap>`
//! (what every filtered NIC accepts); the groups' rules are in chains
//! shared by every NIC with the same groups (`out-<groups>`,
//! `in-<groups>`, `early-in-<groups>`, the group names joined with `.`).
//! Written out per NIC, every port list would be an anonymous set of its
//! own, and the kernel handles thousands of those slowly: loading 1,000
//! VMs' worth took 7 s (19 s to replace) instead of well under one.
//!
//! IP protocols are written as numbers: nft resolves names only through
//! /etc/protocols, which the appliance does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use horcrux_config::Config;
use horcrux_config::model::firewall::{Direction, Protocol, Rule, RuleAction};
use horcrux_config::model::node::{NodeFirewall, StatusSection};
use horcrux_config::types::{IpNet, MacAddr, PortList, ResourceName};

use sha2::{Digest, Sha256};

use crate::backend::artifacts::placement;
use crate::backend::naming;

/// The VXLAN port (IANA), opened to the other members.
const VXLAN_PORT: u16 = 4789;

/// nft refuses comments over 128 bytes; 120 leaves room.
const MAX_COMMENT: usize = 120;

/// The ruleset of a node and the number of rules in it, which the kernel
/// reports back in its listing (each rule line is one rule object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub text: String,
    pub rules: usize,
}

/// One VM NIC on the node, as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicPort {
    pub vm: String,
    pub index: usize,
    /// The tap (`naming::tap_name`); the bridge port the rules key on.
    pub tap: String,
    pub mac: MacAddr,
    /// Security groups in the NIC's order, each once; empty: no filtering
    /// beyond anti-spoofing.
    pub groups: Vec<String>,
}

/// The text `nft -f` gets for `node` (see the module docs).
pub fn render_ruleset(config: &Config, node: &str) -> String {
    build(config, node).text
}

/// The NICs of the VMs placed on `node` that get chains, sorted by VM name
/// and NIC index.
pub fn nic_ports(config: &Config, node: &str) -> Vec<NicPort> {
    ports(config, node).0.into_iter().map(|p| p.nic).collect()
}

/// What the text says about itself after its first line.
const HEADER: &str = "#
# IP protocols are numbers (1 icmp, 6 tcp, 17 udp, 58 ipv6-icmp): nft
# resolves names only through /etc/protocols, which may be missing.
# The rules of security groups are in chains shared by every NIC with the
# same groups: in-<groups> (inbound), out-<groups> (outbound) and
# early-in-<groups> (inbound, where reject is allowed).

# Declaring each table before deleting it makes the delete work when the
# table does not exist yet. The whole file is one atomic transaction.
";

/// What removes both tables (and nothing else) in one transaction.
pub const DELETE_TEXT: &str = "table bridge horcrux\ndelete table bridge horcrux\n\
    table inet horcrux\ndelete table inet horcrux\n";

/// A NIC with its groups' rules, for rendering.
struct Port<'a> {
    nic: NicPort,
    /// Group name and rules, in the NIC's order.
    rules: Vec<(&'a str, &'a [Rule])>,
    /// The name of the chains of its groups; `None` without groups.
    list: Option<String>,
}

/// The NICs that get chains, and a note for each one that cannot.
fn ports<'a>(config: &'a Config, node: &str) -> (Vec<Port<'a>>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut taps: BTreeMap<String, &ResourceName> = BTreeMap::new();
    for (name, vm) in &config.vms {
        if placement(config, vm).is_none_or(|n| n.as_str() != node) {
            continue;
        }
        for (index, nic) in vm.nics.iter().enumerate() {
            // The VM backend refuses such a VM, so its tap never exists;
            // a note keeps the ruleset honest about it.
            let tap = match naming::tap_name(name.as_str(), index) {
                Ok(tap) => tap,
                Err(e) => {
                    notes.push(format!("VM {name} NIC {index}: no tap name ({e})"));
                    continue;
                }
            };
            if let Some(first) = taps.get(&tap) {
                notes.push(format!(
                    "VM {name} NIC {index}: tap {tap} is VM {first}'s; not filtered here"
                ));
                continue;
            }
            taps.insert(tap.clone(), name);
            let mut groups: Vec<String> = Vec::new();
            let mut rules: Vec<(&str, &[Rule])> = Vec::new();
            for group in &nic.firewall {
                if groups.iter().any(|g| g == group.as_str()) {
                    continue;
                }
                groups.push(group.to_string());
                // A valid tree has every group; a missing one adds no
                // rule, so inbound traffic still ends at the final drop.
                let group_rules = config
                    .firewall
                    .get(&group.value)
                    .map(|g| g.rules.as_slice())
                    .unwrap_or_default();
                rules.push((group.as_str(), group_rules));
            }
            let list = (!groups.is_empty()).then(|| list_name(&groups));
            out.push(Port {
                list,
                nic: NicPort {
                    vm: name.to_string(),
                    index,
                    tap,
                    mac: config.nic_mac(name, index, nic),
                    groups,
                },
                rules,
            });
        }
    }
    (out, notes)
}

/// The ruleset of `node`; see [`render_ruleset`].
pub fn build(config: &Config, node: &str) -> Ruleset {
    let (ports, notes) = ports(config, node);
    let mut w = Writer::default();
    let _ = writeln!(
        w.text,
        "# Generated by hostd for node {node}. Do not edit: hostd replaces both\n\
         # tables as a whole, and re-applies them when they are changed by hand."
    );
    w.text.push_str(HEADER);
    w.text.push_str(DELETE_TEXT);
    w.blank();
    bridge_table(&mut w, &ports, &notes);
    w.blank();
    inet_table(&mut w, config, node);
    Ruleset {
        text: w.text,
        rules: w.rules,
    }
}

/// Text with a running count of rule lines.
#[derive(Default)]
struct Writer {
    text: String,
    rules: usize,
}

impl Writer {
    fn line(&mut self, indent: usize, line: &str) {
        for _ in 0..indent {
            self.text.push('\t');
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn rule(&mut self, line: &str) {
        self.line(2, line);
        self.rules += 1;
    }

    fn comment(&mut self, indent: usize, text: &str) {
        self.line(indent, &format!("# {text}"));
    }

    fn blank(&mut self) {
        self.text.push('\n');
    }

    fn chain(&mut self, name: &str, body: impl FnOnce(&mut Writer)) {
        self.line(1, &format!("chain {name} {{"));
        body(self);
        self.line(1, "}");
    }

    /// A base chain with policy accept (the bridge table's three).
    fn base_chain(&mut self, hook: &str, body: impl FnOnce(&mut Writer)) {
        self.chain(hook, |w| {
            w.line(
                2,
                &format!("type filter hook {hook} priority 0; policy accept;"),
            );
            body(w);
        });
    }

    /// `<key> vmap { ... }` one element a line; nothing when empty.
    fn vmap(&mut self, key: &str, elements: &[String]) {
        if elements.is_empty() {
            return;
        }
        self.rule(&format!("{key} vmap {{"));
        let last = elements.len() - 1;
        for (i, element) in elements.iter().enumerate() {
            let sep = if i == last { "" } else { "," };
            self.line(3, &format!("{element}{sep}"));
        }
        self.line(2, "}");
    }
}

/// Where a chain is evaluated, which decides its verdicts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Reached from `prerouting`: "allowed" is `return` (see the module
    /// docs) and `reject` works.
    Early,
    /// Reached from `forward` and `output`: `reject` is not allowed there.
    Late,
}

/// Group names and rules of one combination of security groups.
type Groups<'a> = [(&'a str, &'a [Rule])];

/// The chain-name suffix of a combination of groups: the names joined
/// with `.` (never part of a name), or a digest when that is too long
/// for nft (256 bytes per chain name).
pub(super) fn list_name(groups: &[String]) -> String {
    let joined = groups.join(".");
    if joined.len() <= 200 {
        return joined;
    }
    crate::backend::hex(&Sha256::digest(joined.as_bytes())[..8])
}

/// The rules of `groups` in one direction, in group order then rule
/// order, with the group name and the rule's number in its group.
fn rules_of<'a>(
    groups: &'a Groups<'a>,
    direction: Direction,
) -> impl Iterator<Item = (&'a str, usize, &'a Rule)> + 'a {
    groups.iter().flat_map(move |&(group, rules)| {
        rules
            .iter()
            .enumerate()
            .filter(move |(_, r)| *r.direction == direction)
            .map(move |(i, r)| (group, i + 1, r))
    })
}

fn has_rules(groups: &Groups<'_>, direction: Direction) -> bool {
    rules_of(groups, direction).next().is_some()
}

fn has_reject(groups: &Groups<'_>, direction: Direction) -> bool {
    rules_of(groups, direction).any(|(_, _, r)| *r.action == RuleAction::Reject)
}

fn bridge_table(w: &mut Writer, ports: &[Port<'_>], notes: &[String]) {
    // Every combination of groups once, by name.
    let mut lists: BTreeMap<&str, &Groups<'_>> = BTreeMap::new();
    for port in ports {
        if let Some(list) = &port.list {
            lists.entry(list.as_str()).or_insert(port.rules.as_slice());
        }
    }
    let filtered: Vec<&Port<'_>> = ports.iter().filter(|p| p.list.is_some()).collect();
    let early: BTreeSet<&str> = lists
        .iter()
        .filter(|(_, groups)| has_reject(groups, Direction::In))
        .map(|(name, _)| *name)
        .collect();
    let any_reject = lists
        .values()
        .any(|g| has_reject(g, Direction::In) || has_reject(g, Direction::Out));

    w.line(0, "table bridge horcrux {");
    for note in notes {
        w.comment(1, note);
    }
    if !filtered.is_empty() {
        w.comment(1, "Neighbour discovery, accepted by every VM with groups.");
        w.line(1, "set nd {");
        w.line(2, "type icmpv6_type");
        w.line(
            2,
            "elements = { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }",
        );
        w.line(1, "}");
        w.blank();
    }
    w.comment(
        1,
        "From the VMs: before the bridge learns the source MAC, so a spoofed",
    );
    w.comment(
        1,
        "frame never reaches its forwarding database. Inbound reject rules run",
    );
    w.comment(
        1,
        "here too, by destination MAC: the bridge family rejects only here.",
    );
    w.base_chain("prerouting", |w| {
        let from: Vec<String> = ports
            .iter()
            .map(|p| format!("\"{0}\" : jump from-{0}", p.nic.tap))
            .collect();
        w.vmap("iifname", &from);
        // MACs are unique in a valid tree; a duplicate would make nft
        // refuse the map, so only the first NIC with a MAC gets the key.
        let mut macs = BTreeSet::new();
        let pre: Vec<String> = filtered
            .iter()
            .filter_map(|p| {
                let list = p.list.as_deref()?;
                (early.contains(list) && macs.insert(p.nic.mac))
                    .then(|| format!("{} : jump early-in-{list}", p.nic.mac))
            })
            .collect();
        w.vmap("ether daddr", &pre);
    });
    let to: Vec<String> = filtered
        .iter()
        .map(|p| format!("\"{0}\" : jump to-{0}", p.nic.tap))
        .collect();
    w.blank();
    w.comment(1, "To the VMs, from other ports and from the node itself.");
    w.base_chain("forward", |w| w.vmap("oifname", &to));
    w.base_chain("output", |w| {
        if any_reject && !to.is_empty() {
            // What a reject rule sends back goes out through this hook
            // without a conntrack entry (so "invalid"), possibly to a
            // filtered VM: let the refusal through.
            w.comment(2, "refusals sent by reject rules in prerouting");
            w.rule("ct state invalid tcp flags & rst == rst accept");
            w.rule("ct state invalid icmp type destination-unreachable accept");
            w.rule("ct state invalid icmpv6 type destination-unreachable accept");
        }
        w.vmap("oifname", &to);
    });
    for (name, groups) in &lists {
        let names: Vec<&str> = groups.iter().map(|(g, _)| *g).collect();
        w.blank();
        w.comment(
            1,
            &format!(
                "The rules of groups {}, for every NIC in them.",
                names.join(", ")
            ),
        );
        if has_rules(groups, Direction::Out) {
            w.chain(&format!("out-{name}"), |w| {
                group_rules(w, groups, Direction::Out, Stage::Early);
            });
        }
        if has_rules(groups, Direction::In) {
            w.chain(&format!("in-{name}"), |w| {
                group_rules(w, groups, Direction::In, Stage::Late);
            });
        }
        if early.contains(name) {
            w.chain(&format!("early-in-{name}"), |w| {
                inbound_preamble(w, "return");
                group_rules(w, groups, Direction::In, Stage::Early);
                w.comment(2, "anything else is decided in to-<tap>");
            });
        }
    }
    for port in ports {
        let nic = &port.nic;
        let groups = if nic.groups.is_empty() {
            "none".to_string()
        } else {
            nic.groups.join(", ")
        };
        w.blank();
        w.comment(
            1,
            &format!("VM {} NIC {} (groups: {groups})", nic.vm, nic.index),
        );
        w.chain(&format!("from-{}", nic.tap), |w| {
            w.rule(&format!("ether saddr != {} drop", nic.mac));
            if let Some(list) = &port.list {
                w.rule("ct state established,related return");
                if has_rules(&port.rules, Direction::Out) {
                    w.rule(&format!("jump out-{list}"));
                }
            }
            w.comment(2, "anything else leaves the VM");
        });
        if let Some(list) = &port.list {
            w.chain(&format!("to-{}", nic.tap), |w| {
                inbound_preamble(w, "accept");
                if has_rules(&port.rules, Direction::In) {
                    w.rule(&format!("jump in-{list}"));
                }
                w.rule("drop");
            });
        }
    }
    w.line(0, "}");
}

/// What every filtered NIC accepts inbound before its groups' rules.
fn inbound_preamble(w: &mut Writer, allow: &str) {
    w.rule(&format!("ct state established,related {allow}"));
    // Before the invalid check: conntrack does not track ARP and neighbour
    // discovery, and `ct state` calls untracked frames invalid.
    w.rule(&format!("ether type arp {allow}"));
    w.rule(&format!("icmpv6 type @nd {allow}"));
    w.rule("ct state invalid drop");
    // A DHCP reply goes to the offered address or broadcast, not back to
    // the request's tuple, so conntrack never sees it as a reply; without
    // these a VM with any group could not get a lease.
    w.rule(&format!("udp sport 67 udp dport 68 {allow}"));
    w.rule(&format!("udp sport 547 udp dport 546 {allow}"));
}

fn group_rules(w: &mut Writer, groups: &Groups<'_>, dir: Direction, stage: Stage) {
    for (group, number, rule) in rules_of(groups, dir) {
        if stage == Stage::Late && *rule.action == RuleAction::Reject {
            w.comment(
                2,
                "reject: refused in early-in-* where possible, dropped here",
            );
        }
        w.rule(&translate(group, number, rule, stage));
    }
}

/// One group rule as an nft rule line.
pub(super) fn translate(group: &str, number: usize, rule: &Rule, stage: Stage) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (net, side) = match *rule.direction {
        Direction::In => (rule.source.as_deref(), "saddr"),
        Direction::Out => (rule.dest.as_deref(), "daddr"),
    };
    if let Some(net) = net {
        parts.push(format!("{} {side} {}", family(net.addr), cidr(net)));
    }
    match (*rule.proto, rule.ports.as_deref()) {
        (Protocol::Tcp, Some(ports)) => parts.push(format!("tcp dport {}", port_set(ports))),
        (Protocol::Udp, Some(ports)) => parts.push(format!("udp dport {}", port_set(ports))),
        (proto, _) => {
            if let Some(number) = ip_protocol(proto) {
                parts.push(format!("meta l4proto {number}"));
            }
        }
    }
    let verdict = match (*rule.action, stage) {
        (RuleAction::Accept, Stage::Early) => "return",
        (RuleAction::Accept, Stage::Late) => "accept",
        (RuleAction::Drop, _) | (RuleAction::Reject, Stage::Late) => "drop",
        (RuleAction::Reject, Stage::Early) if *rule.proto == Protocol::Tcp => {
            "reject with tcp reset"
        }
        (RuleAction::Reject, Stage::Early) => "reject",
    };
    parts.push(verdict.to_string());
    let text = match rule.comment.as_deref() {
        Some(comment) => format!("{group}: {comment}"),
        None => format!("{group}: rule {number}"),
    };
    parts.push(format!("comment \"{}\"", sanitize_comment(&text)));
    parts.join(" ")
}

/// The IP protocol number; `None` for any. Numbers, not names: nft
/// resolves protocol names only through /etc/protocols, which a minimal
/// system (the appliance has no netbase) does not have.
fn ip_protocol(proto: Protocol) -> Option<u8> {
    match proto {
        Protocol::Icmp => Some(1),
        Protocol::Tcp => Some(6),
        Protocol::Udp => Some(17),
        Protocol::Icmpv6 => Some(58),
        Protocol::Any => None,
    }
}

/// A comment nft accepts whatever the config says: printable ASCII
/// without `"` and `\` (anything else becomes `_`), at most 120 bytes.
pub fn sanitize_comment(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .take(MAX_COMMENT)
        .collect()
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "ip" } else { "ip6" }
}

/// A network as nft writes it: a bare address for a single host.
fn cidr(net: &IpNet) -> String {
    let host = if net.addr.is_ipv4() { 32 } else { 128 };
    if net.prefix == host {
        net.addr.to_string()
    } else {
        net.to_string()
    }
}

/// Ports sorted and merged (nft refuses overlapping intervals in some
/// versions, and the text should not depend on how the config spelled
/// them): `80`, `8000-8100` or `{ 22, 80, 443 }`.
fn port_set(ports: &PortList) -> String {
    let mut ranges: Vec<(u16, u16)> = ports.ranges().iter().map(|r| (r.first, r.last)).collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(prev) if u32::from(first) <= u32::from(prev.1) + 1 => prev.1 = prev.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    let items: Vec<String> = merged
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    set(&items)
}

/// One item bare, several in braces.
fn set(items: &[String]) -> String {
    match items {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}

/// Networks of one family, sorted, without those inside another one.
fn networks(nets: &[IpNet], v4: bool) -> Vec<String> {
    let mut nets: Vec<IpNet> = nets
        .iter()
        .filter(|n| n.addr.is_ipv4() == v4)
        .copied()
        .collect();
    nets.sort_unstable();
    nets.dedup();
    let inside = |n: &IpNet, outer: &IpNet| outer != n && contains(outer, n);
    nets.iter()
        .filter(|n| !nets.iter().any(|outer| inside(n, outer)))
        .map(cidr)
        .collect()
}

/// `tail` (e.g. `tcp dport 22 accept`) from `sources`: one rule per
/// family with sources, or one unrestricted rule when there are none.
fn from_sources(w: &mut Writer, sources: &[IpNet], tail: &str) {
    if sources.is_empty() {
        w.rule(tail);
        return;
    }
    for (v4, fam) in [(true, "ip"), (false, "ip6")] {
        let nets = networks(sources, v4);
        if !nets.is_empty() {
            w.rule(&format!("{fam} saddr {} {tail}", set(&nets)));
        }
    }
}

fn inet_table(w: &mut Writer, config: &Config, node: &str) {
    // node.toml is node-local: rendering for another node (`horcrux
    // render` on a laptop) only knows the defaults.
    let own = config.node.as_ref().filter(|n| n.name.as_str() == node);
    let defaults = (NodeFirewall::default(), StatusSection::default());
    let (fw, status) = match own {
        Some(n) => (&n.firewall, &n.status),
        None => (&defaults.0, &defaults.1),
    };
    w.line(0, "table inet horcrux {");
    if !*fw.filter_input {
        w.comment(1, "filter_input = false: the node's input is not filtered");
        w.line(0, "}");
        return;
    }
    w.comment(
        1,
        "The node's own input: what is not accepted here is dropped.",
    );
    w.chain("input", |w| {
        w.line(2, "type filter hook input priority 0; policy drop;");
        w.rule("iif lo accept");
        w.rule("ct state established,related accept");
        w.rule("ct state invalid drop");
        w.comment(2, "ICMP and ICMPv6");
        w.rule("meta l4proto { 1, 58 } accept");
        w.comment(2, "DHCP replies to the node's own DHCP clients");
        w.rule("udp dport 68 accept");
        w.rule("udp dport 546 accept");
        let values = |v: &[horcrux_config::decode::Spanned<IpNet>]| -> Vec<IpNet> {
            v.iter().map(|n| n.value).collect()
        };
        w.comment(2, "SSH");
        from_sources(w, &values(&fw.ssh_from), "tcp dport 22 accept");
        w.comment(2, "status endpoint");
        let port = status.listen.port();
        from_sources(
            w,
            &values(&fw.status_from),
            &format!("tcp dport {port} accept"),
        );
        if let Some(cluster) = &config.cluster {
            let peers: Vec<IpNet> = cluster
                .members
                .iter()
                .filter(|m| m.name.as_str() != node)
                .map(|m| host(*m.address))
                .collect();
            if !peers.is_empty() {
                let gossip = cluster.gossip.port.get();
                w.comment(2, "gossip, replication and VXLAN from the other members");
                from_sources(w, &peers, &format!("tcp dport {gossip} accept"));
                from_sources(w, &peers, &format!("udp dport {gossip} accept"));
                from_sources(w, &peers, &format!("udp dport {VXLAN_PORT} accept"));
            }
        }
    });
    w.line(0, "}");
}

/// Whether network `inner` lies inside network `outer`.
fn contains(outer: &IpNet, inner: &IpNet) -> bool {
    if outer.prefix > inner.prefix {
        return false;
    }
    match (outer.addr, inner.addr) {
        (IpAddr::V4(o), IpAddr::V4(i)) => {
            let mask = u32::MAX
                .checked_shl(32u32.saturating_sub(u32::from(outer.prefix)))
                .unwrap_or(0);
            u32::from(i) & mask == u32::from(o)
        }
        (IpAddr::V6(o), IpAddr::V6(i)) => {
            let mask = u128::MAX
                .checked_shl(128u32.saturating_sub(u32::from(outer.prefix)))
                .unwrap_or(0);
            u128::from(i) & mask == u128::from(o)
        }
        _ => false,
    }
}

fn host(addr: IpAddr) -> IpNet {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    IpNet { addr, prefix }
}
