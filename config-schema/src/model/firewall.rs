//! `cluster/firewall/<name>.toml`: a security group, a list of rules.

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Spanned, Table};
use crate::types::{IpNet, PortList};
use crate::{decode_table, keyword_enum};

keyword_enum! {
    /// `in`: traffic to the VM. `out`: traffic from the VM.
    pub enum Direction { In = "in", Out = "out" }
}

keyword_enum! {
    /// What to do with matching packets.
    pub enum RuleAction { Accept = "accept", Drop = "drop", Reject = "reject" }
}

keyword_enum! {
    /// The protocol a rule matches.
    pub enum Protocol { Tcp = "tcp", Udp = "udp", Icmp = "icmp", Icmpv6 = "icmpv6", Any = "any" }
}

/// A security group. Traffic to a VM NIC is dropped unless a rule of one of
/// its groups accepts it; established/related traffic is accepted; outbound
/// traffic is accepted unless a rule says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallGroup {
    /// Rules, evaluated in order (`[[rule]]` tables).
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

fn read_group(t: &mut Table) -> Option<FirewallGroup> {
    Some(FirewallGroup {
        rules: t.list("rule"),
    })
}
decode_table!(FirewallGroup, read_group);

/// One firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `in`: traffic to the VM. `out`: traffic from the VM.
    pub direction: Spanned<Direction>,
    /// What to do with matching packets.
    pub action: Spanned<RuleAction>,
    /// Protocol to match.
    #[serde(default = "default_proto")]
    pub proto: Spanned<Protocol>,
    /// Destination ports; only with `proto = "tcp"` or `"udp"`.
    pub ports: Option<Spanned<PortList>>,
    /// Sender network; only for `direction = "in"`.
    pub source: Option<Spanned<IpNet>>,
    /// Receiver network; only for `direction = "out"`.
    pub dest: Option<Spanned<IpNet>>,
    /// Free text shown in the ruleset and on the status page.
    pub comment: Option<Spanned<String>>,
}

fn default_proto() -> Spanned<Protocol> {
    Spanned::builtin(Protocol::Any)
}

fn read_rule(t: &mut Table) -> Option<Rule> {
    let direction = t.required::<Direction>("direction");
    let action = t.required("action");
    let written_proto = t.optional::<Protocol>("proto");
    // A mistyped proto has its own error; it is not "any" for `ports`.
    let proto_invalid = written_proto.is_none() && t.has("proto");
    let proto = written_proto.unwrap_or_else(|| Spanned::new(default_proto().value, t.span()));
    let ports = match *proto {
        _ if proto_invalid => t.optional("ports"),
        Protocol::Tcp | Protocol::Udp => t.optional("ports"),
        _ => {
            t.forbid(
                "ports",
                format!(
                    "`ports` needs proto = \"tcp\" or \"udp\", not \"{}\"",
                    *proto
                ),
            );
            None
        }
    };
    let (source, dest) = match direction.as_deref() {
        Some(Direction::In) => {
            t.forbid(
                "dest",
                "`dest` is only allowed with direction = \"out\"; inbound rules filter on `source`",
            );
            (t.optional::<IpNet>("source"), None)
        }
        Some(Direction::Out) => {
            t.forbid(
                "source",
                "`source` is only allowed with direction = \"in\"; outbound rules filter on `dest`",
            );
            (None, t.optional::<IpNet>("dest"))
        }
        None => (t.optional("source"), t.optional("dest")),
    };
    for net in source.iter().chain(dest.iter()) {
        let mismatch = match *proto {
            Protocol::Icmp => !net.addr.is_ipv4(),
            Protocol::Icmpv6 => net.addr.is_ipv4(),
            _ => false,
        };
        if mismatch {
            let msg = format!("{} cannot match proto = \"{}\"", **net, *proto);
            t.cx().diags.error(net.span, msg);
        }
    }
    let comment = t.optional("comment");
    Some(Rule {
        direction: direction?,
        action: action?,
        proto,
        ports,
        source,
        dest,
        comment,
    })
}
decode_table!(Rule, read_rule);
