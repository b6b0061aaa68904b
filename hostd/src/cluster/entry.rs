//! One replicated file version: what every member publishes for every path
//! of `cluster/`, and the checks a version from the network must pass
//! before it may touch the disk.

use horcrux_config::decode::ParseStr as _;
use horcrux_config::model::FileKind;
use horcrux_config::types::ResourceName;
use serde::{Deserialize, Serialize};

use super::hlc::Timestamp;
use crate::generation::sha256_hex;

/// The largest file replicated. Gossip messages are at most one UDP
/// datagram (64 KiB) and a version must fit into one with room to spare,
/// after JSON escaping (at worst doubling) and next to the digest of up
/// to a few hundred members: chitchat cannot split one value.
pub const MAX_FILE_BYTES: usize = 24 * 1024;

/// Largest signature text accepted (a minisign signature is ~350 bytes).
const MAX_SIGNATURE_BYTES: usize = 4 * 1024;

/// Largest change set accepted (files changed together).
const MAX_SET: u32 = 100_000;

/// A version of one file of `cluster/`, or its deletion (a tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// When it was written, on the hybrid logical clock.
    pub clock: Timestamp,
    /// The member that wrote it.
    pub author: String,
    /// The clock of the version the author replaced ([`Timestamp::SEED`]
    /// for a new file): versions newer than this were unknown to it.
    pub base: Timestamp,
    /// SHA-256 (hex) of the content; of the deleted content for a deletion.
    pub hash: String,
    /// The file's text; `None` for a deletion.
    pub content: Option<String>,
    /// The minisign signature (`<path>.minisig`), if the file has one.
    pub signature: Option<String>,
    /// How many files changed together with this one (its change set,
    /// identified by `clock` and `author`).
    pub set: u32,
}

impl Entry {
    pub fn is_deleted(&self) -> bool {
        self.content.is_none()
    }

    /// Highest clock wins; ties go to the greater author name.
    pub fn beats(&self, other: &Entry) -> bool {
        (self.clock, &self.author) > (other.clock, &other.author)
    }

    /// The same version (one change, possibly republished by another member).
    pub fn same_version(&self, other: &Entry) -> bool {
        self.clock == other.clock && self.author == other.author && self.hash == other.hash
    }

    fn same_content(&self, other: &Entry) -> bool {
        self.hash == other.hash && self.is_deleted() == other.is_deleted()
    }

    /// Whether `loser`, which lost to this version, was a concurrent edit:
    /// the author of this version had not seen it, and it said something
    /// else. Seeds (files a node had before it ever replicated) never are.
    pub fn conflicts_with(&self, loser: &Entry) -> bool {
        loser.clock != Timestamp::SEED && loser.clock > self.base && !self.same_content(loser)
    }

    /// The change set this version belongs to.
    pub fn set_id(&self) -> (Timestamp, &str) {
        (self.clock, &self.author)
    }
}

/// Why a version from the network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a replicated path (cluster.toml or <kind>/<name>.toml)")]
    Path,
    #[error("author {0:?} is not a valid node name")]
    Author(String),
    #[error("content is {0} bytes; replicated files are limited to {MAX_FILE_BYTES}")]
    TooLarge(usize),
    #[error("content does not match its hash")]
    Hash,
    #[error("clock {0} is more than a minute ahead of this node's clock")]
    Future(Timestamp),
    #[error("malformed version: {0}")]
    Malformed(&'static str),
}

/// Whether `path` (relative to `cluster/`) may be replicated: exactly the
/// files the config format defines, nothing that could climb out of the
/// directory or land on `node.toml` or `secrets/`.
pub fn is_replicated_path(path: &str) -> bool {
    if path == "cluster.toml" {
        return true;
    }
    let Some((dir, file)) = path.split_once('/') else {
        return false;
    };
    let Some(stem) = file.strip_suffix(".toml") else {
        return false;
    };
    FileKind::RESOURCE_KINDS
        .iter()
        .any(|k| k.directory() == Some(dir))
        && ResourceName::parse_str(stem).is_ok()
}

/// Files of a clustered tree too large to replicate: an error at reload,
/// so a push never half-replicates.
pub fn oversized(config: &horcrux_config::Config) -> Vec<horcrux_config::Diagnostic> {
    if config.cluster.is_none() {
        return Vec::new();
    }
    config
        .sources
        .iter()
        .filter(|(_, f)| f.path.starts_with("cluster/") && f.text.len() > MAX_FILE_BYTES)
        .map(|(_, f)| horcrux_config::Diagnostic {
            file: f.path.clone(),
            line: None,
            column: None,
            message: format!(
                "{} bytes: files under cluster/ are replicated and limited to {MAX_FILE_BYTES} bytes",
                f.text.len()
            ),
            hint: Some("split it, or move large data (cloud-init payloads, images) out of the config tree".into()),
            snippet: None,
        })
        .collect()
}

