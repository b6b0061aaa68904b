//! `cluster/cluster.toml`: the cluster's name, members, gossip and trust.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Bounded, Spanned, Table, builtin_defaults};
use crate::decode_table;
use crate::types::{ConfigPath, MinisignKey, ResourceName};

pub type Port = Bounded<1, 65535>;

/// The cluster. Without this file a node is a one-node cluster of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The cluster name; it also seeds derived MAC addresses.
    pub name: Spanned<ResourceName>,
    /// Members (`[[member]]` tables), at least one.
    #[serde(rename = "member")]
    pub members: Vec<Member>,
    /// Gossip settings.
    #[serde(default)]
    pub gossip: Gossip,
    /// Which signatures replicated changes need.
    #[serde(default)]
    pub trust: Trust,
}

impl Cluster {
    pub fn member(&self, name: &ResourceName) -> Option<&Member> {
        self.members.iter().find(|m| *m.name == *name)
    }
}

fn read_cluster(t: &mut Table) -> Option<Cluster> {
    let name = t.required("name");
    let members: Option<Spanned<Vec<Member>>> = t.required("member");
    if let Some(m) = &members
        && m.is_empty()
    {
        t.cx()
            .diags
            .error(m.span, "a cluster needs at least one `[[member]]`");
    }
    let gossip = t.section("gossip");
    let trust = t.section::<Trust>("trust");
    Some(Cluster {
        name: name?,
        members: members?.value,
        gossip: gossip?,
        trust: trust?,
    })
}
decode_table!(Cluster, read_cluster);

/// A cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's node name (its node.toml `name`).
    pub name: Spanned<ResourceName>,
    /// Address other members reach it on for gossip and replication.
    pub address: Spanned<IpAddr>,
}

fn read_member(t: &mut Table) -> Option<Member> {
    let name = t.required("name");
    let address = t.required("address");
    Some(Member {
        name: name?,
        address: address?,
    })
}
decode_table!(Member, read_member);

/// Gossip between members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gossip {
    /// UDP/TCP port used for gossip and replication.
    #[serde(default = "default_port")]
    pub port: Spanned<Port>,
    /// Shared cluster key authenticating gossip traffic, relative to the
    /// config directory. Checked at runtime, never by `horcrux check`.
    #[serde(default = "default_key_file")]
    pub key_file: Spanned<ConfigPath>,
}

fn default_port() -> Spanned<Port> {
    const GOSSIP_PORT: Port = Port::checked(7946);
    Spanned::builtin(GOSSIP_PORT)
}

fn default_key_file() -> Spanned<ConfigPath> {
    use crate::decode::ParseStr;
    let path = ConfigPath::parse_str("secrets/gossip.key")
        .unwrap_or_else(|_| unreachable!("a valid constant path"));
    Spanned::builtin(path)
}

fn read_gossip(t: &mut Table) -> Option<Gossip> {
    let port = t.or_default("port", default_port);
    let key_file = t.or_default("key_file", default_key_file);
    Some(Gossip { port, key_file })
}
decode_table!(Gossip, read_gossip);

/// Which signatures replicated changes need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// minisign public keys whose signatures are accepted on replicated changes.
    #[serde(default)]
    pub keys: Vec<Spanned<MinisignKey>>,
    /// Reject replicated changes without a valid signature by one of `keys`.
    #[serde(default = "default_require_signatures")]
    pub require_signatures: Spanned<bool>,
}

fn default_require_signatures() -> Spanned<bool> {
    Spanned::builtin(true)
}

fn read_trust(t: &mut Table) -> Option<Trust> {
    let keys = t.optional::<Vec<Spanned<MinisignKey>>>("keys");
    let written = t.optional::<bool>("require_signatures");
    // An invalid `require_signatures` already has its own error; it is not `true`.
    let invalid_require = written.is_none() && t.has("require_signatures");
    let require_signatures =
        written.unwrap_or_else(|| Spanned::new(default_require_signatures().value, t.span()));
    // An invalid `keys` already has its own error.
    let no_keys = keys.as_ref().is_none_or(|k| k.is_empty()) && !(keys.is_none() && t.has("keys"));
    if *require_signatures && no_keys && !invalid_require {
        t.cx().diags.error_with_hint(
            require_signatures.span,
            "signatures are required but `[trust] keys` lists no key",
            "add your minisign public key to `keys`, or set `require_signatures = false` (not recommended)",
        );
    }
    let keys = keys.map(|k| k.value).unwrap_or_default();
    Some(Trust {
        keys,
        require_signatures,
    })
}
decode_table!(Trust, read_trust);

impl Default for Gossip {
    fn default() -> Self {
        builtin_defaults().unwrap_or_else(|| unreachable!("every gossip key has a default"))
    }
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            keys: Vec::new(),
            require_signatures: default_require_signatures(),
        }
    }
}
