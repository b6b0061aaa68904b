//! This node's replication record: for every path of `cluster/` the
//! version on disk (or its deletion), the conflicts it knows, and its
//! clock. Kept in `<state>/cluster/view.json` so a restart neither loses
//! the history nor republishes old files as new edits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::entry::Entry;
use super::hlc::{Clock, Timestamp};
use super::merge::Conflict;
use crate::fsutil::{PathError, at, replace_file};
use crate::generation::sha256_hex;

/// How long a deletion is remembered. A member away longer than this
/// cannot tell a file deleted meanwhile from one it alone has, so it
/// resynchronises from the others when it returns.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{path} is corrupt; move it away to start replication afresh")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The highest clock issued or seen.
    pub clock: Timestamp,
    /// Wall-clock milliseconds when another member was last heard from.
    pub last_contact_ms: u64,
    /// Path (relative to `cluster/`) -> the version on disk.
    pub files: BTreeMap<String, Entry>,
    /// Conflict key -> the conflict, until the file changes again.
    pub conflicts: BTreeMap<String, Conflict>,
}

/// A file of `cluster/` as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub content: String,
    pub signature: Option<String>,
}

impl View {
    /// The stored view; `None` on a node that never replicated.
    pub fn load(path: &Path) -> Result<Option<View>, ViewError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(at("read", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ViewError::Corrupt {
                path: path.display().to_string(),
                source,
            })
    }

