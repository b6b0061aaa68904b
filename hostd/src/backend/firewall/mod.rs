//! The firewall backend: the security groups of the VM NICs on this node
//! and the node's own input policy, as two nftables tables (`bridge
//! horcrux` and `inet horcrux`) that are always replaced together in one
//! `nft -f` transaction. How the ruleset is laid out, and why, is in
//! [`ruleset`].
//!
//! There is one resource, `firewall horcrux`, with two live fields:
//! `ruleset` (a digest of the text) and `rules` (how many rules it has).
//! The kernel cannot be asked which text a ruleset was loaded from, so the
//! backend remembers, after each apply, the digest it applied and a hash
//! of the listing read back right after. Observing compares the current
//! listing with that hash: unchanged, the resource shows the remembered
//! digest; edited by hand (or never applied by this hostd process), it
//! shows `changed outside hostd`, which the plan repairs with one apply.

pub mod nft;
pub mod ruleset;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use horcrux_config::Config;
use sha2::{Digest, Sha256};

pub use nft::NftError;
pub use ruleset::{NicPort, nic_ports, render_ruleset};

use crate::apply::{Backend, BackendError, BoxFuture};
use crate::plan::{Action, Desired, Observed, Op, ResourceId, ResourceKind};

/// The default `nft` binary, found on `PATH`.
pub const NFT: &str = "nft";

/// The name of the one firewall resource (and of both tables).
pub const RESOURCE: &str = nft::TABLE;

/// The `ruleset` value of tables hostd did not load, or that changed since.
pub const CHANGED_OUTSIDE: &str = "changed outside hostd";

/// A ruleset for 1,000 VMs loads in a third of a second on hardware and in
/// seconds under emulation (TCG); a minute means nft or the kernel is stuck.
const NFT_TIMEOUT: Duration = Duration::from_secs(60);

/// Payload key of the ruleset text.
const PAYLOAD: &str = "ruleset";

/// What the last successful apply loaded and what the kernel then listed.
#[derive(Clone, Debug)]
struct Applied {
    digest: String,
    listing: String,
}

/// Listings as nft printed them, and what they say.
type Seen = ([Option<String>; 2], Option<nft::Listing>);

/// The firewall backend; one per hostd.
#[derive(Debug)]
pub struct FirewallBackend {
    nft: nft::Nft,
    applied: Mutex<Option<Applied>>,
    /// The last listings read: an unchanged listing (the usual case on
    /// every drift check) is compared, not parsed again; 1,000 VMs' worth
    /// is megabytes of JSON.
    seen: Mutex<Option<Seen>>,
}

impl FirewallBackend {
    /// A backend running `nft` (a path, or a name looked up on `PATH`).
    pub fn new(nft: impl Into<PathBuf>) -> Self {
        FirewallBackend {
            nft: nft::Nft::new(nft, NFT_TIMEOUT),
            applied: Mutex::new(None),
            seen: Mutex::new(None),
        }
    }

    pub fn shared(nft: impl Into<PathBuf>) -> Arc<dyn Backend> {
        Arc::new(FirewallBackend::new(nft))
    }

    fn remember(&self, applied: Option<Applied>) {
        *lock(&self.applied) = applied;
    }

    fn remembered(&self) -> Option<Applied> {
        lock(&self.applied).clone()
    }

    /// Reads both tables back as one [`nft::Listing`].
    async fn listing(&self) -> Result<Option<nft::Listing>, BackendError> {
        let listings = self.nft.list_tables().await.map_err(backend_error)?;
        if let Some((raw, parsed)) = lock(&self.seen).as_ref()
            && *raw == listings
        {
            return Ok(parsed.clone());
        }
        let parsed = nft::parse_listings(&listings).map_err(BackendError::new)?;
        *lock(&self.seen) = Some((listings, parsed.clone()));
        Ok(parsed)
    }

    async fn load(&self, text: &str, digest: Option<String>) -> Result<(), BackendError> {
        // Forgotten first: if anything below fails, the tables are in an
        // unknown state and must read as changed.
        self.remember(None);
        self.nft.apply(text).await.map_err(backend_error)?;
        let Some(digest) = digest else {
            return Ok(());
        };
        match self.listing().await? {
            Some(listing) => {
                self.remember(Some(Applied {
                    digest,
                    listing: listing.hash,
                }));
                Ok(())
            }
            None => Err(BackendError::new(
                "the firewall tables are missing right after loading them",
            )),
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it;
/// the value is still plain data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// 16 hex digits of the SHA-256 of a ruleset text.
pub fn ruleset_digest(text: &str) -> String {
    crate::backend::hex(&Sha256::digest(text.as_bytes())[..8])
}

fn backend_error(e: NftError) -> BackendError {
    BackendError::of(&e, e.retryable())
}

/// The one firewall resource of this node, when the config has a node.
fn desired(config: &Config) -> Vec<Desired> {
    let Some(node) = config.node_name() else {
        return Vec::new();
    };
    let built = ruleset::build(config, node.as_str());
    let desired = Desired::new(ResourceId::new(ResourceKind::Firewall, RESOURCE))
        .field("ruleset", ruleset_digest(&built.text))
        .field("rules", built.rules.to_string())
        .payload(PAYLOAD, built.text);
    vec![desired]
}

impl Backend for FirewallBackend {
    fn kinds(&self) -> &'static [ResourceKind] {
        &[ResourceKind::Firewall]
    }

    fn desired(&self, config: &Config) -> Vec<Desired> {
        desired(config)
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>> {
        Box::pin(async move {
            let Some(listing) = self.listing().await? else {
                return Ok(Vec::new());
            };
            let ruleset = match self.remembered() {
                Some(applied) if applied.listing == listing.hash => applied.digest,
                _ => CHANGED_OUTSIDE.to_string(),
            };
            let observed = Observed::new(ResourceId::new(ResourceKind::Firewall, RESOURCE))
                .field("ruleset", ruleset)
                .field("rules", listing.rules.to_string());
            Ok(vec![observed])
        })
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match (action.op, desired) {
                (Op::Delete, _) => self.load(ruleset::DELETE_TEXT, None).await,
                (_, Some(desired)) => {
                    let text = desired.payload.get(PAYLOAD).ok_or_else(|| {
                        BackendError::permanent("the firewall resource has no ruleset text")
                    })?;
                    self.load(text, Some(ruleset_digest(text))).await
                }
                (_, None) => Err(BackendError::permanent("no desired state for the firewall")),
            }
        })
    }
}
