//! Writing a whole config tree into the config directory at once, for
//! rollbacks (and git pushes): readers see the old tree or the new one.
//!
//! `cluster/` is staged beside the live directory and swapped in with one
//! `renameat2(RENAME_EXCHANGE)`; `node.toml` is replaced by a rename. Files
//! outside the layout that hostd reads (`secrets/`, dotfiles) are kept.

use std::fs;
use std::path::{Component, Path};

use horcrux_config::assemble::is_config_path;

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::fsutil::{PathError, at, replace_file, sync_dir, write_synced};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("refusing to write outside the config directory: {0}")]
    BadPath(String),
    #[error("the tree has files outside node.toml and cluster/: {0}")]
    Unexpected(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeployError {
    at(action, path)
}

/// Replaces node.toml (when the tree has one) and the whole `cluster/`
/// directory with `files` (`(relative path, content)`). Files in `cluster/`
/// that are not config (`.git`, notes, editor files) are carried over.
pub fn deploy_tree(config_dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), DeployError> {
    let mut node_toml = None;
    let mut cluster = Vec::new();
    for (rel, content) in files {
        let safe = !rel.is_empty()
            && Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        match rel.strip_prefix("cluster/") {
            _ if !safe => return Err(DeployError::BadPath(rel.clone())),
            _ if rel == "node.toml" => node_toml = Some(content),
            Some(inner) => cluster.push((inner, content)),
            None => return Err(DeployError::Unexpected(rel.clone())),
        }
    }
    let stage = config_dir.join(format!(".cluster.new-{}", std::process::id()));
    // A leftover (or planted symlink) is removed, never followed; then the
    // stage must be created fresh by us.
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir(&stage).map_err(io("create", &stage))?;
    for (inner, content) in cluster {
        let path = stage.join(inner);
        write_synced(&path, content).map_err(io("write", &path))?;
    }
    let live = config_dir.join("cluster");
    carry_over(&live, &stage, "")?;
    sync_dir(&stage).map_err(io("sync", &stage))?;
    if let Some(content) = node_toml {
        let dest = config_dir.join("node.toml");
        replace_file(&dest, content).map_err(io("replace", &dest))?;
    }
    if live.exists() {
        renameat_with(CWD, &stage, CWD, &live, RenameFlags::EXCHANGE)
            .map_err(|e| io("swap in", &live)(e.into()))?;
    } else {
        fs::rename(&stage, &live).map_err(io("rename", &live))?;
    }
    sync_dir(config_dir).map_err(io("sync", config_dir))?;
    // `stage` now holds the previous cluster/ (or nothing).
    let _ = fs::remove_dir_all(&stage);
    Ok(())
}

/// Moves what is not config from the live `cluster/` into the stage:
/// dot-directories whole (a `.git` is renamed, not copied), other files
/// copied. Symlinks are left behind.
fn carry_over(live: &Path, stage: &Path, prefix: &str) -> Result<(), DeployError> {
    let Ok(entries) = fs::read_dir(live) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let (from, to) = (entry.path(), stage.join(&rel));
        if kind.is_dir() && name.starts_with('.') {
            fs::rename(&from, &to).map_err(io("move", &from))?;
        } else if kind.is_dir() {
            carry_over(&from, stage, &format!("{rel}/"))?;
        } else if kind.is_file() && !is_config_path(&format!("cluster/{rel}")) {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            fs::copy(&from, &to).map_err(io("copy", &from))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, rel: &str) -> Option<String> {
        fs::read_to_string(dir.join(rel)).ok()
    }

    #[test]
    fn replaces_cluster_and_node_but_keeps_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("cluster/vms")).unwrap();
        fs::create_dir_all(root.join("secrets")).unwrap();
        fs::write(root.join("cluster/vms/old.toml"), "x").unwrap();
        fs::create_dir_all(root.join("cluster/.git/objects")).unwrap();
        fs::write(root.join("cluster/.git/HEAD"), "ref").unwrap();
        fs::write(root.join("cluster/vms/NOTES.md"), "mine").unwrap();
        fs::write(root.join("secrets/gossip.key"), "k").unwrap();
        fs::write(root.join("node.toml"), "name = \"a\"").unwrap();
        let files = vec![
            ("node.toml".to_string(), b"name = \"b\"".to_vec()),
            ("cluster/vms/new.toml".to_string(), b"cpus = 2".to_vec()),
        ];
        deploy_tree(root, &files).unwrap();
        assert_eq!(read(root, "node.toml").as_deref(), Some("name = \"b\""));
        assert_eq!(
            read(root, "cluster/vms/new.toml").as_deref(),
            Some("cpus = 2")
        );
        assert_eq!(read(root, "cluster/vms/old.toml"), None);
        assert_eq!(read(root, "secrets/gossip.key").as_deref(), Some("k"));
        assert_eq!(read(root, "cluster/.git/HEAD").as_deref(), Some("ref"));
        assert_eq!(read(root, "cluster/vms/NOTES.md").as_deref(), Some("mine"));
        let leftovers: Vec<_> = fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn creates_cluster_when_absent_and_rejects_escapes() {
        let dir = tempfile::tempdir().unwrap();
        deploy_tree(
            dir.path(),
            &[(
                "cluster/networks/lan.toml".into(),
                b"kind = \"bridge\"".to_vec(),
            )],
        )
        .unwrap();
        assert!(dir.path().join("cluster/networks/lan.toml").exists());
        assert!(matches!(
            deploy_tree(dir.path(), &[("../x".into(), vec![])]),
            Err(DeployError::BadPath(_))
        ));
        assert!(matches!(
            deploy_tree(dir.path(), &[("other.toml".into(), vec![])]),
            Err(DeployError::Unexpected(_))
        ));
    }
}
