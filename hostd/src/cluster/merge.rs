//! Deciding what the replicated state means for this node: for every path
//! the highest version wins (clock, then author name), concurrent losers
//! become conflicts, and versions that fail a check are refused. Pure: the
//! replicator feeds it what gossip delivered and acts on the answer.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::entry::{self, Entry};
use super::hlc::Timestamp;

/// A version some member publishes for a path.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The member whose gossip state holds it (not necessarily its author).
    pub holder: String,
    pub path: String,
    pub entry: Entry,
}

/// Versions to write, grouped by the change they were made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    pub clock: Timestamp,
    pub author: String,
    /// Files the author changed together.
    pub expected: u32,
    /// Of those, how many this node has received.
    pub received: usize,
    /// The received files that win and are not on disk yet.
    pub files: Vec<(String, Entry)>,
}

impl ChangeSet {
    /// All files of the change have arrived: writing them now yields one
    /// generation, not a half-applied change.
    pub fn complete(&self) -> bool {
        self.received >= self.expected as usize
    }
}

/// A version that lost to a concurrent one; kept and shown, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Conflict {
    pub path: String,
    pub winner_clock: Timestamp,
    pub winner_author: String,
    pub loser: Entry,
}

impl Conflict {
    /// Identifies the conflict across members (each may detect it).
    pub fn key(&self) -> String {
        format!("{}@{}@{}", self.path, self.loser.clock.0, self.loser.author)
    }
}

/// A version refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub path: String,
    pub holder: String,
    pub author: String,
    pub clock: Timestamp,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Merge {
    pub sets: Vec<ChangeSet>,
    pub conflicts: Vec<Conflict>,
    pub rejected: Vec<Rejected>,
}

