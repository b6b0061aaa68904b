//! Generations: every accepted config tree, immutable, with its content
//! hash, parent, source and time. The history is the audit log.

mod hash;
pub mod hint;
mod store;

use horcrux_config::{Config, TreeFile};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use hash::{TreeHash, sha256_hex, tree_hash};
pub use store::{GenerationStore, KEEP_GENERATIONS, StoreError};

/// Where a generation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An edit of the files in place (or anything hostd cannot attribute).
    Local,
    /// A git push deployed by the receiver.
    Push,
    /// `horcrux rollback`.
    Rollback,
    /// Replicated from another cluster member.
    Cluster,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Push => "push",
            Source::Rollback => "rollback",
            Source::Cluster => "cluster",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata of one generation (`meta.json` in its directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationInfo {
    /// Sequence number, increasing by one per accepted tree.
    pub id: u64,
    /// SHA-256 of the normalised tree, hex.
    pub hash: String,
    pub parent: Option<u64>,
    pub source: Source,
    /// RFC 3339, UTC.
    pub accepted_at: String,
}

/// What a generation holds of a valid tree: its config files and the
/// signatures beside them under `cluster/`, so a push carries them and a
/// rollback restores them with the files they sign. `signatures` as read
/// by [`crate::cluster::signature::read_signatures`]; unreadable ones are
/// left out.
pub fn stored_contents(config: &Config, signatures: &[TreeFile]) -> Vec<(String, Vec<u8>)> {
    let files = config
        .sources
        .iter()
        .map(|(_, f)| (f.path.clone(), f.text.as_bytes().to_vec()));
    let signatures = signatures
        .iter()
        .filter_map(|f| Some((f.path.clone(), f.content.as_ref().ok()?.clone())));
    files.chain(signatures).collect()
}