    pub fn save(&self, path: &Path) -> Result<(), ViewError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(at::<ViewError>("create", dir))?;
        }
        let json = serde_json::to_vec(self).map_err(|source| ViewError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
        replace_file(path, &json).map_err(at::<ViewError>("write", path))?;
        Ok(())
    }

    /// Records what changed on disk since the view was last updated (an
    /// edit, a git push, an rsync) as one change set by `me`, and returns
    /// how many files it holds. `deleted_signature` reads the deletion
    /// signature left for a removed file.
    ///
    /// A node that never replicated (`seed`) offers its files as seeds:
    /// whatever the cluster already has wins over them.
    pub fn record_local(
        &mut self,
        disk: &BTreeMap<String, LocalFile>,
        deleted_signature: &dyn Fn(&str) -> Option<String>,
        me: &str,
        clock: &mut Clock,
        wall_millis: u64,
        seed: bool,
    ) -> usize {
        let mut changed: Vec<(String, Option<&LocalFile>, String)> = Vec::new();
        for (path, file) in disk {
            let hash = sha256_hex(file.content.as_bytes());
            let known = self.files.get(path).is_some_and(|e| {
                !e.is_deleted() && e.hash == hash && e.signature == file.signature
            });
            if !known {
                changed.push((path.clone(), Some(file), hash));
            }
        }
        for (path, entry) in &self.files {
            if !entry.is_deleted() && !disk.contains_key(path) {
                changed.push((path.clone(), None, entry.hash.clone()));
            }
        }
        if changed.is_empty() {
            return 0;
        }
        let stamp = if seed {
            Timestamp::SEED
        } else {
            clock.tick(wall_millis)
        };
        // Seeds are not one change: whichever of them the cluster already
        // holds loses, so the rest could never arrive as a whole.
        let set = if seed {
            1
        } else {
            u32::try_from(changed.len()).unwrap_or(u32::MAX)
        };
        for (path, file, hash) in &changed {
            let base = self.files.get(path).map_or(Timestamp::SEED, |e| e.clock);
            let entry = Entry {
                clock: stamp,
                author: me.to_string(),
                base,
                hash: hash.clone(),
                content: file.map(|f| f.content.clone()),
                signature: match file {
                    Some(f) => f.signature.clone(),
                    None => deleted_signature(path),
                },
                set,
            };
            self.files.insert(path.clone(), entry);
        }
        self.clock = clock.last();
        changed.len()
    }

    /// Forgets deletions older than [`TOMBSTONE_TTL`] and conflicts the
    /// file has moved on from (it was changed again after the conflict).
    /// Returns whether anything was forgotten.
    pub fn prune(&mut self, wall_millis: u64, ttl: Duration) -> bool {
        let before = (self.files.len(), self.conflicts.len());
        let horizon =
            wall_millis.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.files
            .retain(|_, e| !e.is_deleted() || e.clock.millis() >= horizon);
        let files = &self.files;
        self.conflicts.retain(|_, c| {
            files
                .get(&c.path)
                .is_none_or(|current| current.clock <= c.winner_clock)
        });
        before != (self.files.len(), self.conflicts.len())
    }

    /// After an absence longer than the tombstone lifetime: files this
    /// node holds from before it left that no other member has any more
    /// were deleted meanwhile (their deletions are forgotten).
    pub fn stale_after_absence(&self, offered: &BTreeSet<&str>, left_ms: u64) -> Vec<String> {
        let left = Timestamp::new(left_ms, 0);
        self.files
            .iter()
            .filter(|(path, e)| {
                !e.is_deleted() && e.clock < left && !offered.contains(path.as_str())
            })
            .map(|(path, _)| path.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(files: &[(&str, &str)]) -> BTreeMap<String, LocalFile> {
        files
            .iter()
            .map(|(p, c)| {
                (
                    p.to_string(),
                    LocalFile {
                        content: c.to_string(),
                        signature: None,
                    },
                )
            })
            .collect()
    }

    fn no_sig(_: &str) -> Option<String> {
        None
    }

    /// A local edit by n1 leaving exactly `files` on disk, at `wall`.
    fn edit(view: &mut View, clock: &mut Clock, files: &[(&str, &str)], wall: u64) -> usize {
        view.record_local(&disk(files), &no_sig, "n1", clock, wall, false)
    }

    #[test]
    fn local_edits_become_one_change_set() {
        let mut view = View::default();
        let mut clock = Clock::default();
        let first = disk(&[("cluster.toml", "a"), ("vms/x.toml", "x")]);
        assert_eq!(
            view.record_local(&first, &no_sig, "n1", &mut clock, 1_000, true),
            2
        );
        assert!(
            view.files
                .values()
                .all(|e| e.clock == Timestamp::SEED && e.set == 1)
        );
        // Nothing changed: nothing recorded.
        assert_eq!(
            view.record_local(&first, &no_sig, "n1", &mut clock, 2_000, false),
            0
        );

        let edited = disk(&[
            ("cluster.toml", "a"),
            ("vms/x.toml", "x2"),
            ("vms/y.toml", "y"),
        ]);
        assert_eq!(
            view.record_local(&edited, &no_sig, "n1", &mut clock, 3_000, false),
            2
        );
        let x = &view.files["vms/x.toml"];
        assert_eq!(
            (x.clock, x.base, x.set),
            (Timestamp::new(3_000, 0), Timestamp::SEED, 2)
        );
        assert_eq!(view.files["vms/y.toml"].clock, x.clock);

        let sig = |_: &str| Some("deletion signature".to_string());
        let removed = disk(&[("cluster.toml", "a"), ("vms/y.toml", "y")]);
        assert_eq!(
            view.record_local(&removed, &sig, "n1", &mut clock, 4_000, false),
            1
        );
        let gone = &view.files["vms/x.toml"];
        assert!(gone.is_deleted());
        assert_eq!(gone.hash, sha256_hex(b"x2"));
        assert_eq!(gone.base, Timestamp::new(3_000, 0));
        assert_eq!(gone.signature.as_deref(), Some("deletion signature"));
        // A deletion is recorded once.
        assert_eq!(
            view.record_local(&removed, &sig, "n1", &mut clock, 5_000, false),
            0
        );
    }

    #[test]
    fn a_new_signature_is_a_change() {
        let mut view = View::default();
        let mut clock = Clock::default();
        let mut files = disk(&[("vms/x.toml", "x")]);
        view.record_local(&files, &no_sig, "n1", &mut clock, 1_000, false);
        files.get_mut("vms/x.toml").unwrap().signature = Some("sig".into());
        assert_eq!(
            view.record_local(&files, &no_sig, "n1", &mut clock, 2_000, false),
            1
        );
    }

    #[test]
    fn old_tombstones_and_settled_conflicts_are_pruned() {
        let day = 24 * 3600 * 1000;
        let mut view = View::default();
        let mut clock = Clock::default();
        edit(
            &mut view,
            &mut clock,
            &[("vms/a.toml", "a"), ("vms/b.toml", "b")],
            day,
        );
        edit(&mut view, &mut clock, &[("vms/b.toml", "b")], 2 * day);
        let winner = view.files["vms/b.toml"].clone();
        view.conflicts.insert(
            "k".into(),
            Conflict {
                path: "vms/b.toml".into(),
                winner_clock: winner.clock,
                winner_author: "n1".into(),
                loser: winner.clone(),
            },
        );
        view.prune(5 * day, TOMBSTONE_TTL);
        assert!(
            view.files.contains_key("vms/a.toml"),
            "tombstone younger than the TTL"
        );
        assert_eq!(view.conflicts.len(), 1, "the file has not changed since");
        view.prune(10 * day, TOMBSTONE_TTL);
        assert!(!view.files.contains_key("vms/a.toml"));
        edit(&mut view, &mut clock, &[("vms/b.toml", "b2")], 11 * day);
        view.prune(11 * day, TOMBSTONE_TTL);
        assert!(view.conflicts.is_empty(), "edited after the conflict");
    }

    #[test]
    fn files_nobody_else_has_after_a_long_absence_are_stale() {
        let mut view = View::default();
        let mut clock = Clock::default();
        edit(
            &mut view,
            &mut clock,
            &[("vms/a.toml", "a"), ("vms/b.toml", "b")],
            1_000,
        );
        edit(
            &mut view,
            &mut clock,
            &[
                ("vms/a.toml", "a"),
                ("vms/b.toml", "b"),
                ("vms/new.toml", "n"),
            ],
            3_000,
        );
        let offered = BTreeSet::from(["vms/a.toml"]);
        assert_eq!(
            view.stale_after_absence(&offered, 2_000),
            vec!["vms/b.toml".to_string()]
        );
    }

    #[test]
    fn view_round_trips_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster/view.json");
        assert_eq!(View::load(&path).unwrap(), None);
        let mut view = View::default();
        view.record_local(
            &disk(&[("vms/a.toml", "a")]),
            &no_sig,
            "n1",
            &mut Clock::default(),
            1,
            false,
        );
        view.save(&path).unwrap();
        assert_eq!(View::load(&path).unwrap(), Some(view));
        std::fs::write(&path, b"{oops").unwrap();
        assert!(matches!(View::load(&path), Err(ViewError::Corrupt { .. })));
    }
}
