//! Source hints: a tool that changes the config tree on purpose (rollback,
//! the git receiver) says so in the run directory, so the generation that
//! results is attributed to it instead of to a local edit.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Source, TreeHash};
use crate::fsutil::replace_file;

/// A hint older than this is stale (the change it announced never came).
const MAX_AGE: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize, Deserialize)]
struct Hint {
    source: Source,
    /// The tree hash the change will produce; absent: the next change.
    hash: Option<String>,
    written_at: u64,
}

fn path(run_dir: &Path) -> PathBuf {
    run_dir.join("source-hint.json")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Announces that the next tree (with `hash`, if known) comes from `source`.
pub fn announce(run_dir: &Path, source: Source, hash: Option<&TreeHash>) -> std::io::Result<()> {
    fs::create_dir_all(run_dir)?;
    let hint = Hint {
        source,
        hash: hash.map(|h| h.0.clone()),
        written_at: now(),
    };
    let json = serde_json::to_vec(&hint).map_err(std::io::Error::other)?;
    replace_file(&path(run_dir), &json)
}

/// Takes back an announcement whose change did not happen (a failed
/// rollback), so reloads are not held back waiting for it.
pub fn withdraw(run_dir: &Path) {
    let _ = fs::remove_file(path(run_dir));
}

/// The tree hash a fresh hint announces, if any: while it differs from
/// what is on disk, the announced change is still being written.
pub fn pending(run_dir: &Path) -> Option<String> {
    let hint: Hint = serde_json::from_slice(&fs::read(path(run_dir)).ok()?).ok()?;
    let fresh = now().saturating_sub(hint.written_at) <= MAX_AGE.as_secs();
    if fresh { hint.hash } else { None }
}

/// The source of a newly accepted tree: the announced one if a fresh hint
/// matches it (the hint is then consumed), else [`Source::Local`].
pub fn take(run_dir: &Path, hash: &TreeHash) -> Source {
    let file = path(run_dir);
    let Ok(bytes) = fs::read(&file) else {
        return Source::Local;
    };
    let Ok(hint) = serde_json::from_slice::<Hint>(&bytes) else {
        let _ = fs::remove_file(&file);
        return Source::Local;
    };
    let fresh = now().saturating_sub(hint.written_at) <= MAX_AGE.as_secs();
    let matches = hint.hash.as_deref().is_none_or(|h| h == hash.0);
    if !fresh {
        let _ = fs::remove_file(&file);
        return Source::Local;
    }
    if matches {
        let _ = fs::remove_file(&file);
        hint.source
    } else {
        Source::Local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_hint_is_consumed_once() {
        let dir = tempfile::tempdir().unwrap();
        let hash = TreeHash("abc".into());
        announce(dir.path(), Source::Rollback, Some(&hash)).unwrap();
        assert_eq!(take(dir.path(), &TreeHash("other".into())), Source::Local);
        assert_eq!(take(dir.path(), &hash), Source::Rollback);
        assert_eq!(take(dir.path(), &hash), Source::Local);
    }

    #[test]
    fn pending_reports_only_fresh_hashed_hints() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pending(dir.path()), None);
        announce(dir.path(), Source::Rollback, Some(&TreeHash("abc".into()))).unwrap();
        assert_eq!(pending(dir.path()).as_deref(), Some("abc"));
        let stale = Hint {
            source: Source::Rollback,
            hash: Some("abc".into()),
            written_at: 0,
        };
        fs::write(path(dir.path()), serde_json::to_vec(&stale).unwrap()).unwrap();
        assert_eq!(pending(dir.path()), None);
    }

    #[test]
    fn hint_without_hash_matches_next_tree_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        announce(dir.path(), Source::Push, None).unwrap();
        assert_eq!(take(dir.path(), &TreeHash("x".into())), Source::Push);
        fs::write(path(dir.path()), b"{not json").unwrap();
        assert_eq!(take(dir.path(), &TreeHash("x".into())), Source::Local);
        assert!(!path(dir.path()).exists());
    }
}
