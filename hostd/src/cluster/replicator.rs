//! Keeps `cluster/` the same on every member: publishes this node's
//! accepted changes, writes the winning versions others publish (whole
//! change sets at once, atomically per file), records conflicts, and
//! reports members and replication on the status page.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use horcrux_config::Config;
use tokio::sync::Notify;

use super::entry::Entry;
use super::gossip::{Gossip, GossipSettings, Peer, Remote};
use super::hlc::{Clock, wall_millis};
use super::key::ClusterKey;
use super::merge::{ChangeSet, Rejected, merge};
use super::signature::{self, TrustedKeys};
use super::view::{LocalFile, TOMBSTONE_TTL, View, ViewError};
use super::{ClusterStatus, MemberState, MemberStatus};
use crate::errors::chain;
use crate::fsutil::{remove_if_present, write_if_changed};
use crate::generation::sha256_hex;
use crate::generation::{GenerationInfo, Source, hint};

/// The replicated directory, relative to the config root.
pub const CLUSTER_DIR: &str = "cluster";

/// How long a change set may stay incomplete before what arrived of it
/// is written anyway (its other files were superseded or are lost).
const SET_WAIT: Duration = Duration::from_secs(10);

/// How long the versions offered must stay the same before a returning
/// node resynchronises against them.
const RESYNC_SETTLE: Duration = Duration::from_secs(5);

/// How often waiting changes are looked at again when nothing new arrives.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// How often the time of last contact is saved while nothing else changes.
const CONTACT_SAVE_EVERY: Duration = Duration::from_secs(60);

/// How long a dead member's gossip state is kept (chitchat's default).
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A member silent for this many gossip intervals is shown as suspect,
/// until the failure detector declares it dead (phi-accrual: after
/// roughly eight intervals of silence).
const SUSPECT_AFTER_INTERVALS: u32 = 2;

/// Tuning, overridable for tests.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub gossip_interval: Duration,
    pub tombstone_ttl: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            gossip_interval: Duration::from_millis(500),
            tombstone_ttl: TOMBSTONE_TTL,
        }
    }
}

/// What the running config says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    name: String,
    members: Vec<(String, SocketAddr)>,
    key_file: PathBuf,
    settings: GossipSettings,
}

