//! The daemon: watch -> load + validate -> generation -> observe -> plan ->
//! apply -> status, forever.

mod converge;
mod reload;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use horcrux_config::{Config, Diagnostic};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::apply::{Backend, DEFAULT_DRIFT_INTERVAL, Trigger};
use crate::backend::Layout;
use crate::backend::firewall::{FirewallBackend, NFT};
use crate::backend::management::ManagementBackend;
use crate::backend::net::NetworkBackend;
use crate::backend::storage::scheduler::Scheduler;
use crate::backend::storage::{self, StorageBackend};
use crate::backend::vm::{VmBackend, orphans};
use crate::cluster::replicator::ReplicatorError;
use crate::cluster::{Replicator, Tuning};
use crate::errors::chain;
use crate::generation::{GenerationStore, StoreError};
use crate::readiness;
use crate::status::{Status, StatusHandle};
use crate::watch;

pub use converge::{Reconciler, desired_state};
pub use reload::{Outcome, ReloadError, Reloader, load_generation};

#[derive(Debug, Clone)]
pub struct Options {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Overrides node.toml `[status] listen` (tests run several nodes).
    pub listen: Option<SocketAddr>,
    /// Full rescan of the tree, in case a change notification was missed.
    pub rescan_every: Duration,
    /// Re-observe the system and repair drift.
    pub drift_every: Duration,
    /// Manage the host's links, firewall and management address (false on
    /// a development machine: VMs only).
    pub host_network: bool,
    /// Gossip interval and deletion lifetime of the cluster replication.
    pub cluster: Tuning,
}

