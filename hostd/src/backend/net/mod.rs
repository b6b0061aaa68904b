//! The network links backend: for each network used by a VM placed on
//! this node, one Linux bridge and at most one port (the uplink itself, an
//! 802.1Q device on it, or a VXLAN device), plus a persistent tap for each
//! NIC of a running VM; all over rtnetlink, observed and repaired every
//! cycle.
//!
//! * [`desired`]: config -> links (pure; also `horcrux render`'s "links");
//! * `observe`: kernel -> the same fields, from one link dump (and one
//!   FDB dump when there are VXLAN devices);
//! * `converge`: create, fix or remove one network's or tap's links from
//!   whatever the kernel has now;
//! * [`links`]: the rtnetlink requests; [`tap`]: TUNSETIFF/TUNSETPERSIST;
//!   [`names`]: deterministic names and the ownership rule.
//!
//! hostd only touches links it created (our name *and* our alias
//! `horcrux network <name>`; taps by their name pattern), and of other
//! links only the master of an uplink interface it enslaved itself. Which
//! interface that was is recorded in `<run>/net/<network>.uplink`: the
//! bridge's membership cannot say (operators and other tools add ports
//! too), and /run goes away at reboot together with the bridges.

mod converge;
pub mod desired;
pub mod links;
pub mod names;
mod observe;
pub mod tap;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use horcrux_config::Config;

pub use desired::render_links;

use crate::apply::{Backend, BackendError, BoxFuture};
use crate::backend::connection::Reconnecting;
use crate::backend::naming::Layout;
use crate::fsutil;
use crate::plan::{Action, Desired, Observed, Op, ResourceKind};
use desired::{NetworkLinks, PAYLOAD, TapLink};
use links::{LinkError, Netlink};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    /// Something hostd will not do; retrying soon will not change it.
    #[error("{0}")]
    Refused(String),
    /// Something it needs is not there (yet).
    #[error("{0}")]
    Missing(String),
    #[error("uplink record {}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the desired state carries no valid link description: {0}")]
    Payload(#[source] serde_json::Error),
}

impl NetError {
    fn into_backend(self) -> BackendError {
        let message = crate::errors::chain(&self);
        match self {
            NetError::Refused(_) | NetError::Payload(_) => BackendError::permanent(message),
            _ => BackendError::new(message),
        }
    }

    /// Whether the netlink connection itself may be broken.
    fn is_connection(&self) -> bool {
        matches!(self, NetError::Link(e) if e.is_connection())
    }
}

/// Which uplink interface hostd enslaved to each network's bridge, one
/// file per network holding the interface name.
#[derive(Debug, Clone)]
pub(crate) struct UplinkRecords {
    dir: PathBuf,
}

impl UplinkRecords {
    fn path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.uplink"))
    }

    fn error(path: &Path) -> impl FnOnce(io::Error) -> NetError + '_ {
        move |source| NetError::Record {
            path: path.to_path_buf(),
            source,
        }
    }

    fn read(&self, network: &str) -> Result<Option<String>, NetError> {
        let path = self.path(network);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::error(&path)(e)),
        }
    }

    fn write(&self, network: &str, iface: &str) -> Result<(), NetError> {
        let path = self.path(network);
        std::fs::create_dir_all(&self.dir).map_err(Self::error(&self.dir))?;
        fsutil::write_if_changed(&path, format!("{iface}\n").as_bytes())
            .map(drop)
            .map_err(Self::error(&path))
    }

    fn remove(&self, network: &str) -> Result<(), NetError> {
        let path = self.path(network);
        fsutil::remove_if_present(&path)
            .map(drop)
            .map_err(Self::error(&path))
    }
}

/// The network backend; one per hostd.
pub struct NetworkBackend {
    records: UplinkRecords,
    /// Opened on first use, inside the runtime (and network namespace)
    /// that uses it, and again after an error, so a lost socket heals.
    netlink: Reconnecting<Netlink>,
}

impl std::fmt::Debug for NetworkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkBackend")
            .field("records", &self.records)
            .finish()
    }
}

impl NetworkBackend {
    pub fn new(layout: &Layout) -> Self {
        NetworkBackend {
            records: UplinkRecords {
                dir: layout.run_dir.join("net"),
            },
            netlink: Reconnecting::new(),
        }
    }

    pub fn shared(layout: &Layout) -> Arc<dyn Backend> {
        Arc::new(NetworkBackend::new(layout))
    }

    /// Runs `f` with the connection, forgetting the connection when a
    /// netlink request failed so the next call opens a fresh one.
    async fn with_netlink<T, F>(&self, f: impl FnOnce(Netlink) -> F) -> Result<T, NetError>
    where
        F: Future<Output = Result<T, NetError>>,
    {
        let nl = self.netlink.get(|| async { Netlink::connect() }).await?;
        let result = f(nl).await;
        if let Err(e) = &result
            && e.is_connection()
        {
            self.netlink.forget().await;
        }
        result
    }
}

fn payload<'a, T: serde::Deserialize<'a>>(desired: &'a Desired) -> Result<T, NetError> {
    let json = desired.payload.get(PAYLOAD).map_or("", String::as_str);
    serde_json::from_str(json).map_err(NetError::Payload)
}

impl Backend for NetworkBackend {
    fn kinds(&self) -> &'static [ResourceKind] {
        &[ResourceKind::Network, ResourceKind::Tap]
    }

    fn desired(&self, config: &Config) -> Vec<Desired> {
        desired::desired(config)
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>> {
        Box::pin(async move {
            self.with_netlink(|nl| async move { observe::all(&nl, &self.records).await })
                .await
                .map_err(NetError::into_backend)
        })
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let id = &action.id;
            let name = id.name.as_str();
            let records = &self.records;
            let result = match (id.kind, action.op, desired) {
                (ResourceKind::Network, Op::Delete, _) => {
                    self.with_netlink(|nl| async move {
                        converge::remove_network(&nl, records, name).await
                    })
                    .await
                }
                (ResourceKind::Tap, Op::Delete, _) => {
                    self.with_netlink(|nl| async move { converge::remove_tap(&nl, name).await })
                        .await
                }
                (ResourceKind::Network, _, Some(desired)) => {
                    match payload::<NetworkLinks>(desired) {
                        Ok(want) => {
                            self.with_netlink(|nl| async move {
                                converge::network(&nl, records, &want).await
                            })
                            .await
                        }
                        Err(e) => Err(e),
                    }
                }
                (ResourceKind::Tap, _, Some(desired)) => match payload::<TapLink>(desired) {
                    Ok(want) => {
                        self.with_netlink(|nl| async move { converge::tap(&nl, &want).await })
                            .await
                    }
                    Err(e) => Err(e),
                },
                (kind, _, _) => Err(NetError::Refused(format!(
                    "the network backend has no desired state for {kind} {name}"
                ))),
            };
            result.map_err(|e| {
                let mut error = e.into_backend();
                error.message = format!("{id}: {}", error.message);
                error
            })
        })
    }
}

#[cfg(test)]
mod tests;
