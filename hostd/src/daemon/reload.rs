//! One look at the config tree: unchanged, rejected (with every error), or
//! accepted as a generation.

use std::path::Path;

use horcrux_config::load::read_tree;
use horcrux_config::{Config, Diagnostic, LoadError, TreeFile, against_previous, check_files};

use crate::cluster::signature;
use crate::generation::{
    GenerationInfo, GenerationStore, StoreError, TreeHash, hint, stored_contents, tree_hash,
};

#[derive(Debug)]
pub enum Outcome {
    /// The files are byte-for-byte what was last looked at.
    Unchanged,
    /// The tree is invalid; the running generation stays.
    Rejected(Vec<Diagnostic>),
    /// The tree is valid. `new` is false when it equals the latest
    /// generation (e.g. an edit that was undone).
    Accepted {
        generation: GenerationInfo,
        config: Box<Config>,
        new: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot store the generation")]
    Store(#[from] StoreError),
}

/// Remembers what was last seen so that rescans of an unchanged tree cost
/// one read and one hash.
#[derive(Debug, Default)]
pub struct Reloader {
    last_seen: Option<TreeHash>,
}

impl Reloader {
    pub fn reload(
        &mut self,
        config_dir: &Path,
        run_dir: &Path,
        store: &GenerationStore,
        running: Option<&Config>,
    ) -> Result<Outcome, ReloadError> {
        let files = read_tree(config_dir)?;
        // read_tree skips `.minisig` files, yet signing a rejected tree
        // is a change that must be looked at.
        let signatures = signature::read_signatures(config_dir);
        let seen = fingerprint(files.iter().chain(&signatures));
        if self.last_seen.as_ref() == Some(&seen) {
            return Ok(Outcome::Unchanged);
        }
        let checked = check_files(files);
        let config = match checked.into_valid() {
            Ok(config) if config.node.is_none() => {
                // `horcrux check` accepts a cluster/ tree alone (a laptop
                // copy); a node without its identity must not run it.
                self.last_seen = Some(seen);
                return Ok(Outcome::Rejected(vec![missing_node_toml()]));
            }
            Ok(config) => match running.map(|r| against_previous(r, &config)) {
                Some(errors) if !errors.is_empty() => {
                    self.last_seen = Some(seen);
                    return Ok(Outcome::Rejected(errors));
                }
                _ => config,
            },
            Err(errors) => {
                self.last_seen = Some(seen);
                return Ok(Outcome::Rejected(errors));
            }
        };
        // With `[trust] require_signatures`, cluster/ changes must be signed.
        let unsigned = signature::check_tree(config_dir, &config, running);
        if !unsigned.is_empty() {
            self.last_seen = Some(seen);
            return Ok(Outcome::Rejected(unsigned));
        }
        let contents = stored_contents(&config, &signatures);
        let hash = tree_hash(contents.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        if hint::pending(run_dir).is_some_and(|announced| announced != hash.0) {
            // A rollback or push is replacing the tree right now: this is
            // a mix of old and new. Its completion triggers another look.
            return Ok(Outcome::Unchanged);
        }
        let source = hint::take(run_dir, &hash);
        let (generation, new) = store.commit(&contents, &hash, source)?;
        // Only now: a failed commit must be retried by the next rescan.
        self.last_seen = Some(seen);
        Ok(Outcome::Accepted {
            generation,
            config: Box::new(config),
            new,
        })
    }

    /// Forget what was seen, so the next reload re-validates (SIGHUP).
    pub fn forget(&mut self) {
        self.last_seen = None;
    }
}

fn missing_node_toml() -> Diagnostic {
    Diagnostic {
        file: "node.toml".into(),
        line: None,
        column: None,
        message: "node.toml is missing: hostd needs this node's name".into(),
        hint: Some(
            "restore node.toml (it is never replicated), e.g. from `horcrux generations`".into(),
        ),
        snippet: None,
    }
}

/// A hash of everything that could change the outcome, including files
/// that could not be read (a permissions fix must trigger a re-check).
fn fingerprint<'a>(files: impl Iterator<Item = &'a TreeFile>) -> TreeHash {
    // Runs on every rescan: borrow the contents, only paths are rebuilt.
    let framed: Vec<(String, &[u8])> = files
        .map(|f| match &f.content {
            Ok(bytes) => (f.path.clone(), bytes.as_slice()),
            Err(e) => (format!("{}\0unreadable", f.path), e.as_bytes()),
        })
        .collect();
    tree_hash(framed.iter().map(|(p, c)| (p.as_str(), *c)))
}

/// The config of a stored generation, for starting up where we left off.
pub fn load_generation(
    store: &GenerationStore,
    id: u64,
) -> Result<Result<Config, Vec<Diagnostic>>, StoreError> {
    let files = store
        .files(id)?
        .into_iter()
        .map(|(path, content)| TreeFile {
            path,
            content: Ok(content),
        })
        .collect();
    Ok(check_files(files).into_valid())
}
