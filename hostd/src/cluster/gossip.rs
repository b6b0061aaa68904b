//! Membership, failure detection and state exchange by chitchat
//! (scuttlebutt anti-entropy, phi-accrual failure detector) over the
//! sealed transport. Each member publishes, in its own key space, every
//! file version it holds (`f:<path>`), the conflicts it knows
//! (`c:<key>`) and the generation it runs; chitchat carries them to
//! everyone, including members that were away.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle,
    spawn_chitchat,
};
use tokio::sync::Notify;

use super::entry::Entry;
use super::key::ClusterKey;
use super::merge::{Conflict, Offer, Rejected};
use super::transport::{SealedUdpTransport, TransportCounters, TransportStats};

const FILE_PREFIX: &str = "f:";
const CONFLICT_PREFIX: &str = "c:";
const GENERATION_KEY: &str = "generation";

/// How long chitchat keeps a deleted key before forgetting it; a member
/// away longer receives the holder's whole state instead of a delta.
const KEY_GRACE: Duration = Duration::from_secs(3600);

/// Where and how this member gossips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSettings {
    pub cluster: String,
    pub me: String,
    pub listen: SocketAddr,
    /// The other members' gossip addresses.
    pub seeds: Vec<SocketAddr>,
    pub interval: Duration,
    /// How long the state of a dead member is kept. Must be shorter than
    /// the lifetime of deletions: a dead member's state still offers the
    /// files it held, deleted ones included.
    pub forget_dead_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start gossip on {listen}: {message}")]
pub struct GossipError {
    listen: SocketAddr,
    message: String,
}

/// One member as the failure detector and its gossip state see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub live: bool,
    pub heartbeat: u64,
    /// The generation it runs, as it published it.
    pub generation: Option<String>,
}

/// Everything the other members publish.
#[derive(Debug, Default)]
pub struct Remote {
    pub offers: Vec<Offer>,
    pub conflicts: Vec<Conflict>,
    /// Values that are not valid versions at all.
    pub malformed: Vec<Rejected>,
    pub peers: Vec<Peer>,
}

/// A running chitchat instance.
pub struct Gossip {
    settings: GossipSettings,
    handle: ChitchatHandle,
    _listener: ListenerHandle,
    counters: Arc<TransportCounters>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Gossip {
    /// Starts gossiping; `changed` is woken whenever any member's files or
    /// conflicts change.
    pub async fn start(
        settings: GossipSettings,
        key: ClusterKey,
        generation_id: u64,
        changed: Arc<Notify>,
    ) -> Result<Gossip, GossipError> {
        let counters = Arc::new(TransportCounters::default());
        let transport = SealedUdpTransport::new(key, counters.clone());
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(settings.me.clone(), generation_id, settings.listen),
            cluster_id: settings.cluster.clone(),
            gossip_interval: settings.interval,
            listen_addr: settings.listen,
            seed_nodes: settings.seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: settings.interval * 2,
                dead_node_grace_period: settings.forget_dead_after,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: KEY_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let handle = spawn_chitchat(config, Vec::new(), &transport)
            .await
            .map_err(|e| GossipError {
                listen: settings.listen,
                message: format!("{e:#}"),
            })?;
        let listener = handle
            .with_chitchat(|c| {
                let changed = changed.clone();
                // Keys of both prefixes start with a letter and a colon.
                c.subscribe_event("", move |event| {
                    if event.key.starts_with(FILE_PREFIX) || event.key.starts_with(CONFLICT_PREFIX)
                    {
                        changed.notify_one();
                    }
                })
            })
            .await;
        Ok(Gossip {
            settings,
            handle,
            _listener: listener,
            counters,
        })
    }

    pub fn settings(&self) -> &GossipSettings {
        &self.settings
    }

    pub fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }

    /// Makes this member's published state exactly `files`, `conflicts`
    /// and `generation`. Unchanged values keep their chitchat version, so
    /// only real changes travel.
    pub async fn publish(
        &self,
        files: &BTreeMap<String, Entry>,
        conflicts: &[Conflict],
        generation: Option<&str>,
    ) {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (path, entry) in files {
            if let Ok(json) = serde_json::to_string(entry) {
                wanted.insert(format!("{FILE_PREFIX}{path}"), json);
            }
        }
        for conflict in conflicts {
            if let Ok(json) = serde_json::to_string(conflict) {
                wanted.insert(format!("{CONFLICT_PREFIX}{}", conflict.key()), json);
            }
        }
        if let Some(generation) = generation {
            wanted.insert(GENERATION_KEY.to_string(), generation.to_string());
        }
        self.handle
            .with_chitchat(|c| {
                let state = c.self_node_state();
                let stale: Vec<String> = state
                    .key_values()
                    .filter(|(k, _)| !wanted.contains_key(*k))
                    .map(|(k, _)| k.to_string())
                    .collect();
                for key in stale {
                    state.delete(&key);
                }
                for (key, value) in &wanted {
                    state.set(key, value);
                }
            })
            .await;
    }

    /// What the other members publish, and who is alive.
    pub async fn remote(&self) -> Remote {
        self.read(true).await
    }

    /// Who is alive, without reading what they publish (cheap enough for
    /// every status refresh).
    pub async fn peers(&self) -> Vec<Peer> {
        self.read(false).await.peers
    }

    async fn read(&self, with_state: bool) -> Remote {
        self.handle
            .with_chitchat(|c| {
                let me = c.self_chitchat_id().clone();
                let live: Vec<ChitchatId> = c.live_nodes().cloned().collect();
                let mut remote = Remote::default();
                // A member that restarted has a new generation; what its
                // previous one published is stale, and would bring back
                // files deleted since.
                let mut newest: BTreeMap<&str, &ChitchatId> = BTreeMap::new();
                for id in c.node_states().keys() {
                    if id.node_id == me.node_id {
                        continue;
                    }
                    let slot = newest.entry(&id.node_id).or_insert(id);
                    if id.generation_id > slot.generation_id {
                        *slot = id;
                    }
                }
                for (name, id) in newest {
                    let Some(state) = c.node_state(id) else {
                        continue;
                    };
                    if with_state {
                        read_state(name, state, &mut remote);
                    }
                    remote.peers.push(Peer {
                        name: name.to_string(),
                        live: live.contains(id),
                        heartbeat: state.heartbeat().into(),
                        generation: state.get(GENERATION_KEY).map(str::to_string),
                    });
                }
                remote
            })
            .await
    }

    pub async fn stop(self) {
        if let Err(e) = self.handle.shutdown().await {
            tracing::debug!(error = %e, "gossip shutdown");
        }
    }
}

fn read_state(holder: &str, state: &chitchat::NodeState, remote: &mut Remote) {
    for (key, value) in state.key_values() {
        if let Some(path) = key.strip_prefix(FILE_PREFIX) {
            match serde_json::from_str::<Entry>(value) {
                Ok(entry) => remote.offers.push(Offer {
                    holder: holder.to_string(),
                    path: path.to_string(),
                    entry,
                }),
                Err(e) => remote.malformed.push(Rejected {
                    path: path.to_string(),
                    holder: holder.to_string(),
                    author: String::new(),
                    clock: Default::default(),
                    reason: format!("malformed version: {e}"),
                }),
            }
        } else if key.starts_with(CONFLICT_PREFIX) {
            // A conflict another member recorded; its loser is checked
            // like any version before it is shown.
            if let Ok(conflict) = serde_json::from_str::<Conflict>(value) {
                remote.conflicts.push(conflict);
            }
        }
    }
}