/// Checks a version received for `path`: everything that does not need
/// the trust settings (signatures are checked by the caller).
pub fn check(path: &str, entry: &Entry, wall_millis: u64) -> Result<(), Invalid> {
    if !is_replicated_path(path) {
        return Err(Invalid::Path);
    }
    if ResourceName::parse_str(&entry.author).is_err() {
        return Err(Invalid::Author(entry.author.clone()));
    }
    if entry.hash.len() != 64 || !entry.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Invalid::Malformed("hash is not SHA-256 hex"));
    }
    if entry.base > entry.clock {
        return Err(Invalid::Malformed("base is newer than the version"));
    }
    if entry.set == 0 || entry.set > MAX_SET {
        return Err(Invalid::Malformed("change set size out of range"));
    }
    if entry
        .signature
        .as_ref()
        .is_some_and(|s| s.len() > MAX_SIGNATURE_BYTES)
    {
        return Err(Invalid::Malformed("signature too long"));
    }
    if entry.clock.is_ahead_of(wall_millis) {
        return Err(Invalid::Future(entry.clock));
    }
    if let Some(content) = &entry.content {
        if content.len() > MAX_FILE_BYTES {
            return Err(Invalid::TooLarge(content.len()));
        }
        if sha256_hex(content.as_bytes()) != entry.hash {
            return Err(Invalid::Hash);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn version(clock: u64, author: &str, base: u64, content: Option<&str>) -> Entry {
        Entry {
            clock: Timestamp(clock),
            author: author.into(),
            base: Timestamp(base),
            hash: sha256_hex(content.unwrap_or("old").as_bytes()),
            content: content.map(str::to_string),
            signature: None,
            set: 1,
        }
    }

    #[test]
    fn only_config_paths_replicate() {
        for ok in [
            "cluster.toml",
            "vms/web-1.toml",
            "networks/lan.toml",
            "firewall/web.toml",
        ] {
            assert!(is_replicated_path(ok), "{ok}");
        }
        for bad in [
            "node.toml",
            "secrets/gossip.key",
            "../node.toml",
            "vms/../../node.toml",
            "vms/Web.toml",
            "vms/a/b.toml",
            "vms/web.toml.minisig",
            "other/web.toml",
            "/etc/passwd",
            "vms/.toml",
            "",
        ] {
            assert!(!is_replicated_path(bad), "{bad}");
        }
    }

    #[test]
    fn received_versions_are_checked() {
        let good = version(Timestamp::new(1_000, 0).0, "node1", 0, Some("name = 1\n"));
        let now = 1_000;
        assert_eq!(check("vms/a.toml", &good, now), Ok(()));
        assert_eq!(check("../a.toml", &good, now), Err(Invalid::Path));

        let mut e = good.clone();
        e.content = Some("tampered".into());
        assert_eq!(check("vms/a.toml", &e, now), Err(Invalid::Hash));

        let mut e = good.clone();
        e.author = "Bad Name".into();
        assert!(matches!(
            check("vms/a.toml", &e, now),
            Err(Invalid::Author(_))
        ));

        let big = "x".repeat(MAX_FILE_BYTES + 1);
        let e = version(good.clock.0, "node1", 0, Some(&big));
        assert_eq!(
            check("vms/a.toml", &e, now),
            Err(Invalid::TooLarge(MAX_FILE_BYTES + 1))
        );

        let e = version(Timestamp::new(now + 61_000, 0).0, "node1", 0, Some("x"));
        assert!(matches!(
            check("vms/a.toml", &e, now),
            Err(Invalid::Future(_))
        ));

        let mut e = good.clone();
        e.set = 0;
        assert!(matches!(
            check("vms/a.toml", &e, now),
            Err(Invalid::Malformed(_))
        ));
        let mut e = good.clone();
        e.base = Timestamp(e.clock.0 + 1);
        assert!(matches!(
            check("vms/a.toml", &e, now),
            Err(Invalid::Malformed(_))
        ));
        let mut e = good;
        e.hash = "zz".into();
        assert!(matches!(
            check("vms/a.toml", &e, now),
            Err(Invalid::Malformed(_))
        ));
    }

    #[test]
    fn oversized_files_are_config_errors_only_in_a_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        std::fs::create_dir_all(etc.join("cluster/networks")).unwrap();
        std::fs::write(etc.join("node.toml"), "name = \"node1\"\n").unwrap();
        let padding = format!("kind = \"bridge\"\n{}\n", "#".repeat(MAX_FILE_BYTES));
        std::fs::write(etc.join("cluster/networks/big.toml"), &padding).unwrap();
        let load = || {
            horcrux_config::check_files(horcrux_config::load::read_tree(etc).unwrap())
                .into_valid()
                .unwrap()
        };
        assert!(
            oversized(&load()).is_empty(),
            "unclustered: nothing replicates"
        );
        std::fs::write(
            etc.join("cluster/cluster.toml"),
            "name = \"lab\"\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
             [trust]\nrequire_signatures = false\n",
        )
        .unwrap();
        let errors = oversized(&load());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, "cluster/networks/big.toml");
        assert!(
            errors[0].message.contains("limited to"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn order_and_conflicts() {
        let a = version(10, "node1", 1, Some("a"));
        let b = version(11, "node2", 1, Some("b"));
        assert!(b.beats(&a));
        // Same clock: the greater name wins.
        let a2 = version(11, "node1", 1, Some("a"));
        assert!(b.beats(&a2) && !a2.beats(&b));
        // b's author had not seen a (a is newer than b's base): conflict.
        assert!(b.conflicts_with(&a));
        // c replaced a knowingly: no conflict.
        let c = version(12, "node2", 10, Some("c"));
        assert!(!c.conflicts_with(&a));
        // The same content reached twice is no conflict.
        let same = version(9, "node3", 0, Some("b"));
        assert!(!b.conflicts_with(&same));
        // A deletion concurrent with an edit is.
        let del = version(9, "node3", 0, None);
        assert!(b.conflicts_with(&del));
        // Seeds never are.
        let seed = version(0, "node3", 0, Some("seed"));
        assert!(!b.conflicts_with(&seed));
    }
}