pub struct Replicator {
    config_dir: PathBuf,
    run_dir: PathBuf,
    view_path: PathBuf,
    view: View,
    /// The view did not exist: this node's files are seeds.
    fresh: bool,
    clock: Clock,
    tuning: Tuning,
    changed: Arc<Notify>,
    membership: Option<Membership>,
    gossip: Option<Gossip>,
    start_error: Option<String>,
    last_start_attempt: Option<Instant>,
    trust: Option<TrustedKeys>,
    generation: Option<String>,
    /// Workload -> the node it is placed on.
    placement: BTreeMap<String, String>,
    /// Member -> (last heartbeat, when it last moved).
    heard: BTreeMap<String, (u64, Instant)>,
    /// Change sets waiting for their other files, since when.
    waiting: BTreeMap<(u64, String), Instant>,
    deferred: usize,
    rejected: Vec<Rejected>,
    remote_conflicts: Vec<super::merge::Conflict>,
    /// The members as last seen by the failure detector.
    peers: Vec<Peer>,
    /// Set when this node was away longer than deletions are remembered:
    /// when it was last in touch.
    resync: Option<u64>,
    /// While resynchronising: how many versions the others offered, and
    /// since when that number has not changed.
    offers_settling: Option<(usize, Instant)>,
    /// When `last_contact_ms` was last saved.
    contact_saved: Instant,
    /// When the others' offers were last merged.
    last_pull: Instant,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReplicatorError(#[from] super::view::ViewError);

impl Replicator {
    /// Loads the replication record; gossip starts once a config names
    /// this node's cluster.
    pub fn open(
        config_dir: &Path,
        state_dir: &Path,
        run_dir: &Path,
        tuning: Tuning,
        changed: Arc<Notify>,
    ) -> Result<Replicator, ReplicatorError> {
        let view_path = state_dir.join("cluster").join("view.json");
        let stored = match View::load(&view_path) {
            Err(e @ ViewError::Corrupt { .. }) => {
                // Starting afresh is safe: this node's files become seeds,
                // which lose to every version the cluster has.
                let aside = view_path.with_extension(format!("corrupt-{}", wall_millis()));
                tracing::error!(error = %chain(&e), moved_to = %aside.display(), "replication record unreadable; starting afresh");
                std::fs::rename(&view_path, &aside).map_err(|source| {
                    ViewError::Io(crate::fsutil::PathError {
                        action: "move aside",
                        path: view_path.clone(),
                        source,
                    })
                })?;
                None
            }
            other => other?,
        };
        let fresh = stored.is_none();
        let view = stored.unwrap_or_default();
        let away = wall_millis().saturating_sub(view.last_contact_ms);
        let resync = (view.last_contact_ms != 0 && away > millis(tuning.tombstone_ttl))
            .then_some(view.last_contact_ms);
        Ok(Replicator {
            config_dir: config_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            view_path,
            clock: Clock::resume(view.clock),
            view,
            fresh,
            tuning,
            changed,
            membership: None,
            gossip: None,
            start_error: None,
            last_start_attempt: None,
            trust: None,
            generation: None,
            placement: BTreeMap::new(),
            heard: BTreeMap::new(),
            waiting: BTreeMap::new(),
            deferred: 0,
            rejected: Vec::new(),
            remote_conflicts: Vec::new(),
            peers: Vec::new(),
            resync,
            offers_settling: None,
            contact_saved: Instant::now(),
            last_pull: Instant::now(),
        })
    }

    /// Takes in an accepted generation: follows changes of membership,
    /// port, key and trust, and publishes what changed on disk.
    pub async fn accept(&mut self, config: &Config, generation: &GenerationInfo) {
        self.generation = Some(format!(
            "{} {}",
            generation.id,
            generation.hash.get(..12).unwrap_or(&generation.hash)
        ));
        self.trust = config
            .cluster
            .as_ref()
            .filter(|c| *c.trust.require_signatures)
            .map(|c| TrustedKeys::from_trust(&c.trust));
        self.placement = placement(config);
        let wanted = membership(config, &self.config_dir, &self.tuning);
        if wanted != self.membership {
            self.stop().await;
            self.membership = wanted;
            self.start_error = None;
        }
        if self.membership.is_none() {
            return;
        }
        self.ensure_started().await;
        // Files written by replication match the view: only what was
        // edited here shows up as a change.
        self.record_local(config);
        self.publish().await;
    }

    fn record_local(&mut self, config: &Config) {
        let prefix = format!("{CLUSTER_DIR}/");
        let disk: BTreeMap<String, LocalFile> = config
            .sources
            .iter()
            .filter_map(|(_, f)| {
                let path = f.path.strip_prefix(&prefix)?;
                Some((
                    path.to_string(),
                    LocalFile {
                        content: f.text.clone(),
                        signature: read_signature(&self.config_dir, path),
                    },
                ))
            })
            .collect();
        let config_dir = self.config_dir.clone();
        let deleted_signature = |path: &str| read_signature(&config_dir, path);
        let me = self.me();
        let changed = self.view.record_local(
            &disk,
            &deleted_signature,
            &me,
            &mut self.clock,
            wall_millis(),
            self.fresh,
        );
        self.fresh = false;
        if changed > 0 {
            tracing::info!(files = changed, "publishing local changes to cluster/");
        }
        self.save();
    }

    fn me(&self) -> String {
        self.membership
            .as_ref()
            .map(|m| m.settings.me.clone())
            .unwrap_or_default()
    }

    async fn ensure_started(&mut self) {
        if self.gossip.is_some() {
            return;
        }
        let Some(m) = &self.membership else { return };
        if m.members.len() < 2 {
            return;
        }
        self.last_start_attempt = Some(Instant::now());
        let key = match ClusterKey::load(&m.key_file) {
            Ok(key) => key,
            Err(e) => {
                let message = chain(&e);
                tracing::error!(error = %message, "cluster gossip not started");
                self.start_error = Some(message);
                return;
            }
        };
        let generation_id = wall_millis();
        match Gossip::start(m.settings.clone(), key, generation_id, self.changed.clone()).await {
            Ok(gossip) => {
                tracing::info!(listen = %m.settings.listen, members = m.members.len(), "cluster gossip started");
                self.gossip = Some(gossip);
                self.start_error = None;
            }
            Err(e) => {
                let message = chain(&e);
                tracing::error!(error = %message, "cluster gossip not started");
                self.start_error = Some(message);
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(gossip) = self.gossip.take() {
            gossip.stop().await;
        }
        self.heard.clear();
    }

    async fn publish(&mut self) {
        if self.resync.is_some() {
            // Back from a long absence: what this node holds may include
            // files deleted meanwhile, whose deletions are forgotten.
            // Offering them would bring them back everywhere.
            return;
        }
        if let Some(gossip) = &self.gossip {
            let conflicts: Vec<_> = self.view.conflicts.values().cloned().collect();
            gossip
                .publish(&self.view.files, &conflicts, self.generation.as_deref())
                .await;
        }
    }

    /// Takes in what the other members publish. Returns true when files
    /// of `cluster/` were written (the caller reloads the tree).
    pub async fn pull(&mut self) -> bool {
        let Some(gossip) = &self.gossip else {
            return false;
        };
        let remote = gossip.remote().await;
        self.last_pull = Instant::now();
        let now = wall_millis();
        self.note_contact(&remote.peers, now);
        let trust = self.trust.clone();
        let verify = |path: &str, entry: &Entry| verify(trust.as_ref(), path, entry);
        let merged = merge(&self.view.files, &remote.offers, &verify, now);
        let mut rejected = remote.malformed.clone();
        rejected.extend(merged.rejected);
        for r in &rejected {
            if !self.rejected.contains(r) {
                tracing::warn!(path = %r.path, from = %r.holder, author = %r.author, reason = %r.reason, "refused a replicated change");
            }
        }
        self.rejected = rejected;
        let mut changed_view = false;
        for conflict in merged.conflicts {
            let key = conflict.key();
            if let std::collections::btree_map::Entry::Vacant(slot) = self.view.conflicts.entry(key)
            {
                tracing::warn!(path = %conflict.path, loser = %conflict.loser.author, winner = %conflict.winner_author, "conflicting edits; the loser is kept on the status page");
                slot.insert(conflict);
                changed_view = true;
            }
        }
        self.remote_conflicts = remote
            .conflicts
            .iter()
            .filter(|c| super::entry::check(&c.path, &c.loser, now).is_ok())
            .cloned()
            .collect();
        let (adopted, wrote) = self.write_sets(merged.sets);
        changed_view |= adopted;
        if self.resync_if_due(&remote) {
            changed_view = true;
        }
        if changed_view {
            self.view.clock = self.clock.last();
            self.save();
            self.publish().await;
        }
        self.peers = remote.peers;
        wrote
    }

    /// Writes what won; returns whether any version was adopted and
    /// whether any file on disk changed.
    fn write_sets(&mut self, sets: Vec<ChangeSet>) -> (bool, bool) {
        let mut adopted = false;
        let mut disk_changed = false;
        let mut still_waiting = BTreeMap::new();
        self.deferred = 0;
        for set in sets {
            let id = (set.clock.0, set.author.clone());
            let since = self.waiting.get(&id).copied().unwrap_or_else(Instant::now);
            if !set.complete() && since.elapsed() < SET_WAIT {
                still_waiting.insert(id, since);
                continue;
            }
            if let Some(path) = set
                .files
                .iter()
                .map(|(p, _)| p)
                .find(|p| !self.disk_matches_view(p))
            {
                // An edit of this file is on disk but not yet accepted:
                // it goes first (and then wins or conflicts), never lost.
                tracing::debug!(%path, "remote change waits for a local edit");
                self.deferred += 1;
                continue;
            }
            // The disk holds what the view says (checked above), so the
            // view tells whether any content changes.
            let new_content = set.files.iter().any(|(path, entry)| {
                self.view.files.get(path).is_none_or(|old| {
                    old.hash != entry.hash || old.is_deleted() != entry.is_deleted()
                })
            });
            if new_content {
                // The generation these writes produce comes from the cluster.
                if let Err(e) = hint::announce(&self.run_dir, Source::Cluster, None) {
                    tracing::warn!(error = %e, "cannot announce the replicated change");
                }
            }
            let mut changed = 0;
            for (path, entry) in &set.files {
                match self.write_file(path, entry) {
                    Ok(wrote) => {
                        self.clock.observe(entry.clock);
                        self.view.files.insert(path.clone(), entry.clone());
                        adopted = true;
                        changed += usize::from(wrote);
                    }
                    Err(e) => tracing::error!(%path, error = %e, "cannot write a replicated file"),
                }
            }
            if changed > 0 {
                tracing::info!(files = changed, author = %set.author, clock = %set.clock, "applied a replicated change");
                disk_changed = true;
            }
        }
        self.waiting = still_waiting;
        (adopted, disk_changed)
    }

    fn file_path(&self, path: &str) -> PathBuf {
        self.config_dir.join(CLUSTER_DIR).join(path)
    }

    fn disk_matches_view(&self, path: &str) -> bool {
        let on_disk = std::fs::read(self.file_path(path)).ok();
        let known = self.view.files.get(path).filter(|e| !e.is_deleted());
        match (on_disk, known) {
            (None, None) => true,
            (Some(bytes), Some(e)) => sha256_hex(&bytes) == e.hash,
            _ => false,
        }
    }

    /// Returns whether the file or its signature changed.
    fn write_file(&self, path: &str, entry: &Entry) -> std::io::Result<bool> {
        let file = self.file_path(path);
        let sig = self
            .config_dir
            .join(CLUSTER_DIR)
            .join(signature::signature_path(path));
        // The signature first: the file never appears without it.
        let signature_changed = match &entry.signature {
            Some(s) => write_if_changed(&sig, s.as_bytes())?,
            None => remove_if_present(&sig)?,
        };
        let file_changed = match &entry.content {
            Some(text) => write_if_changed(&file, text.as_bytes())?,
            None => remove_if_present(&file)?,
        };
        Ok(signature_changed || file_changed)
    }

    fn note_contact(&mut self, peers: &[Peer], now: u64) {
        let mut heard_from_anyone = false;
        for peer in peers {
            let moved = match self.heard.get(&peer.name) {
                Some((beat, _)) => *beat != peer.heartbeat,
                None => true,
            };
            if moved {
                self.heard
                    .insert(peer.name.clone(), (peer.heartbeat, Instant::now()));
            }
            heard_from_anyone |= peer.live;
        }
        if heard_from_anyone {
            let away = now.saturating_sub(self.view.last_contact_ms);
            if self.view.last_contact_ms != 0 && away > millis(self.tuning.tombstone_ttl) {
                // Cut off for longer than deletions are remembered.
                self.resync = Some(self.view.last_contact_ms);
            }
            // Saved every minute and with every change.
            self.view.last_contact_ms = now;
        }
    }

    /// After an absence longer than deletions are remembered: removes the
    /// files no other member has any more. Returns true once done.
    fn resync_if_due(&mut self, remote: &Remote) -> bool {
        let Some(left) = self.resync else {
            return false;
        };
        if !remote.peers.iter().any(|p| p.live) || remote.offers.is_empty() {
            return false;
        }
        // The others' state arrives over several gossip rounds: a file not
        // received yet must not be taken for one deleted meanwhile.
        let count = remote.offers.len();
        match self.offers_settling {
            Some((n, since)) if n == count && since.elapsed() >= RESYNC_SETTLE => {}
            Some((n, _)) if n == count => return false,
            _ => {
                self.offers_settling = Some((count, Instant::now()));
                return false;
            }
        }
        let offered: BTreeSet<&str> = remote.offers.iter().map(|o| o.path.as_str()).collect();
        let stale = self.view.stale_after_absence(&offered, left);
        for path in &stale {
            if self.disk_matches_view(path) {
                match remove_if_present(&self.file_path(path)) {
                    Ok(_) => {
                        tracing::info!(%path, "removed: deleted in the cluster while this node was away");
                        self.view.files.remove(path);
                    }
                    Err(e) => tracing::error!(%path, error = %e, "cannot remove a stale file"),
                }
            }
        }
        self.resync = None;
        self.offers_settling = None;
        tracing::info!(removed = stale.len(), "resynchronised after a long absence");
        // Publishing resumes now.
        true
    }

    fn save(&mut self) {
        self.contact_saved = Instant::now();
        if let Err(e) = self.view.save(&self.view_path) {
            tracing::error!(error = %chain(&e), "cannot save the replication record");
        }
    }

    /// Refreshes member states (and retries a failed gossip start).
    pub async fn tick(&mut self) {
        if self.gossip.is_none()
            && self.membership.is_some()
            && self
                .last_start_attempt
                .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.ensure_started().await;
            if self.gossip.is_some() {
                self.publish().await;
            }
        }
        self.peers = match &self.gossip {
            Some(g) => g.peers().await,
            None => Vec::new(),
        };
        let peers = std::mem::take(&mut self.peers);
        self.note_contact(&peers, wall_millis());
        self.peers = peers;
        if self.view.prune(wall_millis(), self.tuning.tombstone_ttl) {
            self.save();
            self.publish().await;
        } else if self.contact_saved.elapsed() >= CONTACT_SAVE_EVERY {
            // A restart must not mistake a quiet cluster for an absence.
            self.save();
        }
        let waiting = self.resync.is_some() || !self.waiting.is_empty() || self.deferred > 0;
        if waiting && self.gossip.is_some() && self.last_pull.elapsed() >= RECHECK_EVERY {
            // Nothing new may arrive for a while: a change set waiting for
            // files that were superseded, a remote change waiting for a
            // local edit, a resync waiting for the offers to settle must
            // be looked at again anyway.
            self.changed.notify_one();
        }
    }

    /// The cluster section of the status page; `None` without cluster.toml.
    pub fn report(&self) -> Option<ClusterStatus> {
        let peers = &self.peers;
        let m = self.membership.as_ref()?;
        let members = m
            .members
            .iter()
            .map(|(name, addr)| self.member_status(name, *addr, peers))
            .collect();
        let mut conflicts: BTreeMap<String, super::merge::Conflict> = self.view.conflicts.clone();
        for c in &self.remote_conflicts {
            let current = self.view.files.get(&c.path);
            if current.is_none_or(|e| e.clock <= c.winner_clock) {
                conflicts.entry(c.key()).or_insert_with(|| c.clone());
            }
        }
        let error = self.start_error.clone().or_else(|| {
            (m.members.len() < 2).then(|| "one member: nothing to replicate".to_string())
        });
        Some(ClusterStatus {
            name: m.name.clone(),
            members,
            placement: self.placement.clone(),
            files: self.view.files.values().filter(|e| !e.is_deleted()).count(),
            conflicts: conflicts.into_values().collect(),
            rejected: self.rejected.clone(),
            waiting_changes: self.waiting.len() + self.deferred,
            transport: self.gossip.as_ref().map(Gossip::stats).unwrap_or_default(),
            error,
        })
    }

    fn suspect_after(&self) -> Duration {
        (self.tuning.gossip_interval * SUSPECT_AFTER_INTERVALS).max(Duration::from_millis(500))
    }

    /// How often member states are worth refreshing.
    pub fn refresh_every(&self) -> Duration {
        self.tuning
            .gossip_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn member_status(&self, name: &str, address: SocketAddr, peers: &[Peer]) -> MemberStatus {
        let me = self.me();
        let this_node = name == me;
        let peer = peers.iter().find(|p| p.name == name);
        let heard = self.heard.get(name).map(|(_, at)| at.elapsed());
        let state = if this_node {
            MemberState::Alive
        } else {
            match (peer, heard) {
                (Some(p), Some(silent)) if p.live && silent <= self.suspect_after() => {
                    MemberState::Alive
                }
                (Some(p), _) if p.live => MemberState::Suspect,
                _ => MemberState::Dead,
            }
        };
        MemberStatus {
            name: name.to_string(),
            address: address.to_string(),
            state,
            last_seen_seconds: if this_node {
                Some(0.0)
            } else {
                heard.map(|d| d.as_secs_f64())
            },
            generation: if this_node {
                self.generation.clone()
            } else {
                peer.and_then(|p| p.generation.clone())
            },
            this_node,
        }
    }
}

fn read_signature(config_dir: &Path, path: &str) -> Option<String> {
    let file = config_dir
        .join(CLUSTER_DIR)
        .join(signature::signature_path(path));
    std::fs::read_to_string(file).ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Refuses versions without a valid signature when signatures are required.
fn verify(trust: Option<&TrustedKeys>, path: &str, entry: &Entry) -> Result<(), String> {
    let Some(keys) = trust else { return Ok(()) };
    let Some(sig) = &entry.signature else {
        return Err("unsigned, and [trust] require_signatures is on".to_string());
    };
    let checked = match &entry.content {
        Some(text) => signature::verify_file(keys, path, text.as_bytes(), sig),
        None => signature::verify_deletion(keys, path, &entry.hash, sig),
    };
    checked.map_err(|e| e.to_string())
}

fn placement(config: &Config) -> BTreeMap<String, String> {
    let vms = config
        .vms
        .iter()
        .map(|(name, vm)| (format!("vm/{name}"), vm.node.as_ref()));
    let containers = config
        .containers
        .iter()
        .map(|(name, ct)| (format!("container/{name}"), ct.node.as_ref()));
    vms.chain(containers)
        .filter_map(|(name, node)| Some((name, node?.to_string())))
        .collect()
}

fn membership(config: &Config, config_dir: &Path, tuning: &Tuning) -> Option<Membership> {
    let cluster = config.cluster.as_ref()?;
    let me = config.node_name()?.to_string();
    let port = u16::try_from(cluster.gossip.port.get()).ok()?;
    let members: Vec<(String, SocketAddr)> = cluster
        .members
        .iter()
        .map(|m| (m.name.to_string(), SocketAddr::new(*m.address, port)))
        .collect();
    let listen = members.iter().find(|(n, _)| *n == me)?.1;
    let seeds = members
        .iter()
        .filter(|(n, _)| *n != me)
        .map(|(_, a)| *a)
        .collect();
    Some(Membership {
        name: cluster.name.to_string(),
        key_file: config_dir.join(cluster.gossip.key_file.as_path()),
        settings: GossipSettings {
            cluster: cluster.name.to_string(),
            me,
            listen,
            seeds,
            interval: tuning.gossip_interval,
            forget_dead_after: (tuning.tombstone_ttl / 2).min(FORGET_DEAD_AFTER),
        },
        members,
    })
}
