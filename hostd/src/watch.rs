//! Noticing config changes: inotify (via notify) with debouncing, so an
//! editor's rename-replace or a git checkout of many files becomes one
//! reload. The daemon adds a periodic rescan and SIGHUP as safety nets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::Notify;

/// How long the tree must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(75);

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify::Error,
}

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWatch")
    }
}

/// Watches `dir` recursively and wakes `changed` after each quiet period
/// that followed a change. Wake-ups coalesce: many changes, one reload.
pub fn watch(dir: &Path, changed: Arc<Notify>) -> Result<ConfigWatch, WatchError> {
    let err = |source| WatchError {
        path: dir.display().to_string(),
        source,
    };
    let mut debouncer =
        new_debouncer(
            DEBOUNCE,
            None,
            move |result: DebounceEventResult| match result {
                // Reading the tree (our own reloads) produces access
                // events; only changes count, or every reload would
                // trigger the next.
                Ok(events)
                    if events
                        .iter()
                        .any(|e| !matches!(e.kind, EventKind::Access(_))) =>
                {
                    changed.notify_one()
                }
                Ok(_) => {}
                Err(errors) => {
                    // A lost event (queue overflow) must not lose a change: reload.
                    for e in errors {
                        tracing::warn!(error = %e, "config watch error; rescanning");
                    }
                    changed.notify_one();
                }
            },
        )
        .map_err(err)?;
    debouncer
        .watch(dir, RecursiveMode::Recursive)
        .map_err(err)?;
    Ok(ConfigWatch {
        _debouncer: debouncer,
    })
}