/// Decides, from this node's `view` (path -> the version on disk) and the
/// `offers` gossip delivered, what to write, what conflicts and what to
/// refuse. `verify` checks trust (signatures); it returns the reason when
/// a version must be refused.
pub fn merge(
    view: &BTreeMap<String, Entry>,
    offers: &[Offer],
    verify: &dyn Fn(&str, &Entry) -> Result<(), String>,
    wall_millis: u64,
) -> Merge {
    let mut merge = Merge::default();
    let mut by_path: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for offer in offers {
        let checked = entry::check(&offer.path, &offer.entry, wall_millis)
            .map_err(|e| e.to_string())
            .and_then(|()| verify(&offer.path, &offer.entry));
        match checked {
            Ok(()) => by_path.entry(&offer.path).or_default().push(&offer.entry),
            Err(reason) => {
                if refused.insert((&offer.path, offer.entry.clock, &offer.entry.author)) {
                    merge.rejected.push(Rejected {
                        path: offer.path.clone(),
                        holder: offer.holder.clone(),
                        author: offer.entry.author.clone(),
                        clock: offer.entry.clock,
                        reason,
                    });
                }
            }
        }
    }

    // How many distinct files of each change set arrived.
    let mut received: BTreeMap<(Timestamp, &str), BTreeSet<&str>> = BTreeMap::new();
    for (path, entries) in &by_path {
        for e in entries {
            received.entry(e.set_id()).or_default().insert(path);
        }
    }
    for (path, e) in view {
        if let Some(paths) = received.get_mut(&e.set_id()) {
            paths.insert(path);
        }
    }

    let mut sets: BTreeMap<(Timestamp, String), ChangeSet> = BTreeMap::new();
    let mut seen_conflicts = BTreeSet::new();
    for (path, entries) in &by_path {
        let local = view.get(*path);
        let winner = entries
            .iter()
            .copied()
            .chain(local)
            .reduce(|best, e| if e.beats(best) { e } else { best });
        let Some(winner) = winner else { continue };
        for loser in entries.iter().copied().chain(local) {
            if !loser.same_version(winner)
                && winner.conflicts_with(loser)
                && seen_conflicts.insert((*path, loser.clock, loser.author.as_str()))
            {
                merge.conflicts.push(Conflict {
                    path: (*path).to_string(),
                    winner_clock: winner.clock,
                    winner_author: winner.author.clone(),
                    loser: loser.clone(),
                });
            }
        }
        if local.is_some_and(|l| l.same_version(winner)) {
            continue;
        }
        let id = winner.set_id();
        let set = sets
            .entry((id.0, id.1.to_string()))
            .or_insert_with(|| ChangeSet {
                clock: winner.clock,
                author: winner.author.clone(),
                expected: winner.set,
                received: received.get(&id).map_or(0, BTreeSet::len),
                files: Vec::new(),
            });
        set.files.push(((*path).to_string(), winner.clone()));
    }
    merge.sets = sets.into_values().collect();
    merge
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::entry::tests::version;

    const NOW: u64 = 1 << 40;

    fn offer(holder: &str, path: &str, entry: Entry) -> Offer {
        Offer {
            holder: holder.into(),
            path: path.into(),
            entry,
        }
    }

    fn trust_all(_: &str, _: &Entry) -> Result<(), String> {
        Ok(())
    }

    fn run(view: &BTreeMap<String, Entry>, offers: &[Offer]) -> Merge {
        merge(view, offers, &trust_all, NOW)
    }

    #[test]
    fn newer_versions_are_adopted_and_known_ones_are_not() {
        let mut view = BTreeMap::new();
        view.insert(
            "vms/a.toml".to_string(),
            version(10, "node1", 0, Some("a1")),
        );
        let newer = version(20, "node2", 10, Some("a2"));
        let m = run(
            &view,
            &[
                offer("node2", "vms/a.toml", newer.clone()),
                offer("node3", "vms/a.toml", view["vms/a.toml"].clone()),
            ],
        );
        assert_eq!(m.sets.len(), 1);
        assert_eq!(
            m.sets[0].files,
            vec![("vms/a.toml".to_string(), newer.clone())]
        );
        assert!(m.sets[0].complete());
        assert!(m.conflicts.is_empty(), "{:?}", m.conflicts);

        view.insert("vms/a.toml".into(), newer.clone());
        let m = run(&view, &[offer("node2", "vms/a.toml", newer)]);
        assert!(m.sets.is_empty());
    }

    #[test]
    fn stale_versions_lose_without_conflict() {
        let mut view = BTreeMap::new();
        view.insert(
            "vms/a.toml".to_string(),
            version(30, "node2", 20, Some("a3")),
        );
        let stale = version(10, "node1", 0, Some("a1"));
        let m = run(&view, &[offer("node1", "vms/a.toml", stale)]);
        assert!(m.sets.is_empty());
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn concurrent_edits_pick_the_same_winner_from_either_side() {
        let a = version(10, "node1", 5, Some("from node1"));
        let b = version(11, "node2", 5, Some("from node2"));
        for (mine, theirs) in [(&a, &b), (&b, &a)] {
            let view = BTreeMap::from([("vms/x.toml".to_string(), mine.clone())]);
            let m = run(&view, &[offer("peer", "vms/x.toml", theirs.clone())]);
            assert_eq!(m.conflicts.len(), 1);
            assert_eq!(m.conflicts[0].loser, a);
            assert_eq!(m.conflicts[0].winner_author, "node2");
            let adopted: Vec<_> = m.sets.iter().flat_map(|s| &s.files).collect();
            if mine == &a {
                assert_eq!(adopted, vec![&("vms/x.toml".to_string(), b.clone())]);
            } else {
                assert!(adopted.is_empty());
            }
        }
        // A third node sees both and agrees.
        let m = run(
            &BTreeMap::new(),
            &[
                offer("node1", "vms/x.toml", a.clone()),
                offer("node2", "vms/x.toml", b.clone()),
            ],
        );
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].loser, a);
        assert_eq!(m.sets[0].files[0].1, b);
    }

    #[test]
    fn deletions_win_by_clock_too() {
        let view = BTreeMap::from([("vms/x.toml".to_string(), version(10, "node1", 0, Some("x")))]);
        let mut gone = version(20, "node2", 10, None);
        gone.hash = view["vms/x.toml"].hash.clone();
        let m = run(&view, &[offer("node2", "vms/x.toml", gone.clone())]);
        assert_eq!(m.sets[0].files[0].1, gone);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn change_sets_wait_for_all_their_files() {
        let mut a = version(10, "node1", 0, Some("a"));
        a.set = 2;
        let mut b = version(10, "node1", 0, Some("b"));
        b.set = 2;
        let m = run(&BTreeMap::new(), &[offer("node1", "vms/a.toml", a.clone())]);
        assert!(!m.sets[0].complete());
        let m = run(
            &BTreeMap::new(),
            &[
                offer("node1", "vms/a.toml", a),
                offer("node1", "vms/b.toml", b),
            ],
        );
        assert_eq!(m.sets.len(), 1);
        assert!(m.sets[0].complete());
        assert_eq!(m.sets[0].files.len(), 2);
    }

    #[test]
    fn refused_versions_are_reported_once_and_never_adopted() {
        let good = version(10, "node1", 0, Some("a"));
        let mut tampered = good.clone();
        tampered.content = Some("evil".into());
        let m = run(
            &BTreeMap::new(),
            &[
                offer("node1", "vms/a.toml", tampered.clone()),
                offer("node2", "vms/a.toml", tampered),
                offer("node2", "../node.toml", good.clone()),
            ],
        );
        assert!(m.sets.is_empty());
        assert_eq!(m.rejected.len(), 2);

        let deny = |_: &str, _: &Entry| Err("unsigned".to_string());
        let m = merge(
            &BTreeMap::new(),
            &[offer("node1", "vms/a.toml", good)],
            &deny,
            NOW,
        );
        assert!(m.sets.is_empty());
        assert_eq!(m.rejected[0].reason, "unsigned");
    }

    proptest::proptest! {
        /// Whatever members publish, merging never panics, and nothing
        /// that fails the checks is ever chosen for writing.
        #[test]
        fn hostile_offers_never_panic_or_get_adopted(
            raw in proptest::collection::vec(
                (
                    "[a-z./-]{0,20}",
                    0u64..1 << 50,
                    "[a-zA-Z0-9 -]{0,8}",
                    0u64..1 << 50,
                    proptest::option::of("[ -~]{0,40}"),
                    proptest::bool::ANY,
                    0u32..5,
                ),
                0..12,
            ),
            json in "\\PC{0,200}",
        ) {
            let _ = serde_json::from_str::<Entry>(&json);
            let offers: Vec<Offer> = raw
                .into_iter()
                .map(|(path, clock, author, base, content, honest_hash, set)| {
                    let hash = if honest_hash {
                        crate::generation::sha256_hex(content.as_deref().unwrap_or("").as_bytes())
                    } else {
                        "0".repeat(64)
                    };
                    offer("peer", &path, Entry {
                        clock: Timestamp(clock),
                        author,
                        base: Timestamp(base),
                        hash,
                        content,
                        signature: None,
                        set,
                    })
                })
                .collect();
            let m = run(&BTreeMap::new(), &offers);
            for set in &m.sets {
                for (path, entry) in &set.files {
                    proptest::prop_assert!(entry::check(path, entry, NOW).is_ok());
                }
            }
        }
    }
}
