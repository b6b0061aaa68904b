//! `horcrux generations` and `horcrux rollback ID`.

use std::fmt::Write as _;
use std::path::Path;

use horcrux_config::load::read_tree;

use super::{Outcome, exit};
use crate::deploy::deploy_tree;
use crate::errors::chain;
use crate::generation::{GenerationStore, Source, StoreError, hint, tree_hash};

/// Lists the stored generations, newest last (the one hostd runs).
pub fn list(state_dir: &Path, json: bool) -> Outcome {
    let all = match open(state_dir).and_then(|s| s.list()) {
        Ok(all) => all,
        Err(e) => {
            return Outcome::error(
                exit::INVALID,
                &format!("horcrux generations: {}", chain(&e)),
            );
        }
    };
    if json {
        return Outcome::ok(serde_json::to_string_pretty(&all).unwrap_or_default() + "\n");
    }
    if all.is_empty() {
        return Outcome::ok("no generations yet: hostd has not accepted a config tree\n".into());
    }
    let mut out = format!(
        "{:>6}  {:<20}  {:<8}  {:>6}  {}\n",
        "ID", "ACCEPTED", "SOURCE", "PARENT", "HASH"
    );
    for g in &all {
        let parent = g.parent.map_or("-".to_string(), |p| p.to_string());
        let _ = writeln!(
            out,
            "{:>6}  {:<20}  {:<8}  {:>6}  {}",
            g.id,
            g.accepted_at,
            g.source.as_str(),
            parent,
            short(&g.hash)
        );
    }
    Outcome::ok(out)
}

fn open(state_dir: &Path) -> Result<GenerationStore, StoreError> {
    GenerationStore::open(state_dir)
}

/// Writes generation `id` back into the config directory. hostd then
/// accepts it as a new generation whose source is `rollback`. If the tree
/// on disk is not a stored generation (unsaved edits), it is copied aside
/// first so nothing is lost.
pub fn rollback(id: u64, config_dir: &Path, state_dir: &Path, run_dir: &Path) -> Outcome {
    let fail = |e: &dyn std::error::Error| {
        Outcome::error(exit::INVALID, &format!("horcrux rollback: {}", chain(e)))
    };
    let store = match open(state_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let (target, files) = match store.get(id).and_then(|g| Ok((g, store.files(id)?))) {
        Ok(found) => found,
        Err(e) => return fail(&e),
    };
    let mut notes = String::new();
    match backup_unsaved(&store, config_dir, state_dir) {
        Ok(Some(path)) => {
            let _ = writeln!(
                notes,
                "the tree on disk was not a stored generation; saved a copy in {}",
                path.display()
            );
        }
        Ok(None) => {}
        Err(e) => return fail(&*e),
    }
    let hash = tree_hash(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
    if let Err(e) = hint::announce(run_dir, Source::Rollback, Some(&hash)) {
        return fail(&e);
    }
    if let Err(e) = deploy_tree(config_dir, &files) {
        hint::withdraw(run_dir);
        return fail(&e);
    }
    let _ = writeln!(
        notes,
        "rolled back {} to generation {} ({}); hostd records it as a new generation with source \"rollback\"",
        config_dir.display(),
        target.id,
        short(&target.hash)
    );
    Outcome::ok(notes)
}

/// Copies the current tree to `<state>/rollback-backups/<time>/` unless it
/// is identical to a stored generation. Returns where it went.
fn backup_unsaved(
    store: &GenerationStore,
    config_dir: &Path,
    state_dir: &Path,
) -> Result<Option<std::path::PathBuf>, Box<dyn std::error::Error>> {
    let files: Vec<(String, Vec<u8>)> = match read_tree(config_dir) {
        Ok(files) => files
            .into_iter()
            .filter_map(|f| Some((f.path, f.content.ok()?)))
            .collect(),
        // Nothing readable to lose.
        Err(_) => return Ok(None),
    };
    if files.is_empty() {
        return Ok(None);
    }
    let hash = tree_hash(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
    if store.list()?.iter().any(|g| g.hash == hash.0) {
        return Ok(None);
    }
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let dir = state_dir.join("rollback-backups").join(stamp);
    for (rel, content) in &files {
        crate::fsutil::write_synced(&dir.join(rel), content)?;
    }
    Ok(Some(dir))
}

/// The first 12 characters of a hash (stored metadata is not trusted to be hex).
fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