impl Options {
    pub fn with_dirs(config_dir: PathBuf, state_dir: PathBuf, run_dir: PathBuf) -> Self {
        Options {
            config_dir,
            state_dir,
            run_dir,
            listen: None,
            rescan_every: Duration::from_secs(60),
            drift_every: DEFAULT_DRIFT_INTERVAL,
            host_network: true,
            cluster: Tuning::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the generation store")]
    Store(#[from] StoreError),
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error("cannot install a signal handler")]
    Signal(#[source] std::io::Error),
    #[error("cannot open the cluster replication record")]
    Cluster(#[from] ReplicatorError),
}

/// The drivers this node converges through. Backends register here as
/// they land (VMs, networks, firewall, volumes); `horcrux plan` uses the
/// same list so it shows exactly what hostd would do.
///
/// `status` receives progress of long work (image imports); `None` for
/// one-shot commands.
pub fn backends(
    layout: &Layout,
    host_network: bool,
    status: Option<StatusHandle>,
) -> Vec<Arc<dyn Backend>> {
    let mut all = vec![
        VmBackend::shared(layout.clone()),
        StorageBackend::shared(layout.clone(), status),
    ];
    if host_network {
        all.push(ManagementBackend::shared());
        all.push(NetworkBackend::shared(layout));
        all.push(FirewallBackend::shared(NFT));
    }
    all
}

/// Runs until `shutdown` completes. Workloads are never touched on the
/// way out: VMs outlive hostd.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let layout = Layout::new(&opts.run_dir, &opts.state_dir);
    let status = StatusHandle::new(Status::new(fallback_node_name()));
    let backends = backends(&layout, opts.host_network, Some(status.clone()));
    for dir in [&opts.state_dir, &opts.run_dir] {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let store = GenerationStore::open(&opts.state_dir)?;
    store.recover()?;
    let cluster_changed = Arc::new(Notify::new());
    let cluster = Replicator::open(
        &opts.config_dir,
        &opts.state_dir,
        &opts.run_dir,
        opts.cluster,
        cluster_changed.clone(),
    )?;
    let mut daemon = Daemon {
        cluster,
        snapshots: Scheduler::spawn(layout.clone(), status.clone()),
        layout,
        reconciler: Reconciler::new(status.clone(), backends),
        server: server::StatusServer::new(status.clone()),
        opts,
        store,
        reloader: Reloader::default(),
        status,
        current: None,
    };
    daemon.resume();

    let changed = Arc::new(Notify::new());
    let _watch = watch::watch(&daemon.opts.config_dir, changed.clone())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut rescan = tokio::time::interval(daemon.opts.rescan_every);
    let mut trigger = Trigger::new(daemon.opts.drift_every);
    rescan.tick().await;
    let mut watchdog = readiness::watchdog_interval().map(tokio::time::interval);
    let mut members = tokio::time::interval(daemon.cluster.refresh_every());
    members.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    daemon.reload().await;
    if daemon.current.is_none() {
        // No valid config yet: still serve status so the errors are visible.
        daemon
            .server
            .ensure(daemon.opts.listen.unwrap_or(server::DEFAULT_LISTEN))
            .await;
    }
    daemon.converge().await;
    daemon.status.update(|s| s.ready = true);
    readiness::ready(&daemon.status.snapshot().summary());

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changed.notified() => daemon.reload().await,
            _ = cluster_changed.notified() => daemon.pull_cluster().await,
            _ = members.tick() => daemon.refresh_members().await,
            _ = rescan.tick() => daemon.reload().await,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: re-reading the config tree");
                daemon.reloader.forget();
                daemon.reload().await;
            }
            _ = async {
                match watchdog.as_mut() {
                    Some(tick) => { tick.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => readiness::watchdog(),
            wake = trigger.wait(daemon.reconciler.next_retry()) => {
                tracing::debug!(?wake, "observing");
                daemon.converge().await;
            }
        }
    }
    readiness::stopping();
    daemon.server.stop().await;
    tracing::info!("hostd stopped; workloads keep running");
    Ok(())
}

struct Daemon {
    cluster: Replicator,
    opts: Options,
    layout: Layout,
    snapshots: Scheduler,
    store: GenerationStore,
    reloader: Reloader,
    status: StatusHandle,
    reconciler: Reconciler,
    server: server::StatusServer,
    current: Option<Box<Config>>,
}

impl Daemon {
    /// Starts from the newest stored generation, before looking at the
    /// files, so a node reboots into what it ran last.
    fn resume(&mut self) {
        let latest = match self.store.latest() {
            Ok(Some(latest)) => latest,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %chain(&e), "cannot read stored generations");
                return;
            }
        };
        match load_generation(&self.store, latest.id) {
            Ok(Ok(config)) => {
                tracing::info!(generation = latest.id, "resuming stored generation");
                self.status.update(|s| s.generation = Some(latest));
                self.set_current(Box::new(config));
            }
            Ok(Err(errors)) => tracing::warn!(
                generation = latest.id,
                errors = errors.len(),
                "stored generation no longer validates"
            ),
            Err(e) => tracing::error!(error = %chain(&e), "cannot read stored generation"),
        }
    }

    fn set_current(&mut self, config: Box<Config>) {
        if let Some(name) = config.node_name() {
            let name = name.to_string();
            self.status.update(|s| s.node = name);
        }
        self.snapshots
            .set(storage::desired::schedules(&config, &self.layout));
        self.current = Some(config);
    }

    async fn reload(&mut self) {
        let started = Instant::now();
        let result = tokio::task::block_in_place(|| {
            self.reloader.reload(
                &self.opts.config_dir,
                &self.opts.run_dir,
                &self.store,
                self.current.as_deref(),
            )
        });
        match result {
            Ok(Outcome::Unchanged) => return,
            Ok(Outcome::Rejected(errors)) => {
                tracing::warn!(
                    errors = errors.len(),
                    "config rejected; keeping the running generation"
                );
                for e in &errors {
                    tracing::warn!(file = %e.file, line = e.line, column = e.column, "{}", e.message);
                }
                self.status.update(|s| {
                    s.config_errors = errors;
                    s.counters.config_rejections += 1;
                });
            }
            Ok(Outcome::Accepted {
                generation,
                config,
                new,
            }) => {
                if new {
                    tracing::info!(generation = generation.id, source = %generation.source, hash = %generation.hash, "accepted new generation");
                }
                self.cluster.accept(&config, &generation).await;
                let cluster = self.cluster.report();
                self.status.update(|s| {
                    s.config_errors.clear();
                    if new {
                        s.counters.generations_accepted += 1;
                    }
                    s.generation = Some(generation);
                    s.cluster = cluster;
                });
                self.set_current(config);
                if new {
                    self.reconciler.new_generation();
                }
                self.converge().await;
            }
            Err(e) => {
                let message = chain(&e);
                tracing::error!(error = %message, "cannot read the config tree");
                self.status
                    .update(|s| s.config_errors = vec![unusable_tree(message)]);
            }
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reload done"
        );
        readiness::status(&self.status.snapshot().summary());
    }

    /// Other members published something: write what wins, then look at
    /// the tree like after any edit.
    async fn pull_cluster(&mut self) {
        let wrote = self.cluster.pull().await;
        let cluster = self.cluster.report();
        self.status.update(|s| s.cluster = cluster);
        if wrote {
            self.reload().await;
            // Attribution is for that reload only (it may have been
            // rejected); a later edit here is a local one.
            crate::generation::hint::withdraw(&self.opts.run_dir);
        }
    }

    async fn refresh_members(&mut self) {
        self.cluster.tick().await;
        let cluster = self.cluster.report();
        if cluster != self.status.snapshot().cluster {
            self.status.update(|s| s.cluster = cluster);
        }
    }

    async fn converge(&mut self) {
        if let Some(config) = &self.current {
            let listen = self.opts.listen.unwrap_or(
                config
                    .node
                    .as_ref()
                    .map_or(server::DEFAULT_LISTEN, |n| *n.status.listen),
            );
            self.server.ensure(listen).await;
        }
        self.reconciler.converge(self.current.as_deref()).await;
        if let Some(config) = &self.current {
            let orphaned = orphans::find(config, &self.layout);
            self.status.update(|s| s.orphaned_vms = orphaned);
        }
    }
}

fn unusable_tree(message: String) -> Diagnostic {
    Diagnostic {
        file: String::new(),
        line: None,
        column: None,
        message,
        hint: None,
        snippet: None,
    }
}

fn fallback_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_string())
}
