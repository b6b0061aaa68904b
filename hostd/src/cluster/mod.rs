//! The cluster: membership and failure detection (chitchat), replication
//! of the `cluster/` directory, hybrid logical clocks and signatures.
//!
//! Only `cluster/` is ever replicated: `node.toml` and `secrets/` never
//! leave the node.

pub mod entry;
pub mod gossip;
pub mod hlc;
pub mod key;
pub mod merge;
pub mod replicator;
pub mod signature;
pub mod transport;
pub mod view;

use std::collections::BTreeMap;

use serde::Serialize;

pub use merge::{Conflict, Rejected};
pub use replicator::{Replicator, Tuning};
pub use transport::TransportStats;

/// How the failure detector sees a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heard from within the last seconds.
    Alive,
    /// Silent for a few seconds, not yet declared dead.
    Suspect,
    /// Declared dead by the failure detector, or never heard from.
    Dead,
}

impl MemberState {
    pub const ALL: [MemberState; 3] = [MemberState::Alive, MemberState::Suspect, MemberState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
        }
    }
}

/// One member on the status page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberStatus {
    pub name: String,
    /// Its gossip address.
    pub address: String,
    pub state: MemberState,
    /// Seconds since its heartbeat last advanced (`None`: never heard from).
    pub last_seen_seconds: Option<f64>,
    /// The generation it runs: "<id> <hash prefix>".
    pub generation: Option<String>,
    pub this_node: bool,
}

/// The cluster section of the status page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub members: Vec<MemberStatus>,
    /// Where every VM and container of the cluster is placed (name ->
    /// node): this node runs only its own, but shows them all.
    pub placement: BTreeMap<String, String>,
    /// Replicated files (deletions not counted).
    pub files: usize,
    /// Concurrent edits that lost, with their content, until the file
    /// changes again.
    pub conflicts: Vec<Conflict>,
    /// Versions other members offer that this node refused.
    pub rejected: Vec<Rejected>,
    /// Change sets waiting for their other files or for a local edit.
    pub waiting_changes: usize,
    pub transport: TransportStats,
    /// Why gossip is not running, if it is not.
    pub error: Option<String>,
}

/// A cluster section with one member of each state, a conflict and a
/// refused change, for the views' tests.
#[cfg(test)]
pub(crate) fn sample_status() -> ClusterStatus {
    let member = |name: &str, state, this_node| MemberStatus {
        name: name.into(),
        address: "10.0.0.1:7946".into(),
        state,
        last_seen_seconds: Some(1.5),
        generation: Some("3 0123456789ab".into()),
        this_node,
    };
    let loser = entry::Entry {
        clock: hlc::Timestamp::new(1_000, 0),
        author: "node2".into(),
        base: hlc::Timestamp::SEED,
        hash: crate::generation::sha256_hex(b"<mtu = 1400>"),
        content: Some("<mtu = 1400>".into()),
        signature: None,
        set: 1,
    };
    ClusterStatus {
        name: "lab".into(),
        members: vec![
            member("node1", MemberState::Alive, true),
            member("node2", MemberState::Suspect, false),
            member("node3", MemberState::Dead, false),
        ],
        placement: BTreeMap::from([("vm/web".into(), "node2".into())]),
        files: 4,
        conflicts: vec![Conflict {
            path: "networks/lan.toml".into(),
            winner_clock: hlc::Timestamp::new(1_001, 0),
            winner_author: "node3".into(),
            loser,
        }],
        rejected: vec![Rejected {
            path: "vms/evil.toml".into(),
            holder: "node3".into(),
            author: "node3".into(),
            clock: hlc::Timestamp::new(1_002, 0),
            reason: "unsigned, and [trust] require_signatures is on".into(),
        }],
        waiting_changes: 0,
        transport: TransportStats {
            dropped_unauthenticated: 7,
            ..TransportStats::default()
        },
        error: None,
    }
}
